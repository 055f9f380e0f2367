"""The compiled kernels (runtime.kernels._compiled, numba) against the numpy ones.

Both paths are run on the same graphs over the options of the recurrent ops
(masks, go_backwards, return_sequences and return_state, initial states,
GRU's reset_after) and over batch sizes on both sides of the whole-loop limit,
so each compiled path is checked against the numpy path that
test_sequence_kernels.py checks against PyTorch. The compiled exp, sigmoid
and tanh are checked against float64 numpy over the float32 range that matters.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import runtime
from runtime.kernels import sequence
from savedmodel.builder import GraphBuilder

jit = pytest.importorskip("runtime.kernels._compiled", reason="numba is not installed")

ROOT = Path(__file__).resolve().parents[2]
STEPS, FEATURES, UNITS = 6, 5, 7
# 1 and 4 run the compiled whole loop; 5 and 33 the BLAS product and a compiled gate update per step.
BATCHES = [1, 4, sequence._LOOP_MAX_BATCH + 1, 33]


def normal(*shape: int, seed: int, scale: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


def weights(op: str, reset_after: bool) -> dict[str, np.ndarray]:
    gates = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[op]
    bias_shape = (2, gates * UNITS) if op == "GRU" and reset_after else (gates * UNITS,)
    return {"kernel": normal(FEATURES, gates * UNITS, seed=1), "recurrent_kernel": normal(UNITS, gates * UNITS, seed=2),
            "bias": normal(*bias_shape, seed=3)}


def graph_model(op: str, inputs: dict[str, np.ndarray], **attrs):
    b = GraphBuilder()
    names = [b.input(k, (None, *v.shape[1:]), str(v.dtype)) for k, v in inputs.items()]
    out = b.op(op, *names, **attrs)
    return runtime.from_graph(b.build(*(out if isinstance(out, tuple) else (out,))))


def both_paths(monkeypatch, op: str, inputs: dict[str, np.ndarray], **attrs):
    """(compiled, numpy) outputs of one graph, as lists of arrays."""
    results = []
    for module in (jit, None):
        monkeypatch.setattr(sequence, "compiled", lambda module=module: module)
        out = graph_model(op, inputs, **attrs).predict(inputs)
        results.append(list(out.values()) if isinstance(out, dict) else [out])
    return results


def same(compiled: list[np.ndarray], plain: list[np.ndarray]) -> None:
    assert len(compiled) == len(plain)
    for got, want in zip(compiled, plain, strict=True):
        assert got.shape == want.shape and got.dtype == want.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)


CASES = [("LSTM", {}), ("GRU", {"reset_after": True}), ("GRU", {"reset_after": False}), ("SimpleRNN", {})]
IDS = ["LSTM", "GRU-reset_after", "GRU-reset_before", "SimpleRNN"]


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("op,extra", CASES, ids=IDS)
def test_compiled_steps_match_numpy(monkeypatch, op, extra, batch):
    x = normal(batch, STEPS, FEATURES, seed=4, scale=2.0)
    w = weights(op, extra.get("reset_after", False))
    same(*both_paths(monkeypatch, op, {"x": x}, units=UNITS, return_sequences=True, return_state=True, **extra, **w))


@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("op,extra", CASES, ids=IDS)
def test_compiled_masked_backwards_steps_match_numpy(monkeypatch, op, extra, batch, zero_output):
    """Masked steps anywhere (a dropped row keeps its states), processed backwards, from given initial states."""
    x = normal(batch, STEPS, FEATURES, seed=5, scale=2.0)
    mask = np.random.default_rng(6).random((batch, STEPS)) < 0.6
    mask[0] = False  # a row with no kept step at all
    inputs = {"x": x, "mask": mask, "h": normal(batch, UNITS, seed=7)}
    if op == "LSTM":
        inputs["c"] = normal(batch, UNITS, seed=8)
    w = weights(op, extra.get("reset_after", False))
    compiled, plain = both_paths(monkeypatch, op, inputs, units=UNITS, return_sequences=True, return_state=True,
                                 has_mask=True, zero_output_for_mask=zero_output, go_backwards=True, **extra, **w)
    same(compiled, plain)
    np.testing.assert_array_equal(compiled[1][0], inputs["h"][0])  # row 0 kept its initial state


@pytest.mark.parametrize("batch", BATCHES)
def test_last_output_only(monkeypatch, batch):
    x = normal(batch, STEPS, FEATURES, seed=9, scale=2.0)
    same(*both_paths(monkeypatch, "LSTM", {"x": x}, units=UNITS, **weights("LSTM", False)))


def test_other_activations_run_on_the_numpy_path(monkeypatch):
    """Only sigmoid/tanh are compiled: an LSTM with relu gives the numpy path's result exactly."""
    x = normal(3, STEPS, FEATURES, seed=10)
    compiled, plain = both_paths(monkeypatch, "LSTM", {"x": x}, units=UNITS, activation="relu",
                                 **weights("LSTM", False))
    np.testing.assert_array_equal(compiled[0], plain[0])


