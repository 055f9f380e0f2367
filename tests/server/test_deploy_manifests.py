"""deploy/: the Dockerfile, its entrypoint, the Kubernetes and KServe manifests, checked against the real CLI and app.

Docker and Kubernetes do not run here, so each file is parsed and the fields
that matter are checked against the code they drive: container arguments go
through the real ``savedmodel`` argument parser and ``settings_from_args``,
probe paths are requested from a real ``create_app`` and must answer 200,
and the entrypoint script is run by ``sh`` with a stand-in ``savedmodel``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tomllib
import yaml
from fastapi.testclient import TestClient

from savedmodel import demo
from savedmodel.cli import _parser as savedmodel_parser
from server.app import create_app
from server.cli import settings_from_args
from server.settings import ModelConfig, ServerSettings
from tests.server.helpers import ROOT

DEPLOY = ROOT / "deploy"
FRAMEWORKS = ("tensorflow", "keras", "torch", "jax", "onnx")
KSERVE_MODELS = "/mnt/models"  # where KServe's storage initializer puts the storageUri's files


def _manifests(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _one(path: Path, kind: str) -> dict[str, Any]:
    docs = [d for d in _manifests(path) if d["kind"] == kind]
    assert len(docs) == 1, f"{path} should hold one {kind}"
    return docs[0]


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", "\n".join(line for line in dockerfile.read_text().splitlines()
                                            if not line.lstrip().startswith("#")))
    out = []
    for line in text.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _serve_settings(argv: list[str], **paths: str) -> ServerSettings:
    """Parse a ``savedmodel serve ...`` command line with the real parser; ``paths`` maps container paths to here."""
    assert argv[:2] == ["savedmodel", "serve"], argv
    local = []
    for arg in argv[2:]:
        for container_path, here in paths.items():
            arg = arg.replace(container_path, here)
        local.append(arg)
    args = savedmodel_parser().parse_args(["serve", *local])
    return settings_from_args(args)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A /models stand-in holding the demo model as /models/digits."""
    root = tmp_path_factory.mktemp("models")
    (root / demo.NAME).symlink_to(Path(demo.BASE_PATH).resolve(), target_is_directory=True)
    return root


def _probe_answers(settings: ServerSettings, probes: list[dict[str, Any]]) -> Iterator[int]:
    with TestClient(create_app(settings)) as client:
        for probe in probes:
            yield client.get(probe["httpGet"]["path"]).status_code


# -- the image ----------------------------------------------------------------------------------------

def test_dockerfile_is_slim_and_follows_tf_serving_layout() -> None:
    steps = _instructions(DEPLOY / "Dockerfile")
    assert steps[0] == ("FROM", "python:3.11-slim")
    runs = " ".join(args for word, args in steps if word == "RUN").lower()
    assert 'pip install ".[server]"' in runs
    assert not [f for f in FRAMEWORKS if f in runs]
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["server"]
    assert not [dep for dep in extra if dep.lower().startswith(FRAMEWORKS)], extra
    env = dict(kv.split("=", 1) for word, args in steps if word == "ENV" for kv in shlex.split(args))
    assert (env["MODEL_NAME"], env["MODEL_BASE_PATH"]) == ("model", "/models")  # TF Serving's defaults
    assert ("EXPOSE", "8501") in steps
    user = [args for word, args in steps if word == "USER"]
    assert user and user[-1] not in ("root", "0")
    uid = re.search(r"useradd .*--uid (\d+)", runs)
    assert uid and uid.group(1) == user[-1]
    entrypoint = json.loads(next(args for word, args in steps if word == "ENTRYPOINT"))
    copied = [args.split() for word, args in steps if word == "COPY"]
    assert any(parts[-1] == entrypoint[0] and parts[-2] == "deploy/docker-entrypoint.sh" for parts in copied)


def test_docker_context_keeps_what_the_image_copies() -> None:
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    assert "*" in ignore  # everything else (models, tests, the venv) stays out of the build context
    kept = {line[1:] for line in ignore if line.startswith("!")}
    for word, args in _instructions(DEPLOY / "Dockerfile"):
        if word == "COPY":
            sources = [a for a in args.split()[:-1] if not a.startswith("--")]
            assert set(sources) <= kept, sources


def _entrypoint_argv(tmp_path: Path, env: dict[str, str], *args: str) -> list[str]:
    """The command line deploy/docker-entrypoint.sh runs, captured by a stand-in ``savedmodel`` on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "savedmodel"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "
                    '"$@"\n')
    fake.chmod(0o755)
    out = subprocess.run(["sh", str(DEPLOY / "docker-entrypoint.sh"), *args], capture_output=True, text=True,
                         check=True, env={"PATH": f"{bin_dir}:{os.environ['PATH']}", **env})
    return ["savedmodel", *json.loads(out.stdout)]


def test_entrypoint_serves_model_base_path_slash_model_name(tmp_path: Path, models_dir: Path) -> None:
    steps = dict(_instructions(DEPLOY / "Dockerfile"))
    image_env = dict(kv.split("=", 1) for kv in shlex.split(steps["ENV"]))
    argv = _entrypoint_argv(tmp_path, {**image_env, "MODEL_NAME": demo.NAME}, "--enable-batching")
    settings = _serve_settings(argv, **{image_env["MODEL_BASE_PATH"]: str(models_dir)})
    assert (settings.host, settings.port, settings.enable_batching) == ("0.0.0.0", 8501, True)
    assert [(m.name, m.base_path) for m in settings.models] == [(demo.NAME, (models_dir / demo.NAME).resolve())]
    # A config file replaces the single model, as the model flags and a config file do not go together.
    config = tmp_path / "models.yaml"
    config.write_text(f"model_config_list:\n  - name: {demo.NAME}\n    base_path: {models_dir / demo.NAME}\n")
    argv = _entrypoint_argv(tmp_path, image_env, f"--model_config_file={config}")
    assert "--model-name" not in argv
    settings = _serve_settings(argv)
    assert settings.model_config_file == config.resolve() and settings.port == 8501


def test_server_runs_with_the_server_extra_only() -> None:
    """What the image installs is enough: the demo model is served with every ML framework unimportable."""
    code = f"""
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in {FRAMEWORKS + ("flatbuffers", "tqdm")!r}:
            raise ImportError("not in the image: " + name)
