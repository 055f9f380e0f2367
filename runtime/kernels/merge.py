"""Merge kernels: elementwise merges of several inputs, Concatenate and Dot."""

from __future__ import annotations

import functools
import math

import numpy as np

from runtime.kernels import kernel

_F32 = np.float32


def _fold(op, xs):
    if len(xs) == 1:
        return xs[0]
    return functools.reduce(op, xs[2:], op(xs[0], xs[1]))


@kernel("Add")
def add(*xs):
    """Elementwise sum of the inputs (numpy broadcasting)."""
    return _fold(np.add, xs)


@kernel("Subtract")
def subtract(x, y):
    """x - y, elementwise."""
    return x - y


@kernel("Multiply")
def multiply(*xs):
    """Elementwise product of the inputs."""
    return _fold(np.multiply, xs)


@kernel("Average")
def average(*xs):
    """Elementwise mean of the inputs (sum, then divided by their count, as Keras)."""
    return _fold(np.add, xs) / _F32(len(xs))


@kernel("Maximum")
def maximum(*xs):
    """Elementwise maximum of the inputs."""
    return _fold(np.maximum, xs)


@kernel("Minimum")
def minimum(*xs):
    """Elementwise minimum of the inputs."""
    return _fold(np.minimum, xs)


@kernel("Concatenate")
def concatenate(*xs, axis):
    """The inputs joined along axis (the batch axis counts)."""
    return np.concatenate(xs, axis=axis)


def _l2_normalize(x: np.ndarray, axis: int) -> np.ndarray:
    # Keras: x * min(rsqrt(sum(x^2)), 1/epsilon) with epsilon = 1e-7.
    inv = 1 / np.sqrt(np.sum(np.square(x), axis=axis, keepdims=True))
    return x * np.minimum(inv, _F32(1e7))


@kernel("Dot")
def dot(x, y, *, axes, normalize):
    """Batched dot product contracting x's axes[0] with y's axes[1] (Keras batch_dot shapes)."""
    ax, ay = axes[0] % x.ndim, axes[1] % y.ndim
    if normalize:
        with np.errstate(divide="ignore"):
            x, y = _l2_normalize(x, ax), _l2_normalize(y, ay)
    x = np.moveaxis(x, ax, -1)
    y = np.moveaxis(y, ay, 1)
    n, x_rest, y_rest = x.shape[0], x.shape[1:-1], y.shape[2:]
    out = x.reshape(n, math.prod(x_rest), x.shape[-1]) @ y.reshape(n, y.shape[1], math.prod(y_rest))
    return out.reshape(n, *x_rest, *y_rest) if x_rest or y_rest else out.reshape(n, 1)
