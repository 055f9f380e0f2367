"""Compiled kernels (numba), used when numba is installed: the recurrent steps and the attention softmax.

A recurrent step is one small product, h @ recurrent kernel, then elementwise
gate math. In numpy the gate math is about ten calls per step: at batch 1
their overhead is the cost, and at batch 32 numpy's float32 exp and tanh are
(on an AVX2 machine: 4 and 7 ns per element). Here, for a few rows, the whole
time loop is one compiled call; for more, each step's product stays one BLAS
call and all of the step's gate math is one compiled call.

Compiled loops do not vectorise calls to libm's exp or tanh, so the gates use
float32 versions of their own that LLVM does vectorise: exp by range
reduction (x = n ln 2 + r, |r| <= ln 2 / 2, with ln 2 split in two
constants), a degree-7 Taylor polynomial for e^r and 2^n written into the
exponent bits; sigmoid(x) = 1 / (1 + e^-x); tanh(|x|) = (1 - e) / (1 + e)
with e = e^-2|x|, and its odd Taylor polynomial below |x| = 1/4, where 1 - e
would lose digits. Measured against float64: exp within 1e-7 relative,
sigmoid within 1e-7 absolute, tanh within 2e-7 relative.

Only sigmoid recurrent activations and tanh activations are compiled (the
Keras defaults); any other choice runs on the numpy path. The attention
softmax is one pass per row instead of numpy's five passes over the scores.
Each function is compiled at its first call, or loaded from numba's on-disk
cache: importing numba and loading the cached code take about a second,
once per process, at the first predict that uses them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# No reassociation: it would undo the two-constant reduction x - n * ln2_hi - n * ln2_lo. No approximate
# reciprocal (arcp): its estimate plus one Newton step cost up to 2e-7 in the sigmoid.
_FLAGS = {"nnan", "ninf", "nsz", "contract"}
_JIT = {"cache": True, "fastmath": _FLAGS, "nogil": True, "boundscheck": False, "error_model": "numpy"}

_F32 = np.float32
_LOG2E = _F32(1.4426950408889634)
_LN2_HI = _F32(0.693359375)  # ln 2 split so that n * _LN2_HI is exact for |n| < 2 ** 12
_LN2_LO = _F32(-2.12194440e-4)
_EXP_MAX = _F32(88.0)
_EXP_MIN = _F32(-87.0)  # e^-87 is still a normal float32
_TANH_SMALL = _F32(0.25)
_ONE, _TWO = _F32(1.0), _F32(2.0)
# 1/k! for k = 2..7
_C2, _C3, _C4 = _F32(1 / 2), _F32(1 / 6), _F32(1 / 24)
_C5, _C6, _C7 = _F32(1 / 120), _F32(1 / 720), _F32(1 / 5040)
# tanh x = x + T3 x^3 + T5 x^5 + T7 x^7 + T9 x^9 + ...
_T3, _T5, _T7, _T9 = _F32(-1 / 3), _F32(2 / 15), _F32(-17 / 315), _F32(62 / 2835)


@njit(**_JIT)
def _exp(x):
    x = min(max(x, _EXP_MIN), _EXP_MAX)
    n = np.rint(x * _LOG2E)
    r = x - n * _LN2_HI
    r = r - n * _LN2_LO
    p = _C7 * r + _C6
    p = p * r + _C5
    p = p * r + _C4
    p = p * r + _C3
    p = p * r + _C2
    p = p * r + _ONE
    p = p * r + _ONE
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)
    return p * scale


@njit(**_JIT)
def _sigmoid(x):
    return _ONE / (_ONE + _exp(-x))


@njit(**_JIT)
def _tanh(x):
    s = x * x
    series = x + x * s * (_T3 + s * (_T5 + s * (_T7 + s * _T9)))
    e = _exp(-_TWO * abs(x))
    far = (_ONE - e) / (_ONE + e)  # 1 - e is exact for e in [1/2, 1]
    return series if abs(x) < _TANH_SMALL else (far if x > 0 else -far)


@njit(**_JIT)
def lstm_cell(z, xp, bias, c, h_out, c_out):
    """One LSTM step from z = h @ recurrent (batch, 4 units; Keras' gates i, f, c, o), the step's input
    projection xp and the bias (4 units: added here, not in a pass over the whole projection):
    c_out = f * c + i * tanh(z_c), h_out = o * tanh(c_out). z is overwritten.

    Every loop counts from 0 with the offset in the index: LLVM leaves a loop over range(a, b) with a != 0
    unvectorised (measured 3 times slower)."""
    u = c.shape[1]
    for b in range(z.shape[0]):
        for j in range(2 * u):
            z[b, j] = _sigmoid(z[b, j] + xp[b, j] + bias[j])
        for j in range(u):
            z[b, 2 * u + j] = _tanh(z[b, 2 * u + j] + xp[b, 2 * u + j] + bias[2 * u + j])
            z[b, 3 * u + j] = _sigmoid(z[b, 3 * u + j] + xp[b, 3 * u + j] + bias[3 * u + j])
        for j in range(u):
            cj = z[b, u + j] * c[b, j] + z[b, j] * z[b, 2 * u + j]
            c_out[b, j] = cj
            h_out[b, j] = z[b, 3 * u + j] * _tanh(cj)


@njit(**_JIT)
def gru_gates(z, xp):
    """z[:, :2u] = sigmoid(z + xp) over the update and reset gates (z: batch, >= 2 units)."""
    u2 = xp.shape[1] * 2 // 3
    for b in range(z.shape[0]):
        for j in range(u2):
            z[b, j] = _sigmoid(z[b, j] + xp[b, j])


@njit(**_JIT)
def gru_reset_after(z, xp, recurrent_bias, h, h_out):
    """One GRU step with reset_after from z = h @ recurrent (batch, 3 units; gates z, r, h): with
    z' = z + recurrent_bias, h_out = z * h + (1 - z) * tanh(x_h + r * z'_h). z is overwritten."""
    u = h.shape[1]
    for b in range(z.shape[0]):
        g = z[b]
        x = xp[b]
        for j in range(2 * u):
            g[j] = _sigmoid(g[j] + recurrent_bias[j] + x[j])
        for j in range(u):
            candidate = _tanh(x[2 * u + j] + g[u + j] * (g[2 * u + j] + recurrent_bias[2 * u + j]))
            h_out[b, j] = candidate + g[j] * (h[b, j] - candidate)


@njit(**_JIT)
def gru_reset_before(zr, xp, h, rh):
    """The first half of a GRU step without reset_after: zr = sigmoid(h @ U_zr + x_zr) (batch, 2 units) and
    rh = r * h, the left side of the candidate's product."""
    u = h.shape[1]
    gru_gates(zr, xp)
    for b in range(h.shape[0]):
        for j in range(u):
            rh[b, j] = zr[b, u + j] * h[b, j]


