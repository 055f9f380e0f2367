"""The app's access log (server.accesslog) writes uvicorn's access line, from uvicorn's own record arguments."""

from __future__ import annotations

import asyncio
import io
import logging
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from uvicorn.logging import AccessFormatter as UvicornAccessFormatter
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

import savedmodel
from server.accesslog import (
    LOGGER,
    MESSAGE,
    AccessFormatter,
    AccessLogMiddleware,
    BufferedStreamHandler,
    request_args,
)
from server.cli import log_config
from tests.server.helpers import dense_graph

UVICORN_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'  # uvicorn's LOGGING_CONFIG


def _record(args: tuple[Any, ...], level: int = logging.INFO) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.access", level, __file__, 1, MESSAGE, args, None)


@pytest.mark.parametrize("status", [200, 400, 404, 413, 500, 503, 599])
@pytest.mark.parametrize("level", [logging.INFO, logging.WARNING, logging.CRITICAL])
@pytest.mark.parametrize("colors", [False, True])
@pytest.mark.parametrize("fmt", [UVICORN_FORMAT, "%(asctime)s %(client_addr)s %(status_code)s %(message)s"])
def test_formatter_writes_uvicorns_line(status: int, level: int, colors: bool, fmt: str) -> None:
    record = _record(("127.0.0.1:50412", "POST", "/v1/models/m:predict", "1.1", status), level)
    record.created = record.created // 1  # one timestamp for both, whatever the clock
    ours = AccessFormatter(fmt, use_colors=colors).format(record)
    theirs = UvicornAccessFormatter(fmt, use_colors=colors).format(record)
    assert ours == theirs
    assert record.args == ("127.0.0.1:50412", "POST", "/v1/models/m:predict", "1.1", status)  # left untouched


def test_the_default_line() -> None:
    line = AccessFormatter(UVICORN_FORMAT, use_colors=False).format(_record(("1.2.3.4:5", "GET", "/v2", "1.1", 200)))
    assert line == 'INFO:     1.2.3.4:5 - "GET /v2 HTTP/1.1" 200 OK'


@pytest.mark.parametrize("scope", [
    {"client": ("127.0.0.1", 50412), "method": "GET", "path": "/v2/health/live", "query_string": b"",
     "http_version": "1.1"},
    {"client": ("::1", 8), "method": "POST", "path": "/v1/models/a b/ü:predict", "query_string": b"x=1&y=%20",
     "http_version": "1.0"},
    {"client": None, "method": "HEAD", "path": "/", "query_string": b"", "http_version": "2"},
    {"method": "GET", "path": "/v2", "query_string": b"q", "http_version": "1.1"},
])
def test_request_args_are_uvicorns(scope: dict[str, Any]) -> None:
    assert request_args(scope, 201) == (get_client_addr(scope), scope["method"], get_path_with_query_string(scope),
                                        scope["http_version"], 201)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture()
def records() -> Any:
    logger = logging.getLogger(LOGGER)
    handler = _Records()
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    yield handler.records
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


def test_the_app_logs_every_request_with_its_status(tmp_path: Path, records: list[logging.LogRecord]) -> None:
    from server import ServerSettings, create_app

    savedmodel.save(dense_graph(3.0), tmp_path / "m")
    settings = ServerSettings(models=[{"name": "m", "base_path": tmp_path / "m"}], file_system_poll_wait_seconds=0)
    app = create_app(settings, log_requests=True)

    async def scenario() -> list[int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 4242))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return [(await c.post("/v1/models/m:predict", json={"instances": [[1, 2, 3]]})).status_code,
                        (await c.get("/v2/health/live?probe=1")).status_code,
                        (await c.post("/v1/models/nope:predict", json={"instances": [[1]]})).status_code,
                        (await c.post("/v1/models/m:predict", content=b"{")).status_code]

    statuses = asyncio.run(scenario())
    assert statuses == [200, 200, 404, 400]
    assert [r.args for r in records] == [  # uvicorn quotes the path, ':' included
        ("10.0.0.7:4242", "POST", "/v1/models/m%3Apredict", "1.1", 200),
        ("10.0.0.7:4242", "GET", "/v2/health/live?probe=1", "1.1", 200),
        ("10.0.0.7:4242", "POST", "/v1/models/nope%3Apredict", "1.1", 404),
        ("10.0.0.7:4242", "POST", "/v1/models/m%3Apredict", "1.1", 400),
    ]
    assert all(r.name == LOGGER and r.levelno == logging.INFO and r.msg == MESSAGE for r in records)


