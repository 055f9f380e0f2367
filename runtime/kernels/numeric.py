"""Kernels of the plain tensor ops (savedmodel.ops.numeric).

These ops keep their input's dtype as ONNX does, so each kernel returns the
dtype its catalogue entry declares (``astype(..., copy=False)`` where numpy
would promote).
"""

from __future__ import annotations

import math

import numpy as np

from runtime.errors import InputError
from runtime.kernels import kernel
from runtime.kernels.activations import erf
from savedmodel.dtypes import to_numpy
from savedmodel.ops.numeric import UNARY_BOOL, UNARY_INTEGER, expand_target, parse_einsum, slice_dims


@kernel("Constant")
def constant(*, value, dtype, shape):
    """The stored value (the planner has already given it ``dtype``)."""
    return value


@kernel("MatMul")
def matmul(x, y):
    """numpy matmul."""
    return np.matmul(x, y)


@kernel("Transpose")
def transpose(x, *, perm):
    """x with its axes permuted ([] reverses them)."""
    return np.transpose(x, perm or None)


@kernel("Gather")
def gather(data, indices, *, axis):
    """np.take along axis; an index outside -n..n-1 is an InputError naming it."""
    n = data.shape[axis]
    if indices.size:
        lo, hi = int(indices.min()), int(indices.max())
        if lo < -n or hi >= n:
            bad = lo if lo < -n else hi
            raise InputError(
                f"Gather index {bad} is out of range for axis {axis} of size {n}; expected indices in {-n}..{n - 1}",
                expected=f"indices in {-n}..{n - 1}", received=str(bad),
            )
    return np.take(data, indices, axis=axis)


@kernel("Cast")
def cast(x, *, to):
    """x converted to dtype ``to`` (numpy astype: floats to integers truncate, nonzero to bool is True)."""
    with np.errstate(invalid="ignore", over="ignore"):  # nan or out-of-range floats to integers: numpy's value
        return x.astype(to_numpy(to), copy=False)


@kernel("Where")
def where(cond, x, y):
    """x where cond else y, broadcast, in x's dtype."""
    return np.where(cond, x, y).astype(x.dtype, copy=False)


@kernel("Expand")
def expand(x, *, shape):
    """x broadcast with shape (-1 entries keep x's dim), as a new array."""
    target = np.broadcast_shapes(x.shape, expand_target(x.shape, shape))
    return np.array(np.broadcast_to(x, target))


@kernel("Slice")
def slice_(x, *, starts, ends, axes, steps):
    """ONNX Slice: start:end:step per listed axis, bounds clamped."""
    index = [slice(None)] * x.ndim
    attrs = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    for axis, s in slice_dims(x.shape, attrs):
        index[axis] = s
    return x[tuple(index)]


@kernel("Pad")
def pad(x, *, pads, mode, value):
    """x padded (or, for negative pads, cropped) by pads = all begins then all ends."""
    rank = x.ndim
    begins, ends = pads[:rank], pads[rank:]
    crop = tuple(slice(max(-b, 0), d - max(-e, 0)) for b, e, d in zip(begins, ends, x.shape))
    x = x[crop]
    widths = [(max(b, 0), max(e, 0)) for b, e in zip(begins, ends)]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=np.asarray(value).astype(x.dtype))
    return np.pad(x, widths, mode=mode)


@kernel("Clip")
def clip(x, *, min, max):  # noqa: A002 - the catalogue's attr names
    """x limited to [min, max] (a None bound is no bound; min > max gives max, as ONNX)."""
    if min is not None:
        x = np.maximum(x, np.asarray(min).astype(x.dtype))
    if max is not None:
        x = np.minimum(x, np.asarray(max).astype(x.dtype))
    return x


