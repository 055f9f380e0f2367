"""Web converter benchmark: ours against tensorflowjs_converter, on the same Keras models and weights.

Measured in one run:
- conversion time: the command line end to end (process start, imports,
  conversion, files written) and the conversion alone inside a warm process
  (ours: ``convert_graph`` + ``write``; theirs: ``save_keras_model``);
- artifact size (model.json + shards), float32 and uint8-quantized;
- TF.js predict latency in Node.js (pure-JS @tensorflow/tfjs, CPU backend) of
  our artifacts against theirs (same format, so they should be equal), and
  that both compute the same outputs.

tensorflowjs pulls in TensorFlow and tf_keras, so it lives in its own venv:

    python3 -m venv /tmp/tfjs-venv && /tmp/tfjs-venv/bin/pip install tensorflowjs
    .venv/bin/python bench/bench_web.py [--tfjs-python /tmp/tfjs-venv/bin/python] [--repeat 50]

The models are built with Keras 3 here and rebuilt with tf_keras there (same
architecture, weights copied by layer name). Results: bench/results/web.json
and a Markdown table on stdout (docs/PERFORMANCE.md, "Web converter").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TFJS_PYTHON = "/tmp/tfjs-venv/bin/python"
ROUNDS = 3  # TF.js latency: best median over interleaved rounds


# -- the models: one builder for both Keras 3 (here) and tf_keras (the tensorflowjs venv) -------------------
def mlp(keras):
    L = keras.layers
    return keras.Sequential([keras.Input((784,)), L.Dense(512, activation="relu"), L.Dense(256, activation="relu"),
                             L.Dense(10, activation="softmax")], name="mlp")


def cnn(keras):
    L = keras.layers
    return keras.Sequential([
        keras.Input((32, 32, 3)), L.Conv2D(32, 3, padding="same", activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(), L.Conv2D(64, 3, padding="same", activation="relu"), L.BatchNormalization(),
        L.MaxPooling2D(), L.Conv2D(128, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(),
        L.Dense(10, activation="softmax")], name="cnn")


def mobilenetv2(keras):
    return keras.applications.MobileNetV2(input_shape=(96, 96, 3), weights=None, classes=10)


ARCHS = {"mlp": mlp, "cnn": cnn, "mobilenetv2": mobilenetv2}


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _size(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


def _wall(cmd: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, **kwargs)
    return time.perf_counter() - start


# -- the tensorflowjs side (runs in its venv) -------------------------------------------------------------
def tfjs_side(spec_file: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["TF_USE_LEGACY_KERAS"] = "1"
    import numpy as np
    import tensorflowjs as tfjs
    import tf_keras as keras

    spec = json.loads(Path(spec_file).read_text())
    converter = str(Path(sys.executable).with_name("tensorflowjs_converter"))
    results = {}
    for name in spec["models"]:
        work = Path(spec["work"]) / name
        model = ARCHS[name](keras)
        weights = np.load(work / "weights.npz")
        for layer in model.layers:
            values = [weights[f"{layer.name}/{i}"] for i in range(len(layer.weights))]
            if values:
                layer.set_weights(values)
        h5 = work / "theirs.h5"
        model.save(h5)
        out = work / "theirs_inproc"
        inproc = _best(lambda: tfjs.converters.save_keras_model(model, str(out)))  # noqa: B023
        cli = _wall([converter, "--input_format", "keras", str(h5), str(work / "theirs")])
        cli_q = _wall([converter, "--input_format", "keras", "--quantize_uint8", "*", str(h5), str(work / "theirs_q")])
        results[name] = {"inproc_s": inproc, "cli_s": cli, "cli_uint8_s": cli_q,
                         "size": _size(work / "theirs"), "size_uint8": _size(work / "theirs_q"),
                         "tfjs_version": tfjs.__version__}
    print(json.dumps(results))


# -- our side ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tfjs-python", default=TFJS_PYTHON, help="the Python of the venv with tensorflowjs")
    parser.add_argument("--repeat", type=int, default=50, help="timed TF.js predictions per model")
    parser.add_argument("--models", default=",".join(ARCHS))
    parser.add_argument("--tfjs-side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tfjs_side:
        tfjs_side(args.tfjs_side)
        return
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import numpy as np

    import savedmodel
    from converters.web import convert_graph
    from tests.converters.tfjs_node import Job, node_available, run_models

    names = args.models.split(",")
    work = Path(tempfile.mkdtemp(prefix="bench_web_"))
    ours, inputs = {}, {}
    for name in names:
        d = work / name
        d.mkdir()
        model = ARCHS[name](keras)
        np.savez(d / "weights.npz", **{f"{layer.name}/{i}": w for layer in model.layers
                                       for i, w in enumerate(layer.get_weights())})
        bundle = savedmodel.save(model, d / "bundle")
        graph = savedmodel.load(bundle).graph
        inproc = _best(lambda: convert_graph(graph).write(d / "ours_inproc"))  # noqa: B023
        cli_cmd = [sys.executable, "-m", "converters.web.cli", str(d / "bundle"), "--out"]
        cli = _wall([*cli_cmd, str(d / "ours")], cwd=ROOT)
        cli_q = _wall([*cli_cmd, str(d / "ours_q"), "--quantize", "uint8"], cwd=ROOT)
        ours[name] = {"inproc_s": inproc, "cli_s": cli, "cli_uint8_s": cli_q, "size": _size(d / "ours"),
                      "size_uint8": _size(d / "ours_q"), "params": int(model.count_params()),
                      "format": json.loads((d / "ours" / "model.json").read_text())["format"]}
        shape = [1 if s is None else s for s in model.input_shape]
        inputs[name] = np.random.default_rng(0).normal(0, 1, shape).astype(np.float32)

    theirs = {}
    if Path(args.tfjs_python).exists():
        spec = work / "spec.json"
        spec.write_text(json.dumps({"work": str(work), "models": names}))
        proc = subprocess.run([args.tfjs_python, __file__, "--tfjs-side", str(spec)], capture_output=True, text=True,
                              check=True)
        theirs = json.loads(proc.stdout.strip().splitlines()[-1])
    else:
        print(f"note: {args.tfjs_python} not found; skipping tensorflowjs_converter", file=sys.stderr)

    latency = {}
    if node_available() is None:
        jobs = []
        whos = ("ours", "theirs") if theirs else ("ours",)
        for name in names:
            for rnd in range(ROUNDS):  # interleaved rounds: ours, theirs, ours, theirs
                for who in whos:
                    d = work / name / who
                    topo = json.loads((d / "model.json").read_text())["modelTopology"]
                    topo = topo.get("model_config", topo)
                    first = topo["config"]["layers"][0]
                    input_name = first.get("name") or first["config"]["name"]  # each file's own InputLayer name
                    jobs.append(Job(f"{name}/{who}/{rnd}", f"{name}/{who}/model.json", "layers",
                                    {input_name: inputs[name]}, repeat=args.repeat))
        results = run_models(work, jobs, timeout=1800)
        for job in jobs:
            if results[job.id].error:
                raise SystemExit(f"TF.js failed on {job.id}: {results[job.id].error}")
        for name in names:
            for who in whos:
                latency[f"{name}/{who}"] = min(results[f"{name}/{who}/{r}"].latency_ms for r in range(ROUNDS))
            if theirs:
                a, b = results[f"{name}/ours/0"].outputs[0], results[f"{name}/theirs/0"].outputs[0]
                latency[f"{name}/max_abs_diff"] = float(np.max(np.abs(a - b)))
    report = {"ours": ours, "theirs": theirs, "tfjs_node_latency_ms": latency, "repeat": args.repeat,
              "machine": os.uname().machine, "cpus": os.cpu_count()}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "web.json").write_text(json.dumps(report, indent=2))
    print(_table(report, names))


def _table(report: dict, names: list[str]) -> str:
    ours, theirs, lat = report["ours"], report["theirs"], report["tfjs_node_latency_ms"]
    rows = ["| model (params) | converter | CLI time | in-process | size float32 | size uint8 "
            "| TF.js predict (Node, batch 1) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for name in names:
        o = ours[name]
        label = f"{name} ({o['params']:,})"
        rows.append(f"| {label} | ours | {o['cli_s']:.2f} s | {o['inproc_s'] * 1000:.0f} ms | {o['size']:,} B | "
                    f"{o['size_uint8']:,} B | {lat.get(name + '/ours', float('nan')):.2f} ms |")
        if name in theirs:
            t = theirs[name]
            rows.append(f"| | tensorflowjs_converter {t['tfjs_version']} | {t['cli_s']:.2f} s | "
                        f"{t['inproc_s'] * 1000:.0f} ms | {t['size']:,} B | {t['size_uint8']:,} B | "
                        f"{lat.get(name + '/theirs', float('nan')):.2f} ms |")
            rows.append(f"| | ratio theirs/ours | {t['cli_s'] / o['cli_s']:.1f}x | "
                        f"{t['inproc_s'] / o['inproc_s']:.1f}x | {t['size'] / o['size']:.3f} | "
                        f"{t['size_uint8'] / o['size_uint8']:.3f} | "
                        f"{lat.get(name + '/theirs', 0) / max(lat.get(name + '/ours', 1), 1e-9):.2f} "
                        f"(outputs differ by {lat.get(name + '/max_abs_diff', float('nan')):.1e}) |")
    return "\n".join(rows) + (f"\n\nTF.js latency: median of {report['repeat']} predictions after a warm-up, "
                              f"best of {ROUNDS} interleaved rounds.")


if __name__ == "__main__":
    main()
