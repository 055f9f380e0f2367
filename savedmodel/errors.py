"""The errors of the `savedmodel` package.

Every error carries the facts it reports as fields, so callers (the CLI, the
server) can act on them without parsing messages.
"""

from __future__ import annotations


class SavedModelError(Exception):
    """Base class of every error this package raises on purpose."""


class FormatError(SavedModelError):
    """A file is not a valid bundle (or not the format it claims to be).

    ``path`` is the offending file, ``problem`` what is wrong with it.
    """

    def __init__(self, path: object, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class GraphError(SavedModelError):
    """A graph is malformed: unknown op, dangling tensor, cycle, bad weight.

    ``node`` names the node at fault (None for graph-level problems).
    """

    def __init__(self, message: str, *, node: str | None = None) -> None:
        self.node = node
        super().__init__(f"node {node!r}: {message}" if node else message)


class UnsupportedError(SavedModelError):
    """A source model uses something the toolkit cannot represent faithfully.

    ``what`` names the layer or op, ``kind`` its class or op type and
    ``supported`` lists what would have been accepted.
    """

    def __init__(
        self,
        message: str,
        *,
        what: str | None = None,
        kind: str | None = None,
        supported: list[str] | tuple[str, ...] = (),
    ) -> None:
        self.what = what
        self.kind = kind
        self.supported = list(supported)
        if self.supported:
            message = f"{message} Supported: {', '.join(sorted(self.supported))}."
        super().__init__(message)


class VersionExistsError(SavedModelError, FileExistsError):
    """``save(..., version=N)`` was asked for a version directory that exists."""

    def __init__(self, path: object, version: int) -> None:
        self.path = str(path)
        self.version = version
        super().__init__(
            f"{self.path}: version {version} already exists; pass another "
            "version= or omit it to take the next free one"
        )
