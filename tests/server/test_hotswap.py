"""Versions published, broken and deleted under a live server while clients keep sending requests."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np

import savedmodel
from tests.server.helpers import ClientThreads, ServerProcess, dense_expected, dense_graph, publish_corrupt, wait_for

X = [[1.0, 2.0, 3.0]]


class Clients(ClientThreads):
    """Threads sending predictions (V2 and TF Serving REST alternately) until stopped; every failure is kept."""

    join_timeout = 30.0

    def __init__(self, url: str, n: int = 4) -> None:
        super().__init__(url, n)
        self.failures: list[str] = []
        self.versions: list[list[int]] = [[] for _ in range(n)]

    def _client(self, i: int) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self.stop.is_set():
                try:
                    if len(self.versions[i]) % 2:
                        r = client.post("/v1/models/hot:predict", json={"instances": X})
                        if r.status_code != 200:
                            self.failures.append(f"v1 {r.status_code} {r.text}")
                            continue
                        bias = r.json()["predictions"][0][0] - 4.0  # the bias is the version number
                        version = int(bias)
                        got = np.array(r.json()["predictions"], np.float32)
                    else:
                        r = client.post("/v2/models/hot/infer", json={"inputs": [
                            {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]})
                        if r.status_code != 200:
                            self.failures.append(f"v2 {r.status_code} {r.text}")
                            continue
                        version = int(r.json()["model_version"])
                        got = np.array(r.json()["outputs"][0]["data"], np.float32).reshape(1, 2)
                    if not np.array_equal(got, dense_expected(X, float(version))):
                        self.failures.append(f"version {version} answered {got.tolist()}")
                    self.versions[i].append(version)
                except httpx.HTTPError as e:
                    self.failures.append(f"{type(e).__name__}: {e}")

    def count(self) -> int:
        return sum(len(v) for v in self.versions)


def _states(client: httpx.Client) -> dict[int, tuple[str, str, str]]:
    return {int(s["version"]): (s["state"], s["status"]["error_code"], s["status"]["error_message"])
            for s in client.get("/v1/models/hot").json()["model_version_status"]}


def _served(client: httpx.Client) -> int:
    return int(client.post("/v2/models/hot/infer", json={"inputs": [
        {"name": "x", "shape": [1, 3], "datatype": "FP32", "data": X}]}).json()["model_version"])


def test_hot_swap_under_load_loses_no_request(tmp_path: Path) -> None:
    base = tmp_path / "hot"
    savedmodel.save(dense_graph(1.0), base)  # version 1, bias 1
    args = ["--model-name", "hot", "--model-base-path", str(base), "--file-system-poll-wait-seconds", "0.05"]
    with ServerProcess(args, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client, \
            Clients(server.url) as clients:
        wait_for(lambda: clients.count() > 20, what="clients to get going")
        for version in range(2, 7):  # five new versions, each one's bias is its number
            savedmodel.save(dense_graph(float(version)), base)
            wait_for(lambda v=version: _served(client) == v, what=f"version {version} to serve")
            wait_for(lambda v=version: _states(client)[v - 1][0] == "END", what=f"version {version - 1} to unload")
            seen = clients.count()
            wait_for(lambda s=seen: clients.count() > s + 10, what="requests on the new version")

        publish_corrupt(base, 7)
        state = wait_for(lambda: _states(client).get(7, ("",))[0] == "END" and _states(client)[7],
                         what="the corrupt version to end")
        assert state[1] == "DATA_LOSS" and str(base / "7" / "saved_model.h5") in state[2]
        assert _states(client)[6] == ("AVAILABLE", "OK", "")
        seen = clients.count()
        wait_for(lambda: clients.count() > seen + 20, what="requests after the corrupt version")
        assert _served(client) == 6

        # Rolling back by deleting versions: 5 is loaded again, 6 unloaded once 5 serves.
        shutil.rmtree(base / "7")
        shutil.rmtree(base / "6")
        wait_for(lambda: _served(client) == 5, what="version 5 to serve again")
        wait_for(lambda: _states(client)[6][0] == "END", what="deleted version 6 to unload")
        seen = clients.count()
        wait_for(lambda: clients.count() > seen + 20, what="requests after the rollback")

    assert clients.failures == []
    for versions in clients.versions:
        assert versions, "a client thread sent nothing"
        cut = versions.index(6) if 6 in versions else len(versions)
        assert versions[:cut] == sorted(versions[:cut]), "a client was answered by an older version"
        assert versions[cut:] == sorted(versions[cut:], reverse=True), "6 came back after the rollback"
    assert {v for vs in clients.versions for v in vs} >= {5, 6}


def test_config_file_reload_adds_and_removes_models(tmp_path: Path) -> None:
    for name, bias in (("a", 1.0), ("b", 2.0)):
        savedmodel.save(dense_graph(bias), tmp_path / name)
    config = tmp_path / "models.json"
    config.write_text('{"model_config_list": [{"name": "a", "base_path": "a"}]}')
    args = ["--model-config-file", str(config), "--model-config-file-poll-wait-seconds", "0.05",
            "--file-system-poll-wait-seconds", "0.05"]
    with ServerProcess(args, tmp_path) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.get("/v2/models").json() == {"models": ["a"]}
        config.write_text('{"model_config_list": [{"name": "b", "base_path": "b"}]}')
        wait_for(lambda: client.get("/v2/models/b/ready").status_code == 200, what="model b")
        wait_for(lambda: client.get("/v1/models/a").status_code == 404, what="model a to go")
        assert client.get("/v1/models/a").json() == {"error": "Could not find any versions of model a"}
        r = client.post("/v1/models/b:predict", json={"instances": X})
        assert r.json() == {"predictions": dense_expected(X, 2.0).tolist()}
        config.write_text("{not json")  # a broken edit keeps the current models
        wait_for(lambda: "cannot reload the model config" in server.log(), what="the reload error in the log")
        assert client.get("/v2/models").json() == {"models": ["b"]}
