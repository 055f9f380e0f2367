"""Normalisation kernels: BatchNormalization, LayerNormalization, Normalization, Rescaling."""

from __future__ import annotations

import math

import numpy as np

from runtime.kernels import kernel

_F32 = np.float32


def _along(v: np.ndarray, axis: int, ndim: int) -> np.ndarray:
    """v (C,) reshaped to broadcast along axis of an ndim-array."""
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


@kernel("BatchNormalization")
def batch_normalization(x, *, axis, epsilon, center, scale, moving_mean, moving_variance, gamma=None, beta=None):
    """(x - moving_mean) / sqrt(moving_variance + epsilon) * gamma + beta along axis (inference)."""
    # Folded to x * a + b with a, b computed in float64.
    a = 1.0 / np.sqrt(moving_variance.astype(np.float64) + epsilon)
    if gamma is not None:
        a = a * gamma
    b = -moving_mean * a
    if beta is not None:
        b = b + beta
    axis %= x.ndim
    a, b = _along(a.astype(_F32), axis, x.ndim), _along(b.astype(_F32), axis, x.ndim)
    y = x * a
    y += b
    return y


@kernel("LayerNormalization")
def layer_normalization(x, *, axis, epsilon, center, scale, rms_scaling, gamma=None, beta=None):
    """(x - mean) / sqrt(var + epsilon) * gamma + beta over the axes; rms_scaling: x / sqrt(var + epsilon) * gamma.

    In float32, as Keras: two passes (the mean, then the mean square of the
    centred values), with numpy's pairwise sums.
    """
    axes = tuple(sorted(a % x.ndim for a in axis))
    shape = [x.shape[i] if i in axes else 1 for i in range(x.ndim)]
    x = np.asarray(x, _F32)
    inv_n = _F32(1.0 / math.prod(x.shape[i] for i in axes))
    centred = x - np.add.reduce(x, axis=axes, keepdims=True) * inv_n
    square = centred * centred
    var = np.add.reduce(square, axis=axes, keepdims=True)
    var *= inv_n
    var += _F32(epsilon)
    inv = np.sqrt(var, out=var)
    np.reciprocal(inv, out=inv)
    if rms_scaling:
        # Keras 3 scales x itself (not x - mean) by the inverse standard deviation and ignores beta.
        y = np.multiply(x, inv, out=square)
        if gamma is not None:
            y *= gamma.reshape(shape)
        return y
    y = np.multiply(centred, inv, out=centred)
    if gamma is not None:
        y *= gamma.reshape(shape)
    if beta is not None:
        y += beta.reshape(shape)
    return y


@kernel("Normalization")
def normalization(x, *, invert, epsilon, mean, variance):
    """(x - mean) / max(sqrt(variance), epsilon); inverted: x * max(sqrt(variance), epsilon) + mean."""
    std = np.maximum(np.sqrt(variance.astype(np.float64)), epsilon).astype(_F32)
    mean = mean.astype(_F32, copy=False)
    if invert:
        return x * std + mean
    return (x - mean) / std


@kernel("Rescaling")
def rescaling(x, *, scale, offset):
    """x * scale + offset (scalars, or lists broadcast over the last axes)."""
    return x * np.asarray(scale, _F32) + np.asarray(offset, _F32)
