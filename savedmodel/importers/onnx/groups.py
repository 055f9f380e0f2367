"""Grouped layouts: ONNX tensors whose axes are merges of IR axes.

PyTorch's attention reshapes (seq, batch, embed) to (seq, batch * heads,
head_dim) and back. The IR keeps the batch as axis 0 of every tensor, so such
a tensor is stored unmerged, e.g. as IR (batch, seq, heads, head_dim), and
described by groups: ONNX axis k is the row-major merge of the IR axes
``groups[k]``. Reshapes regroup (splitting an IR axis with an IR Reshape when
needed), Transposes permute the groups, and matrix products, softmax and layer
norm work on IR axes directly. A grouped tensor is materialised in ONNX's own
layout only when a converter needs it and its batch axis is not merged.
"""

from __future__ import annotations

import math

from savedmodel.errors import UnsupportedError
from savedmodel.importers.onnx.layout import inverse
from savedmodel.importers.onnx.values import Batch, Dim, Dyn

Groups = tuple[tuple[int, ...], ...]


def groups_of(dyn: Dyn) -> Groups:
    """The groups of any non-flattened run-time tensor (one IR axis per ONNX axis for a permuted one)."""
    if dyn.groups is not None:
        return dyn.groups
    where = inverse(dyn.perm)
    return tuple((where[k],) for k in range(len(dyn.perm)))


def make_dyn(ir: str, groups: Groups, ir_rank: int) -> Dyn:
    """A Dyn for ``groups``, as a plain permutation when every group is one IR axis."""
    if all(len(g) == 1 for g in groups) and len(groups) == ir_rank:
        return Dyn(ir, inverse([g[0] for g in groups]))
    return Dyn(ir, (), None, groups)


def sym_dim(ir_shape: tuple[int | None, ...], group: tuple[int, ...]) -> Dim:
    """The size of one ONNX axis: an int, or a multiple of the batch when the group holds IR axis 0."""
    known = math.prod(ir_shape[a] for a in group if ir_shape[a] is not None)  # type: ignore[misc]
    return Batch(known) if any(ir_shape[a] is None for a in group) else known


def show_dims(dims: list) -> list:
    """Dims for messages: batch multiples as 'batch' / 'k*batch'."""
    return [(f"{d.coef}*batch" if d.coef != 1 else "batch") if isinstance(d, Batch) else d for d in dims]


def regroup(ir_shape: tuple[int | None, ...], groups: Groups, target: list[Dim]) -> tuple[Groups, dict[int, int]]:
    """The groups of a reshape to ``target`` (sizes, batch multiples as Batch), and the IR axes that must be
    split first (axis -> size of its leading part). Raises ValueError when the reshape cannot be expressed."""
    order = [a for g in groups for a in g]
    sizes: dict[int, Dim] = {a: Batch(1) if ir_shape[a] is None else ir_shape[a] for a in order}  # type: ignore[misc]
    splits: dict[int, int] = {}
    queue = list(order)
    out: list[tuple[int, ...]] = []
    next_axis = len(ir_shape)
    for want in target:
        taken: list[int] = []
        coef, batch = 1, False
        while _smaller(coef, batch, want):
            if not queue:
                raise ValueError("the target has more elements than the tensor")
            a = queue.pop(0)
            size = sizes[a]
            if isinstance(size, Batch):
                batch, coef = True, coef * size.coef
                taken.append(a)
                continue
            wanted = want.coef if isinstance(want, Batch) else want
            need = wanted // coef if wanted % coef == 0 else 0
            if need and size > need and size % need == 0:
                splits[a] = need
                sizes[next_axis] = size // need
                queue.insert(0, next_axis)
                next_axis += 1
                size = need
            coef *= size
            taken.append(a)
        while queue and sizes[queue[0]] == 1 and not _smaller(coef, batch, want):
            taken.append(queue.pop(0))
        if not _equal(coef, batch, want):
            raise ValueError(f"cannot form a dim of {want} from the tensor's axes")
        out.append(tuple(taken))
    if queue:
        raise ValueError("the target has fewer elements than the tensor")
    return tuple(out), splits


def _smaller(coef: int, batch: bool, want: Dim) -> bool:
    if isinstance(want, Batch):
        return not batch or coef < want.coef
    return not batch and coef < want


def _equal(coef: int, batch: bool, want: Dim) -> bool:
    if isinstance(want, Batch):
        return batch and coef == want.coef
    return not batch and coef == want


def split_axes(ir_shape: tuple[int | None, ...], groups: Groups, splits: dict[int, int]) -> tuple[list, Groups]:
    """The IR shape after splitting ``splits`` (new trailing parts numbered from len(ir_shape) in order of
    creation), renumbered so IR axes follow their split order, and the groups renumbered to match."""
    layout: list[int] = []
    extra = len(ir_shape)
    parts: dict[int, list[int]] = {}
    sizes: dict[int, int | None] = dict(enumerate(ir_shape))
    for axis, lead in splits.items():
        parts[axis] = [axis, extra]
        sizes[extra] = sizes[axis] // lead  # type: ignore[operator]
        sizes[axis] = lead
        extra += 1
    for a in range(len(ir_shape)):
        layout.extend(_expand(a, parts))
    number = {a: i for i, a in enumerate(layout)}
    return [sizes[a] for a in layout], tuple(tuple(number[a] for a in g) for g in groups)


def _expand(axis: int, parts: dict[int, list[int]]) -> list[int]:
    if axis not in parts:
        return [axis]
    head, tail = parts[axis]
    return [head, *_expand(tail, parts)]


def single_axis(groups: Groups, axis: int, what: str) -> int:
    """The one IR axis behind ONNX axis ``axis``, or UnsupportedError."""
    group = groups[axis]
    if len(group) != 1:
        raise UnsupportedError(f"{what} over an axis that merges IR axes {list(group)} is not supported")
    return group[0]
