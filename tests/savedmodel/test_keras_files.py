""".keras and legacy .h5 files -> Graph, read in a process where Keras cannot be imported.

The whole models of test_keras_import are saved by Keras in this process;
a subprocess that refuses to import keras and tensorflow imports every file
once. Its graphs must equal the live import of the same model (structure,
attrs and weights) and run to Keras' predict at rtol=1e-5, atol=1e-6.
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")

from keras import layers as L  # noqa: E402
from keras import ops  # noqa: E402

import runtime  # noqa: E402
from savedmodel.errors import FormatError, UnsupportedError  # noqa: E402
from savedmodel.importers.keras import import_keras_file, import_keras_model  # noqa: E402
from savedmodel.ir import Graph  # noqa: E402
from tests.savedmodel.test_keras_import import (  # noqa: E402
    ATOL,
    RTOL,
    cnn,
    functional,
    functional_inputs,
    mlp,
    randomize,
    sample,
    subclassed,
)

pytestmark = pytest.mark.keras

ROOT = Path(__file__).resolve().parents[2]

# Run in the subprocess: block keras/tensorflow, import every file, dump graphs and weights.
NO_KERAS = r"""
import json, sys
import numpy as np

class NoFrameworks:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("keras", "tensorflow", "tf_keras", "jax", "torch"):
            raise ImportError(f"importing {name} is forbidden in this process")
        return None

sys.meta_path.insert(0, NoFrameworks())
from savedmodel.importers.keras import import_keras_file

