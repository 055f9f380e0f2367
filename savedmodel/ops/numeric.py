"""Plain tensor ops that graphs imported from ONNX need: matrix products,
transposes, gathers, reductions and elementwise math.

Unlike the Keras-level ops, axes here count the batch axis (axis 0), as in
ONNX and numpy, and most ops keep their input's dtype as ONNX does (integer
Divide truncates, integer Reduce sums stay integers). Each op states its
output dtype with a ``dtypes`` rule; the runtime hands such ops their inputs
as they are, without the float32 cast of the Keras-level ops.
"""

from __future__ import annotations

import math
import string
from typing import Any

from savedmodel.dtypes import DTYPES, FLOATS, INTEGERS
from savedmodel.ir import Shape, TensorSpec
from savedmodel.ops import Attr, op
from savedmodel.ops.tensor import broadcast

# Unary functions whose output is bool, and those that keep an integer input's dtype.
UNARY_BOOL = ("not", "isnan", "isinf", "isposinf", "isneginf")
UNARY_INTEGER = ("abs", "neg", "sign", "floor", "ceil", "round", "identity")
UNARY_FLOAT = (
    "exp", "log", "sqrt", "rsqrt", "erf", "reciprocal", "sin", "cos", "tan", "asin", "acos", "atan",
    "sinh", "cosh", "asinh", "acosh", "atanh", "softplus", "softsign",
)
UNARY = UNARY_FLOAT + UNARY_INTEGER + UNARY_BOOL
COMPARISONS = ("equal", "not_equal", "less", "less_equal", "greater", "greater_equal")
LOGICALS = ("and", "or", "xor")
REDUCTIONS = ("mean", "sum", "max", "min", "prod", "l1", "l2", "log_sum_exp", "sum_square", "log_sum")
RESIZE_MODES = ("nearest", "linear", "cubic")
COORDINATE_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")
PAD_MODES = ("constant", "reflect", "edge", "wrap")
# Every IR dtype but string: the numeric ops do not compute on byte strings.
NUMERIC_DTYPES = tuple(d for d in DTYPES if d != "string")


def _same_dtype(inputs: list[TensorSpec], a: dict[str, Any]) -> list[str]:
    return [inputs[0].dtype]


def _bool(inputs: list[TensorSpec], a: dict[str, Any]) -> list[str]:
    return ["bool"]


def _int64(inputs: list[TensorSpec], a: dict[str, Any]) -> list[str]:
    return ["int64"]


def _axis(axis: int, rank: int, what: str = "axis") -> int:
    if not -rank <= axis < max(rank, 1):
        raise ValueError(f"{what} {axis} is out of range for a rank-{rank} input (expected {-rank}..{rank - 1})")
    return axis % max(rank, 1)


def _axes(axes: list[int] | None, rank: int) -> list[int]:
    """Normalised, sorted axes; None or [] means all of them."""
    if not axes:
        return list(range(rank))
    norm = [_axis(a, rank, "axes entry") for a in axes]
    if len(set(norm)) != len(norm):
        raise ValueError(f"axes {axes} name an axis twice")
    return sorted(norm)


