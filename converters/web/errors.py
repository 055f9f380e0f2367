"""The web converter's errors.

Bad files raise ``savedmodel.errors.FormatError`` (naming the file and the
entry), ops or layers without a mapping ``savedmodel.errors.UnsupportedError``;
``ConversionError`` covers the rest: values the format cannot hold, output
that fails the converter's own validation, bad options.
"""

from __future__ import annotations

from savedmodel.errors import SavedModelError


class ConversionError(SavedModelError):
    """The model cannot be written as asked; ``what`` names the node, layer or weight at fault."""

    def __init__(self, message: str, *, what: str | None = None) -> None:
        self.what = what
        super().__init__(message)


class NotExpressible(Exception):
    """Internal: an IR node has no faithful TF.js layer; the converter falls back to a graph model."""

    def __init__(self, node: str, reason: str) -> None:
        self.node = node
        self.reason = reason
        super().__init__(f"node {node!r}: {reason}")
