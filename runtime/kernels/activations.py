"""Activation kernels and ``apply_activation``, the activation vocabulary that
Dense and the convolutions fuse.

Formulas follow Keras 3 with the TensorFlow backend (``keras.activations``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from runtime.kernels import kernel

_F32 = np.float32
_SELU_ALPHA = 1.6732632423543772
_SELU_SCALE = 1.0507009873554805
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)

# erfc(z) = t * exp(-z*z + P(t)) with t = 1 / (1 + z/2), for z >= 0. P is our
# own least-squares fit (degree 11, Chebyshev sampling of t over [1/7, 1], i.e.
# z in [0, 12], against math.erfc); relative error below 4e-9 in float64 for
# z in [0, 10], far under float32's resolution. Coefficients in increasing
# powers of t.
_ERFC_P = (
    -1.2655300789308561, 1.0005419032148355, 0.3679815187626725, 0.13450551115885157,
    -0.31674151450644994, 0.5171914834968585, -1.2523828661277565, 1.0716900570959447,
    0.16281820289889035, -0.8056563491094905, 0.48283068462046397, -0.09724855584658194,
)


def erfc(z: np.ndarray) -> np.ndarray:
    """The complementary error function, elementwise, in float64."""
    z = np.asarray(z, dtype=np.float64)
    a = np.abs(z)
    t = 1.0 / (1.0 + 0.5 * a)
    p = np.full_like(t, _ERFC_P[-1])
    for c in _ERFC_P[-2::-1]:
        p *= t
        p += c
    p -= a * a
    r = t * np.exp(p)
    return np.where(z < 0, 2.0 - r, r)


def erf(z: np.ndarray) -> np.ndarray:
    """The error function, elementwise, in float64 (relative error below 1e-8)."""
    z = np.asarray(z, dtype=np.float64)
    # Near 0, 1 - erfc(z) cancels: use the Maclaurin series there (|z| < 1/2,
    # 12 terms: the first one left out is below 1e-17 relative).
    z2 = z * z
    term = z.copy()
    series = z.copy()
    for n in range(1, 12):
        term *= -z2 / n
        series += term / (2 * n + 1)
    series *= 2 / math.sqrt(math.pi)
    return np.where(np.abs(z) < 0.5, series, 1.0 - erfc(z))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) keeps full relative precision in float32 on both sides;
    # exp overflows to inf for x < -88, giving the right limit 0.
    with np.errstate(over="ignore"):
        e = np.exp(-x)
    e += 1
    return np.reciprocal(e, out=e)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(_F32(0), x)


def _softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    # The ufuncs' own reduce: np.max and np.sum add a Python wrapper each (a third of the time at batch 1).
    e = x - np.maximum.reduce(x, axis=axis, keepdims=True)
    np.exp(e, out=e)
    e /= np.add.reduce(e, axis=axis, keepdims=True)
    return e


def _log_softmax(x: np.ndarray, axis=-1) -> np.ndarray:
    y = x - np.max(x, axis=axis, keepdims=True)
    return y - np.log(np.sum(np.exp(y), axis=axis, keepdims=True))


def _gelu(x: np.ndarray) -> np.ndarray:
    # gelu(x) = x * Phi(x) = x/2 * erfc(-x/sqrt 2): no cancellation for x << 0.
    return (0.5 * x * erfc(x * -math.sqrt(0.5))).astype(_F32)


def _gelu_approximate(x: np.ndarray) -> np.ndarray:
    # 0.5 * x * (1 + tanh(u)) written as x * sigmoid(2u): 1 + tanh(u) cancels for u << 0.
    return x * _sigmoid(_F32(2 * _SQRT_2_OVER_PI) * (x + _F32(0.044715) * x * x * x))


def _elu(x: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    # relu(x) + alpha * expm1(min(x, 0)): exact, and no np.where (slow on mixed signs).
    y = np.expm1(np.clip(x, _F32(-np.inf), _F32(0)))
    if alpha != 1:
        y *= _F32(alpha)
    y += np.clip(x, _F32(0), _F32(np.inf))
    return y


def _leaky(x: np.ndarray, slope: float) -> np.ndarray:
    """x for x > 0, slope * x otherwise, as max (slope <= 1) or min (slope > 1) of x and slope * x."""
    y = _F32(slope) * x
    return np.maximum(x, y, out=y) if slope <= 1 else np.minimum(x, y, out=y)


def _hard_sigmoid(x: np.ndarray) -> np.ndarray:
    return np.clip(x + _F32(3), 0, 6) / _F32(6)


_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda x: x,
    "relu": lambda x: np.clip(x, _F32(0), _F32(np.inf)),  # clip: numpy's maximum with a scalar is slower
    "relu6": lambda x: np.clip(x, _F32(0), _F32(6)),
    "sigmoid": _sigmoid,
    "hard_sigmoid": _hard_sigmoid,
    "tanh": np.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "gelu": _gelu,
    "gelu_approximate": _gelu_approximate,
    "silu": lambda x: x * _sigmoid(x),
    "hard_silu": lambda x: x * _hard_sigmoid(x),
    "elu": _elu,
    "selu": lambda x: _F32(_SELU_SCALE) * _elu(x, _SELU_ALPHA),
    "leaky_relu": lambda x: _leaky(x, 0.2),
    "softplus": _softplus,
    "softsign": lambda x: x / (1 + np.abs(x)),
    "exponential": np.exp,
    "mish": lambda x: x * np.tanh(_softplus(x)),
}

ZEROS_LIMIT = 1 << 22  # float32 elements (16 MB)
_zeros_buf = np.zeros(0, _F32)


def shared_zeros(shape) -> np.ndarray:
    """A read-only float32 array of zeros of ``shape`` (at most ZEROS_LIMIT elements), shared and reused."""
    global _zeros_buf
    size = math.prod(shape)
    if _zeros_buf.size < size:
        buf = np.zeros(size, _F32)
        buf.flags.writeable = False
        _zeros_buf = buf  # a thread racing here keeps the buffer it read: still zeros, still big enough for it
    return _zeros_buf[:size].reshape(shape)


def _relu_in_place(x: np.ndarray) -> np.ndarray:
    """max(x, 0) into x, as a max against an array of zeros: the fastest numpy relu on float32 (np.clip and
    a max against the scalar 0 measured 1.5 to 6 times slower)."""
    if x.size > ZEROS_LIMIT:
        return np.clip(x, _F32(0), _F32(np.inf), out=x)
    return np.maximum(x, shared_zeros(x.shape), out=x)


# Activations cheap enough to run in place on a buffer the caller owns.
_IN_PLACE: dict[str, Callable[[np.ndarray], None]] = {
    "relu": _relu_in_place,
    "relu6": lambda x: np.clip(x, _F32(0), _F32(6), out=x),
    "tanh": lambda x: np.tanh(x, out=x),
    "exponential": lambda x: np.exp(x, out=x),
}


def apply_activation(x: np.ndarray, name: str, *, inplace: bool = False) -> np.ndarray:
    """Apply the named activation of ``savedmodel.ops.ACTIVATIONS`` to float32 x.

    With ``inplace=True`` x may be overwritten (only for buffers the caller
    owns). softmax and log_softmax act on the last axis.

    >>> apply_activation(np.array([-1.0, 2.0], np.float32), "relu")
    array([0., 2.], dtype=float32)
    """
    if name == "linear":
        return x
    if inplace and name in _IN_PLACE:
        _IN_PLACE[name](x)
        return x
    return _ACTIVATIONS[name](x)


@kernel("Activation")
def activation(x, *, activation):
    """The named activation, elementwise (softmax over the last axis)."""
    return apply_activation(x, activation)


@kernel("ReLU")
def relu(x, *, max_value, negative_slope, threshold):
    """Keras' ReLU: x above threshold (capped at max_value), negative_slope * (x - threshold) below."""
    if threshold == 0 and negative_slope == 0:
        return np.clip(x, _F32(0), _F32(np.inf if max_value is None else max_value))
    if max_value is None and threshold == 0:
        return _leaky(x, negative_slope)
    pos = np.where(x > _F32(threshold), x, _F32(0)) if threshold != 0 else np.clip(x, _F32(0), _F32(np.inf))
    if max_value is not None:
        np.clip(pos, _F32(0), _F32(max_value), out=pos)
    if negative_slope != 0:
        pos -= _F32(negative_slope) * np.clip(_F32(threshold) - x, _F32(0), _F32(np.inf))
    return pos


@kernel("LeakyReLU")
def leaky_relu(x, *, negative_slope):
    """x for x > 0, negative_slope * x otherwise."""
    return _leaky(x, negative_slope)


@kernel("ELU")
def elu(x, *, alpha):
    """x for x > 0, alpha * (exp(x) - 1) otherwise."""
    return _elu(x, alpha)


@kernel("Softmax")
def softmax(x, *, axis):
    """exp(x) normalised to sum 1 over axis (an int or a list of axes)."""
    return _softmax(x, tuple(axis) if isinstance(axis, list) else axis)


@kernel("PReLU")
def prelu(x, *, shared_axes, alpha):
    """x for x > 0, alpha * x otherwise, alpha broadcast over the shared axes (Keras: relu(x) - alpha * relu(-x))."""
    y = alpha * np.clip(x, _F32(-np.inf), _F32(0))
    y += np.clip(x, _F32(0), _F32(np.inf))
    return y


@kernel("Identity")
def identity(x):
    """x unchanged."""
    return x
