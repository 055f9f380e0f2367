"""runtime: run bundles (and converted models) with numpy.

>>> import runtime
>>> m = runtime.load("models/mnist")      # doctest: +SKIP
>>> m.predict(x)                          # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

from runtime.errors import InputError, RuntimeModelError, UnsupportedOpError
from runtime.model import Model, SignatureFunction
from savedmodel.ir import Graph

__all__ = ["InputError", "Model", "RuntimeModelError", "SignatureFunction", "UnsupportedOpError", "from_graph",
           "load"]


def load(path: str | os.PathLike) -> Model:
    """Load a model for inference.

    ``path`` is a bundle file, a version directory or a model base path (the
    newest version is taken), a ``.tflite`` file, or a TF.js ``model.json``.
    """
    path = Path(path)
    if path.suffix.lower() == ".tflite":
        from runtime.lite import load_tflite

        return load_tflite(path)
    if path.suffix.lower() == ".json":
        from converters.web.reader import read_model_json

        return from_graph(read_model_json(path))
    from savedmodel.reader import read_bundle
    from savedmodel.versions import resolve

    return Model.from_bundle(read_bundle(resolve(path)))


def from_graph(graph: Graph) -> Model:
    """A Model running ``graph`` with one ``serving_default`` signature."""
    return Model(graph, {})