def _elementwise(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
    return [broadcast([x.shape for x in inputs])]


def _same_shape(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
    return [inputs[0].shape]


@op("Constant", attrs={"dtype": Attr("str", "float32", DTYPES), "shape": Attr("ints", [])}, inputs=(0, 0),
    weights=("value",), weight_shapes=lambda i, a: {"value": tuple(a["shape"])},
    dtypes=lambda i, a: [a["dtype"]])
def constant(inputs, a):
    """The stored weight ``value``, of dtype ``dtype`` and shape ``shape`` (the shape attr is checked
    against the weight, so validation knows the output shape without reading weights)."""
    if any(d < 0 for d in a["shape"]):
        raise ValueError(f"shape {a['shape']} has a negative dim")
    return [tuple(a["shape"])]


@op("MatMul", inputs=(2, 2), dtypes=_same_dtype)
def matmul(inputs, a):
    """numpy matmul: the last two axes multiply, the leading ones broadcast; 1-D operands as numpy."""
    x, y = (list(s.shape) for s in inputs)
    if not x or not y:
        raise ValueError("MatMul takes no scalars")
    xv, yv = len(x) == 1, len(y) == 1
    x = [1, *x] if xv else x
    y = [*y, 1] if yv else y
    if x[-1] is not None and y[-2] is not None and x[-1] != y[-2]:
        raise ValueError(f"contracted dims differ: {x[-1]} vs {y[-2]}")
    out = list(broadcast([tuple(x[:-2]), tuple(y[:-2])])) + [x[-2], y[-1]]
    if yv:
        out.pop(-1)
    if xv:
        out.pop(-2 if not yv else -1)
    return [tuple(out)]


@op("Transpose", attrs={"perm": Attr("ints", [])}, keeps_dtype=True)
def transpose(inputs, a):
    """Axes permuted by perm (a full permutation, batch axis included; [] reverses them as numpy)."""
    shape = inputs[0].shape
    perm = a["perm"] or list(range(len(shape)))[::-1]
    if sorted(perm) != list(range(len(shape))):
        raise ValueError(f"perm {a['perm']} is not a permutation of 0..{len(shape) - 1}")
    return [tuple(shape[p] for p in perm)]


@op("Gather", attrs={"axis": Attr("int", 0)}, inputs=(2, 2), keeps_dtype=True)
def gather(inputs, a):
    """np.take(data, indices, axis): negative indices count from the end, out-of-range ones are refused."""
    data, indices = inputs
    if indices.dtype not in INTEGERS:
        raise ValueError(f"indices must be integers, got {indices.dtype}")
    axis = _axis(a["axis"], len(data.shape))
    return [(*data.shape[:axis], *indices.shape, *data.shape[axis + 1:])]


@op("Cast", attrs={"to": Attr("str", "float32", NUMERIC_DTYPES)}, dtypes=lambda i, a: [a["to"]])
def cast(inputs, a):
    """The input converted to dtype ``to`` (floats to integers truncate, as numpy's astype)."""
    return [inputs[0].shape]


@op("Where", inputs=(3, 3), dtypes=lambda i, a: [i[1].dtype])
def where(inputs, a):
    """x where cond else y, all three broadcast; the output has x's dtype."""
    if inputs[0].dtype != "bool":
        raise ValueError(f"cond must be bool, got {inputs[0].dtype}")
    return _elementwise(inputs, a)


def expand_target(shape: Shape, target: list[int]) -> Shape:
    """``target`` with each -1 replaced by the input's dim at that (right-aligned) position."""
    out: list[int | None] = []
    for i, d in enumerate(target):
        j = len(shape) - len(target) + i
        if d == -1:
            out.append(shape[j] if j >= 0 else 1)
        elif d < 0:
            raise ValueError(f"shape entry {d} is negative (only -1, the input's dim, is allowed)")
        else:
            out.append(d)
    return tuple(out)


@op("Expand", attrs={"shape": Attr("ints", [])}, keeps_dtype=True)
def expand(inputs, a):
    """The input broadcast with shape (ONNX Expand: the larger of each dim wins; -1 keeps the input's dim)."""
    shape = inputs[0].shape
    return [broadcast([shape, expand_target(shape, a["shape"])])]


def slice_dims(shape: Shape, a: dict[str, Any]) -> list[tuple[int, slice | None]]:
    """(axis, python slice or None when the dim is unknown) per sliced axis, with ONNX's clamping."""
    starts, ends, steps = a["starts"], a["ends"], a["steps"] or [1] * len(a["starts"])
    axes = a["axes"] or list(range(len(starts)))
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ValueError(f"starts, ends, axes and steps differ in length: {len(starts)}, {len(ends)}, "
                         f"{len(axes)}, {len(steps)}")
    if 0 in steps:
        raise ValueError("steps may not be 0")
    norm = [_axis(x, len(shape), "axes entry") for x in axes]
    if len(set(norm)) != len(norm):
        raise ValueError(f"axes {axes} name an axis twice")
    out = []
    for axis, start, end, step in zip(norm, starts, ends, steps):
        dim = shape[axis]
        if dim is None:
            out.append((axis, None))
            continue
        lo, hi, st = slice(start, end, step).indices(dim)
        out.append((axis, slice(lo, None if hi < 0 else hi, st)))
    return out


@op("Slice", attrs={"starts": Attr("ints", []), "ends": Attr("ints", []), "axes": Attr("ints", []),
                    "steps": Attr("ints", [])}, keeps_dtype=True)
def slice_(inputs, a):
    """ONNX Slice: per axis, start:end:step with out-of-range bounds clamped; axes [] means 0..n-1, steps [] all 1."""
    shape = list(inputs[0].shape)
    for axis, s in slice_dims(inputs[0].shape, a):
        shape[axis] = None if s is None else len(range(*s.indices(shape[axis])))
    return [tuple(shape)]


@op("Pad", attrs={"pads": Attr("ints", []), "mode": Attr("str", "constant", PAD_MODES),
                  "value": Attr("float", 0.0)}, keeps_dtype=True)
def pad(inputs, a):
    """ONNX Pad: pads lists all begins then all ends (negative entries crop); mode constant fills with value.
    Also takes mode "wrap" (ONNX opset 19)."""
    shape, pads = inputs[0].shape, a["pads"]
    if len(pads) != 2 * len(shape):
        raise ValueError(f"pads has {len(pads)} entries, expected {2 * len(shape)} (2 x rank)")
    out = []
    for d, lo, hi in zip(shape, pads[:len(shape)], pads[len(shape):]):
        if d is not None and d + lo + hi < 0:
            raise ValueError(f"pads {lo}, {hi} crop more than the dim {d}")
        out.append(None if d is None else d + lo + hi)
    return [tuple(out)]


@op("Clip", attrs={"min": Attr("float", None, nullable=True), "max": Attr("float", None, nullable=True)},
    keeps_dtype=True)
def clip(inputs, a):
    """The input limited to [min, max]; a null bound is no bound."""
    return [inputs[0].shape]


def _unary_dtype(inputs: list[TensorSpec], a: dict[str, Any]) -> list[str]:
    dtype = inputs[0].dtype
    if a["function"] in UNARY_BOOL:
        return ["bool"]
    if a["function"] in UNARY_INTEGER or dtype in FLOATS:
        return [dtype]
    return ["float32"]


@op("Unary", attrs={"function": Attr("str", "identity", UNARY)}, dtypes=_unary_dtype)
def unary(inputs, a):
    """One elementwise function. not, isnan, isinf, isposinf and isneginf (ONNX IsInf's detect_positive /
    detect_negative) give bool; abs, neg, sign, floor, ceil, round (half to even)
    and identity keep the dtype; the others give the float input's dtype, or float32 for integers."""
    if a["function"] == "not" and inputs[0].dtype != "bool":
        raise ValueError(f"'not' takes a bool input, got {inputs[0].dtype}")
    return _same_shape(inputs, a)


for _name in ("Divide", "Power"):
    op(_name, inputs=(2, 2), dtypes=_same_dtype)(_elementwise)
op("Mod", attrs={"fmod": Attr("bool", False)}, inputs=(2, 2), dtypes=_same_dtype)(_elementwise)
op("Compare", attrs={"function": Attr("str", "equal", COMPARISONS)}, inputs=(2, 2), dtypes=_bool)(_elementwise)


@op("Logical", attrs={"function": Attr("str", "and", LOGICALS)}, inputs=(2, 2), dtypes=_bool)
def logical(inputs, a):
    """Elementwise and / or / xor of two bool inputs (broadcast)."""
    bad = [x.dtype for x in inputs if x.dtype != "bool"]
    if bad:
        raise ValueError(f"Logical takes bool inputs, got {bad[0]}")
    return _elementwise(inputs, a)


@op("Reduce", attrs={"function": Attr("str", "sum", REDUCTIONS), "axes": Attr("ints", None, nullable=True),
                     "keepdims": Attr("bool", True)}, dtypes=_same_dtype)
def reduce(inputs, a):
    """function reduced over axes (null or [] = every axis), the reduced axes kept as 1 when keepdims."""
    shape = inputs[0].shape
    axes = _axes(a["axes"], len(shape))
    if a["keepdims"]:
        return [tuple(1 if i in axes else d for i, d in enumerate(shape))]
    return [tuple(d for i, d in enumerate(shape) if i not in axes)]


def _arg_reduce(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
    shape = inputs[0].shape
    axis = _axis(a["axis"], len(shape))
    if a["keepdims"]:
        return [tuple(1 if i == axis else d for i, d in enumerate(shape))]
    return [tuple(d for i, d in enumerate(shape) if i != axis)]


_ARG_ATTRS = {"axis": Attr("int", 0), "keepdims": Attr("bool", True), "select_last_index": Attr("bool", False)}
for _name in ("ArgMax", "ArgMin"):
    op(_name, attrs=_ARG_ATTRS, dtypes=_int64)(_arg_reduce)


@op("Shape", attrs={"start": Attr("int", 0), "end": Attr("int", None, nullable=True)}, dtypes=_int64)
def shape(inputs, a):
    """The input's dims start:end (python slicing, clamped) as a 1-D int64 tensor."""
    rank = len(inputs[0].shape)
    return [(len(range(*slice(a["start"], a["end"]).indices(rank))),)]


@op("Resize", attrs={"size": Attr("ints", None, nullable=True), "scale": Attr("floats", None, nullable=True),
                     "mode": Attr("str", "nearest", RESIZE_MODES),
                     "coordinate_transformation_mode": Attr("str", "half_pixel", COORDINATE_MODES),
                     "nearest_mode": Attr("str", "round_prefer_floor", NEAREST_MODES),
                     "cubic_coeff_a": Attr("float", -0.75), "exclude_outside": Attr("bool", False),
                     "antialias": Attr("bool", False)},
    keeps_dtype=True)
def resize(inputs, a):
    """Resize (N, H, W, C) over H and W to size, or by scale (output dims floor(dim x scale)), as ONNX Resize.
    Also takes exclude_outside and antialias (ONNX's attrs of those names, default false; antialias widens
    the linear or cubic kernel when downsampling)."""
    x = inputs[0]
    if len(x.shape) != 4:
        raise ValueError(f"expected a rank-4 (N, H, W, C) input, got rank {len(x.shape)}")
    if (a["size"] is None) == (a["scale"] is None):
        raise ValueError("give exactly one of size and scale")
    if a["size"] is not None:
        if len(a["size"]) != 2 or min(a["size"]) < 1:
            raise ValueError(f"size must be two positive ints (H, W), got {a['size']}")
        return [(x.shape[0], *a["size"], x.shape[3])]
    if len(a["scale"]) != 2 or min(a["scale"]) <= 0:
        raise ValueError(f"scale must be two positive floats (H, W), got {a['scale']}")
    dims = [None if d is None else math.floor(d * s) for d, s in zip(x.shape[1:3], a["scale"])]
    return [(x.shape[0], *dims, x.shape[3])]


@op("Tile", attrs={"repeats": Attr("ints", [])}, keeps_dtype=True)
def tile(inputs, a):
    """The input repeated repeats[i] times along axis i (one entry per axis)."""
    shape, reps = inputs[0].shape, a["repeats"]
    if len(reps) != len(shape) or min(reps, default=0) < 0:
        raise ValueError(f"repeats must be {len(shape)} non-negative ints (one per axis), got {reps}")
    return [tuple(None if d is None else d * r for d, r in zip(shape, reps))]


@op("CumSum", attrs={"axis": Attr("int", 0), "exclusive": Attr("bool", False), "reverse": Attr("bool", False)},
    dtypes=_same_dtype)
def cumsum(inputs, a):
    """Cumulative sum along axis; exclusive leaves out the element itself, reverse sums from the end."""
    _axis(a["axis"], len(inputs[0].shape))
    return _same_shape(inputs, a)


@op("TopK", attrs={"k": Attr("int", 1), "axis": Attr("int", -1), "largest": Attr("bool", True),
                   "sorted": Attr("bool", True)}, outputs=2, dtypes=lambda i, a: [i[0].dtype, "int64"])
def top_k(inputs, a):
    """The k largest (or smallest) values along axis and their int64 indices, best first; equal values keep
    their index order (ONNX TopK; the output is sorted even when sorted is false, which ONNX allows)."""
    shape = list(inputs[0].shape)
    axis = _axis(a["axis"], len(shape))
    if a["k"] < 0 or (shape[axis] is not None and a["k"] > shape[axis]):
        raise ValueError(f"k {a['k']} is outside 0..{shape[axis]} (the size of axis {a['axis']})")
    shape[axis] = a["k"]
    return [tuple(shape), tuple(shape)]


def parse_einsum(equation: str, ranks: list[int]) -> tuple[list[str], str]:
    """Each input's subscripts and the output's, with '...' spelled out as upper-case letters (so numpy
    gets an explicit equation) and the implicit output (letters seen once, sorted) made explicit."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(ranks):
        raise ValueError(f"equation {equation!r} has {len(terms)} operands, got {len(ranks)} inputs")
    ell_rank = max((r - len(t.replace("...", "")) for t, r in zip(terms, ranks) if "..." in t), default=0)
    ell = string.ascii_uppercase[:ell_rank]
    spelled = []
    for t, r in zip(terms, ranks):
        letters = t.replace("...", "")
        if letters and not (letters.isalpha() and letters.islower()):
            raise ValueError(f"operand {t!r} of {equation!r} must use lower-case letters and '...'")
        if "..." in t:
            t = t.replace("...", ell[len(ell) - (r - len(letters)):])
        if len(t) != r:
            raise ValueError(f"operand {t!r} of {equation!r} has {len(t)} subscripts for a rank-{r} input")
        spelled.append(t)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {c: "".join(spelled).count(c) for c in set("".join(spelled)) if c.islower()}
        out = ell + "".join(sorted(c for c, n in counts.items() if n == 1))
    if any(c not in "".join(spelled) for c in out):
        raise ValueError(f"output subscripts of {equation!r} use a letter no operand has")
    return spelled, out


@op("Einsum", attrs={"equation": Attr("str", "")}, inputs=(1, None), dtypes=_same_dtype)
def einsum(inputs, a):
    """numpy einsum with equation (explicit '->' or implicit output; '...' allowed)."""
    terms, out = parse_einsum(a["equation"], [len(x.shape) for x in inputs])
    dims: dict[str, list[int | None]] = {}
    for t, x in zip(terms, inputs):
        for c, d in zip(t, x.shape):
            dims.setdefault(c, []).append(d)
    sizes = {c: _one_dim(c, d) for c, d in dims.items()}
    return [tuple(sizes[c] for c in out)]


def _one_dim(letter: str, dims: list[int | None]) -> int | None:
    """The size of an einsum subscript seen with ``dims`` (1 broadcasts, None is unknown)."""
    known = {d for d in dims if d is not None and d != 1}
    if len(known) > 1:
        raise ValueError(f"subscript {letter!r} has sizes {sorted(known)} in different operands")
    if known:
        return known.pop()
    return None if None in dims else 1