_UNARY = {
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "rsqrt": lambda x: 1 / np.sqrt(x), "erf": erf,
    "reciprocal": np.reciprocal, "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin,
    "acos": np.arccos, "atan": np.arctan, "sinh": np.sinh, "cosh": np.cosh, "asinh": np.arcsinh,
    "acosh": np.arccosh, "atanh": np.arctanh, "softplus": lambda x: np.logaddexp(0, x),
    "softsign": lambda x: x / (1 + np.abs(x)), "abs": np.abs, "neg": np.negative, "sign": np.sign,
    "floor": np.floor, "ceil": np.ceil, "round": np.round, "identity": lambda x: x.copy(),
    "not": np.logical_not, "isnan": np.isnan, "isinf": np.isinf, "isposinf": np.isposinf, "isneginf": np.isneginf,
}


@kernel("Unary")
def unary(x, *, function):
    """One elementwise function of x (see the catalogue entry for the output dtypes)."""
    if function in UNARY_BOOL:
        return _UNARY[function](x)
    if x.dtype.kind != "f" and function not in UNARY_INTEGER:
        x = x.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return np.asarray(_UNARY[function](x)).astype(x.dtype, copy=False)


@kernel("Divide")
def divide(x, y):
    """x / y; integers divide truncating toward zero, as ONNX (and C) do."""
    with np.errstate(divide="ignore", invalid="ignore"):  # x / 0 is inf or nan (0 for integers), as numpy
        if x.dtype.kind in "iu":
            q = np.floor_divide(x, y)
            return (q + ((np.remainder(x, y) != 0) & ((x < 0) ^ (y < 0)))).astype(x.dtype, copy=False)
        return np.divide(x, y).astype(x.dtype, copy=False)


@kernel("Power")
def power(x, y):
    """x ** y in x's dtype."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        return np.power(x, y).astype(x.dtype, copy=False)


@kernel("Mod")
def mod(x, y, *, fmod):
    """Remainder with the divisor's sign (np.mod), or the dividend's when fmod (C fmod)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (np.fmod(x, y) if fmod else np.mod(x, y)).astype(x.dtype, copy=False)


_COMPARE = {"equal": np.equal, "not_equal": np.not_equal, "less": np.less, "less_equal": np.less_equal,
            "greater": np.greater, "greater_equal": np.greater_equal}


@kernel("Compare")
def compare(x, y, *, function):
    """x <function> y elementwise, bool."""
    return _COMPARE[function](x, y)


_LOGICAL = {"and": np.logical_and, "or": np.logical_or, "xor": np.logical_xor}


@kernel("Logical")
def logical(x, y, *, function):
    """x and / or / xor y elementwise, bool."""
    return _LOGICAL[function](x, y)


def _log_sum_exp(x, axis, keepdims):
    peak = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    peak = np.where(np.isfinite(peak), peak, 0)
    out = np.log(np.sum(np.exp(x - peak), axis=axis, keepdims=True)) + peak
    return out if keepdims else np.squeeze(out, axis=axis)


def _lowest(dtype: np.dtype):
    """The identity of max over dtype (-inf, the smallest integer, False): what max gives on an empty set."""
    if dtype.kind == "f":
        return -np.inf
    return False if dtype.kind == "b" else np.iinfo(dtype).min


def _highest(dtype: np.dtype):
    if dtype.kind == "f":
        return np.inf
    return True if dtype.kind == "b" else np.iinfo(dtype).max


_REDUCE = {
    "mean": lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims, dtype=x.dtype),
    "sum": np.sum, "prod": np.prod,
    "max": lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims, initial=_lowest(x.dtype)),
    "min": lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims, initial=_highest(x.dtype)),
    "l1": lambda x, axis, keepdims: np.sum(np.abs(x), axis=axis, keepdims=keepdims),
    "l2": lambda x, axis, keepdims: np.sqrt(np.sum(np.square(x), axis=axis, keepdims=keepdims)),
    "sum_square": lambda x, axis, keepdims: np.sum(np.square(x), axis=axis, keepdims=keepdims),
    "log_sum": lambda x, axis, keepdims: np.log(np.sum(x, axis=axis, keepdims=keepdims)),
    "log_sum_exp": _log_sum_exp,
}


