"""converters.web: TF.js models (model.json + weight shards) from bundles, and back.

>>> from converters.web import convert, read_model_json
>>> convert("models/mnist", "web_model/", quantization="uint8")     # doctest: +SKIP
>>> graph = read_model_json("web_model/model.json")                 # doctest: +SKIP

``convert`` writes a layers model (``tf.loadLayersModel``) when TF.js has a
faithful layer for every node, else a graph model (``tf.loadGraphModel``);
``format="layers"|"graph"`` forces one. See docs/WEB.md.
"""

from __future__ import annotations

from converters.web.convert import WebModel, convert, convert_graph
from converters.web.errors import ConversionError
from converters.web.reader import read_model, read_model_json

__all__ = ["ConversionError", "WebModel", "convert", "convert_graph", "read_model", "read_model_json"]