out_dir = sys.argv[1]
results = {}
arrays = {}
for path in sys.argv[2:]:
    graph, source = import_keras_file(path)
    keys = sorted(graph.weights)
    for i, key in enumerate(keys):
        arrays[f"{len(results)}_{i}"] = graph.weights[key]
    results[path] = {"graph": graph.to_json(), "source": source, "keys": keys, "index": len(results)}
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("keras", "tensorflow"))
json.dump({"results": results, "leaked": leaked}, open(f"{out_dir}/graphs.json", "w"))
np.savez(f"{out_dir}/weights.npz", **arrays)
"""


def keras_ops_model() -> keras.Model:
    """A Functional model with keras.ops calls (saved as operations, not layers) and a shared layer."""
    a = keras.Input((4, 6), name="a")
    b = keras.Input((4, 6), name="b")
    shared = L.Dense(5, name="shared")
    h = ops.add(shared(a), shared(b)) * 0.5 - 1.0
    h = ops.transpose(ops.relu(h), (0, 2, 1))
    h = L.Conv1D(3, 2, padding="causal", name="causal")(h)
    out = ops.softmax(ops.mean(h, axis=1))
    return randomize(keras.Model([a, b], out, name="with_ops"), seed=6)


def keras_ops_inputs() -> dict[str, np.ndarray]:
    return {"a": sample((4, 6)), "b": sample((4, 6), seed=2)}


def shared_model() -> keras.Model:
    """A nested Functional model called twice, and a layer shared between two branches."""
    inner_in = keras.Input((3,))
    encoder = keras.Model(inner_in, L.Dense(4, activation="relu", name="proj")(inner_in), name="encoder")
    a, b = keras.Input((3,), name="left"), keras.Input((3,), name="right")
    head = L.Dense(2, name="head")
    out = L.Concatenate(name="both")([head(encoder(a)), head(encoder(b))])
    return randomize(keras.Model([a, b], out, name="siamese"), seed=8)


def shared_inputs() -> dict[str, np.ndarray]:
    return {"left": sample((3,)), "right": sample((3,), seed=2)}


MODELS = {
    "shared": (shared_model, shared_inputs),
    "mlp": (mlp, lambda: sample((8,))),
    "cnn": (cnn, lambda: sample((12, 12, 3))),
    "functional": (functional, functional_inputs),
    "keras_ops": (keras_ops_model, keras_ops_inputs),
}
FORMATS = ("keras", "h5", "keras2.h5")
# Keras 2 had no keras.ops operations in its configs (it saved TFOpLambda layers),
# so the Keras-2-style rewrite of a model with ops would be a file no Keras wrote.
CASES = [(name, fmt) for name in sorted(MODELS) for fmt in FORMATS if (name, fmt) != ("keras_ops", "keras2.h5")]


def to_keras2_style(src: Path, dst: Path) -> None:
    """Rewrite a Keras 3 legacy .h5 the way Keras 2 wrote it: list-style inbound_nodes,
    batch_input_shape, LeakyReLU alpha, ':0' variable names, keras_version 2.x."""

    def layer(entry: dict) -> dict:
        entry.pop("module", None)
        config = entry.get("config", {})
        if "batch_shape" in config:
            config["batch_input_shape"] = config.pop("batch_shape")
        if "negative_slope" in config and entry["class_name"] == "LeakyReLU":
            config["alpha"] = config.pop("negative_slope")
        nodes = []
        for node in entry.get("inbound_nodes", []):
            tensors = [a for a in _leaves(node["args"])
                       if isinstance(a, dict) and "keras_history" in a.get("config", {})]
            nodes.append([[*t["config"]["keras_history"], {}] for t in tensors])
        if "inbound_nodes" in entry:
            entry["inbound_nodes"] = nodes
        for inner in config.get("layers", []) if isinstance(config, dict) else []:
            layer(inner)
        return entry

    with h5py.File(src, "r") as f, h5py.File(dst, "w") as g:
        config = json.loads(f.attrs["model_config"])
        layer(config)
        g.attrs["model_config"] = json.dumps(config)
        g.attrs["keras_version"] = "2.15.0"
        g.attrs["backend"] = "tensorflow"
        weights = g.create_group("model_weights")
        for name, group in f["model_weights"].items():
            names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
            out = weights.create_group(name)
            new_names = []
            for n in names:
                # Keras 2 named a variable "<layer>/<var>:0", without the enclosing models.
                short = "/".join(n.split("/")[-2:]) + ":0"
                out.create_dataset(short, data=group[n][()])
                new_names.append(short)
            out.attrs["weight_names"] = np.array(new_names, dtype="S")


def _leaves(value):
    if isinstance(value, list):
        return [leaf for v in value for leaf in _leaves(v)]
    return [value]


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> dict:
    """Save every model in every format, import them all in one keras-free subprocess."""
    base = tmp_path_factory.mktemp("keras_files")
    models, paths = {}, {}
    for name, (make, _) in MODELS.items():
        model = models[name] = make()
        model.save(base / f"{name}.keras")
        model.save(base / f"{name}.h5")
        to_keras2_style(base / f"{name}.h5", base / f"{name}.keras2.h5")
    for name, fmt in CASES:
        paths[(name, fmt)] = str(base / f"{name}.{fmt}")
    proc = subprocess.run([sys.executable, "-c", NO_KERAS, str(base), *paths.values()], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dump = json.loads((base / "graphs.json").read_text())
    assert dump["leaked"] == []
    weights = np.load(base / "weights.npz")
    graphs = {}
    for key, path in paths.items():
        r = dump["results"][path]
        arrays = {k: weights[f"{r['index']}_{i}"] for i, k in enumerate(r["keys"])}
        graphs[key] = (Graph.from_json(r["graph"], arrays), r["source"])
    return {"models": models, "graphs": graphs, "dir": base}


@pytest.mark.parametrize("name,fmt", CASES)
def test_file_import_equals_live_import(saved, name, fmt):
    model = saved["models"][name]
    file_graph, source = saved["graphs"][(name, fmt)]
    live_graph, live_source = import_keras_model(model)
    assert file_graph.to_json() == live_graph.to_json()
    assert sorted(file_graph.weights) == sorted(live_graph.weights)
    for key, value in live_graph.weights.items():
        np.testing.assert_array_equal(file_graph.weights[key], value, err_msg=key)
    assert source["framework"] == "keras" and source["class"] == live_source["class"]
    assert source["version"] == ("2.15.0" if fmt == "keras2.h5" else keras.__version__)


@pytest.mark.parametrize("name,fmt", CASES)
def test_file_graph_predicts_like_keras(saved, name, fmt):
    model = saved["models"][name]
    graph, _ = saved["graphs"][(name, fmt)]
    graph.validate()
    x = MODELS[name][1]()
    got = runtime.from_graph(graph).predict(x)
    want = model.predict(x, verbose=0)
    wants = list(want) if isinstance(want, (list, tuple)) else [want]
    gots = [got[o.name] for o in graph.outputs] if isinstance(got, dict) else [got]
    for g, w in zip(gots, wants, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_keras_file_weights_are_found_by_path_without_name_attributes(saved, tmp_path):
    """Keras 3 releases before the 'name' attribute on vars groups: found by the class-name path."""
    src = saved["dir"] / "functional.keras"
    dst = tmp_path / "functional.keras"
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.namelist():
            data = zin.read(item)
            if item == "model.weights.h5":
                h5_path = tmp_path / "w.h5"
                h5_path.write_bytes(data)
                with h5py.File(h5_path, "a") as h5:
                    h5.visititems(lambda n, o: o.attrs.__delitem__("name") if "name" in o.attrs else None)
                data = h5_path.read_bytes()
            zout.writestr(item, data)
    graph, _ = import_keras_file(dst)
    expected, _ = saved["graphs"][("functional", "keras")]
    for key, value in expected.weights.items():
        np.testing.assert_array_equal(graph.weights[key], value, err_msg=key)


# -- refusals --------------------------------------------------------------------------

def test_subclassed_model_file_is_unsupported(tmp_path):
    model = subclassed()
    model.save(tmp_path / "sub.keras")
    with pytest.raises(UnsupportedError, match=r"'Subclassed' was saved without its layer graph"):
        import_keras_file(tmp_path / "sub.keras")


def test_unsupported_layer_in_file(tmp_path):
    model = keras.Sequential([keras.Input((3, 2)), L.Conv1DTranspose(2, 1, name="deconv"), L.Dense(2, name="d")])
    for suffix in (".keras", ".h5"):
        model.save(tmp_path / f"m{suffix}")
        with pytest.raises(UnsupportedError, match=r"'deconv' \(Conv1DTranspose\)"):
            import_keras_file(tmp_path / f"m{suffix}")


def test_not_a_model_file(tmp_path):
    text = tmp_path / "model.keras"
    text.write_text("hello")
    with pytest.raises(FormatError, match="neither a .keras zip nor an HDF5"):
        import_keras_file(text)
    with pytest.raises(FormatError, match="no such file"):
        import_keras_file(tmp_path / "missing.keras")
    empty_zip = tmp_path / "empty.keras"
    with zipfile.ZipFile(empty_zip, "w") as z:
        z.writestr("other.txt", "x")
    with pytest.raises(FormatError, match="without config.json"):
        import_keras_file(empty_zip)


def test_weights_only_h5_is_refused(tmp_path):
    model = mlp()
    model.save_weights(tmp_path / "only.weights.h5")
    with pytest.raises(FormatError, match="without the 'model_config' attribute"):
        import_keras_file(tmp_path / "only.weights.h5")


def test_bad_config_json(tmp_path):
    bad = tmp_path / "bad.keras"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("config.json", "{not json")
    with pytest.raises(FormatError, match="config.json is not valid JSON"):
        import_keras_file(bad)
