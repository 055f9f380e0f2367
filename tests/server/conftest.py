"""Shared fixtures: the test models and one server process serving all of them (per xdist worker)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.helpers import ServerProcess, build_models, config_yaml


@pytest.fixture(scope="session")
def model_paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return build_models(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def server(model_paths: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """All test models from a YAML config file; no polling, so the served set never changes."""
    root = tmp_path_factory.mktemp("main-server")
    config = root / "models.yaml"
    config.write_text(config_yaml(model_paths))
    with ServerProcess(["--model-config-file", str(config), "--file-system-poll-wait-seconds", "0"], root) as proc:
        yield proc


@pytest.fixture(scope="session")
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
