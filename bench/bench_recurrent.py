"""The compiled recurrent kernels against the numpy ones they replace (the `jit` extra, numba).

Times each recurrent kernel (LSTM, GRU with and without reset_after, SimpleRNN; 32 steps, 64 features,
64 units, Keras' default activations) at batch 1 and 32, once on the compiled path and once on the numpy
path, in one process, and prints the speed-up and the largest difference between the two outputs.
Run from the repository root with the `jit` extra installed:

    .venv/bin/python bench/bench_recurrent.py [--repeats 5]

The end-to-end comparison with onnxruntime and Keras is bench/bench_runtime.py.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runtime.kernels import sequence  # noqa: E402

STEPS, FEATURES, UNITS = 32, 64, 64
CASES = [("LSTM", sequence.lstm, 4, {"recurrent_activation": "sigmoid"}),
         ("GRU reset_after", sequence.gru, 3, {"recurrent_activation": "sigmoid", "reset_after": True}),
         ("GRU reset_before", sequence.gru, 3, {"recurrent_activation": "sigmoid", "reset_after": False}),
         ("SimpleRNN", sequence.simple_rnn, 1, {})]


def best_ms(fn, repeats: int, calls: int = 50) -> float:
    """Milliseconds per call, the best of ``repeats`` rounds of ``calls`` calls."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return best * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    compiled = sequence.compiled()
    if compiled is None:
        sys.exit("numba is not installed (or RUNTIME_JIT=0): nothing to compare")
    rng = np.random.default_rng(0)
    print(f"{'kernel':18} {'batch':>5} {'numpy ms':>9} {'compiled ms':>12} {'speed-up':>9} {'max diff':>9}")
    for batch in (1, 32):
        x = rng.normal(size=(batch, STEPS, FEATURES)).astype(np.float32)
        for name, kernel, gates, extra in CASES:
            bias_shape = (2, gates * UNITS) if extra.get("reset_after") else (gates * UNITS,)
            attrs = dict(units=UNITS, activation="tanh", use_bias=True, return_sequences=False, return_state=False,
                         go_backwards=False, has_mask=False, zero_output_for_mask=False, **extra,
                         kernel=(rng.normal(size=(FEATURES, gates * UNITS)) * 0.2).astype(np.float32),
                         recurrent_kernel=(rng.normal(size=(UNITS, gates * UNITS)) * 0.2).astype(np.float32),
                         bias=rng.normal(size=bias_shape).astype(np.float32))
            times, outputs = {}, {}
            for path, module in (("compiled", compiled), ("numpy", None)):
                sequence.compiled = lambda module=module: module
                outputs[path] = kernel(x, **attrs)
                times[path] = best_ms(functools.partial(kernel, x, **attrs), args.repeats)
            diff = float(np.abs(outputs["compiled"] - outputs["numpy"]).max())
            print(f"{name:18} {batch:5d} {times['numpy']:9.3f} {times['compiled']:12.3f} "
                  f"{times['numpy'] / times['compiled']:8.2f}x {diff:9.1e}")


if __name__ == "__main__":
    main()