@kernel("Reduce")
def reduce(x, *, function, axes, keepdims):
    """function over axes (None or [] = all axes), in x's dtype."""
    axis = tuple(range(x.ndim)) if not axes else tuple(a % x.ndim for a in axes)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(_REDUCE[function](x, axis=axis, keepdims=keepdims)).astype(x.dtype, copy=False)


def _arg(fn, x, axis, keepdims, select_last_index):
    if select_last_index:
        flipped = np.flip(x, axis=axis)
        out = x.shape[axis] - 1 - fn(flipped, axis=axis, keepdims=keepdims)
    else:
        out = fn(x, axis=axis, keepdims=keepdims)
    return out.astype(np.int64, copy=False)


@kernel("ArgMax")
def argmax(x, *, axis, keepdims, select_last_index):
    """Index of the largest value along axis (the first one, or the last when select_last_index), int64."""
    return _arg(np.argmax, x, axis, keepdims, select_last_index)


@kernel("ArgMin")
def argmin(x, *, axis, keepdims, select_last_index):
    """Index of the smallest value along axis (the first one, or the last when select_last_index), int64."""
    return _arg(np.argmin, x, axis, keepdims, select_last_index)


@kernel("Shape")
def shape(x, *, start, end):
    """x's dims start:end as int64."""
    return np.array(x.shape[start:end], dtype=np.int64)


@kernel("Tile")
def tile(x, *, repeats):
    """x repeated repeats[i] times along axis i."""
    return np.tile(x, repeats)


@kernel("CumSum")
def cumsum(x, *, axis, exclusive, reverse):
    """Running sum along axis (exclusive: without the element itself; reverse: from the end), in x's dtype."""
    if reverse:
        x = np.flip(x, axis=axis)
    out = np.cumsum(x, axis=axis, dtype=x.dtype)
    if exclusive:
        head = [slice(None)] * x.ndim
        head[axis] = slice(0, -1)
        zeros = np.zeros_like(np.take(x, [0], axis=axis)) if x.shape[axis] else np.zeros_like(x)
        out = np.concatenate([zeros, out[tuple(head)]], axis=axis)
    return np.flip(out, axis=axis) if reverse else out


@kernel("TopK")
def top_k(x, *, k, axis, largest, sorted):  # noqa: A002 - the catalogue's attr name
    """The k largest (or smallest) values along axis and their int64 indices; ties keep index order."""
    if largest:
        # A stable ascending sort of the reversed axis, read backwards: descending, ties by ascending index.
        order = np.flip(np.argsort(np.flip(x, axis=axis), axis=axis, kind="stable"), axis=axis)
        order = x.shape[axis] - 1 - order
    else:
        order = np.argsort(x, axis=axis, kind="stable")
    indices = np.take(order, np.arange(k), axis=axis)
    return np.take_along_axis(x, indices, axis=axis), indices.astype(np.int64, copy=False)


@kernel("Einsum")
def einsum(*xs, equation):
    """numpy einsum of the inputs (the equation with '...' spelled out)."""
    terms, out = parse_einsum(equation, [x.ndim for x in xs])
    return np.einsum(",".join(terms) + "->" + out, *xs, optimize=len(xs) > 2).astype(xs[0].dtype, copy=False)


# -- Resize ------------------------------------------------------------------------------------------------------


def _source_coords(out_len: int, in_len: int, scale: float, mode: str) -> np.ndarray:
    """Input coordinate of each output pixel (ONNX coordinate_transformation_mode), float64.

    As in ONNX, the modes that use the output length take the unrounded in_len x scale.
    """
    x = np.arange(out_len, dtype=np.float64)
    width = scale * in_len
    if mode == "asymmetric":
        return x / scale
    if mode == "align_corners":
        return x * (in_len - 1) / (width - 1) if width != 1 else np.zeros_like(x)
    if mode == "pytorch_half_pixel":
        return (x + 0.5) / scale - 0.5 if width != 1 else np.full_like(x, -0.5)
    if mode == "half_pixel_symmetric":
        offset = in_len / 2 * (1 - out_len / width)
        return offset + (x + 0.5) / scale - 0.5
    return (x + 0.5) / scale - 0.5


