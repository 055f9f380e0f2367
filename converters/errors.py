"""The errors of the converters (``converters.lite``, ``converters.web``)."""

from __future__ import annotations

from savedmodel.errors import SavedModelError


class ConversionError(SavedModelError):
    """A model cannot be converted: names the op (and node) at fault and the reason.

    >>> str(ConversionError("no TFLite mapping", op="Dot", node="dot_1"))
    "cannot convert node 'dot_1' (op Dot): no TFLite mapping"
    """

    def __init__(self, reason: str, *, op: str | None = None, node: str | None = None) -> None:
        self.reason = reason
        self.op = op
        self.node = node
        where = []
        if node is not None:
            where.append(f"node {node!r}")
        if op is not None:
            where.append(f"(op {op})" if node is not None else f"op {op}")
        prefix = f"cannot convert {' '.join(where)}: " if where else "cannot convert: "
        super().__init__(prefix + reason)


class CalibrationDataError(ConversionError, ValueError):
    """Representative (or validation) data does not fit the model's inputs.

    ``input`` names the input at fault, ``expected`` and ``received`` say
    what was wanted and what came.
    """

    def __init__(self, message: str, *, input: str | None = None, expected: str = "", received: str = "") -> None:
        self.input = input
        self.expected = expected
        self.received = received
        SavedModelError.__init__(self, message)
        self.reason, self.op, self.node = message, None, None
