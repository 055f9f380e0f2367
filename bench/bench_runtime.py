"""Runtime benchmarks: cold start and predict throughput against the peers.

Measured in one run, on the same weights:
- cold start in a fresh process (import + load + first predict): our runtime
  vs Keras' ``load_model`` + ``predict``;
- predict throughput of our runtime vs Keras (``predict_on_batch``, its
  fastest batch path) vs onnxruntime (the Keras model exported to ONNX by
  Keras' own exporter), for an MLP, a small CNN, an LSTM text classifier
  and a Transformer encoder block, at batch 1 and 32.

Run from the repository root with the bench extra installed (`pip install -e ".[bench]"`):

    .venv/bin/python bench/bench_runtime.py [--repeats 7] [--json out.json]

Each engine is timed alone in a fresh process (so no engine's thread pool
spins while another computes), in interleaved rounds; the best round counts.
Prints a table of ratios. Wall-clock numbers on a shared 2-core machine are
noisy: compare the ratios, which are measured side by side.
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


def build_models():
    import keras

    keras.utils.set_random_seed(0)
    mlp = keras.Sequential(
        [keras.Input((784,), name="x"), keras.layers.Dense(256, activation="relu"),
         keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")],
        name="mlp",
    )
    cnn = keras.Sequential(
        [keras.Input((28, 28, 1), name="x"),
         keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
         keras.layers.Conv2D(32, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(),
         keras.layers.MaxPooling2D(),
         keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
         keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
         keras.layers.Dense(10, activation="softmax")],
        name="cnn",
    )
    rng = np.random.default_rng(0)
    # Give BatchNormalization non-trivial statistics, as after training.
    bn = cnn.layers[3]
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.1, beta.shape),
                    rng.normal(0, 0.1, mean.shape), rng.uniform(0.5, 1.5, var.shape)])
    lstm = keras.Sequential(
        [keras.Input((SEQ_LEN,), dtype="int32", name="x"), keras.layers.Embedding(VOCAB, 64),
         keras.layers.LSTM(64), keras.layers.Dense(2, activation="softmax")],
        name="lstm",
    )
    return {"mlp": (mlp, (784,)), "cnn": (cnn, (28, 28, 1)), "lstm": (lstm, (SEQ_LEN,)),
            "transformer": (transformer_encoder(keras), (SEQ_LEN, 64))}


SEQ_LEN, VOCAB = 32, 1000


def transformer_encoder(keras):
    """One post-norm Transformer encoder block (4 heads, FFN 128) and a pooled classifier head."""
    x = keras.Input((SEQ_LEN, 64), name="x")
    attn = keras.layers.MultiHeadAttention(num_heads=4, key_dim=16)(x, x)
    h = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, attn]))
    ffn = keras.layers.Dense(64)(keras.layers.Dense(128, activation="relu")(h))
    h = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([h, ffn]))
    out = keras.layers.Dense(10, activation="softmax")(keras.layers.GlobalAveragePooling1D()(h))
    return keras.Model(x, out, name="transformer")


def sample(name: str, shape: tuple[int, ...], batch: int, rng: np.random.Generator) -> np.ndarray:
    """A batch of inputs: token ids for the LSTM, standard normal floats otherwise."""
    if name == "lstm":
        return rng.integers(0, VOCAB, (batch, *shape)).astype(np.int32)
    return rng.standard_normal((batch, *shape)).astype(np.float32)


def timeit(fn, repeats: int, min_time: float = 0.2) -> float:
    """Median seconds per call over ``repeats`` rounds of enough calls each."""
    fn()
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        if time.perf_counter() - t >= min_time / 4 or n >= 1 << 16:
            break
        n *= 2
    rounds = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        rounds.append((time.perf_counter() - t) / n)
    return statistics.median(rounds)


COLD_OURS = """
import time; t0 = time.perf_counter()
import numpy as np, runtime
m = runtime.load({path!r})
m.predict(np.zeros({shape}, {dtype!r}))
print(time.perf_counter() - t0)
"""

COLD_KERAS = """
import time; t0 = time.perf_counter()
import os; os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import numpy as np, keras
m = keras.saving.load_model({path!r})
m.predict(np.zeros({shape}, {dtype!r}), verbose=0)
print(time.perf_counter() - t0)
"""


def cold_start(code: str, repeats: int) -> tuple[float, float]:
    """Median (in-process seconds, whole-process wall seconds) over fresh processes."""
    inner, outer = [], []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
        outer.append(time.perf_counter() - t)
        inner.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(inner), statistics.median(outer)


WORKER = """
import os, sys, time, statistics
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import numpy as np
from bench_runtime import timeit
engine, path, x_file, repeats = {engine!r}, {path!r}, {x_file!r}, {repeats}
x = np.load(x_file)
if engine == "ours":
    import runtime
    m = runtime.load(path)
    fn = lambda: m.predict(x)
