"""Lite converter benchmarks: our int8 converter against TensorFlow's, on the same models and data.

For a trained MLP and a trained CNN (BatchNormalization, depthwise convolution,
pooling) on synthetic 28x28 images of 10 classes:

- conversion wall time including imports, each converter in a fresh process
  (ours: ``converters.lite.convert`` on the bundle; TF's: ``tf.lite.TFLiteConverter``
  on the Keras model), with the same 200 calibration samples;
- file size of both int8 files;
- argmax agreement of both int8 files (run in LiteRT) with the float model on 1000 test images;
- LiteRT latency, batch 1: our float32 and int8 files and TF's int8 file, with XNNPACK and with the
  builtin kernels;
- this toolkit's int8 runtime (runtime.lite): throughput at batch 1 and 256.

    .venv/bin/python bench/bench_lite.py [--repeats 5] [--json out.json]

Timings on a shared 2-core machine are noisy; the script reports medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def synthetic_digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """28x28x1 images of 10 classes: each class three Gaussian blobs, shifted, jittered and noisy."""
    rng = np.random.default_rng(seed)
    proto_rng = np.random.default_rng(1234)
    centers = proto_rng.uniform(6, 22, (10, 3, 2))
    yy, xx = np.mgrid[0:28, 0:28]
    labels = rng.integers(0, 10, n)
    shift = rng.integers(-2, 3, (n, 1, 2))
    c = centers[labels] + shift
    d2 = (yy[None, None] - c[..., 0, None, None]) ** 2 + (xx[None, None] - c[..., 1, None, None]) ** 2
    images = np.exp(-d2 / 8.0).sum(axis=1) * rng.uniform(0.7, 1.3, (n, 1, 1))
    images += rng.normal(0, 0.35, images.shape)
    return images[..., None].astype("f4"), labels


def build_and_train(workdir: Path) -> dict[str, dict]:
    import keras
    from keras import layers as L

    import savedmodel

    keras.utils.set_random_seed(0)
    x_train, y_train = synthetic_digits(6000, 0)
    x_test, y_test = synthetic_digits(1000, 1)
    inp = keras.Input((28, 28, 1), name="image")
    h = L.Flatten()(inp)
    h = L.Dense(128, activation="relu")(h)
    h = L.Dense(64, activation="relu")(h)
    mlp = keras.Model(inp, L.Dense(10, activation="softmax")(h), name="mlp")

    inp = keras.Input((28, 28, 1), name="image")
    h = L.Conv2D(16, 3, padding="same", use_bias=False)(inp)
    h = L.ReLU()(L.BatchNormalization()(h))
    h = L.DepthwiseConv2D(3, padding="same", activation="relu")(h)
    h = L.MaxPooling2D(2)(h)
    h = L.Conv2D(32, 3, activation="relu")(h)
    h = L.AveragePooling2D(2)(h)
    h = L.Conv2D(32, 1, activation="relu")(h)
    h = L.GlobalAveragePooling2D()(h)
    cnn = keras.Model(inp, L.Dense(10, activation="softmax")(h), name="cnn")

    models = {}
    for model, epochs in ((mlp, 3), (cnn, 10)):
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=epochs, batch_size=64, verbose=0)
        keras_path = workdir / f"{model.name}.keras"
        model.save(keras_path)
        bundle = savedmodel.save(model, workdir / "models" / model.name)
        float_probs = model.predict(x_test, verbose=0)
        models[model.name] = {
            "keras": str(keras_path), "bundle": str(bundle.parent.parent), "float_probs": float_probs,
            "accuracy": float(np.mean(float_probs.argmax(1) == y_test)),
        }
    np.save(workdir / "calib.npy", x_train[:200])
    np.save(workdir / "test.npy", x_test)
    return models


OURS = """
import sys, time
start = time.perf_counter()
import numpy as np
from converters import lite
lite.convert(sys.argv[1], sys.argv[2], representative_data=np.load(sys.argv[3]), progress=False)
"""

TFS = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, tensorflow as tf, keras
model = keras.models.load_model(sys.argv[1])
calib = np.load(sys.argv[3])
c = tf.lite.TFLiteConverter.from_keras_model(model)
c.optimizations = [tf.lite.Optimize.DEFAULT]
c.representative_dataset = lambda: ([calib[i:i + 1]] for i in range(len(calib)))
c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
open(sys.argv[2], "wb").write(c.convert())
"""