@njit(**_JIT)
def gru_candidate(zr, inner, xp, h, h_out):
    """The second half: h_out = z * h + (1 - z) * tanh(x_h + (r * h) @ U_h), inner = (r * h) @ U_h."""
    u = h.shape[1]
    for b in range(h.shape[0]):
        for j in range(u):
            candidate = _tanh(inner[b, j] + xp[b, 2 * u + j])
            h_out[b, j] = candidate + zr[b, j] * (h[b, j] - candidate)


@njit(**_JIT)
def add_tanh(z, xp):
    """z = tanh(z + xp), in place (a SimpleRNN step)."""
    for b in range(z.shape[0]):
        for j in range(z.shape[1]):
            z[b, j] = _tanh(z[b, j] + xp[b, j])


# -- whole time loops, for small batches: the product in the loop too, no call per step ----------


@njit(**_JIT)
def _product(h, recurrent, z):
    """z = h @ recurrent for a few rows of h, eight rows of ``recurrent`` per pass over z: each pass is a
    loop over z's columns that LLVM vectorises, and loads and stores z once per eight multiply-adds."""
    n, depth = recurrent.shape[1], h.shape[1]
    z[:] = _F32(0.0)
    for b in range(h.shape[0]):
        k = 0
        while k + 8 <= depth:
            h0, h1, h2, h3 = h[b, k], h[b, k + 1], h[b, k + 2], h[b, k + 3]
            h4, h5, h6, h7 = h[b, k + 4], h[b, k + 5], h[b, k + 6], h[b, k + 7]
            for j in range(n):
                z[b, j] += (h0 * recurrent[k, j] + h1 * recurrent[k + 1, j] + h2 * recurrent[k + 2, j]
                            + h3 * recurrent[k + 3, j] + h4 * recurrent[k + 4, j] + h5 * recurrent[k + 5, j]
                            + h6 * recurrent[k + 6, j] + h7 * recurrent[k + 7, j])
            k += 8
        while k < depth:
            hk = h[b, k]
            for j in range(n):
                z[b, j] += hk * recurrent[k, j]
            k += 1