elif engine == "keras":
    import keras
    m = keras.saving.load_model(path)
    fn = lambda: m.predict_on_batch(x)
else:
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    fn = lambda: s.run(None, {{name: x}})
print(timeit(fn, repeats))
"""


def throughput(engine: str, path: Path, x_file: Path, repeats: int) -> float:
    """Seconds per predict call of one engine, measured alone in a fresh process."""
    code = WORKER.format(root=str(ROOT), bench=str(ROOT / "bench"), engine=engine, path=str(path),
                         x_file=str(x_file), repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved fresh-process rounds per engine")
    parser.add_argument("--json", help="also write the results to this JSON file")
    parser.add_argument("--models", default="mlp,cnn,lstm,transformer", help="comma-separated models to run")
    args = parser.parse_args()

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import runtime
    import savedmodel

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        chosen = args.models.split(",")
        for name, (model, shape) in build_models().items():
            if name not in chosen:
                continue
            rng = np.random.default_rng(1)
            model.predict(sample(name, shape, 1, rng), verbose=0)
            files = {"ours": savedmodel.save(model, tmp / name), "keras": tmp / f"{name}.keras",
                     "ort": tmp / f"{name}.onnx"}
            model.save(files["keras"])
            model.export(str(files["ort"]), format="onnx", verbose=False)
            ours = runtime.load(files["ours"])
            row: dict[str, float] = {}
            for batch in (1, 32):
                x = sample(name, shape, batch, rng)
                np.testing.assert_allclose(ours.predict(x), model.predict_on_batch(x), rtol=1e-4, atol=1e-5)
                x_file = tmp / f"{name}_{batch}.npy"
                np.save(x_file, x)
                # Each engine runs alone in its own process (no thread pool of one engine spinning while
                # another computes), and the rounds are interleaved so machine noise hits all alike.
                times: dict[str, list[float]] = {"ours": [], "keras": [], "ort": []}
                for _ in range(args.rounds):
                    for engine in times:
                        times[engine].append(throughput(engine, files[engine], x_file, args.repeats))
                t_ours, t_keras, t_ort = (min(times[e]) for e in ("ours", "keras", "ort"))
                row[f"b{batch}_ours_ms"] = t_ours * 1e3
                row[f"b{batch}_keras_ms"] = t_keras * 1e3
                row[f"b{batch}_ort_ms"] = t_ort * 1e3
                row[f"b{batch}_vs_keras"] = t_keras / t_ours
                row[f"b{batch}_vs_ort"] = t_ort / t_ours
            cold = {"shape": (1, *shape), "dtype": str(sample(name, shape, 1, rng).dtype)}
            runs = max(3, args.repeats // 2)
            ours_in, ours_out = cold_start(COLD_OURS.format(path=str(files["ours"]), **cold), runs)
            keras_in, keras_out = cold_start(COLD_KERAS.format(path=str(files["keras"]), **cold), runs)
            row.update(cold_ours_s=ours_in, cold_ours_process_s=ours_out, cold_keras_s=keras_in,
                       cold_keras_process_s=keras_out, cold_ratio=ours_in / keras_in)
            results[name] = row

    print(f"{'model':11} {'batch':>5} {'ours ms':>9} {'keras ms':>9} {'ort ms':>9} {'x keras':>8} {'x ort':>7}")
    for name, row in results.items():
        for batch in (1, 32):
            print(f"{name:11} {batch:>5} {row[f'b{batch}_ours_ms']:9.3f} {row[f'b{batch}_keras_ms']:9.3f} "
                  f"{row[f'b{batch}_ort_ms']:9.3f} {row[f'b{batch}_vs_keras']:8.2f} {row[f'b{batch}_vs_ort']:7.2f}")
    print("\n(x keras / x ort: our throughput as a multiple of the peer's; > 1 is faster)\n")
    print(f"{'model':11} {'ours s':>8} {'keras s':>8} {'ratio':>6} {'ours proc s':>12} {'keras proc s':>13}")
    for name, row in results.items():
        print(f"{name:11} {row['cold_ours_s']:8.3f} {row['cold_keras_s']:8.3f} {row['cold_ratio']:6.3f} "
              f"{row['cold_ours_process_s']:12.3f} {row['cold_keras_process_s']:13.3f}")
    print("\n(cold start = import + load + first predict inside a fresh process; proc = whole process wall time)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
