"""The `savedmodel` CLI in real subprocesses: export (without Keras), inspect, run, and its errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime
from savedmodel import GraphBuilder, demo, save

ROOT = Path(__file__).resolve().parents[2]

# Runs the CLI in a process where importing keras or tensorflow fails.
CLI_WITHOUT_FRAMEWORKS = r"""
import sys

class NoFrameworks:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow"):
            raise ImportError(f"importing {name} is forbidden in this process")
        return None

sys.meta_path.insert(0, NoFrameworks())
from savedmodel.cli import main
sys.exit(main(sys.argv[1:]))
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_FRAMEWORKS, *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    b = GraphBuilder()
    a = b.input("a", (None, 3))
    c = b.input("c", (None, 3))
    s = b.op("Add", a, c, name="sum")
    b.op("Dense", s, units=2, activation="softmax", kernel=rng.standard_normal((3, 2)).astype("f4"),
         bias=np.zeros(2, "f4"), name="probs")
    base = tmp_path_factory.mktemp("models") / "small"
    save(b.build("probs", "sum"), base, metadata={"owner": "tests"})
    return base


@pytest.mark.keras
def test_export_a_keras_file_without_keras_then_run_it(tmp_path):
    import keras

    model = keras.Sequential([keras.Input((4,), name="x"), keras.layers.Dense(3, activation="relu", name="d")])
    model.save(tmp_path / "m.keras")
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    done = cli("export", str(tmp_path / "m.keras"), str(tmp_path / "models" / "m"), "--labels", str(labels))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"wrote {tmp_path / 'models' / 'm' / '1' / 'saved_model.h5'}"
    x = np.random.default_rng(1).standard_normal((5, 4)).astype("f4")
    np.save(tmp_path / "x.npy", x)
    done = cli("run", str(tmp_path / "models" / "m"), "--input", f"x={tmp_path / 'x.npy'}",
               "--output", str(tmp_path / "out.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as out:
        np.testing.assert_allclose(out["d"], model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    again = cli("export", str(tmp_path / "m.keras"), str(tmp_path / "models" / "m"))
    assert again.stdout.strip().endswith("/2/saved_model.h5")


def test_inspect_text_shows_signatures_ops_and_metadata(small_model):
    done = cli("inspect", str(small_model))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "signature_def['serving_default']: method predict" in out
    assert "inputs['a']  dtype: float32  shape: (-1, 3)  tensor: a" in out
    assert "outputs['probs']  dtype: float32  shape: (-1, 2)  tensor: probs" in out
    assert "ops (2 nodes): Add x1, Dense x1" in out
    assert "parameters: 8" in out
    assert '"owner": "tests"' in out


def test_inspect_json(small_model):
    done = cli("inspect", str(small_model), "--json")
    info = json.loads(done.stdout)
    assert info["format_version"] == "1.0"
    assert info["parameters"] == 8
    assert info["signatures"]["serving_default"]["outputs"]["sum"]["shape"] == [None, 3]
    assert info["file_size"] == Path(info["file"]).stat().st_size
    assert info["metadata"]["source"] == {"framework": "savedmodel.builder"}


def test_run_prints_outputs_of_a_multi_input_model(small_model, tmp_path):
    np.save(tmp_path / "a.npy", np.ones((2, 3), "f4"))
    np.save(tmp_path / "c.npy", np.ones((2, 3), "f4"))
    done = cli("run", str(small_model), "--input", f"a={tmp_path / 'a.npy'}", "--input", f"c={tmp_path / 'c.npy'}")
    assert done.returncode == 0, done.stderr
    assert "sum: float32 [2, 3]" in done.stdout and "probs: float32 [2, 2]" in done.stdout


def test_run_the_demo_model_matches_the_runtime(tmp_path):
    images, labels = demo.test_data()
    np.save(tmp_path / "images.npy", images[:16])
    done = cli("run", str(demo.BASE_PATH), "--input", f"image={tmp_path / 'images.npy'}",
               "--signature", "classification", "--output", str(tmp_path / "out.npz"))
    assert done.returncode == 0, done.stderr
    with np.load(tmp_path / "out.npz") as out:
        scores = out["scores"]
    # Not bit-equal: this process may run BLAS on another number of threads (a server test limits it to one),
    # which changes the order of the sums.
    np.testing.assert_allclose(scores, runtime.load(demo.BASE_PATH).predict(images[:16]), rtol=1e-5, atol=1e-7)
    assert (scores.argmax(1) == labels[:16]).mean() >= 0.9


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "{tmp}/nowhere"], r"error: .*nowhere: no such file or directory"),
        (["export", "{tmp}/model.pt", "{tmp}/m"], r"error: cannot export '.*model.pt': unknown model file type"),
        (["export", "{tmp}/missing.keras", "{tmp}/m"], r"error: model file '.*missing.keras' does not exist"),
        (["run", "{model}", "--input", "a"], r"error: --input must look like NAME=FILE.npy, got 'a'"),
        (["run", "{model}", "--signature", "nope"], r"error: no signature 'nope'; the model has \['serving_default'\]"),
        (["run", "{model}", "--input", "a={tmp}/bad.npy", "--input", "c={tmp}/bad.npy"],
         r"error: input 'a': expected float32 with shape \(None, 3\), received float32 with shape \(2, 5\)"),
        (["run", "{model}", "--input", "a={tmp}/bad.npy"], r"error: signature 'serving_default': missing \['c'\]"),
    ],
)
def test_errors_exit_1_with_one_line_and_no_traceback(args, message, small_model, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 5), "f4"))
    (tmp_path / "model.pt").write_bytes(b"")
    done = cli(*[a.format(tmp=tmp_path, model=small_model) for a in args])
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert re.match(message, lines[0]), lines[0]


def test_no_command_prints_help_and_exits_2():
    done = cli()
    assert done.returncode == 2
    assert "export" in done.stdout and "inspect" in done.stdout and "run" in done.stdout


def test_a_command_whose_extra_is_missing_says_what_to_install():
    # As if the server package's dependencies were not installed: importing fastapi fails.
    code = CLI_WITHOUT_FRAMEWORKS.replace('("keras", "tensorflow")', '("keras", "tensorflow", "fastapi")').replace(
        'raise ImportError(f"importing {name} is forbidden in this process")',
        "raise ModuleNotFoundError(f'No module named {name!r}', name=name)")
    done = subprocess.run([sys.executable, "-c", code, "serve", "--port", "1"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: 'savedmodel serve' needs the server extra (module 'fastapi' is missing); "
        "install it with: pip install 'savedmodel-toolkit[server]'"
    )
