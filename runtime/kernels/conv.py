"""Convolution kernels (NHWC): im2col + one GEMM over the whole batch.

The im2col matrix is one contiguous copy of a strided window view of the
(zero-padded) input, so numpy copies whole kernel rows (kw * C contiguous
values) at a time; with few input channels those rows are short, and the
matrix is built transposed from long runs instead (``Phases``). A column of
ones carries the bias through the GEMM. ``conv2d_maxpool`` (substituted by
the planner for a Conv2D feeding a non-overlapping 'valid' MaxPooling2D)
groups the im2col rows by pool position, so the pooling is a max of whole
blocks; with few input channels the positions of a pool block read mostly
the same input offsets, which its matrix then holds once. Depthwise
convolutions multiply-accumulate over the kernel taps, or, on small feature
maps, are one matrix product per channel (bias in the matrix). Big
temporaries live in per-thread scratch buffers. No loop over batch items or
pixels.
"""

from __future__ import annotations

import functools
import math
import threading

import numpy as np

from runtime.kernels import kernel
from runtime.kernels._windows import Phases, geometry, out_and_pad, windows
from runtime.kernels.activations import ZEROS_LIMIT, apply_activation, shared_zeros

_F32 = np.float32


_scratch = threading.local()
_SCRATCH_LIMIT = 1 << 22  # float32 elements (16 MB) per buffer


def _scratch_array(tag: str, shape) -> np.ndarray:
    """A float32 scratch array of ``shape``, this thread's own, reused from call to call: faulting in
    fresh pages for big temporaries costs more than the work on them here. Never return one."""
    size = math.prod(shape)
    if size > _SCRATCH_LIMIT:  # not worth keeping alive between calls
        return np.empty(shape, _F32)
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(tag)
    if buf is None or buf.size < size:
        buf = bufs[tag] = np.empty(size, _F32)
    return buf[:size].reshape(shape)


