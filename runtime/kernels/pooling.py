"""Pooling kernels (NHWC / NLC): windowed max and average, and global pooling.

A 2-D window is reduced one axis at a time (rows, then columns): the row
pass reads whole contiguous rows, and each pass loops over the window taps
only. 'same' padding is TF's (extra at the end); padded positions are
skipped, so average pooling divides by the number of real samples, as TF.
"""

from __future__ import annotations

import numpy as np

from runtime.kernels import kernel
from runtime.kernels._windows import out_and_pad, tap_range

_F32 = np.float32


def _reduce_axis(x, axis, k, s, padding, combine, fill):
    """out[o] = combine of x[o*s + i - pad] over taps i < k along axis (outside x skipped), and the spans
    ``(lo, hi)`` of outputs each tap reaches."""
    n_out, pad = out_and_pad(x.shape[axis], k, s, 1, padding)
    lead = (slice(None),) * axis
    spans = [tap_range(x.shape[axis], n_out, s, i - pad) for i in range(k)]
    full = [src for lo, hi, src in spans if (lo, hi) == (0, n_out)]
    rest = [(slice(0, n_out), src) for src in full[2:]]
    rest += [(slice(lo, hi), src) for lo, hi, src in spans if (lo, hi) != (0, n_out)]
    if len(full) >= 2:  # the first pass writes the output: no copy or fill first
        out = combine(x[lead + (full[0],)], x[lead + (full[1],)])
    elif full:
        out = x[lead + (full[0],)].copy()
    else:
        out = np.full((*x.shape[:axis], n_out, *x.shape[axis + 1:]), fill, x.dtype)
    for dst_range, src in rest:
        dst = out[lead + (dst_range,)]
        combine(dst, x[lead + (src,)], out=dst)
    return out, [(lo, hi) for lo, hi, _ in spans]


def _count(spans, n_out):
    count = np.zeros(n_out, _F32)
    for lo, hi in spans:
        count[lo:hi] += 1
    return count


def _max(x, pool_size, strides, padding):
    # Max pooling keeps the input dtype (the catalogue's keeps_dtype): pad with that dtype's lowest value.
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    for axis, (k, s) in enumerate(zip(pool_size, strides, strict=True), start=1):
        x, _ = _reduce_axis(x, axis, k, s, padding, np.maximum, lowest)
    return x


def _mean(x, pool_size, strides, padding):
    count = None
    for axis, (k, s) in enumerate(zip(pool_size, strides, strict=True), start=1):
        x, spans = _reduce_axis(x, axis, k, s, padding, np.add, 0)
        c = _count(spans, x.shape[axis])
        count = c if count is None else np.multiply.outer(count, c)
    x /= count[..., None]
    return x


@kernel("MaxPooling2D")
def max_pooling2d(x, *, pool_size, strides, padding):
    """Maximum over each pool_size window of (N, H, W, C)."""
    return _max(x, pool_size, strides, padding)


@kernel("AveragePooling2D")
def average_pooling2d(x, *, pool_size, strides, padding):
    """Mean over each pool_size window of (N, H, W, C), padding excluded from the count."""
    return _mean(x, pool_size, strides, padding)


@kernel("MaxPooling1D")
def max_pooling1d(x, *, pool_size, strides, padding):
    """Maximum over each pool_size window of (N, L, C)."""
    return _max(x, pool_size, strides, padding)


@kernel("AveragePooling1D")
def average_pooling1d(x, *, pool_size, strides, padding):
    """Mean over each pool_size window of (N, L, C), padding excluded from the count."""
    return _mean(x, pool_size, strides, padding)


@kernel("GlobalMaxPooling1D")
def global_max_pooling1d(x, *, keepdims):
    """Maximum over the steps of (N, L, C)."""
    return x.max(axis=1, keepdims=keepdims)


@kernel("GlobalAveragePooling1D")
def global_average_pooling1d(x, *, keepdims):
    """Mean over the steps of (N, L, C)."""
    return x.mean(axis=1, keepdims=keepdims)


@kernel("GlobalMaxPooling2D")
def global_max_pooling2d(x, *, keepdims):
    """Maximum over height and width of (N, H, W, C)."""
    return x.max(axis=(1, 2), keepdims=keepdims)


@kernel("GlobalAveragePooling2D")
def global_average_pooling2d(x, *, keepdims):
    """Mean over height and width of (N, H, W, C)."""
    return x.mean(axis=(1, 2), keepdims=keepdims)
