"""The access log: uvicorn's line per request, written after the response and for a fraction of the cost.

uvicorn logs a request just before it writes the response, through
``Logger.info`` (which walks the stack to find its caller), its
``AccessFormatter`` (which copies the record twice) and a ``StreamHandler``
that flushes every line: a system call on the event loop per request, which
under load also waits for the GIL held by the inference threads. In a profile
of the server at 8 clients the line's write took 116 us per request.

- ``AccessLogMiddleware`` logs the same record (the same message and
  arguments, uvicorn's default line) once the response has been sent, on the
  logger ``server.access``, which the CLI configures in place of
  ``uvicorn.access``;
- ``AccessFormatter`` renders uvicorn's default line without the copies;
- ``BufferedStreamHandler`` keeps the lines and writes them, together, from a
  thread of its own, at most ``FLUSH_SECONDS`` later.

    INFO:     127.0.0.1:50412 - "POST /v1/models/digits:predict HTTP/1.1" 200 OK
"""

from __future__ import annotations

import http
import logging
import threading
import time
import urllib.parse
from typing import Any

from uvicorn.logging import AccessFormatter as UvicornAccessFormatter

from server.middleware import StatusWatch

LOGGER = "server.access"
MESSAGE = '%s - "%s %s HTTP/%s" %d'  # uvicorn's message; its arguments are the five of ``request_args``
DEFAULT_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'  # uvicorn's default
FLUSH_SECONDS = 0.05  # how long a line may wait in the stream's buffer


_STATUS_TEXT = {status.value: f"{status.value} {status.phrase}" for status in http.HTTPStatus}


def request_args(scope: dict[str, Any], status: int) -> tuple[str, str, str, str, int]:
    """uvicorn's access log arguments: client address, method, quoted path with query, HTTP version, status."""
    client = scope.get("client")
    path = urllib.parse.quote(scope["path"])
    if scope["query_string"]:
        path = f"{path}?{scope['query_string'].decode('ascii')}"
    return (f"{client[0]}:{client[1]:d}" if client else "", scope["method"], path, scope["http_version"], status)


class AccessFormatter(UvicornAccessFormatter):
    """uvicorn's access formatter; its default line without colours is written directly (same text)."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        args = record.args
        if self.use_colors or self._fmt != DEFAULT_FORMAT or not isinstance(args, tuple) or len(args) != 5:
            return super().formatMessage(record)
        client, method, path, version, status = args
        status_text = _STATUS_TEXT.get(status) or f"{status} "  # uvicorn's text for a status without a phrase
        prefix = f"{record.levelname}:".ljust(9)
        return f'{prefix} {client} - "{method} {path} HTTP/{version}" {status_text}'


class AccessLogMiddleware:
    """Pure ASGI middleware logging every HTTP request after its response (500 when the app failed first)."""

    def __init__(self, app: Any, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or logging.getLogger(LOGGER)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not self.logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        watch = StatusWatch(send)
        try:
            await self.app(scope, receive, watch)
        finally:
            self.log(scope, watch.status)

    def log(self, scope: dict[str, Any], status: int) -> None:
        """One access record; built directly, as ``Logger.info`` would, without looking up the caller."""
        record = logging.LogRecord(self.logger.name, logging.INFO, __file__, 0, MESSAGE, request_args(scope, status),
                                   None, "log")
        self.logger.handle(record)


class BufferedStreamHandler(logging.StreamHandler):
    """A StreamHandler whose lines are written and flushed from a thread of its own, at most
    ``flush_seconds`` after they are logged, instead of one system call per line on the thread that logs.

    The lines are kept by the handler, not in the stream's buffer: under PYTHONUNBUFFERED (usual in
    container images) every write to stdout is a system call. ``flush()`` (called by
    ``logging.shutdown`` at exit) writes and flushes at once.
    """

    def __init__(self, stream: Any = None, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__(stream)
        self.flush_seconds = flush_seconds
        self._lines: list[str] = []  # guarded by the handler's lock, which ``handle`` holds around ``emit``
        self._written = threading.Event()
        self._flusher: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        if self._flusher is None:
            self._start_flusher()
        self._written.set()

    def flush(self) -> None:
        """Write the lines logged so far in one call, then flush the stream."""
        with self.lock:  # type: ignore[union-attr] - logging creates it
            lines, self._lines = self._lines, []
            if lines and self.stream is not None:
                self.stream.write("".join(lines))
        super().flush()

    def _start_flusher(self) -> None:
        with self.lock:  # type: ignore[union-attr] - logging creates it
            if self._flusher is None:
                self._flusher = threading.Thread(target=self._flush_written, name="access-log-flush", daemon=True)
                self._flusher.start()

    def _flush_written(self) -> None:
        while True:
            self._written.wait()
            time.sleep(self.flush_seconds)  # gather the lines of this interval into one write
            self._written.clear()
            self.flush()
