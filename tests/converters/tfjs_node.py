"""Run TF.js models in Node.js (pure-JS @tensorflow/tfjs from tests/js) from Python.

One ``node`` process runs a whole batch of models (tests/js/run_models.js):
it serves the directory on 127.0.0.1 and loads each model over HTTP, as a
browser would.

>>> results = run_models(tmp, [Job("mlp", "mlp/model.json", "layers", {"x": x})])   # doctest: +SKIP
>>> results["mlp"].outputs[0].shape                                                  # doctest: +SKIP
(2, 3)
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

JS_DIR = Path(__file__).resolve().parents[1] / "js"
RUNNER = JS_DIR / "run_models.js"
TFJS_PACKAGE = JS_DIR / "node_modules" / "@tensorflow" / "tfjs"


def node_available() -> str | None:
    """Why Node-based tests cannot run, or None when they can."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not TFJS_PACKAGE.is_dir():
        return f"@tensorflow/tfjs is not installed: run `npm ci` in {JS_DIR}"
    return None


@dataclass
class Job:
    id: str
    model: str  # model.json path relative to the root
    kind: str  # "layers" or "graph"
    inputs: dict[str, np.ndarray]
    repeat: int = 0


@dataclass
class Result:
    id: str
    outputs: list[np.ndarray] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    error: str | None = None
    latency_ms: float | None = None


def run_models(root: Path, jobs: list[Job], timeout: float = 300) -> dict[str, Result]:
    """Run ``jobs`` (models under ``root``) in one node process; results by job id."""
    root = Path(root)
    inputs_dir = root / "_inputs"
    inputs_dir.mkdir(exist_ok=True)
    spec = []
    for j, job in enumerate(jobs):
        entries = []
        for i, (name, value) in enumerate(job.inputs.items()):
            arr = np.asarray(value)
            dtype = "int32" if arr.dtype.kind in "iub" else "float32"
            file = inputs_dir / f"{j}_{i}.bin"
            file.write_bytes(np.ascontiguousarray(arr, "<i4" if dtype == "int32" else "<f4").tobytes())
            entries.append({"name": name, "dtype": dtype, "shape": list(arr.shape),
                            "file": str(file.relative_to(root))})
        spec.append({"id": job.id, "model": job.model, "kind": job.kind, "inputs": entries, "repeat": job.repeat})
    jobs_file = root / "_jobs.json"
    jobs_file.write_text(json.dumps({"root": str(root), "jobs": spec}))
    proc = subprocess.run(["node", str(RUNNER), str(jobs_file)], cwd=JS_DIR, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"node failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    results = {}
    for line in proc.stdout.splitlines():
        if not line.startswith("{"):
            continue
        data = json.loads(line)
        r = Result(data["id"], error=data.get("error"), latency_ms=data.get("latency_ms"))
        for out in data.get("outputs", []):
            values = np.frombuffer(base64.b64decode(out["data"]), "<f4")
            r.outputs.append(values.reshape(out["shape"]))
            r.names.append(out.get("name", ""))
        results[r.id] = r
    missing = [job.id for job in jobs if job.id not in results]
    if missing:
        raise RuntimeError(f"node printed no result for {missing}:\n{proc.stderr[-4000:]}")
    return results
