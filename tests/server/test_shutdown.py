"""Graceful shutdown: SIGTERM in the middle of a load run loses no accepted request, and the batcher drains.

A request counts as accepted once the server has begun reading its body,
which a client sees as the ``100 Continue`` answer to ``Expect:
100-continue`` (the ASGI server sends it when the app first reads). A raw
socket client sends each request on a fresh connection that way, so every
request is either accepted (and must get its 200) or refused before the
app saw it.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server.batching import Batcher
from server.settings import BatchingParameters
from tests.server.helpers import ServerProcess, dense_expected

QUEUE_WAIT_MICROS = 300_000  # every request waits this long in the batch queue: many are in flight at any time
CLIENT_THREADS = 8


@dataclass
class Outcome:
    row: list[float]
    accepted: bool
    status: int | None = None
    body: bytes = b""
    answered_at: float = 0.0


def _read_head(sock: socket.socket, buffer: bytearray) -> bytes:
    """The next response head (up to the blank line) from ``sock``; b'' if the server closed first."""
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return b""
        buffer += data
    end = buffer.index(b"\r\n\r\n") + 4
    head = bytes(buffer[:end])
    del buffer[:end]
    return head


def post_with_continue(port: int, path: str, body: bytes, row: list[float]) -> Outcome:
    """POST ``body`` with ``Expect: 100-continue`` on a fresh connection; the outcome says if it was accepted."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
    except OSError:
        return Outcome(row, accepted=False)
    with sock:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").encode()
        buffer = bytearray()
        try:
            sock.sendall(head)
            interim = _read_head(sock, buffer)
        except OSError:
            return Outcome(row, accepted=False)
        if not interim.startswith(b"HTTP/1.1 100"):
            return Outcome(row, accepted=False, status=_status(interim))
        try:  # from here on the app has the request: anything but a full answer is a lost request
            sock.sendall(body)
            final = _read_head(sock, buffer)
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                buffer += data
        except OSError:
            final = b""
        return Outcome(row, accepted=True, status=_status(final), body=bytes(buffer), answered_at=time.monotonic())


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def _load(port: int, index: int, stop_after_refusal: threading.Event, deadline: float, out: list[Outcome]) -> None:
    """Send requests one after another until one is refused after SIGTERM (or the deadline passes)."""
    n = 0
    while time.monotonic() < deadline:
        row = [float(index), float(n), float(index * n % 7)]
        n += 1
        outcome = post_with_continue(port, "/v1/models/dense:predict", json.dumps({"instances": [row]}).encode(), row)
        out.append(outcome)
        if not outcome.accepted and stop_after_refusal.is_set():
            return
        if not outcome.accepted:
            time.sleep(0.01)


def test_sigterm_mid_load_loses_no_accepted_request(model_paths: dict[str, Path], tmp_path: Path) -> None:
    params = tmp_path / "batching.json"
    params.write_text(json.dumps({"max_batch_size": 1000, "batch_timeout_micros": QUEUE_WAIT_MICROS,
                                  "num_batch_threads": 1}))
    args = ["--model-name", "dense", "--model-base-path", str(model_paths["dense"]), "--enable-batching",
            "--batching-parameters-file", str(params), "--graceful-shutdown-timeout", "20",
            "--file-system-poll-wait-seconds", "0", "--access-log=false"]
    with ServerProcess(args, tmp_path, "shutdown") as server:
        sigterm_sent = threading.Event()
        results: list[list[Outcome]] = [[] for _ in range(CLIENT_THREADS)]
        deadline = time.monotonic() + 60
        threads = [threading.Thread(target=_load, args=(server.port, i, sigterm_sent, deadline, results[i]))
                   for i in range(CLIENT_THREADS)]
        for t in threads:
            t.start()
        while sum(o.status == 200 for r in results for o in r) < 2 * CLIENT_THREADS and time.monotonic() < deadline:
            time.sleep(0.05)  # the run is under way: batches have been answered, more requests are queued
        signalled_at = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        sigterm_sent.set()
        for t in threads:
            t.join(90)
        exit_code = server.proc.wait(30)
        exited_after = time.monotonic() - signalled_at
        log = server.log()
    outcomes = [o for r in results for o in r]
    accepted = [o for o in outcomes if o.accepted]
    lost = [o for o in accepted if o.status != 200]
    assert not lost, f"{len(lost)} accepted requests got no answer: {lost[:3]}\n{log}"
    for o in accepted:
        np.testing.assert_array_equal(np.array(json.loads(o.body)["predictions"], np.float32),
                                      dense_expected([o.row], 100.0))
    drained = [o for o in accepted if o.answered_at > signalled_at]
    refused = [o for o in outcomes if not o.accepted]
    assert drained, "no request was in flight at SIGTERM: the test did not exercise the shutdown"
    assert len(refused) >= CLIENT_THREADS  # every client ended on a refused connection after SIGTERM
    assert all(o.status is None for o in refused)  # refused at connect or closed unread, never an error status
    assert exit_code == 0 and exited_after < 20, log
    print(f"accepted {len(accepted)} (answered after SIGTERM: {len(drained)}), refused {len(refused)}, "
          f"exit {exit_code} after {exited_after:.2f} s")


def test_batcher_drain_runs_queued_requests_without_waiting_for_fuller_batches() -> None:
    """A partial batch would wait 30 s for more rows; drain runs it at once and every caller gets its rows."""
    from concurrent.futures import ThreadPoolExecutor

    def double(x: np.ndarray) -> dict[str, np.ndarray]:
        return {"y": x * 2}

    async def scenario() -> tuple[list[Any], float, bool]:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(BatchingParameters(max_batch_size=100, batch_timeout_micros=30_000_000,
                                                 num_batch_threads=1), pool)
            inputs = [np.full((i + 1, 2), i, np.float32) for i in range(3)]
            futures = [batcher.submit("m", "k", double, {"x": x}, len(x)) for x in inputs]
            await asyncio.sleep(0.05)
            assert batcher.busy and not any(f.done() for f in futures)  # waiting for a fuller batch
            started = time.monotonic()
            drained = await batcher.drain(timeout=10)
            took = time.monotonic() - started
            outputs = [f.result()["y"] for f in futures]
            for x, y in zip(inputs, outputs, strict=True):
                np.testing.assert_array_equal(y, double(x)["y"])
            return outputs, took, drained and not batcher.busy

    outputs, took, drained = asyncio.run(scenario())
    assert drained and took < 5 and len(outputs) == 3


def test_batcher_drain_reports_work_left_after_its_timeout(caplog: pytest.LogCaptureFixture) -> None:
    from concurrent.futures import ThreadPoolExecutor

    release = threading.Event()

    def blocked(x: np.ndarray) -> dict[str, np.ndarray]:
        release.wait(10)
        return {"y": x}

    async def scenario() -> bool:
        with ThreadPoolExecutor(1) as pool:
            batcher = Batcher(BatchingParameters(max_batch_size=4, num_batch_threads=1), pool)
            future = batcher.submit("m", "k", blocked, {"x": np.zeros((1, 2), np.float32)}, 1)
            drained = await batcher.drain(timeout=0.2)
            release.set()
            await future
            return drained

    assert asyncio.run(scenario()) is False
    assert "batches still queued or running after 0.2 s of shutdown; they are dropped" in caplog.text
