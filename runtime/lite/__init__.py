"""Run .tflite files with numpy: TFLite's reference integer kernels, bit for bit.

>>> import runtime
>>> m = runtime.load("mnist_int8.tflite")       # doctest: +SKIP
>>> m.predict(x)                                # doctest: +SKIP
"""

from __future__ import annotations

import os

from runtime.lite.model import LiteRuntimeModel

__all__ = ["LiteRuntimeModel", "from_bytes", "load_tflite"]


def load_tflite(path: str | os.PathLike, kernels: str = "reference") -> LiteRuntimeModel:
    """Load a .tflite file; FormatError if it is malformed, UnsupportedOpError for an op without a kernel.

    ``kernels="reference"`` (default) matches LiteRT's reference kernels bit for
    bit; ``"builtin"`` matches its optimized kernels where they round differently.
    """
    from converters.lite.reader import read

    return LiteRuntimeModel(read(path), path, kernels)


def from_bytes(blob: bytes, kernels: str = "reference") -> LiteRuntimeModel:
    """A model from .tflite bytes."""
    from converters.lite.reader import parse

    return LiteRuntimeModel(parse(blob), "<bytes>", kernels)
