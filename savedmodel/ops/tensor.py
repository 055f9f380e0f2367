"""Tensor ops: reshaping, merging, padding, cropping and resampling.

Axes and target shapes follow Keras: they exclude the batch axis where Keras'
layers do (Reshape, Permute), and include it where Keras' do (Concatenate).
"""

from __future__ import annotations

import math
from typing import Any

from savedmodel.ir import Shape, TensorSpec
from savedmodel.ops import Attr, op


def _prod(dims) -> int | None:
    return None if any(d is None for d in dims) else math.prod(dims)


@op("Flatten", keeps_dtype=True)
def flatten(inputs, a):
    """(batch, ...) -> (batch, product of the other dims)."""
    x = inputs[0]
    return [(x.shape[0], _prod(x.shape[1:]))]


@op("Reshape", attrs={"target_shape": Attr("ints", [-1])}, keeps_dtype=True)
def reshape(inputs, a):
    """Reshape every batch item to target_shape (one dim may be -1)."""
    x = inputs[0]
    target = list(a["target_shape"])
    if target.count(-1) > 1:
        raise ValueError("target_shape may hold -1 once")
    total = _prod(x.shape[1:])
    known = math.prod(d for d in target if d != -1)
    if -1 in target:
        target[target.index(-1)] = None if total is None else total // known if known else 0
    elif total is not None and total != known:
        raise ValueError(f"cannot reshape {total} values per item to {a['target_shape']}")
    if total is not None and total != _prod(target):
        raise ValueError(f"cannot reshape {total} values per item to {a['target_shape']}")
    return [(x.shape[0], *target)]


@op("Permute", attrs={"dims": Attr("ints", [1])}, keeps_dtype=True)
def permute(inputs, a):
    """Permute the non-batch axes; dims are 1-based, as in Keras."""
    x = inputs[0]
    if sorted(a["dims"]) != list(range(1, len(x.shape))):
        raise ValueError(f"dims must be a permutation of 1..{len(x.shape) - 1}")
    return [(x.shape[0], *(x.shape[d] for d in a["dims"]))]


@op("RepeatVector", attrs={"n": Attr("int", 1)}, keeps_dtype=True)
def repeat_vector(inputs, a):
    """(batch, features) -> (batch, n, features)."""
    x = inputs[0]
    if len(x.shape) != 2:
        raise ValueError("expected a rank-2 input (batch, features)")
    return [(x.shape[0], a["n"], x.shape[1])]


def broadcast(shapes: list[Shape]) -> Shape:
    """numpy broadcasting over shapes with unknown (None) dims."""
    rank = max(len(s) for s in shapes)
    out: list[int | None] = []
    for i in range(rank):
        dims = [s[len(s) - rank + i] for s in shapes if len(s) - rank + i >= 0]
        known = {d for d in dims if d is not None and d != 1}
        if len(known) > 1:
            raise ValueError(f"shapes {[list(s) for s in shapes]} do not broadcast")
        if known:
            out.append(known.pop())
        elif any(d is None for d in dims):
            out.append(None)
        else:
            out.append(1)
    return tuple(out)


def _elementwise(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
    return [broadcast([x.shape for x in inputs])]


for _name in ("Add", "Multiply", "Average"):
    op(_name, inputs=(1, None))(_elementwise)
for _name in ("Maximum", "Minimum"):
    op(_name, inputs=(1, None), keeps_dtype=True)(_elementwise)
op("Subtract", inputs=(2, 2))(_elementwise)


@op("Concatenate", attrs={"axis": Attr("int", -1)}, inputs=(1, None), keeps_dtype=True)
def concatenate(inputs, a):
    """Join the inputs along axis (batch axis included in the count)."""
    rank = len(inputs[0].shape)
    axis = a["axis"] % rank
    out = list(inputs[0].shape)
    for x in inputs[1:]:
        if len(x.shape) != rank:
            raise ValueError("inputs have different ranks")
        for i, (d, e) in enumerate(zip(out, x.shape)):
            if i != axis and d is not None and e is not None and d != e:
                raise ValueError(f"dims differ on axis {i}: {d} vs {e}")
            if i != axis and d is None:
                out[i] = e
    sizes = [x.shape[axis] for x in inputs]
    out[axis] = None if None in sizes else sum(sizes)
    return [tuple(out)]


@op("Dot", attrs={"axes": Attr("ints", [-1, -1]), "normalize": Attr("bool", False)}, inputs=(2, 2))
def dot(inputs, a):
    """Batched dot product over axes (one per input; batch axis counted)."""
    x, y = (s.shape for s in inputs)
    ax, ay = a["axes"][0] % len(x), a["axes"][1] % len(y)
    if ax == 0 or ay == 0:
        raise ValueError("Dot cannot contract the batch axis")
    if x[ax] is not None and y[ay] is not None and x[ax] != y[ay]:
        raise ValueError(f"contracted dims differ: {x[ax]} vs {y[ay]}")
    out = [x[0]] + [d for i, d in enumerate(x) if i not in (0, ax)] + [d for i, d in enumerate(y) if i not in (0, ay)]
    return [tuple(out) if len(out) > 1 else (x[0], 1)]


def _pad_or_crop(rank: int, sign: int):
    def rule(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
        x = inputs[0]
        if len(x.shape) != rank + 2:
            raise ValueError(f"expected a rank-{rank + 2} input")
        dims = []
        for n, (lo, hi) in zip(x.shape[1:-1], a["padding"] if rank > 1 else [a["padding"]]):
            size = None if n is None else n + sign * (lo + hi)
            if size is not None and size < 0:
                raise ValueError(f"cropping {lo}+{hi} exceeds the dim {n}")
            dims.append(size)
        return [(x.shape[0], *dims, x.shape[-1])]

    return rule


op("ZeroPadding1D", attrs={"padding": Attr("ints", [1, 1])}, keeps_dtype=True)(_pad_or_crop(1, 1))
op("ZeroPadding2D", attrs={"padding": Attr("pairs", [[1, 1], [1, 1]])}, keeps_dtype=True)(_pad_or_crop(2, 1))
op("Cropping1D", attrs={"cropping": Attr("ints", [1, 1])}, keeps_dtype=True)(
    lambda i, a: _pad_or_crop(1, -1)(i, {"padding": a["cropping"]}))
op("Cropping2D", attrs={"cropping": Attr("pairs", [[0, 0], [0, 0]])}, keeps_dtype=True)(
    lambda i, a: _pad_or_crop(2, -1)(i, {"padding": a["cropping"]}))


@op("UpSampling1D", attrs={"size": Attr("int", 2)}, keeps_dtype=True)
def upsampling1d(inputs, a):
    """Repeat each step size times."""
    x = inputs[0]
    return [(x.shape[0], None if x.shape[1] is None else x.shape[1] * a["size"], x.shape[2])]


@op("UpSampling2D", attrs={"size": Attr("ints", [2, 2]),
                           "interpolation": Attr("str", "nearest", ("nearest", "bilinear"))})
def upsampling2d(inputs, a):
    """Scale height and width by size, by nearest neighbour or bilinear interpolation."""
    x = inputs[0]
    if len(x.shape) != 4:
        raise ValueError("expected a rank-4 input")
    dims = [None if n is None else n * s for n, s in zip(x.shape[1:3], a["size"])]
    return [(x.shape[0], *dims, x.shape[3])]
