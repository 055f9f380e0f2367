"""Kernels of the sequence ops (savedmodel.ops.sequence).

The recurrent kernels loop over time steps only: the input projection of every
step is one GEMM, then each step is one (batch, units) x (units, gates * units)
GEMM written into a preallocated buffer, with the gate activations applied in
place on slices of that buffer. When numba is installed and the activations
are Keras' defaults (sigmoid and tanh), ``_compiled`` runs the whole time loop
of a small batch, and for larger batches all the gate math of a step in one
call. Per-step products of fewer than 16 rows run on one BLAS thread (waking a
BLAS thread pool for each of them costs more than it saves, and under load
many times more).
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import warnings
from collections.abc import Callable
from types import ModuleType

import numpy as np

from runtime.blas import one_thread
from runtime.errors import InputError
from runtime.kernels import kernel
from runtime.kernels.activations import apply_activation

_F32 = np.float32
# Keras replaces disallowed attention scores by this (float32) large negative number.
_LARGE_NEGATIVE = _F32(-1e9)

# -- embedding and masks ---------------------------------------------------------------


@kernel("Embedding")
def embedding(ids, *, input_dim, output_dim, embeddings):
    """The rows of ``embeddings`` picked by the integer ids (any shape)."""
    index = np.asarray(ids)
    if index.dtype.kind == "f":
        if not np.all(np.isfinite(index)) or np.any(index != np.floor(index)):
            bad = float(index[~np.isfinite(index) | (index != np.floor(index))].flat[0])
            raise InputError(f"op Embedding takes integer ids; received the non-integer value {bad!r}",
                             expected="integer ids", received=repr(bad))
        index = index.astype(np.int64)
    if index.size:
        lo, hi = int(index.min()), int(index.max())
        if lo < 0 or hi >= input_dim:
            bad = lo if lo < 0 else hi
            raise InputError(f"op Embedding has input_dim={input_dim}: id {bad} is outside [0, {input_dim})",
                             expected=f"ids in [0, {input_dim})", received=str(bad))
    return np.take(embeddings, index, axis=0)


@kernel("SequenceMask")
def sequence_mask(x, *, mask_value, reduce_last_axis):
    """x != mask_value (bool), any over the last axis with reduce_last_axis."""
    keep = np.not_equal(x, x.dtype.type(mask_value) if x.dtype.kind == "f" else mask_value)
    return keep.any(axis=-1) if reduce_last_axis else keep


@kernel("Masking")
def masking(x, *, mask_value):
    """x with the steps whose features all equal mask_value set to zero."""
    keep = np.not_equal(x, x.dtype.type(mask_value)).any(axis=-1, keepdims=True)
    return x * keep.astype(x.dtype)


@kernel("CombineMasks")
def combine_masks(*masks, function):
    """The elementwise AND (or OR) of the masks (nonzero = keep)."""
    combine = np.logical_and if function == "and" else np.logical_or
    out = np.asarray(masks[0]) != 0
    for m in masks[1:]:
        out = combine(out, np.asarray(m) != 0)
    return out


@kernel("MaskedGlobalAveragePooling1D")
def masked_global_average_pooling1d(x, mask, *, keepdims):
    """Sum of x over the kept steps divided by their count (Keras' masked GlobalAveragePooling1D)."""
    _check_mask(mask, x, "MaskedGlobalAveragePooling1D")
    weight = (np.asarray(mask) != 0).astype(x.dtype)[:, :, None]
    out = (x * weight).sum(axis=1, keepdims=keepdims) / weight.sum(axis=1, keepdims=keepdims)
    return out.astype(x.dtype, copy=False)


@kernel("ReverseTime")
def reverse_time(x):
    """x reversed along axis 1."""
    return np.ascontiguousarray(x[:, ::-1])


@kernel("FoldTime")
def fold_time(x):
    """(batch, time, ...) -> (batch * time, ...)."""
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


@kernel("UnfoldTime")
def unfold_time(x, reference):
    """(batch * time, ...) -> (batch, time, ...) with batch and time of ``reference``."""
    return x.reshape(reference.shape[0], reference.shape[1], *x.shape[1:])


def _check_mask(mask: np.ndarray, x: np.ndarray, op: str) -> None:
    """A mask must be (batch, time) of ``x``: checked here because batch and time are only known at run time."""
    if np.ndim(mask) != 2 or tuple(np.shape(mask)) != tuple(x.shape[:2]):
        raise InputError(f"op {op} takes a (batch, time) mask of shape {list(x.shape[:2])}; "
                         f"received shape {list(np.shape(mask))}",
                         expected=str(list(x.shape[:2])), received=str(list(np.shape(mask))))


# -- recurrent layers ------------------------------------------------------------------


@functools.cache
def compiled() -> ModuleType | None:
    """The compiled kernels (``_compiled``), or None without numba or with RUNTIME_JIT=0 set."""
    if os.environ.get("RUNTIME_JIT", "1") == "0":
        return None
    try:
        from runtime.kernels import _compiled
    except ImportError:  # numba missing, or not built for this numpy
        return None
    except RuntimeError as exc:  # numba found no writable place for its cache
        warnings.warn(f"runtime: the compiled kernels are off ({exc}); the numpy kernels run instead",
                      RuntimeWarning, stacklevel=2)
        return None
    return _compiled


# One step: (input projection of the step, states, preallocated gate buffer) -> new states (h first).
Step = Callable[[np.ndarray, tuple[np.ndarray, ...], np.ndarray], tuple[np.ndarray, ...]]
# Every step, compiled: (projection, step order, states, keep (time, batch), zero_output_for_mask, outputs
# (time or 0, batch, units), last output (batch, units)) -> None; updates states, outputs and last in place.
Loop = Callable[..., None]
# Products of fewer multiply-adds than this run on one BLAS thread.
_SMALL_PRODUCT = 1 << 22
# From this batch on, each step's product runs on BLAS's own thread count.
_THREADED_BATCH = 16
# Up to this batch a compiled loop runs whole (its own product); above it BLAS runs each step's product.
_LOOP_MAX_BATCH = 4


def _recurrent(op, x, rest, *, n_states, gates, units, return_sequences, return_state, go_backwards, has_mask,
               zero_output_for_mask, projection, step: Step, loop: Loop | None = None):
    """Run ``step`` of RNN op ``op`` over the time steps of x (batch, time, features): mask, go_backwards and
    the outputs as Keras' RNN layer does. ``projection`` is x @ kernel (+ input bias), time-major:
    (time, batch, gates * units). A compiled ``loop``, when given, runs every step of a small batch instead."""
    batch, steps = x.shape[:2]
    mask = None
    if has_mask:
        _check_mask(rest[0], x, op)
        mask = (np.asarray(rest[0]) != 0).T[:, :, None]  # (time, batch, 1)
        rest = rest[1:]
    states = tuple(np.array(s, dtype=_F32) for s in rest) if rest else tuple(
        np.zeros((batch, units), _F32) for _ in range(n_states))
    for s in states:
        if s.shape != (batch, units):
            raise InputError(f"op {op}: an initial state must be (batch, units) = {[batch, units]}; received shape "
                             f"{list(s.shape)}", expected=str([batch, units]), received=str(list(s.shape)))
    outputs = np.empty((steps, batch, units), _F32) if return_sequences else None
    last = np.zeros((batch, units), _F32)
    order = range(steps - 1, -1, -1) if go_backwards else range(steps)
    if loop is not None and batch <= _LOOP_MAX_BATCH:
        keep = np.ones((steps, batch), bool) if mask is None else np.ascontiguousarray(mask[:, :, 0])
        out = np.empty((0, batch, units), _F32) if outputs is None else outputs
        loop(projection, np.asarray(order, np.int64), states, keep, zero_output_for_mask, out, last)
        return _recurrent_result(outputs, last, states, return_state)
    # Below _THREADED_BATCH rows each step's product is too small to share: one BLAS thread (waking a second
    # one per product costs more than it saves, and on a busy machine many times more).
    with one_thread() if batch < _THREADED_BATCH else contextlib.nullcontext():
        states, last = _steps(step, order, gates, zero_output_for_mask, projection, states, mask, outputs, last)
    return _recurrent_result(outputs, last, states, return_state)


def _steps(step: Step, order, gates, zero_output_for_mask, projection, states, mask, outputs, last):
    """The time loop driven from Python: ``step`` per time step, masked rows keeping their states; writes each
    step's output into ``outputs`` (time, batch, units) when given. Returns (states, last output)."""
    buffer = np.empty((states[0].shape[0], gates * states[0].shape[1]), _F32)
    dropped = None if mask is None else ~mask
    with np.errstate(over="ignore"):  # exp overflow in a sigmoid gives the right limit 0
        for i, t in enumerate(order):
            new = step(projection[t], states, buffer)
            if mask is None:
                states, last = new, new[0]
            else:
                last = np.where(mask[t], new[0], _F32(0) if zero_output_for_mask else last)
                for n, s in zip(new, states):  # the step's states are fresh arrays: keep old rows in place
                    np.copyto(n, s, where=dropped[t])
                states = new
            if outputs is not None:
                outputs[i] = last
    return states, last


def _recurrent_result(outputs, last, states, return_state):
    """The RNN's output: the sequence (batch-major) or the last output, then the states with return_state."""
    result = np.ascontiguousarray(outputs.transpose(1, 0, 2)) if outputs is not None else last
    return (result, *states) if return_state else result


def _project(x, kernel, bias):
    """x @ kernel (+ bias) for every step at once, time-major: (batch, time, features) -> (time, batch, columns)."""
    b, t, f = x.shape
    rows = x.transpose(1, 0, 2).reshape(t * b, f)
    # A product this small is done before a second BLAS thread would have woken (and on a busy machine, waiting
    # for it took 100 times longer than the product: measured 4 ms for 32 x 64 by 64 x 256).
    small = rows.shape[0] * f * kernel.shape[1] < _SMALL_PRODUCT
    with one_thread() if small else contextlib.nullcontext():
        y = np.matmul(rows, kernel)
    if bias is not None:
        y += bias
    return y.reshape(t, b, kernel.shape[1])


def _activate(x: np.ndarray, name: str) -> np.ndarray:
    """Activation ``name`` written into x (a view of a buffer the kernel owns); sigmoid and tanh allocate nothing."""
    if name == "sigmoid":
        np.negative(x, out=x)
        np.exp(x, out=x)
        x += _F32(1)
        np.reciprocal(x, out=x)
    elif name == "tanh":
        np.tanh(x, out=x)
    else:
        x[...] = apply_activation(x, name)
    return x


@kernel("SimpleRNN")
def simple_rnn(x, *rest, units, activation, use_bias, return_sequences, return_state, go_backwards, has_mask,
               zero_output_for_mask, kernel, recurrent_kernel, bias=None):
    """h = activation(x_t @ kernel + bias + h @ recurrent_kernel) over the steps."""

    jit = compiled() if activation == "tanh" else None

    def compiled_step(xp, states, buf):
        h = np.matmul(states[0], recurrent_kernel)
        jit.add_tanh(h, xp)
        return (h,)

    def step(xp, states, buf):
        h = np.matmul(states[0], recurrent_kernel)
        h += xp
        return (_activate(h, activation),)

    def loop(projection, order, states, *rest):
        jit.simple_rnn_loop(projection, order, recurrent_kernel, *states, *rest)

    return _recurrent("SimpleRNN", x, rest, n_states=1, gates=1, units=units, return_sequences=return_sequences,
                      return_state=return_state, go_backwards=go_backwards, has_mask=has_mask,
                      zero_output_for_mask=zero_output_for_mask, projection=_project(x, kernel, bias),
                      step=step if jit is None else compiled_step, loop=None if jit is None else loop)


def _lstm_gate_order(w: np.ndarray, u: int) -> np.ndarray:
    """Keras' gate blocks i, f, c, o along the last axis -> i, f, o, c: the three sigmoid gates side by side."""
    i, f, c, o = (w[..., k * u:(k + 1) * u] for k in range(4))
    return np.ascontiguousarray(np.concatenate([i, f, o, c], axis=-1))


@kernel("LSTM")
def lstm(x, *rest, units, activation, recurrent_activation, use_bias, return_sequences, return_state, go_backwards,
         has_mask, zero_output_for_mask, kernel, recurrent_kernel, bias=None):
    """Keras' LSTM (gates i, f, c, o): c = f * c + i * act(z_c), h = o * act(c)."""
    u = units
    jit = compiled() if (activation, recurrent_activation) == ("tanh", "sigmoid") else None
    if jit is None:  # the numpy step wants the three sigmoid gates side by side
        recurrent = _lstm_gate_order(recurrent_kernel, u)
        projection = _project(x, _lstm_gate_order(kernel, u), None if bias is None else _lstm_gate_order(bias, u))
    else:  # the bias is added in the compiled step
        recurrent, projection = recurrent_kernel, _project(x, kernel, None)
        gate_bias = np.zeros(4 * u, _F32) if bias is None else bias

    def compiled_step(xp, states, buf):
        h, c = states
        new = np.empty_like(h), np.empty_like(c)
        jit.lstm_cell(np.matmul(h, recurrent, out=buf), xp, gate_bias, c, *new)
        return new

    def step(xp, states, buf):
        h, c = states
        np.matmul(h, recurrent, out=buf)
        buf += xp
        _activate(buf[:, :3 * u], recurrent_activation)
        candidate = _activate(buf[:, 3 * u:], activation)
        c = buf[:, u:2 * u] * c
        c += buf[:, :u] * candidate
        h = _activate(c.copy(), activation)
        h *= buf[:, 2 * u:3 * u]
        return h, c

    def loop(projection, order, states, *rest):
        jit.lstm_loop(projection, order, recurrent, gate_bias, *states, *rest)

    return _recurrent("LSTM", x, rest, n_states=2, gates=4, units=u, return_sequences=return_sequences,
                      return_state=return_state, go_backwards=go_backwards, has_mask=has_mask,
                      zero_output_for_mask=zero_output_for_mask, projection=projection,
                      step=step if jit is None else compiled_step, loop=None if jit is None else loop)


@kernel("GRU")
def gru(x, *rest, units, activation, recurrent_activation, use_bias, return_sequences, return_state, go_backwards,
        has_mask, zero_output_for_mask, reset_after, kernel, recurrent_kernel, bias=None):
    """Keras' GRU (gates z, r, h): h = z * h + (1 - z) * act(x_h + r * (h @ U_h + b_h)) with reset_after,
    act(x_h + (r * h) @ U_h) without."""
    u = units
    input_bias = recurrent_bias = None
    if bias is not None:
        input_bias, recurrent_bias = (bias[0], bias[1]) if reset_after else (bias, None)
    zr_kernel = h_kernel = recurrent_kernel  # (unused with reset_after)
    if not reset_after:
        zr_kernel = np.ascontiguousarray(recurrent_kernel[:, :2 * u])
        h_kernel = np.ascontiguousarray(recurrent_kernel[:, 2 * u:])

    jit = compiled() if (activation, recurrent_activation) == ("tanh", "sigmoid") else None
    reset_bias = np.zeros(3 * u, _F32) if recurrent_bias is None else recurrent_bias

    def compiled_step(xp, states, buf):
        (h,) = states
        new = np.empty_like(h)
        if reset_after:
            jit.gru_reset_after(np.matmul(h, recurrent_kernel, out=buf), xp, reset_bias, h, new)
        else:
            # Contiguous products: a column slice of buf as matmul's out costs a copy, and slows the compiled calls.
            zr, rh = np.matmul(h, zr_kernel), np.empty_like(h)
            jit.gru_reset_before(zr, xp, h, rh)
            jit.gru_candidate(zr, np.matmul(rh, h_kernel), xp, h, new)
        return (new,)

    def loop(projection, order, states, *rest):
        jit.gru_loop(projection, order, recurrent_kernel, zr_kernel, h_kernel, reset_after, reset_bias, *states, *rest)

    def step(xp, states, buf):
        (h,) = states
        if reset_after:
            np.matmul(h, recurrent_kernel, out=buf)
            if recurrent_bias is not None:
                buf += recurrent_bias
        else:
            np.matmul(h, zr_kernel, out=buf[:, :2 * u])
        zr = buf[:, :2 * u]
        zr += xp[:, :2 * u]
        _activate(zr, recurrent_activation)
        z, r = zr[:, :u], zr[:, u:]
        inner = r * buf[:, 2 * u:] if reset_after else (r * h) @ h_kernel
        inner += xp[:, 2 * u:]
        candidate = _activate(inner, activation)
        # z * h + (1 - z) * candidate, as candidate + z * (h - candidate) with one temporary
        new = h - candidate
        new *= z
        new += candidate
        return (new,)

    return _recurrent("GRU", x, rest, n_states=1, gates=3, units=u, return_sequences=return_sequences,
                      return_state=return_state, go_backwards=go_backwards, has_mask=has_mask,
                      zero_output_for_mask=zero_output_for_mask, projection=_project(x, kernel, input_bias),
                      step=step if jit is None else compiled_step, loop=None if jit is None else loop)


# -- attention -------------------------------------------------------------------------


def _softmax_last(scores: np.ndarray) -> np.ndarray:
    """Softmax over the last axis: in place when compiled (``scores`` is then a temporary the caller owns)."""
    jit = compiled()
    if jit is not None and scores.dtype == _F32 and scores.flags.c_contiguous and scores.size:
        jit.softmax_rows(scores.reshape(-1, scores.shape[-1]))
        return scores
    scores = scores - scores.max(axis=-1, keepdims=True)
    np.exp(scores, out=scores)
    scores /= scores.sum(axis=-1, keepdims=True)
    return scores


def _causal(t: int, s: int) -> np.ndarray:
    """Keras' causal mask (T, S): query i sees keys j <= i."""
    return np.arange(s)[None, :] <= np.arange(t)[:, None]


def _project_heads(x, kernel, bias):
    """(batch, T, dim) @ (dim, heads, size) (+ bias) -> (batch, heads, T, size)."""
    b, t, d = x.shape
    _, heads, size = kernel.shape
    y = np.matmul(x.reshape(b * t, d), kernel.reshape(d, heads * size))
    if bias is not None:
        y += bias.reshape(-1)
    return y.reshape(b, t, heads, size).transpose(0, 2, 1, 3)


@kernel("MultiHeadAttention")
def multi_head_attention(query, value, key, *masks, num_heads, key_dim, value_dim, output_dim, use_bias,
                         use_causal_mask, has_attention_mask, has_query_mask, has_value_mask, has_key_mask,
                         query_kernel, key_kernel, value_kernel, output_kernel, query_bias=None, key_bias=None,
                         value_bias=None, output_bias=None):
    """Scaled dot-product attention over projected heads, then the output projection."""
    b, t = query.shape[:2]
    q = _project_heads(query, query_kernel, query_bias)
    k = _project_heads(key, key_kernel, key_bias)
    v = _project_heads(value, value_kernel, value_bias)
    scores = np.matmul(q, k.transpose(0, 1, 3, 2))
    scores *= _F32(1.0 / math.sqrt(key_dim))
    allowed = _allowed(masks, [has_attention_mask, has_query_mask, has_value_mask, has_key_mask],
                       query, value, use_causal_mask)
    if allowed is not None:
        scores = np.where(allowed[:, None], scores, _LARGE_NEGATIVE)
    context = np.matmul(_softmax_last(scores), v)  # (b, heads, T, value_dim)
    flat = context.transpose(0, 2, 1, 3).reshape(b * t, num_heads * value_dim)
    out = np.matmul(flat, output_kernel.reshape(num_heads * value_dim, output_dim))
    if output_bias is not None:
        out += output_bias
    return out.reshape(b, t, output_dim)


def _allowed(masks, flags, query, value, causal):
    """The (batch or 1, T, S) bool mask of allowed positions, or None when every position is allowed."""
    masks = iter(masks)
    attention, q_mask, v_mask, k_mask = (next(masks) if f else None for f in flags)
    t, s = query.shape[1], value.shape[1]
    allowed = None

    def both(a, b):
        return b if a is None else a & b

    if attention is not None:
        attention = np.asarray(attention)
        if attention.ndim != 3 or attention.shape[1:] != (t, s) or attention.shape[0] not in (1, query.shape[0]):
            raise InputError(f"op MultiHeadAttention takes an attention_mask of shape {[query.shape[0], t, s]}; "
                             f"received shape {list(attention.shape)}",
                             expected=str([query.shape[0], t, s]), received=str(list(attention.shape)))
        allowed = attention != 0
    if q_mask is not None:
        _check_mask(q_mask, query, "MultiHeadAttention")
        allowed = both(allowed, (np.asarray(q_mask) != 0)[:, :, None])
    for m in (v_mask, k_mask):
        if m is not None:
            _check_mask(m, value, "MultiHeadAttention")
            allowed = both(allowed, (np.asarray(m) != 0)[:, None, :])
    if causal:
        allowed = both(allowed, _causal(t, s)[None])
    return allowed


@kernel("Attention")
def attention(query, value, key, *masks, score_mode, use_causal_mask, has_query_mask, has_value_mask, scale=None,
              concat_score_weight=None):
    """Keras' Attention: softmax of masked dot (or concat) scores, times value; masked query rows zeroed."""
    rest = iter(masks)
    q_mask = next(rest) if has_query_mask else None
    v_mask = next(rest) if has_value_mask else None
    if score_mode == "dot":
        scores = np.matmul(query, key.transpose(0, 2, 1))
        if scale is not None:
            scores *= scale
    else:
        summed = query[:, :, None, :] + key[:, None, :, :]
        if scale is not None:
            summed *= scale
        scores = np.tanh(summed, out=summed).sum(axis=-1)
        if concat_score_weight is not None:
            scores *= concat_score_weight
    allowed = None
    if v_mask is not None:
        _check_mask(v_mask, value, "Attention")
        allowed = (np.asarray(v_mask) != 0)[:, None, :]
    if use_causal_mask:
        causal = _causal(query.shape[1], value.shape[1])[None]
        allowed = causal if allowed is None else allowed & causal
    if allowed is not None:
        scores = np.where(allowed, scores, scores - _F32(1e9))
    out = np.matmul(_softmax_last(scores), value)
    if q_mask is not None:
        _check_mask(q_mask, query, "Attention")
        out = np.where((np.asarray(q_mask) != 0)[:, :, None], out, _F32(0))
    return out
