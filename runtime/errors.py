"""The errors of the runtime."""

from __future__ import annotations

from savedmodel.errors import SavedModelError


class RuntimeModelError(SavedModelError):
    """Base class of the runtime's errors."""


class InputError(RuntimeModelError, ValueError):
    """Inputs given to ``predict`` do not match the model's signature.

    ``input`` names the input at fault (None when the set of names is wrong),
    ``expected`` and ``received`` describe what was wanted and what came.
    """

    def __init__(self, message: str, *, input: str | None = None, expected: str = "", received: str = "") -> None:
        self.input = input
        self.expected = expected
        self.received = received
        super().__init__(message)


class UnsupportedOpError(RuntimeModelError):
    """The graph uses an op for which the runtime has no kernel."""

    def __init__(self, op: str, available: list[str]) -> None:
        self.op = op
        self.available = available
        super().__init__(f"the runtime has no kernel for op {op!r}; it has: {', '.join(available)}")
