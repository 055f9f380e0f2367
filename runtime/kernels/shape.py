"""Shape kernels: reshaping, padding, cropping and upsampling (batch axis first)."""

from __future__ import annotations

import math

import numpy as np

from runtime.kernels import kernel

_F32 = np.float32


@kernel("Flatten")
def flatten(x):
    """(N, ...) -> (N, product of the other dims)."""
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))


@kernel("Reshape")
def reshape(x, *, target_shape):
    """Each batch item reshaped to target_shape (one entry may be -1)."""
    target = list(target_shape)
    if -1 in target:
        known = math.prod(d for d in target if d != -1)
        target[target.index(-1)] = math.prod(x.shape[1:]) // known if known else 0
    return x.reshape(x.shape[0], *target)


@kernel("Permute")
def permute(x, *, dims):
    """The non-batch axes permuted by dims (1-based)."""
    return x.transpose(0, *dims)


@kernel("RepeatVector")
def repeat_vector(x, *, n):
    """(N, F) -> (N, n, F), the row repeated n times."""
    return np.repeat(x[:, None, :], n, axis=1)


@kernel("ZeroPadding1D")
def zero_padding1d(x, *, padding):
    """(N, L, C) with padding[0] zero steps before and padding[1] after."""
    return np.pad(x, ((0, 0), tuple(padding), (0, 0)))


@kernel("ZeroPadding2D")
def zero_padding2d(x, *, padding):
    """(N, H, W, C) with zero rows/columns: padding = [[top, bottom], [left, right]]."""
    (t, b), (left, r) = padding
    return np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)))


@kernel("Cropping1D")
def cropping1d(x, *, cropping):
    """(N, L, C) without cropping[0] leading and cropping[1] trailing steps."""
    lo, hi = cropping
    return x[:, lo:x.shape[1] - hi]


@kernel("Cropping2D")
def cropping2d(x, *, cropping):
    """(N, H, W, C) without the rows/columns in cropping = [[top, bottom], [left, right]]."""
    (t, b), (left, r) = cropping
    return x[:, t:x.shape[1] - b, left:x.shape[2] - r]


@kernel("UpSampling1D")
def upsampling1d(x, *, size):
    """Each step of (N, L, C) repeated size times."""
    return np.repeat(x, size, axis=1)


def _linear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices below/above and weight of the upper one, TF bilinear with half-pixel centers."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    floor = np.floor(src)
    lo = np.maximum(floor, 0).astype(np.intp)
    hi = np.minimum(np.ceil(src), n_in - 1).astype(np.intp)
    return lo, hi, (src - floor).astype(_F32)


def _lerp_axis(x: np.ndarray, axis: int, n_out: int) -> np.ndarray:
    lo, hi, w = _linear_taps(x.shape[axis], n_out)
    a, b = np.take(x, lo, axis=axis), np.take(x, hi, axis=axis)
    shape = [1] * x.ndim
    shape[axis] = n_out
    b -= a
    b *= w.reshape(shape)
    b += a
    return b


@kernel("UpSampling2D")
def upsampling2d(x, *, size, interpolation):
    """(N, H, W, C) scaled by size: nearest repeats pixels; bilinear as TF resize (half-pixel centers)."""
    if interpolation == "nearest":
        return np.repeat(np.repeat(x, size[0], axis=1), size[1], axis=2)
    y = _lerp_axis(x, 1, x.shape[1] * size[0])
    return _lerp_axis(y, 2, x.shape[2] * size[1])