def test_compiled_exp_is_within_2e_7_relative():
    x = np.concatenate([np.linspace(-87, 88, 400_001), np.linspace(-1e-3, 1e-3, 2001)]).astype(np.float32)
    want = np.exp(x.astype(np.float64))
    np.testing.assert_allclose(jit.exp(x), want, rtol=2e-7, atol=0)


def test_compiled_sigmoid_within_1e_7_and_tanh_within_2e_7_relative():
    x = np.concatenate([np.linspace(-100, 100, 400_001), np.linspace(-1, 1, 200_001),
                        np.geomspace(1e-30, 1e-2, 500), -np.geomspace(1e-30, 1e-2, 500)]).astype(np.float32)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(jit.sigmoid(x), 1 / (1 + np.exp(-exact)), rtol=0, atol=1e-7)
    np.testing.assert_allclose(jit.tanh(x), np.tanh(exact), rtol=2e-7, atol=0)
    np.testing.assert_array_equal(jit.tanh(np.float32([-50, 0, 50])), [-1, 0, 1])


def test_compiled_softmax_matches_numpy():
    scores = normal(7, 33, seed=11, scale=20.0)
    scores[1] = -1e9  # a fully masked row: uniform, as numpy's
    scores[2, :5] = 80.0  # large values: shifted by the row's max before exp
    scores[3, 0] = -1e9
    e = np.exp(scores.astype(np.float64) - scores.max(axis=-1, keepdims=True))
    want = e / e.sum(axis=-1, keepdims=True)
    got = scores.copy()
    jit.softmax_rows(got)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=-1), 1, rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_softmax_paths_agree(monkeypatch, causal):
    """MultiHeadAttention over a batch, compiled softmax vs numpy's (masks go through both)."""
    q = normal(3, 5, 8, seed=12)
    w = {f"{p}_kernel": normal(8, 2, 4, seed=13 + i) for i, p in enumerate(("query", "key", "value"))}
    w["output_kernel"] = normal(2, 4, 8, seed=17)
    compiled, plain = both_paths(monkeypatch, "MultiHeadAttention", {"q": q, "v": q, "k": q}, num_heads=2,
                                 key_dim=4, value_dim=4, output_dim=8, use_bias=False, use_causal_mask=causal, **w)
    same(compiled, plain)


def _run_lstm_in_subprocess(env: dict[str, str], prelude: str = "", stderr: list[str] | None = None) -> str:
    """Run a small LSTM graph in a fresh interpreter: whether the compiled steps are off, and the output shape."""
    code = prelude + (
        "import numpy as np, runtime\n"
        "from runtime.kernels import sequence\n"
        "from savedmodel.builder import GraphBuilder\n"
        "r = np.random.default_rng(0)\n"
        "b = GraphBuilder()\n"
        "out = b.op('LSTM', b.input('x', (None, 6, 5)), units=7, kernel=r.random((5, 28), np.float32),\n"
        "           recurrent_kernel=r.random((7, 28), np.float32), bias=r.random(28, np.float32))\n"
        "y = runtime.from_graph(b.build(out)).predict(r.random((2, 6, 5), np.float32))\n"
        "print(sequence.compiled() is None, y.shape)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, **env}, capture_output=True,
                          text=True, check=True)
    if stderr is not None:
        stderr.append(done.stderr)
    return done.stdout.strip()


def test_runtime_jit_0_turns_the_compiled_steps_off():
    assert _run_lstm_in_subprocess({"RUNTIME_JIT": "0"}) == "True (2, 7)"


def test_without_numba_the_numpy_steps_run():
    blocked = "import sys\nsys.modules['numba'] = None  # importing numba now fails\n"
    assert _run_lstm_in_subprocess({}, blocked) == "True (2, 7)"


def test_numba_without_a_cache_location_falls_back_with_a_warning():
    """numba raises RuntimeError at import when it has nowhere to write its cache: warn, run numpy."""
    broken = ("import numba\n"
              "def njit(*args, **kwargs):\n"
              "    raise RuntimeError('cannot cache function: no locator available')\n"
              "numba.njit = njit\n")
    stderr: list[str] = []
    assert _run_lstm_in_subprocess({}, broken, stderr) == "True (2, 7)"
    assert "RuntimeWarning: runtime: the compiled kernels are off (cannot cache function" in stderr[0]
