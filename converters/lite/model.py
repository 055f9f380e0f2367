"""The in-memory form of a .tflite file: what the writer takes and the reader gives.

One subgraph (the only kind converters.lite writes; the reader refuses
others), tensors addressed by index, constant data as numpy arrays and
quantization as :class:`QuantParams`.

>>> q = QuantParams.per_tensor(0.5, -3)
>>> q.dequantize(np.array([-3, 1], np.int8))
array([0., 2.], dtype=float32)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class QuantParams:
    """Affine quantization ``real = scale * (q - zero_point)``.

    ``scale`` and ``zero_point`` hold one entry (per tensor) or one per slice
    along ``axis`` (per channel).
    """

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int = 0

    def __post_init__(self) -> None:
        self.scale = np.atleast_1d(np.asarray(self.scale, np.float32))
        self.zero_point = np.atleast_1d(np.asarray(self.zero_point, np.int64))

    @classmethod
    def per_tensor(cls, scale: float, zero_point: int) -> QuantParams:
        return cls(np.array([scale], np.float32), np.array([zero_point], np.int64), 0)

    @property
    def per_channel(self) -> bool:
        return self.scale.size > 1

    def same_as(self, other: QuantParams | None) -> bool:
        return (
            other is not None
            and self.scale.shape == other.scale.shape
            and bool(np.all(self.scale == other.scale))
            and bool(np.all(self.zero_point == other.zero_point))
            and (not self.per_channel or self.axis == other.axis)
        )

    def _along(self, v: np.ndarray, ndim: int) -> np.ndarray:
        if not self.per_channel:
            return v.reshape(())
        shape = [1] * ndim
        shape[self.axis] = -1
        return v.reshape(shape)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """float32 values of the integers q."""
        q = np.asarray(q)
        zp = self._along(self.zero_point, q.ndim)
        scale = self._along(self.scale, q.ndim)
        return ((q.astype(np.int64) - zp) * scale.astype(np.float64)).astype(np.float32)

    def __repr__(self) -> str:
        if self.per_channel:
            return f"QuantParams({self.scale.size} scales along axis {self.axis})"
        return f"QuantParams(scale={float(self.scale[0]):.6g}, zero_point={int(self.zero_point[0])})"


@dataclass
class Tensor:
    """A tensor of the subgraph; ``data`` is set for constants.

    ``shape`` is static (1 for a dynamic batch, as TF writes it);
    ``shape_signature`` has -1 where a dim is dynamic (None when all are known).
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...] | None = None
    data: np.ndarray | None = None
    quant: QuantParams | None = None

    @property
    def is_constant(self) -> bool:
        return self.data is not None

    @property
    def signature(self) -> tuple[int, ...]:
        """The shape with -1 for dynamic dims."""
        return self.shape_signature if self.shape_signature is not None else self.shape


@dataclass
class Operator:
    """One builtin op: ``outputs = op(inputs)``; -1 marks an absent optional input.

    ``options`` uses the schema's snake_case field names, enums by member
    name (``{"padding": "SAME", "fused_activation_function": "RELU"}``).
    """

    op: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    source: str | None = None  # the IR node it was lowered from (not stored in the file)


@dataclass
class SignatureDef:
    """A named entry point: input and output aliases -> tensor indices."""

    key: str
    inputs: dict[str, int]
    outputs: dict[str, int]


@dataclass
class LiteModel:
    """One .tflite model with a single subgraph."""

    tensors: list[Tensor] = field(default_factory=list)
    operators: list[Operator] = field(default_factory=list)
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    signatures: list[SignatureDef] = field(default_factory=list)
    description: str = ""
    metadata: dict[str, bytes] = field(default_factory=dict)
    subgraph_name: str = "main"

    def add_tensor(self, tensor: Tensor) -> int:
        self.tensors.append(tensor)
        return len(self.tensors) - 1

    def add_constant(self, name: str, data: np.ndarray, quant: QuantParams | None = None) -> int:
        data = np.asarray(data)
        if not data.flags.c_contiguous:
            data = data.copy()  # (ascontiguousarray would turn a scalar into shape (1,))
        return self.add_tensor(Tensor(name, str(data.dtype), tuple(data.shape), None, data, quant))

    def add_operator(self, op: str, inputs: list[int], outputs: list[int], options: dict[str, Any] | None = None,
                     version: int = 1) -> Operator:
        operator = Operator(op, list(inputs), list(outputs), dict(options or {}), version)
        self.operators.append(operator)
        return operator

    def producers(self) -> dict[int, Operator]:
        return {t: o for o in self.operators for t in o.outputs}

    def consumers(self) -> dict[int, list[Operator]]:
        out: dict[int, list[Operator]] = {}
        for o in self.operators:
            for t in o.inputs:
                if t >= 0:
                    out.setdefault(t, []).append(o)
        return out

    def op_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for o in self.operators:
            counts[o.op] = counts.get(o.op, 0) + 1
        return counts


def compact(model: LiteModel) -> dict[int, int]:
    """Drop tensors nothing refers to and renumber the rest in place; returns old -> new index."""
    used: set[int] = set(model.inputs) | set(model.outputs)
    for o in model.operators:
        used.update(t for t in o.inputs if t >= 0)
        used.update(o.outputs)
    for s in model.signatures:
        used.update(s.inputs.values())
        used.update(s.outputs.values())
    mapping = {old: new for new, old in enumerate(sorted(used))}
    model.tensors = [model.tensors[old] for old in sorted(used)]

    def remap(t: int) -> int:
        return -1 if t < 0 else mapping[t]

    for o in model.operators:
        o.inputs = [remap(t) for t in o.inputs]
        o.outputs = [remap(t) for t in o.outputs]
    model.inputs = [mapping[t] for t in model.inputs]
    model.outputs = [mapping[t] for t in model.outputs]
    for s in model.signatures:
        s.inputs = {a: mapping[t] for a, t in s.inputs.items()}
        s.outputs = {a: mapping[t] for a, t in s.outputs.items()}
    return mapping