def _nearest_index(coords: np.ndarray, in_len: int, nearest_mode: str) -> np.ndarray:
    rounding = {"round_prefer_floor": lambda c: np.ceil(c - 0.5), "round_prefer_ceil": lambda c: np.floor(c + 0.5),
                "floor": np.floor, "ceil": np.ceil}[nearest_mode]
    return np.clip(rounding(coords), 0, in_len - 1).astype(np.intp)


def _cubic(d: np.ndarray, a: float) -> np.ndarray:
    """Keys' cubic convolution kernel with coefficient a at distances d."""
    d = np.abs(d)
    near = ((a + 2) * d - (a + 3)) * d * d + 1
    far = ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def _linear(d: np.ndarray, a: float) -> np.ndarray:
    """The triangle (linear interpolation) kernel at distances d."""
    return np.clip(1 - np.abs(d), 0, 1)


def _interpolation_matrix(coords: np.ndarray, in_len: int, scale: float, a: dict) -> np.ndarray:
    """(out_len, in_len) matrix whose rows interpolate at coords, edge pixels repeating past the border.

    As ONNX's reference: the taps are the input pixels nearest each coordinate (the one left of it
    first), weighted by the kernel at their distance; antialias widens the kernel by 1/scale when
    downsampling and normalises the weights; exclude_outside drops the taps past the border.
    """
    kernel, reach = (_linear, 1) if a["mode"] == "linear" else (_cubic, 2)
    stretch = min(scale, 1.0) if a["antialias"] else 1.0
    first = math.floor(-reach / stretch) + 1  # offset of the leftmost tap from the pixel left of the coordinate
    offsets = np.arange(first, 1 - first + 1)
    left = np.where(coords == np.floor(coords), coords - 1, np.floor(coords))  # ratio in (0, 1]
    ratio = coords - left
    weights = kernel(stretch * (offsets[None, :] - ratio[:, None]), a["cubic_coeff_a"])
    taps = left.astype(np.intp)[:, None] + offsets
    if a["exclude_outside"]:
        weights = np.where((taps >= 0) & (taps < in_len), weights, 0.0)
    if a["exclude_outside"] or a["antialias"]:
        weights = weights / weights.sum(axis=1, keepdims=True)
    matrix = np.zeros((len(coords), in_len))
    np.add.at(matrix, (np.arange(len(coords))[:, None], np.clip(taps, 0, in_len - 1)), weights)
    return matrix


def _resize_axis(x: np.ndarray, axis: int, out_len: int, scale: float, a: dict) -> np.ndarray:
    in_len = x.shape[axis]
    if out_len == in_len and scale == 1:
        return x  # every coordinate mode maps a pixel onto itself
    coords = _source_coords(out_len, in_len, scale, a["coordinate_transformation_mode"])
    if a["mode"] == "nearest":
        return np.take(x, _nearest_index(coords, in_len, a["nearest_mode"]), axis=axis)
    matrix = _interpolation_matrix(coords, in_len, scale, a)
    moved = np.moveaxis(x, axis, -1) @ matrix.T.astype(x.dtype if x.dtype.kind == "f" else np.float32)
    return np.moveaxis(moved, -1, axis).astype(x.dtype, copy=False)


@kernel("Resize")
def resize(x, *, size, scale, mode, coordinate_transformation_mode, nearest_mode, cubic_coeff_a, exclude_outside,
           antialias):
    """(N, H, W, C) resized over H and W by nearest, linear or cubic interpolation, as ONNX Resize."""
    attrs = {"mode": mode, "coordinate_transformation_mode": coordinate_transformation_mode,
             "nearest_mode": nearest_mode, "cubic_coeff_a": cubic_coeff_a, "exclude_outside": exclude_outside,
             "antialias": antialias}
    for axis in (1, 2):
        in_len = x.shape[axis]
        if size is not None:
            out_len = size[axis - 1]
            s = out_len / in_len
        else:
            s = scale[axis - 1]
            out_len = math.floor(in_len * s)
        x = _resize_axis(x, axis, out_len, s, attrs)
    return x
