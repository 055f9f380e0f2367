"""Run .tflite files with numpy: TFLite's reference integer kernels, bit for bit.

>>> import runtime
>>> m = runtime.load("mnist_int8.tflite")       # doctest: +SKIP
>>> m.predict(x)                                # doctest: +SKIP
"""

from __future__ import annotations

import os

from runtime.lite.model import LiteRuntimeModel

__all__ = ["LiteRuntimeModel", "from_bytes", "load_tflite"]


def load_tflite(path: str | os.PathLike) -> LiteRuntimeModel:
    """Load a .tflite file; FormatError if it is malformed, UnsupportedOpError for an op without a kernel."""
    from converters.lite.reader import read

    return LiteRuntimeModel(read(path), path)


def from_bytes(blob: bytes) -> LiteRuntimeModel:
    """A model from .tflite bytes."""
    from converters.lite.reader import parse

    return LiteRuntimeModel(parse(blob), "<bytes>")