sys.meta_path.insert(0, Block())
from fastapi.testclient import TestClient
from server.app import create_app
with TestClient(create_app()) as client:
    r = client.post("/v1/models/digits:predict", json={{"instances": [[[[0.0]] * 8] * 8]}})
    print(r.status_code, len(r.json()["predictions"][0]))
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["200", "10"]


# -- Kubernetes -----------------------------------------------------------------------------------------

def test_kubernetes_deployment_and_service(tmp_path: Path, models_dir: Path) -> None:
    deployment = _one(DEPLOY / "kubernetes" / "deployment.yaml", "Deployment")
    service = _one(DEPLOY / "kubernetes" / "service.yaml", "Service")
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert service["spec"]["selector"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    assert container["image"].startswith("savedmodel-serving:")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8501}
    assert [(p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [(8501, "http")]

    env = {e["name"]: e["value"] for e in container["env"]}
    argv = _entrypoint_argv(tmp_path, env, *container["args"])  # the image's entrypoint adds the container args
    settings = _serve_settings(argv, **{env["MODEL_BASE_PATH"]: str(models_dir)})
    assert settings.port == ports["http"] and settings.host == "0.0.0.0"
    assert settings.models[0].name == env["MODEL_NAME"]

    probes = [container[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")]
    assert all(p["httpGet"]["port"] in ("http", ports["http"]) for p in probes)
    assert list(_probe_answers(settings, probes)) == [200, 200, 200]
    # SIGTERM comes after preStop; the server must be done before the grace period ends.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert float(pre_stop[1]) + settings.graceful_shutdown_timeout < pod["spec"]["terminationGracePeriodSeconds"]
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == settings.metrics_path
    assert int(annotations["prometheus.io/port"]) == ports["http"]


# -- KServe ---------------------------------------------------------------------------------------------

def test_kserve_runtime_and_inference_service() -> None:
    runtime = _one(DEPLOY / "kserve" / "servingruntime.yaml", "ServingRuntime")
    isvc = _one(DEPLOY / "kserve" / "inferenceservice.yaml", "InferenceService")
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1" and isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert runtime["spec"]["protocolVersions"] == ["v2"]
    predictor = isvc["spec"]["predictor"]["model"]
    assert predictor["runtime"] == runtime["metadata"]["name"] and predictor["protocolVersion"] == "v2"
    assert predictor["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    (container,) = runtime["spec"]["containers"]
    assert container["name"] == "kserve-container"
    assert [p["containerPort"] for p in container["ports"]] == [8080]

    name = isvc["metadata"]["name"]
    argv = [*container["command"], *(a.replace("{{.Name}}", name) for a in container["args"])]
    assert any(KSERVE_MODELS in a for a in argv)
    settings = _serve_settings(argv, **{KSERVE_MODELS: str(demo.BASE_PATH)})
    assert (settings.port, settings.host) == (8080, "0.0.0.0")
    assert [m.name for m in settings.models] == [name]
    probes = [container["livenessProbe"], container["readinessProbe"]]
    assert all(p["httpGet"]["port"] == 8080 for p in probes)
    assert list(_probe_answers(settings, probes)) == [200, 200]
    annotations = runtime["spec"]["annotations"]
    assert annotations["prometheus.kserve.io/path"] == settings.metrics_path
    assert annotations["prometheus.kserve.io/port"] == "8080"


def test_kserve_v2_route_answers_for_the_inference_service_name() -> None:
    """KServe clients call /v2/models/<InferenceService name>/infer; the runtime's args make that the model name."""
    name = _one(DEPLOY / "kserve" / "inferenceservice.yaml", "InferenceService")["metadata"]["name"]
    images, _ = demo.test_data()
    x = images[:2].astype(np.float32)
    body = {"inputs": [{"name": "image", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    settings = ServerSettings(models=[ModelConfig(name=name, base_path=demo.BASE_PATH)])
    with TestClient(create_app(settings)) as client:
        r = client.post(f"/v2/models/{name}/infer", json=body)
    assert r.status_code == 200, r.text
    import runtime

    expected = runtime.load(demo.BASE_PATH).predict(x)
    (out,) = r.json()["outputs"]
    np.testing.assert_allclose(np.array(out["data"], np.float32).reshape(out["shape"]), expected, rtol=1e-5)
