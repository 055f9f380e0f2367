"""The server's errors and the one table that maps every error to HTTP.

Domain code (manager, service, codecs) raises these with a message written
for the client; ``error_response`` is the single exception handler the app
installs, so every protocol answers ``{"error": "..."}`` with the status TF
Serving would use for the same condition (INVALID_ARGUMENT -> 400,
NOT_FOUND -> 404, UNAVAILABLE -> 503, DEADLINE_EXCEEDED -> 504, ...).

This module imports no web framework at import time: the manager and the
batcher use the error classes, the app uses the handler.
"""

from __future__ import annotations

import logging
from typing import Any

from runtime.errors import InputError
from savedmodel.errors import FormatError, SavedModelError

logger = logging.getLogger("server")


class ServingError(Exception):
    """Base of the errors the server raises on purpose; the message goes to the client."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidArgument(ServingError):
    """The request is malformed or does not match the model (TF INVALID_ARGUMENT)."""


class NotFound(ServingError):
    """No such model, version or servable (TF NOT_FOUND)."""


class FailedPrecondition(ServingError):
    """The request is well-formed but the server is not in a state to honour it."""


class Unavailable(ServingError):
    """The server cannot take the request now; retrying later may work (TF UNAVAILABLE)."""


class QueueFull(Unavailable):
    """The batching queue of the request's model is full."""

    def __init__(self) -> None:
        # TensorFlow's SharedBatchScheduler words it this way; clients grep for it.
        super().__init__("The batch scheduling queue to which this task was submitted is full")


class DeadlineExceeded(ServingError):
    """The request took longer than the server's request timeout (TF DEADLINE_EXCEEDED)."""


class Unimplemented(ServingError):
    """A valid request for something this server does not do (TF UNIMPLEMENTED)."""


class PayloadTooLarge(ServingError):
    """The request body, or a tensor in it, is larger than the configured limit."""


class Unauthenticated(ServingError):
    """The request carries no API key where one is required (TF UNAUTHENTICATED)."""


class PermissionDenied(ServingError):
    """The request's API key is not one of the server's keys (TF PERMISSION_DENIED)."""


class RateLimited(ServingError):
    """The client sent more requests than its rate limit allows; ``retry_after`` seconds until the next fits."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# (error class, TF error code name, HTTP status). Looked up along the raised
# error's MRO, so the most specific row wins. The TF code names are what the
# status API reports for a version that failed to load.
ERROR_TABLE: tuple[tuple[type[BaseException], str, int], ...] = (
    (PayloadTooLarge, "RESOURCE_EXHAUSTED", 413),
    (Unauthenticated, "UNAUTHENTICATED", 401),
    (PermissionDenied, "PERMISSION_DENIED", 403),
    (RateLimited, "RESOURCE_EXHAUSTED", 429),
    (InvalidArgument, "INVALID_ARGUMENT", 400),
    (FailedPrecondition, "FAILED_PRECONDITION", 400),
    (NotFound, "NOT_FOUND", 404),
    (Unavailable, "UNAVAILABLE", 503),
    (DeadlineExceeded, "DEADLINE_EXCEEDED", 504),
    (Unimplemented, "UNIMPLEMENTED", 501),
    (InputError, "INVALID_ARGUMENT", 400),
    (FormatError, "DATA_LOSS", 500),
    (SavedModelError, "INTERNAL", 500),
    (FileNotFoundError, "NOT_FOUND", 500),
    (TimeoutError, "DEADLINE_EXCEEDED", 504),
    (Exception, "UNKNOWN", 500),
)
_BY_CLASS = {cls: (code, status) for cls, code, status in ERROR_TABLE}


def classify(exc: BaseException) -> tuple[str, int]:
    """The TF error code name and the HTTP status of an error."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and not isinstance(exc, ServingError):
        # Starlette's HTTPException (unknown route, wrong method) carries its own status.
        return ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT"), status
    for cls in type(exc).__mro__:
        if cls in _BY_CLASS:
            return _BY_CLASS[cls]
    return "UNKNOWN", 500


def message_of(exc: BaseException) -> str:
    """The client-facing text of an error: our own messages as they are, others with their type."""
    if isinstance(exc, ServingError):
        return exc.message
    if isinstance(exc, (InputError, SavedModelError)):
        return str(exc)
    detail = getattr(exc, "detail", None)
    if isinstance(detail, str):  # Starlette HTTPException
        return detail
    if isinstance(exc, TimeoutError):
        return "Request timed out"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def error_body(message: str) -> bytes:
    """``{"error": message}`` as both TF Serving and V2 clients parse it."""
    import json

    return json.dumps({"error": message}, ensure_ascii=False).encode()


async def error_response(request: Any, exc: Exception) -> Any:
    """The app's one exception handler: any error -> JSON ``{"error": ...}`` with its mapped status."""
    from fastapi.responses import Response

    _code, status = classify(exc)
    if status >= 500 and not isinstance(exc, (ServingError, TimeoutError)):
        logger.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    headers = getattr(exc, "headers", None) or None
    return Response(error_body(message_of(exc)), status_code=status, media_type="application/json", headers=headers)