def add_bias(y: np.ndarray, bias: np.ndarray) -> None:
    """y (N, ..., F) += bias, in place; one broadcast per item, not per pixel, as F is often small."""
    if not y.flags.c_contiguous or y.dtype != _F32 or bias.dtype != _F32:
        y += bias
        return
    per_item = y.reshape(y.shape[0], math.prod(y.shape[1:]))
    per_item += _tiled(bias.tobytes(), per_item.shape[1] // bias.shape[0])


@functools.lru_cache(maxsize=128)
def _tiled(bias_bytes: bytes, reps: int) -> np.ndarray:
    """A float32 bias repeated ``reps`` times, kept: np.tile costs more than the addition on small maps."""
    tiled = np.tile(np.frombuffer(bias_bytes, _F32), reps)
    tiled.flags.writeable = False
    return tiled


def _conv2d(x, w, bias, strides, dilation, pad, out_hw, groups=1) -> np.ndarray:
    """Grouped 2-D cross-correlation of NHWC x with w (kh, kw, cin/groups, filters), plus bias."""
    n, c = x.shape[0], x.shape[3]
    kh, kw, cpg, f = w.shape
    rows = n * out_hw[0] * out_hw[1]
    if (kh, kw) == (1, 1) and groups == 1 and not any(pad):
        xs = x if tuple(strides) == (1, 1) else np.ascontiguousarray(x[:, ::strides[0], ::strides[1]])
        y = (xs.reshape(rows, c) @ w.reshape(c, f)).reshape(n, *out_hw, f)
        if bias is not None:
            add_bias(y, bias)
        return y
    if groups == 1 and (kw * c if dilation[1] == 1 else c) < 16:
        return _conv2d_phases(x, w, bias, strides, dilation, pad, out_hw)
    view = windows(x, (kh, kw), strides, dilation, pad, out_hw)
    k = kh * kw * cpg
    fpg = f // groups
    cols = np.empty((rows, k + (bias is not None)), _F32)
    if bias is not None:
        cols[:, k] = 1
    y = np.empty((rows, f), _F32) if groups > 1 else None
    for g in range(groups):
        np.copyto(cols[:, :k].reshape(n, *out_hw, kh, kw, cpg), view[..., g * cpg:(g + 1) * cpg])
        wg = w[..., g * fpg:(g + 1) * fpg].reshape(k, fpg)
        if bias is not None:
            wg = np.concatenate([wg, bias[None, g * fpg:(g + 1) * fpg]])
        if y is None:
            y = cols @ wg
        else:
            y[:, g * fpg:(g + 1) * fpg] = cols @ wg
    return y.reshape(n, *out_hw, f)


def _conv2d_phases(x, w, bias, strides, dilation, pad, out_hw) -> np.ndarray:
    """_conv2d for few input channels, where a window row is too short a copy: the im2col matrix is built
    transposed, one row per (tap, channel), each row a long run read from ``Phases``."""
    n, c = x.shape[0], x.shape[3]
    kh, kw, _, f = w.shape
    ph = Phases(x, (kh, kw), strides, dilation, pad, out_hw)
    k = kh * kw * c
    cols = np.empty((k + (bias is not None), n, ph.size), _F32)
    for i in range(kh):
        for j in range(kw):
            t = i * kw + j
            cols[t * c:(t + 1) * c] = ph.tap(i, j).transpose(2, 0, 1)
    wk = w.reshape(k, f)
    if bias is not None:
        cols[k] = 1
        wk = np.concatenate([wk, bias[None]])
    y = cols.reshape(len(cols), n * ph.size).T @ wk
    return np.ascontiguousarray(y.reshape(n, out_hw[0], ph.width, f)[:, :, :out_hw[1]])


@kernel("Conv2D")
def conv2d(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias,
           kernel, bias=None):
    """activation(conv2d(x, kernel) + bias), NHWC, TF 'same' padding (extra at bottom/right)."""
    out_hw, pad = geometry(x, kernel_size, strides, dilation_rate, padding)
    y = _conv2d(x, kernel, bias, strides, dilation_rate, pad, out_hw, groups)
    return apply_activation(y, activation, inplace=True)


def _conv2d_pooled(x, w, bias, strides, dilation, pad, pooled_hw, pool) -> np.ndarray:
    """max over each (p, q) block of _conv2d(x, w) + bias: (N, Po, Qo, F), pool == stride, 'valid'.

    The im2col rows are grouped by position in the pool block (one strided copy of the window view): one
    GEMM, then the max of p * q contiguous blocks; conv outputs no pool window reads are never computed.
    Scratch buffers are this thread's own (``_scratch_array``); the result is a fresh array."""
    n, c = x.shape[0], x.shape[3]
    kh, kw, _, f = w.shape
    (p, q), (dh, dw) = pool, dilation
    k = kh * kw * c
    # The window view of ``windows``, made directly (np.ndarray on the buffer: as_strided costs more here).
    need = ((p * pooled_hw[0] - 1) * strides[0] + (kh - 1) * dh + 1,
            (q * pooled_hw[1] - 1) * strides[1] + (kw - 1) * dw + 1)
    if any(pad) or need[0] > x.shape[1] or need[1] > x.shape[2]:
        xp = np.zeros((n, *need, c), _F32)
        rows, cols = min(x.shape[1], need[0] - pad[0]), min(x.shape[2], need[1] - pad[1])
        xp[:, pad[0]:pad[0] + rows, pad[1]:pad[1] + cols] = x[:, :rows, :cols]
    else:
        xp = np.ascontiguousarray(x, _F32)
    few = (kw * c if dw == 1 else c) < 16
    span = ((p - 1) * strides[0] + (kh - 1) * dh + 1, (q - 1) * strides[1] + (kw - 1) * dw + 1)
    if (few and ((kh - 1) * dh + 1) * span[1] <= _SHARED_ROWS_GROWTH * kh * kw
            and n * pooled_hw[0] * pooled_hw[1] >= _SHARED_ROWS_MIN_ROWS):
        out = _pooled_shared_rows(xp, w, span, strides, dilation, pooled_hw, pool).reshape(n, *pooled_hw, f)
        if bias is not None:
            add_bias(out, bias)  # after the max, which it commutes with
        return out
    sn, sh, sw, sc = xp.strides
    vh, vw = sh * strides[0], sw * strides[1]
    outer = ((p, q, n, *pooled_hw), (vh, vw, sn, p * vh, q * vw))
    inner = ((kh, kw, c), (sh * dh, sw * dw, sc))
    # A column of ones carries the bias through the GEMM (cheaper than a pass over the output).
    wk = w.reshape(k, f) if bias is None else np.concatenate([w.reshape(k, f), bias[None]])
    kb = len(wk)
    if few:
        # Few channels: a window row is too short a copy; the matrix is built transposed, (tap, channel)
        # major, so that the copy's inner loop runs along output rows.
        blocks = np.ndarray((*inner[0], *outer[0]), _F32, xp, 0, (*inner[1], *outer[1]))
        cols = _scratch_array("cols", (kb, *outer[0]))
        np.copyto(cols[:k].reshape(blocks.shape), blocks)
        cols[k:] = 1
        cols = cols.reshape(kb, -1).T
    else:
        blocks = np.ndarray((*outer[0], *inner[0]), _F32, xp, 0, (*outer[1], *inner[1]))
        cols = _scratch_array("cols", (math.prod(outer[0]), kb))
        np.copyto(cols[:, :k].reshape(blocks.shape), blocks)
        cols[:, k:] = 1
    y = np.matmul(cols, wk, out=_scratch_array("gemm", (len(cols), f))).reshape(p * q, -1, f)
    if p * q == 1:
        out = y[0].copy()
    else:
        out = np.maximum(y[0], y[1])
        for r in range(2, p * q):
            np.maximum(out, y[r], out=out)
    return out.reshape(n, *pooled_hw, f)


# How many more multiply-adds (x) _pooled_shared_rows may do than plain im2col, to copy fewer rows.
_SHARED_ROWS_GROWTH = 1.5
# ... and from how many pooled outputs (N * Po * Qo) on: below, its p * q small products cost more than
# the copy it saves (the benchmark CNN's first conv: slower up to batch 16, faster from 24; 5408 at 32).
_SHARED_ROWS_MIN_ROWS = 4096


def _pooled_shared_rows(xp, w, span, strides, dilation, pooled_hw, pool) -> np.ndarray:
    """The (N * Po * Qo, F) max over each pool block of the conv outputs, without bias, for
    few input channels: the im2col rows of the pool block's positions overlap (with a 3x3 kernel and a 2x2
    pool, 36 (tap, position) rows read only 16 distinct input offsets), so the matrix holds each input
    offset once, (row offset, column offset, channel) major, and position (a, b) multiplies the run of
    rows of its kernel's row offsets against weights that are zero at the column offsets it skips. Fewer
    rows to copy (the copy dominates here) for up to _SHARED_ROWS_GROWTH x the multiply-adds."""
    n, c = xp.shape[0], xp.shape[3]
    kh, kw, _, f = w.shape
    (p, q), (sh_, sw_) = pool, strides
    sn, sh, sw, sc = xp.strides
    src = np.ndarray((*span, c, n, *pooled_hw), _F32, xp, 0, (sh, sw, sc, sn, p * sh_ * sh, q * sw_ * sw))
    cols = _scratch_array("cols", src.shape)
    np.copyto(cols, src)
    per_offset_row = span[1] * c
    cols = cols.reshape(span[0] * per_offset_row, -1)
    weights = _shared_row_weights(np.ascontiguousarray(w, _F32).tobytes(), w.shape, span[1], tuple(strides),
                                  tuple(dilation), tuple(pool))
    out = np.empty((cols.shape[1], f), _F32)
    y = _scratch_array("gemm", out.shape)
    for a in range(p):
        start = a * sh_ * per_offset_row
        rows = cols[start:start + weights.shape[1]].T
        for b in range(q):
            if a == b == 0:
                np.matmul(rows, weights[0], out=out)
            else:  # one position at a time: two buffers stay in cache, not p * q
                np.maximum(out, np.matmul(rows, weights[a * q + b], out=y), out=out)
    return out


@functools.lru_cache(maxsize=64)
def _shared_row_weights(w_bytes, w_shape, span_w, strides, dilation, pool) -> np.ndarray:
    """(p * q, ((kh - 1) * dh + 1) * span_w * C, F): for pool position (a, b), w (kh, kw, C, F) placed at the
    input offsets its taps read, relative to its first row offset; zeros elsewhere."""
    kh, kw, c, f = w_shape
    (p, q), (dh, dw) = pool, dilation
    w = np.frombuffer(w_bytes, _F32).reshape(w_shape)
    m = np.zeros((p, q, (kh - 1) * dh + 1, span_w, c, f), _F32)
    for b in range(q):
        m[:, b, ::dh, b * strides[1]:b * strides[1] + (kw - 1) * dw + 1:dw] = w
    m.flags.writeable = False
    return m.reshape(p * q, -1, f)


def conv2d_maxpool(x, *, pool, filters, kernel_size, strides, padding, dilation_rate, groups, activation,
                   use_bias, kernel, bias=None):
    """max_pooling2d(conv2d(x, ...), pool_size=pool, strides=pool, padding='valid'), for a nondecreasing
    activation (which, like the bias, commutes with the max and so is applied to the pooled output).

    Not a catalogue kernel: the planner substitutes it for a Conv2D (groups 1) feeding only such a pooling."""
    out_hw, pad = geometry(x, kernel_size, strides, dilation_rate, padding)
    pooled_hw = (out_hw[0] // pool[0], out_hw[1] // pool[1])
    y = _conv2d_pooled(x, kernel, bias, strides, dilation_rate, pad, pooled_hw, tuple(pool))
    return apply_activation(y, activation, inplace=True)


@kernel("Conv1D")
def conv1d(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias,
           kernel, bias=None):
    """activation(conv1d(x, kernel) + bias) over (N, L, C); 'causal' pads on the left only."""
    out, pad = out_and_pad(x.shape[1], kernel_size[0], strides[0], dilation_rate[0], padding)
    y = _conv2d(x[:, None], kernel[None], bias, (1, strides[0]), (1, dilation_rate[0]), (0, pad), (1, out), groups)
    return apply_activation(y[:, 0], activation, inplace=True)


def _depthwise(x, w, strides, dilation, pad, out_hw, bias=None, activation="linear") -> np.ndarray:
    """activation(depthwise 2-D cross-correlation + bias): w (kh, kw, C, mult) -> (N, Ho, Wo, C*mult),
    channel c*mult+m."""
    kh, kw, c, mult = w.shape
    if mult > 1:
        x = np.repeat(x, mult, axis=-1)
    w = w.reshape(kh, kw, c * mult)
    if x.dtype == _F32 and 0 < x.shape[1] * x.shape[2] * out_hw[0] * out_hw[1] <= _SMALL_MAP:
        return _depthwise_small(x, w, strides, dilation, pad, out_hw, bias, activation)
    y = _depthwise_linear(x, w, strides, dilation, pad, out_hw)
    if bias is not None:
        add_bias(y, bias)
    return apply_activation(y, activation, inplace=True)


def _depthwise_linear(x, w, strides, dilation, pad, out_hw) -> np.ndarray:
    """_depthwise without bias and activation, w (kh, kw, C)."""
    kh, kw, _ = w.shape
    if tuple(strides) == (1, 1):
        return _depthwise_unit_stride(x, w, dilation, pad, out_hw)
    if x.shape[3] >= 32:
        # Many channels: one einsum over the window view, no temporaries.
        return np.einsum("nhwijc,ijc->nhwc", windows(x, (kh, kw), strides, dilation, pad, out_hw), w)
    # Few channels: the inner loops of a window view would be C long. Phases lets every tap read one
    # contiguous run per image instead, seen as (N, Ho, width * C) against the tap's weights tiled along a row.
    ph = Phases(x, (kh, kw), strides, dilation, pad, out_hw)
    shape = (x.shape[0], out_hw[0], ph.width * x.shape[3])
    acc = np.empty(shape, _F32)
    tmp = np.empty(shape, _F32)
    for i in range(kh):
        for j in range(kw):
            src = ph.tap(i, j).reshape(shape)
            wt = np.tile(w[i, j], ph.width)
            if i == j == 0:
                np.multiply(src, wt, out=acc)
            else:
                np.multiply(src, wt, out=tmp)
                acc += tmp
    return np.ascontiguousarray(acc.reshape(x.shape[0], out_hw[0], ph.width, x.shape[3])[:, :, :out_hw[1]])


# Activations computed element by element, the same in any layout.
_ELEMENTWISE = {"linear", "relu", "relu6"}

# Input pixels x output pixels up to which a depthwise convolution is a matrix product per channel.
_SMALL_MAP = 4096


@functools.lru_cache(maxsize=64)
def _depthwise_matrix(w_bytes, w_shape, bias_bytes, in_hw, out_hw, strides, dilation, pad) -> np.ndarray:
    """(C, H*W [+ 1], Ho*Wo): per channel, the linear map of a depthwise convolution with w (kh, kw, C); with a
    bias, one more row holds it (the input then carries a column of ones)."""
    kh, kw, c = w_shape
    w = np.frombuffer(w_bytes, _F32).reshape(w_shape)
    k = in_hw[0] * in_hw[1]
    m = np.zeros((c, k + (bias_bytes is not None), out_hw[0] * out_hw[1]), _F32)
    rows, cols = np.arange(out_hw[0]), np.arange(out_hw[1])
    for i in range(kh):
        r = rows * strides[0] + i * dilation[0] - pad[0]
        for j in range(kw):
            q = cols * strides[1] + j * dilation[1] - pad[1]
            inside = ((r >= 0) & (r < in_hw[0]))[:, None] & ((q >= 0) & (q < in_hw[1]))[None, :]
            ro, qo = np.nonzero(inside)
            m[:, r[ro] * in_hw[1] + q[qo], ro * out_hw[1] + qo] += w[i, j][:, None]
    if bias_bytes is not None:
        m[:, k] = np.frombuffer(bias_bytes, _F32)[:, None]
    m.flags.writeable = False
    return m


def _depthwise_small(x, w, strides, dilation, pad, out_hw, bias, activation) -> np.ndarray:
    """_depthwise on a small feature map: one batched matrix product over the channels, (N, H*W [+ 1]) @
    (H*W [+ 1], Ho*Wo) each, the bias carried by a column of ones; the matrices are built once per kernel
    and geometry. An elementwise activation is applied channel-major, a relu while transposing back."""
    n, h, wd, c = x.shape
    w = np.ascontiguousarray(w, _F32)
    bias_bytes = None if bias is None else np.ascontiguousarray(bias, _F32).tobytes()
    m = _depthwise_matrix(w.tobytes(), w.shape, bias_bytes, (h, wd), tuple(out_hw), tuple(strides),
                          tuple(dilation), tuple(pad))
    hw = h * wd
    xt = _scratch_array("depthwise_in", (c, n, m.shape[1]))
    np.copyto(xt[..., :hw], x.reshape(n, hw, c).transpose(2, 0, 1))
    xt[..., hw:] = 1
    y = np.matmul(xt, m, out=_scratch_array("depthwise_out", (c, n, m.shape[2])))
    out = np.empty((n, m.shape[2], c), _F32)
    if activation == "relu" and out.size <= ZEROS_LIMIT:
        np.maximum(y.transpose(1, 2, 0), shared_zeros(out.shape), out=out)
    elif activation in _ELEMENTWISE:
        np.copyto(out, apply_activation(y, activation, inplace=True).transpose(1, 2, 0))
    else:
        np.copyto(out, y.transpose(1, 2, 0))
        out = apply_activation(out, activation, inplace=True)
    return out.reshape(n, *out_hw, c)


def _depthwise_unit_stride(x, w, dilation, pad, out_hw) -> np.ndarray:
    """_depthwise at stride 1, w (kh, kw, C): each image seen as rows of width * C values, so that a tap is a
    plain slice, every row of it one contiguous run of out_w * C values, and a multiply-accumulate over
    the whole batch; no scratch columns, no window view."""
    n, h, wd, c = x.shape
    kh, kw, _ = w.shape
    (dh, dw), (ho, wo) = dilation, out_hw
    need = (ho + (kh - 1) * dh, wo + (kw - 1) * dw)
    if any(pad) or need[0] > h or need[1] > wd:
        xp = np.zeros((n, need[0], need[1], c), x.dtype)
        rows, cols = min(h, need[0] - pad[0]), min(wd, need[1] - pad[1])
        xp[:, pad[0]:pad[0] + rows, pad[1]:pad[1] + cols] = x[:, :rows, :cols]
    else:
        xp = np.ascontiguousarray(x)
    flat = xp.reshape(n, xp.shape[1], xp.shape[2] * c)
    shape = (n, ho, wo * c)
    acc = np.empty(shape, _F32)
    tmp = np.empty(shape, _F32)
    for i in range(kh):
        for j in range(kw):
            src = flat[:, i * dh:i * dh + ho, j * dw * c:(j * dw + wo) * c]
            wt = np.tile(w[i, j], wo)
            if i == j == 0:
                np.multiply(src, wt, out=acc)
            else:
                np.multiply(src, wt, out=tmp)
                acc += tmp
    return acc.reshape(n, ho, wo, c)


@kernel("DepthwiseConv2D")
def depthwise_conv2d(x, *, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                     depth_multiplier, kernel, bias=None):
    """activation(depthwise_conv2d(x, kernel) + bias); output channel c*depth_multiplier + m."""
    out_hw, pad = geometry(x, kernel_size, strides, dilation_rate, padding)
    return _depthwise(x, kernel, strides, dilation_rate, pad, out_hw, bias, activation)


@kernel("SeparableConv2D")
def separable_conv2d(x, *, kernel_size, strides, padding, dilation_rate, activation, use_bias,
                     depth_multiplier, filters, depthwise_kernel, pointwise_kernel, bias=None):
    """activation(pointwise 1x1 conv of depthwise_conv2d(x) + bias)."""
    out_hw, pad = geometry(x, kernel_size, strides, dilation_rate, padding)
    d = _depthwise(x, depthwise_kernel, strides, dilation_rate, pad, out_hw)
    return apply_activation(_conv2d(d, pointwise_kernel, bias, (1, 1), (1, 1), (0, 0), out_hw), activation,
                            inplace=True)


def _transpose_geometry(n, k, s, d, padding, out_pad):
    """Output length and the crop before it of a transposed convolution (Keras/TF rule)."""
    span = (k - 1) * d + 1
    if padding == "valid":
        out = (n - 1) * s + span + (max(span, s) - span if out_pad is None else out_pad)
        return out, 0
    out = n * s if out_pad is None else (n - 1) * s + span % 2 + out_pad
    # The forward 'same' conv out -> n pads (n-1)*s + span - out, the smaller half first.
    return out, max((n - 1) * s + span - out, 0) // 2


@kernel("Conv2DTranspose")
def conv2d_transpose(x, *, filters, kernel_size, strides, padding, dilation_rate, groups, activation,
                     use_bias, output_padding, kernel, bias=None):
    """activation(conv2d_transpose(x, kernel) + bias): the input-gradient of Conv2D; kernel (kh, kw, filters, cin)."""
    n, h, w, c = x.shape
    kh, kw, f, _ = kernel.shape
    pads = output_padding or (None, None)
    ho, crop_h = _transpose_geometry(h, kh, strides[0], dilation_rate[0], padding, pads[0])
    wo, crop_w = _transpose_geometry(w, kw, strides[1], dilation_rate[1], padding, pads[1])
    # Every input pixel times every tap, then scattered (col2im) to the full output.
    cols = (x.reshape(-1, c) @ kernel.transpose(3, 0, 1, 2).reshape(c, -1)).reshape(n, h, w, kh, kw, f)
    full_h = max((h - 1) * strides[0] + (kh - 1) * dilation_rate[0] + 1, crop_h + ho)
    full_w = max((w - 1) * strides[1] + (kw - 1) * dilation_rate[1] + 1, crop_w + wo)
    full = np.zeros((n, full_h, full_w, f), _F32)
    for i in range(kh):
        r = slice(i * dilation_rate[0], i * dilation_rate[0] + (h - 1) * strides[0] + 1, strides[0])
        for j in range(kw):
            q = slice(j * dilation_rate[1], j * dilation_rate[1] + (w - 1) * strides[1] + 1, strides[1])
            full[:, r, q] += cols[:, :, :, i, j]
    y = np.ascontiguousarray(full[:, crop_h:crop_h + ho, crop_w:crop_w + wo])
    if bias is not None:
        add_bias(y, bias)
    return apply_activation(y, activation, inplace=True)
