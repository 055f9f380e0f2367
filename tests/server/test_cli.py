"""``savedmodel serve`` / ``python -m server``: flags, their errors, and the demo model with several workers."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

import runtime
import savedmodel
from savedmodel import demo
from server.cli import add_arguments, run, settings_from_args
from tests.server.helpers import ROOT, ServerProcess, dense_graph


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_importing_the_cli_does_not_import_the_web_stack() -> None:
    code = "import sys, server.cli; print(sorted(m for m in ('fastapi', 'uvicorn', 'starlette') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_savedmodel_cli_has_the_serve_command() -> None:
    out = subprocess.run([sys.executable, "-m", "savedmodel.cli", "serve", "--help"], cwd=ROOT, capture_output=True,
                         text=True, check=True)
    assert "--model-base-path" in out.stdout and "--enable-batching" in out.stdout


def test_tf_serving_flag_spellings(tmp_path: Path) -> None:
    savedmodel.save(dense_graph(0.0), tmp_path / "m")
    settings = settings_from_args(_parse(
        "--model_name=mnist", f"--model_base_path={tmp_path / 'm'}", "--rest_api_port", "9001",
        "--enable_batching=true", "--file_system_poll_wait_seconds=2", "--rest_api_timeout_in_ms=500",
        "--rest_api_enable_cors_support", "--enable_model_warmup=false", "--tensorflow_intra_op_parallelism=1"))
    assert settings.port == 9001 and settings.enable_batching and settings.enable_cors
    assert settings.file_system_poll_wait_seconds == 2 and settings.request_timeout_ms == 500
    assert not settings.enable_model_warmup and settings.intra_op_parallelism == 1
    assert [(m.name, m.base_path) for m in settings.models] == [("mnist", (tmp_path / "m").resolve())]
    defaults = settings_from_args(_parse())
    assert (defaults.host, defaults.port, defaults.models, defaults.enable_batching) == ("127.0.0.1", 8501, (), False)
    only_path = settings_from_args(_parse("--model-base-path", str(tmp_path / "m")))
    assert only_path.models[0].name == "default"  # TF Serving's default --model_name


def test_flag_errors_exit_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "b.pbtxt").write_text("max_batch_size { value: 4 }")
    (tmp_path / "bad.yaml").write_text("model_config_list: []")
    cases = [
        (["--model-name", "m"], "error: --model-name needs --model-base-path"),
        (["--model-config-file", "x.yaml", "--model-name", "m"],
         "error: give either --model-config-file or --model-name/--model-base-path, not both"),
        (["--batching-parameters-file", str(tmp_path / "b.pbtxt")],
         "error: --batching-parameters-file needs --enable-batching"),
        (["--model-base-path", str(tmp_path / "missing")], f"error: --model-base-path {tmp_path / 'missing'} is not "
                                                           "a directory"),
        (["--model-config-file", str(tmp_path / "bad.yaml")],
         f"error: {tmp_path / 'bad.yaml'}: model_config_list has no config entries"),
    ]
    for argv, message in cases:
        assert run(_parse(*argv)) == 2
        assert capsys.readouterr().err.strip() == message
    with pytest.raises(SystemExit):
        _parse("--enable-batching=maybe")
    assert "expected true or false, got 'maybe'" in capsys.readouterr().err


def test_demo_model_with_two_workers(tmp_path: Path) -> None:
    with ServerProcess(["--workers", "2"], tmp_path, "demo") as server:
        log = server.log()
        assert "Serving the demo model 'digits'" in log
        body = re.search(r"curl -d '(.*?)' (\S+:predict)", log)
        assert body and body.group(2).endswith("/v1/models/digits:predict")
        images, labels = demo.test_data()
        r = httpx.post(server.url + "/v1/models/digits:predict", content=body.group(1).encode())
        assert r.status_code == 200
        np.testing.assert_allclose(r.json()["predictions"][0],
                                   runtime.load(demo.BASE_PATH).predict(images[:1].astype(np.float32))[0], rtol=1e-5)
        # The whole held-out set through V2 binary tensors: as accurate as the model is.
        x = images.astype(np.float32)
        head = json.dumps({"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32",
                                       "parameters": {"binary_data_size": x.nbytes}}],
                           "outputs": [{"name": "probs", "parameters": {"binary_data": True}}]}).encode()
        r = httpx.post(server.url + "/v2/models/digits/infer", content=head + x.tobytes(),
                       headers={"Inference-Header-Content-Length": str(len(head))})
        size = int(r.headers["inference-header-content-length"])
        probs = np.frombuffer(r.content[size:], "<f4").reshape(len(x), 10)
        assert (probs.argmax(1) == labels).mean() > 0.9
        # Both workers answer: many requests over fresh connections all succeed.
        for _ in range(20):
            assert httpx.get(server.url + "/v2/health/ready").status_code == 200