def timed_process(code: str, *args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, *args], check=True, cwd=ROOT, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def litert_probs(path: str, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=path)
    d = it.get_input_details()[0]
    it.resize_tensor_input(d["index"], x.shape)
    it.allocate_tensors()
    it.set_tensor(d["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


def litert_latency_us(path: str, x: np.ndarray, builtin: bool, n: int = 500) -> float:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    kwargs = {"experimental_op_resolver_type": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES} if builtin else {}
    it = Interpreter(model_path=path, num_threads=1, **kwargs)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], x[:1])
    for _ in range(20):
        it.invoke()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        it.invoke()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def throughput(path: str, x: np.ndarray, batch: int, seconds: float = 1.5) -> float:
    import runtime

    m = runtime.load(path)
    xb = x[:batch]
    m.predict(xb)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        m.predict(xb)
        n += batch
    return n / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="conversion runs per converter (median)")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = build_and_train(work)
        x_test = np.load(work / "test.npy")
        calib = str(work / "calib.npy")
        for name, info in models.items():
            ours_path, tf_path, f32_path = (str(work / f"{name}_{k}.tflite") for k in ("ours", "tf", "float32"))
            ours_t = statistics.median(timed_process(OURS, info["bundle"], ours_path, calib)
                                       for _ in range(args.repeats))
            tf_t = statistics.median(timed_process(TFS, info["keras"], tf_path, calib) for _ in range(args.repeats))
            from converters import lite

            lite.convert(info["bundle"], f32_path, mode="float32")
            ref = info["float_probs"].argmax(1)
            agree = {k: float(np.mean(litert_probs(p, x_test).argmax(1) == ref))
                     for k, p in (("ours", ours_path), ("tf", tf_path))}
            row = {
                "float_accuracy": info["accuracy"],
                "convert_seconds": {"ours": ours_t, "tf": tf_t, "ratio": ours_t / tf_t},
                "size_bytes": {"ours": os.path.getsize(ours_path), "tf": os.path.getsize(tf_path),
                               "float32": os.path.getsize(f32_path)},
                "argmax_agreement": agree,
                "litert_latency_us": {
                    f"{kind}_{'builtin' if b else 'xnnpack'}": litert_latency_us(p, x_test, b)
                    for kind, p in (("float32", f32_path), ("int8", ours_path), ("tf_int8", tf_path))
                    for b in (False, True)},
                "runtime_lite_samples_per_s": {f"batch_{b}": throughput(ours_path, x_test, b) for b in (1, 256)},
            }
            results[name] = row
            print(f"\n{name} (float accuracy {row['float_accuracy']:.3f})")
            print(f"  convert incl. imports: ours {ours_t:.2f} s, TF {tf_t:.2f} s, ratio {ours_t / tf_t:.3f}")
            s = row["size_bytes"]
            print(f"  size: ours {s['ours']:,} B, TF {s['tf']:,} B ({s['ours'] / s['tf']:.3f}x), "
                  f"float32 {s['float32']:,} B")
            print(f"  argmax agreement with the float model: ours {agree['ours']:.3f}, TF {agree['tf']:.3f}")
            lat = row["litert_latency_us"]
            print("  LiteRT latency (us, batch 1): " + ", ".join(f"{k} {v:.1f}" for k, v in lat.items()))
            thr = row["runtime_lite_samples_per_s"]
            print("  runtime.lite int8 throughput (samples/s): " + ", ".join(f"{k} {v:,.0f}" for k, v in thr.items()))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
