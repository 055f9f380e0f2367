"""What an ONNX tensor name stands for while the importer walks the graph.

- a numpy array: a constant (initializer, Constant node, or folded at import);
- :class:`Dyn`: a tensor computed at run time by IR nodes, stored in some
  layout (``perm``), possibly as a lazily flattened channels-last tensor;
- :class:`SymShape`: a 1-D integer tensor (or scalar) known at import except
  for multiples of the dynamic batch size (``Shape(x)`` and arithmetic on it);
- :class:`Fill`: ``ConstantOfShape`` of a symbolic shape (e.g. zero initial
  RNN states of batch size);
- :data:`UNAVAILABLE`: the output of a node that could not be converted (its
  error is already collected; consumers are skipped).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """``coef`` times the dynamic batch size."""

    coef: int = 1

    def __mul__(self, other: int) -> Batch:
        return Batch(self.coef * int(other))

    __rmul__ = __mul__


Dim = int | Batch


@dataclass(frozen=True)
class SymShape:
    """An integer tensor with batch-dependent entries; ``scalar`` for a 0-d value."""

    entries: tuple[Dim, ...]
    scalar: bool = False

    @property
    def known(self) -> bool:
        return not any(isinstance(e, Batch) for e in self.entries)

    def array(self) -> np.ndarray:
        values = np.array([int(e) for e in self.entries], np.int64)  # type: ignore[arg-type]
        return values.reshape(()) if self.scalar else values


def make_sym(entries: list[Dim], scalar: bool = False) -> SymShape | np.ndarray:
    """A SymShape, or the plain int64 array when no entry depends on the batch."""
    sym = SymShape(tuple(entries), scalar)
    return sym.array() if sym.known else sym


@dataclass(frozen=True)
class Fill:
    """A tensor of shape ``shape`` (batch-dependent) filled with ``value``."""

    shape: tuple[Dim, ...]
    value: np.ndarray


@dataclass(frozen=True)
class Flat:
    """A 2-D tensor produced by flattening a permuted tensor: IR feature j is
    ONNX feature ``order[j]``. ``source`` is the tensor before flattening."""

    order: np.ndarray
    source: Dyn


@dataclass(frozen=True)
class Dyn:
    """A run-time tensor: ``ir`` is the IR tensor holding ONNX's tensor
    transposed by ``perm`` (``ir = onnx.transpose(perm)``); ``flat`` marks a
    flattened tensor whose features are in another order.

    ``groups`` (with ``perm`` empty) describes tensors a transpose cannot,
    such as attention's (seq, batch * heads, head_dim) whose batch axis is
    merged with another: ONNX axis k is the row-major merge of IR axes
    ``groups[k]`` (an empty group is a size-1 axis). See groups.py."""

    ir: str
    perm: tuple[int, ...]
    flat: Flat | None = None
    groups: tuple[tuple[int, ...], ...] | None = None


class _Unavailable:
    def __repr__(self) -> str:
        return "UNAVAILABLE"


UNAVAILABLE = _Unavailable()

Value = np.ndarray | Dyn | SymShape | Fill | _Unavailable
