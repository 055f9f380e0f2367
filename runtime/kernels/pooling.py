"""Pooling kernels (NHWC / NLC): windowed max and average, and global pooling.

Windows are walked one tap at a time over the whole batch; 'same' padding is
TF's (extra at the end), and average pooling divides by the number of real
(unpadded) samples in each window, as TF does.
"""

from __future__ import annotations

import numpy as np

from runtime.kernels import kernel
from runtime.kernels._windows import geometry, is_full, taps

_F32 = np.float32
_NO_DILATION = (1, 1)


def _max_pool(x, pool_size, strides, padding):
    out_hw, pad = geometry(x, pool_size, strides, _NO_DILATION, padding)
    acc = None
    for _, _, rows, cols, r_in, c_in in taps(x.shape[1:3], out_hw, pool_size, strides, _NO_DILATION, pad):
        src = x[:, r_in, c_in]
        if acc is None:
            if is_full(rows, cols, out_hw):
                acc = src.copy()
                continue
            acc = np.full((x.shape[0], *out_hw, x.shape[3]), -np.inf, _F32)
        dst = acc[:, rows[0]:rows[1], cols[0]:cols[1]]
        np.maximum(dst, src, out=dst)
    return acc


def _avg_pool(x, pool_size, strides, padding):
    out_hw, pad = geometry(x, pool_size, strides, _NO_DILATION, padding)
    acc = np.zeros((x.shape[0], *out_hw, x.shape[3]), _F32)
    count = np.zeros(out_hw, _F32)
    for _, _, rows, cols, r_in, c_in in taps(x.shape[1:3], out_hw, pool_size, strides, _NO_DILATION, pad):
        dst = acc[:, rows[0]:rows[1], cols[0]:cols[1]]
        dst += x[:, r_in, c_in]
        count[rows[0]:rows[1], cols[0]:cols[1]] += 1
    acc /= count[:, :, None]
    return acc


@kernel("MaxPooling2D")
def max_pooling2d(x, *, pool_size, strides, padding):
    """Maximum over each pool_size window of (N, H, W, C)."""
    return _max_pool(x, tuple(pool_size), tuple(strides), padding)


@kernel("AveragePooling2D")
def average_pooling2d(x, *, pool_size, strides, padding):
    """Mean over each pool_size window of (N, H, W, C), padding excluded from the count."""
    return _avg_pool(x, tuple(pool_size), tuple(strides), padding)


@kernel("MaxPooling1D")
def max_pooling1d(x, *, pool_size, strides, padding):
    """Maximum over each pool_size window of (N, L, C)."""
    return _max_pool(x[:, None], (1, pool_size[0]), (1, strides[0]), padding)[:, 0]


@kernel("AveragePooling1D")
def average_pooling1d(x, *, pool_size, strides, padding):
    """Mean over each pool_size window of (N, L, C), padding excluded from the count."""
    return _avg_pool(x[:, None], (1, pool_size[0]), (1, strides[0]), padding)[:, 0]


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