def test_the_app_does_not_log_by_default(tmp_path: Path, records: list[logging.LogRecord]) -> None:
    from server import ServerSettings, create_app

    app = create_app(ServerSettings(models=[{"name": "m", "base_path": tmp_path / "m"}]))

    async def scenario() -> int:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return (await c.get("/v2/health/live")).status_code

    assert asyncio.run(scenario()) == 200
    assert records == []


def test_a_failing_app_is_logged_as_500(records: list[logging.LogRecord]) -> None:
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    scope = {"type": "http", "client": ("1.2.3.4", 5), "method": "GET", "path": "/x", "query_string": b"",
             "http_version": "1.1"}
    with pytest.raises(RuntimeError, match="^boom$"):
        asyncio.run(AccessLogMiddleware(failing)(scope, None, None))
    assert [r.args for r in records] == [("1.2.3.4:5", "GET", "/x", "1.1", 500)]


def test_the_cli_logging_config_routes_the_access_log_to_uvicorns_handler() -> None:
    config = log_config("warning")
    assert config["loggers"][LOGGER] == {"handlers": ["access"], "level": "WARNING", "propagate": False}
    assert config["formatters"]["access"]["()"] == "server.accesslog.AccessFormatter"
    assert config["formatters"]["access"]["fmt"] == UVICORN_FORMAT
    assert config["handlers"]["access"] == {"formatter": "access", "class": "server.accesslog.BufferedStreamHandler",
                                            "stream": "ext://sys.stdout"}


class _Stream(io.StringIO):
    """A stream that shows only what was flushed, and counts the flushes."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed = ""
        self.flushes = 0

    def flush(self) -> None:
        self.flushed = self.getvalue()
        self.flushes += 1


def test_buffered_handler_flushes_the_lines_of_an_interval_together() -> None:
    stream = _Stream()
    handler = BufferedStreamHandler(stream, flush_seconds=1.0)
    handler.setFormatter(AccessFormatter(UVICORN_FORMAT, use_colors=False))
    logger = logging.getLogger("tests.server.buffered")
    logger.addHandler(handler)
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        for port in range(100):
            logger.info(MESSAGE, f"1.2.3.4:{port}", "GET", "/v2", "1.1", 200)
        assert stream.flushed == ""  # written to the buffer, not flushed on the logging thread
        deadline = time.monotonic() + 5
        while stream.flushes == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stream.flushed.splitlines() == [f'INFO:     1.2.3.4:{port} - "GET /v2 HTTP/1.1" 200 OK'
                                               for port in range(100)]
        assert stream.flushes == 1
        logger.info(MESSAGE, "1.2.3.4:100", "GET", "/v2", "1.1", 404)
        handler.flush()  # what logging.shutdown does at exit: at once
        assert stream.flushed.endswith('INFO:     1.2.3.4:100 - "GET /v2 HTTP/1.1" 404 Not Found\n')
    finally:
        logger.removeHandler(handler)


def test_buffered_handler_writes_an_intervals_lines_in_one_call_to_an_unbuffered_stream() -> None:
    # Under PYTHONUNBUFFERED every write to stdout is a system call: the handler must not write per line.
    class Unbuffered(_Stream):
        writes = 0

        def write(self, text: str) -> int:
            self.writes += 1
            return super().write(text)

    stream = Unbuffered()
    handler = BufferedStreamHandler(stream, flush_seconds=0.2)
    handler.setFormatter(AccessFormatter(UVICORN_FORMAT, use_colors=False))
    for port in range(50):
        handler.handle(logging.LogRecord(LOGGER, logging.INFO, __file__, 0, MESSAGE,
                                         (f"1.2.3.4:{port}", "GET", "/v2", "1.1", 200), None))
    assert stream.writes == 0
    deadline = time.monotonic() + 5
    while stream.flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stream.writes == 1
    assert len(stream.flushed.splitlines()) == 50


def test_buffered_handler_reports_a_record_it_cannot_format(capsys: pytest.CaptureFixture[str]) -> None:
    stream = _Stream()
    handler = BufferedStreamHandler(stream)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%d", ("not a number",), None)
    handler.emit(record)
    assert stream.getvalue() == ""
    assert "TypeError" in capsys.readouterr().err  # logging's handleError, as for any handler
