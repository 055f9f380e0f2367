"""Layouts: how an IR tensor relates to the ONNX tensor it holds.

ONNX is channels-first (NCHW), the IR channels-last (NHWC). A run-time tensor
is stored as ``ir = onnx.transpose(perm)``. Layout-sensitive converters
(convolutions, pooling, batch norm, resize) ask for the channels-last
permutation; elementwise ops keep whatever layout their input has; axis
attributes (concat, softmax, reductions, slices) are mapped through ``perm``;
ONNX Transpose nodes only change ``perm`` and emit nothing. A transpose is
emitted only where a converter needs a layout the tensor is not in, so the
inverse transposes PyTorch exports (and NCHW<->NHWC pairs) cancel.
"""

from __future__ import annotations

from collections.abc import Sequence


def identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def channels_last(rank: int) -> tuple[int, ...]:
    """(0, 2, ..., rank-1, 1): NCHW -> NHWC for any number of spatial axes."""
    return (0, *range(2, rank), 1) if rank >= 3 else identity(rank)


def inverse(perm: Sequence[int]) -> tuple[int, ...]:
    out = [0] * len(perm)
    for i, p in enumerate(perm):
        out[p] = i
    return tuple(out)


def permute_shape(shape: Sequence[int | None], perm: Sequence[int]) -> tuple[int | None, ...]:
    return tuple(shape[p] for p in perm)


def transpose_between(current: Sequence[int], wanted: Sequence[int]) -> tuple[int, ...]:
    """The transpose taking a tensor stored in ``current`` to one stored in ``wanted``."""
    where = inverse(current)
    return tuple(where[p] for p in wanted)


def compose(perm: Sequence[int], then: Sequence[int]) -> tuple[int, ...]:
    """The layout of ``onnx.transpose(then)`` given ``onnx`` stored in ``perm``:
    the IR tensor is unchanged, only its relation to the new ONNX tensor."""
    where = inverse(then)
    return tuple(where[p] for p in perm)


def ir_axis(axis: int, perm: Sequence[int]) -> int:
    """The IR axis holding ONNX axis ``axis`` (negative axes allowed)."""
    return inverse(perm)[axis % len(perm)]