@njit(**_JIT)
def _commit(i, t, states, new, keep, zero_masked, out, last):
    """Take the new states of the rows step t keeps (a dropped row keeps its states), and record the
    step's output: h when kept, else 0 (zero_masked) or the row's last output."""
    for b in range(last.shape[0]):
        if keep[t, b]:
            for s in range(len(states)):
                states[s][b] = new[s][b]
            last[b] = new[0][b]
        elif zero_masked:
            last[b] = _F32(0.0)
    if out.shape[0]:
        out[i] = last


@njit(**_JIT)
def lstm_loop(proj, order, recurrent, bias, h, c, keep, zero_masked, out, last):
    """The LSTM over the steps ``order`` of proj (time, batch, 4 units) with ``bias``, as ``lstm_cell``.

    h, c: the states (batch, units), updated in place; keep: (time, batch) bools; out: (time or 0, batch,
    units) outputs in step order; last: (batch, units), the last outputs, updated in place."""
    z = np.empty(proj.shape[1:], np.float32)
    new = (np.empty_like(h), np.empty_like(c))
    for i in range(order.shape[0]):
        t = order[i]
        _product(h, recurrent, z)
        lstm_cell(z, proj[t], bias, c, new[0], new[1])
        _commit(i, t, (h, c), new, keep, zero_masked, out, last)


@njit(**_JIT)
def gru_loop(proj, order, recurrent, zr_kernel, h_kernel, reset_after, recurrent_bias, h, keep, zero_masked, out,
             last):
    """The GRU over the steps ``order`` of proj (time, batch, 3 units), as ``gru_reset_after`` or
    ``gru_reset_before`` and ``gru_candidate``; other arguments as ``lstm_loop``."""
    u = h.shape[1]
    z = np.empty(proj.shape[1:], np.float32)
    zr = np.empty((h.shape[0], 2 * u), np.float32)
    rh = np.empty_like(h)
    inner = np.empty_like(h)
    new = (np.empty_like(h),)
    for i in range(order.shape[0]):
        t = order[i]
        if reset_after:
            _product(h, recurrent, z)
            gru_reset_after(z, proj[t], recurrent_bias, h, new[0])
        else:
            _product(h, zr_kernel, zr)
            gru_reset_before(zr, proj[t], h, rh)
            _product(rh, h_kernel, inner)
            gru_candidate(zr, inner, proj[t], h, new[0])
        _commit(i, t, (h,), new, keep, zero_masked, out, last)


@njit(**_JIT)
def simple_rnn_loop(proj, order, recurrent, h, keep, zero_masked, out, last):
    """SimpleRNN with tanh over the steps ``order`` of proj (time, batch, units); arguments as ``lstm_loop``."""
    new = (np.empty_like(h),)
    for i in range(order.shape[0]):
        t = order[i]
        _product(h, recurrent, new[0])
        add_tanh(new[0], proj[t])
        _commit(i, t, (h,), new, keep, zero_masked, out, last)


# -- softmax ---------------------------------------------------------------------------

# The max and the sum are reductions: vectorising them reorders them, which is harmless there.
_REDUCE = {**_JIT, "fastmath": _FLAGS | {"reassoc"}}


@njit(**_REDUCE)
def softmax_rows(scores):
    """Softmax over the last axis of a C-contiguous float32 array of rows (rows, n), in place."""
    for r in range(scores.shape[0]):
        row = scores[r]
        top = row[0]
        for j in range(row.shape[0]):
            top = max(top, row[j])
        total = _F32(0.0)
        for j in range(row.shape[0]):
            e = _exp(row[j] - top)
            row[j] = e
            total += e
        scale = _ONE / total
        for j in range(row.shape[0]):
            row[j] *= scale


def exp(x: np.ndarray) -> np.ndarray:
    """The compiled float32 exp, elementwise (for tests)."""
    return _map(x, 0)


def tanh(x: np.ndarray) -> np.ndarray:
    """The compiled float32 tanh, elementwise (for tests)."""
    return _map(x, 1)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The compiled float32 sigmoid, elementwise (for tests)."""
    return _map(x, 2)


@njit(**_JIT)
def _map_flat(v, which):
    for j in range(v.shape[0]):
        if which == 0:
            v[j] = _exp(v[j])
        elif which == 1:
            v[j] = _tanh(v[j])
        else:
            v[j] = _sigmoid(v[j])


def _map(x: np.ndarray, which: int) -> np.ndarray:
    flat = np.array(x, dtype=np.float32).reshape(-1)
    _map_flat(flat, which)
    return flat.reshape(np.shape(x))
