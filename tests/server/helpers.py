"""Test models (built with GraphBuilder, published with savedmodel.save) and real server processes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

import savedmodel
from savedmodel import GraphBuilder, Signature

ROOT = Path(__file__).resolve().parents[2]
KERNEL = np.array([[1, 0], [0, 1], [1, 1]], dtype=np.float32)


# -- models -------------------------------------------------------------------------------------------

def dense_graph(bias: float) -> savedmodel.Graph:
    """y = x @ KERNEL + bias: exact in float32 for small integers, and the bias tells versions apart."""
    b = GraphBuilder()
    x = b.input("x", (None, 3))
    y = b.op("Dense", x, units=2, kernel=KERNEL, bias=np.full(2, bias, np.float32), name="y")
    return b.build(y)


def dense_expected(x: Any, bias: float) -> np.ndarray:
    return np.asarray(x, np.float32) @ KERNEL + np.float32(bias)


def identity_graph(dtype: str = "float32", shape: tuple = (None, 3)) -> savedmodel.Graph:
    b = GraphBuilder()
    x = b.input("x", shape, dtype)
    return b.build(b.op("Identity", x, name="y"))


def multi_graph() -> savedmodel.Graph:
    """Two inputs (a, c) and two outputs (sum, prod)."""
    b = GraphBuilder()
    a = b.input("a", (None, 3))
    c = b.input("c", (None, 3))
    return b.build(b.op("Add", a, c, name="sum"), b.op("Multiply", a, c, name="prod"))


def strings_graph() -> savedmodel.Graph:
    """A string input echoed twice; ``echo_bytes`` is written as base64 by TF Serving's rule."""
    b = GraphBuilder()
    t = b.input("text", (None,), "string")
    return b.build(b.op("Identity", t, name="echo"), b.op("Identity", t, name="echo_bytes"))


def classifier_graph() -> savedmodel.Graph:
    """Softmax over 3 classes of a (None, 2) input: class scores follow the input."""
    b = GraphBuilder()
    x = b.input("x", (None, 2))
    kernel = np.array([[1, 0, -1], [0, 1, -1]], dtype=np.float32)
    return b.build(b.op("Dense", x, units=3, activation="softmax", kernel=kernel, bias=np.zeros(3, np.float32),
                        name="probs"))


def regressor(base: Path) -> Path:
    """A model with a regress signature (``regression``): outputs = x0 + 2 x1."""
    b = GraphBuilder()
    x = b.input("x", (None, 2))
    graph = b.build(b.op("Dense", x, units=1, kernel=np.array([[1], [2]], np.float32), bias=np.zeros(1, np.float32),
                         name="r"))
    sig = Signature("regress", {"x": graph.inputs[0]}, {"outputs": graph.outputs[0]})
    return savedmodel.save(graph, base, signatures={"regression": sig})


def slow_graph() -> savedmodel.Graph:
    """Enough arithmetic per row (two 1024x1024 layers) that a big batch takes tens of milliseconds."""
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    x = b.input("x", (None, 1024))
    h = b.op("Dense", x, units=1024, kernel=rng.standard_normal((1024, 1024)).astype("f4") / 32,
             bias=np.zeros(1024, "f4"))
    return b.build(b.op("Dense", h, units=1024, kernel=rng.standard_normal((1024, 1024)).astype("f4") / 32,
                        bias=np.zeros(1024, "f4"), name="y"))


def build_models(root: Path) -> dict[str, Path]:
    """Every test model under ``root``; returns name -> base path."""
    paths = {name: root / name for name in
             ("dense", "identity", "ints", "multi", "strings", "classifier", "regressor", "scalar")}
    savedmodel.save(dense_graph(0.0), paths["dense"], version=1)
    savedmodel.save(dense_graph(100.0), paths["dense"], version=2)
    savedmodel.save(identity_graph(), paths["identity"])
    savedmodel.save(identity_graph("int32", (None, 2)), paths["ints"])
    savedmodel.save(multi_graph(), paths["multi"])
    savedmodel.save(strings_graph(), paths["strings"])
    savedmodel.save(classifier_graph(), paths["classifier"], labels=["cat", "dog", "bird"])
    regressor(paths["regressor"])
    savedmodel.save(identity_graph("float32", ()), paths["scalar"])
    return paths


def config_yaml(paths: dict[str, Path]) -> str:
    lines = ["model_config_list:"]
    for name, path in paths.items():
        lines += [f"  - name: {name}", f"    base_path: {path}"]
        if name == "dense":
            lines += ["    model_version_policy: {specific: {versions: [1, 2]}}",
                      "    version_labels: {stable: 1, canary: 2}"]
    return "\n".join(lines) + "\n"


def publish_corrupt(base: Path, version: int) -> Path:
    """A version directory whose saved_model.h5 is garbage, published atomically like save() does."""
    tmp = base / f".tmp-corrupt-{version}"
    tmp.mkdir()
    (tmp / "saved_model.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"this is not a bundle" * 50)
    os.rename(tmp, base / str(version))
    return base / str(version)


# -- servers -------------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02, what: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except (httpx.HTTPError, OSError) as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}; last: {last!r}")


class ServerProcess:
    """``python -m server ...`` on 127.0.0.1 and a free port, until ``stop``."""

    def __init__(self, args: list[str], log_dir: Path, name: str = "server") -> None:
        self.args = args
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_path: str = "/v2/health/live", timeout: float = 60.0) -> ServerProcess:
        for _attempt in range(3):  # the free port may be taken between picking and binding
            self.port = free_port()
            log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes it until stop()
            env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env,
            )
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            if self.proc.poll() is None:
                self.stop()
                raise AssertionError(f"server did not become ready in {timeout}s:\n{self.log()}")
            if b"address already in use" not in self.log_path.read_bytes().lower():
                break
        raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ClientThreads:
    """Client threads that run ``self._client(i)`` (defined by a subclass) in a loop until ``stop`` is set;
    a context manager that starts them on entry and stops and joins them on exit."""

    join_timeout = 60.0

    def __init__(self, url: str, clients: int) -> None:
        self.url = url
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,), daemon=True) for i in range(clients)]

    def _client(self, i: int) -> None:
        raise NotImplementedError

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(self.join_timeout)
