"""The ONNX importer: an ``.onnx`` file or an ``onnx.ModelProto`` -> Graph.

>>> from savedmodel.importers.onnx import import_onnx_file
>>> graph, source = import_onnx_file("resnet.onnx")     # doctest: +SKIP
>>> source["framework"], source["opset"]                 # doctest: +SKIP
('onnx', 17)

Reading needs the ``onnx`` package only (the ``onnx`` extra), never
onnxruntime. Opsets 13 to 21 of the default domain are read. Channels-first
graphs become channels-last once, at import (layout.py); constant and
batch-size shape arithmetic is evaluated at import (fold.py); each remaining
node goes through its converter (registry.py documents how to add one).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from savedmodel.errors import FormatError
from savedmodel.ir import Graph

MODEL_OBJECT = "<onnx.ModelProto>"


def import_onnx_file(path: str | os.PathLike) -> tuple[Graph, dict[str, Any]]:
    """The Graph of an ONNX model file and a description of its source.

    Raises FormatError when the file is missing or not a valid ONNX model,
    UnsupportedError listing every op the IR cannot express.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    try:
        model = onnx.load(str(path))
    except (DecodeError, ValueError, OSError, RuntimeError) as e:
        raise FormatError(path, f"is not a readable ONNX model ({type(e).__name__}: {e})") from e
    return _import(model, path)


def import_onnx_model(model: Any) -> tuple[Graph, dict[str, Any]]:
    """The Graph of an in-memory ``onnx.ModelProto`` and a description of its source."""
    return _import(model, MODEL_OBJECT)


def _import(model: Any, where: str | Path) -> tuple[Graph, dict[str, Any]]:
    import onnx

    from savedmodel.importers.onnx.graph import build_graph, opsets_of

    if not isinstance(model, onnx.ModelProto):
        raise FormatError(where, f"expected an onnx.ModelProto, got {type(model).__name__}")
    try:
        onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as e:
        raise FormatError(where, f"is not a valid ONNX model: {str(e).strip().splitlines()[0]}") from e
    graph = build_graph(model)
    source = {
        "framework": "onnx",
        "onnx_version": onnx.__version__,
        "opset": opsets_of(model).get(""),
        "ir_version": int(model.ir_version),
        "producer": model.producer_name,
        "producer_version": model.producer_version,
    }
    return graph, source


__all__ = ["import_onnx_file", "import_onnx_model"]
