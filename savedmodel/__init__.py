"""savedmodel: the graph IR, the HDF5 bundle format and the importers.

>>> import savedmodel
>>> path = savedmodel.save(keras_model, "models/mnist")   # doctest: +SKIP
>>> bundle = savedmodel.load("models/mnist")               # doctest: +SKIP
>>> bundle.signatures["serving_default"].method            # doctest: +SKIP
'predict'
"""

from __future__ import annotations

import os
from pathlib import Path

from savedmodel.builder import GraphBuilder
from savedmodel.bundle import Bundle, Signature
from savedmodel.errors import FormatError, GraphError, SavedModelError, UnsupportedError, VersionExistsError
from savedmodel.export import save
from savedmodel.ir import Graph, Node, TensorSpec

__version__ = "0.1.0"

__all__ = [
    "Bundle", "FormatError", "Graph", "GraphBuilder", "GraphError", "Node", "SavedModelError", "Signature",
    "TensorSpec", "UnsupportedError", "VersionExistsError", "load", "save",
]


def load(path: str | os.PathLike) -> Bundle:
    """Read a bundle (file, version directory or base path) without running it."""
    from savedmodel.reader import read_bundle
    from savedmodel.versions import resolve

    return read_bundle(resolve(Path(path)))
