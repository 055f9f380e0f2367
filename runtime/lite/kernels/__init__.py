"""Kernels of the .tflite runtime, keyed by TFLite builtin op name.

Where LiteRT's optimized ("builtin") kernels round differently from its
reference kernels (FULLY_CONNECTED, QUANTIZE, DEQUANTIZE, 4-D MEAN with
keep_dims), ``OpContext.kernels == "builtin"`` selects their arithmetic.

A kernel is registered as a *prepare* function, ``prepare(ctx) -> run``,
called once at load (as TFLite's ``Prepare``: fixed-point multipliers,
activation ranges, weight layouts are computed there), returning
``run(*inputs) -> array | tuple`` which only does arithmetic. Integer kernels
follow TFLite's reference kernels (``reference_integer_ops``) bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from converters.lite.model import LiteModel, Operator, QuantParams, Tensor
from runtime.errors import RuntimeModelError
from runtime.lite import fixedpoint as fx

Run = Callable[..., Any]
Prepare = Callable[["OpContext"], Run]
KERNELS: dict[str, Prepare] = {}
KERNEL_SETS = ("reference", "builtin")

INT8_MIN, INT8_MAX = -128, 127


def kernel(*names: str) -> Callable[[Prepare], Prepare]:
    """Register the decorated prepare function for the builtin ops ``names``."""

    def register(fn: Prepare) -> Prepare:
        for name in names:
            if name in KERNELS:
                raise ValueError(f"kernel {name!r} is registered twice")
            KERNELS[name] = fn
        return fn

    return register


class KernelError(RuntimeModelError):
    """A kernel cannot run an op as the file describes it (raised at load)."""


@dataclass
class OpContext:
    """What a prepare function sees: the op, its tensors and the model."""

    op: Operator
    model: LiteModel
    index: int
    folded: dict[int, np.ndarray] | None = None  # tensors computed at load time (DEQUANTIZE of constants)
    kernels: str = "reference"  # "builtin": mimic LiteRT's optimized kernels where they round differently

    @property
    def options(self) -> dict[str, Any]:
        return self.op.options

    def input(self, i: int) -> Tensor | None:
        if i >= len(self.op.inputs) or self.op.inputs[i] < 0:
            return None
        return self.model.tensors[self.op.inputs[i]]

    def output(self, i: int = 0) -> Tensor:
        return self.model.tensors[self.op.outputs[i]]

    def constant(self, i: int) -> np.ndarray | None:
        t = self.input(i)
        if t is None:
            return None
        if self.folded and self.op.inputs[i] in self.folded:
            return self.folded[self.op.inputs[i]]
        return t.data

    def fail(self, message: str) -> KernelError:
        return KernelError(f"operator {self.index} ({self.op.op}): {message}")

    def quant(self, t: Tensor | None, what: str) -> QuantParams:
        if t is None or t.quant is None:
            raise self.fail(f"{what} tensor has no quantization parameters")
        return t.quant


def scale_zp(q: QuantParams) -> tuple[float, int]:
    """The per-tensor (scale, zero point) as Python float (float32 value) and int."""
    return float(np.float32(q.scale[0])), int(q.zero_point[0])


def activation_range_int8(activation: str, out: QuantParams) -> tuple[int, int]:
    """TFLite's CalculateActivationRangeQuantized for an int8 output."""
    scale, zp = np.float32(out.scale[0]), int(out.zero_point[0])

    def quantize(v: float) -> int:
        return zp + int(fx.round_half_away(np.float32(v) / scale))

    if activation == "RELU":
        return max(INT8_MIN, quantize(0.0)), INT8_MAX
    if activation == "RELU6":
        return max(INT8_MIN, quantize(0.0)), min(INT8_MAX, quantize(6.0))
    if activation == "RELU_N1_TO_1":
        return max(INT8_MIN, quantize(-1.0)), min(INT8_MAX, quantize(1.0))
    if activation in ("NONE", None):
        return INT8_MIN, INT8_MAX
    raise KernelError(f"fused activation {activation!r} is not supported on int8 outputs")


def float_activation(x: np.ndarray, activation: str | None) -> np.ndarray:
    """A fused activation on float32 values, in place where possible."""
    if activation in ("NONE", None):
        return x
    if activation == "RELU":
        return np.maximum(x, np.float32(0), out=x)
    if activation == "RELU6":
        return np.clip(x, np.float32(0), np.float32(6), out=x)
    if activation == "RELU_N1_TO_1":
        return np.clip(x, np.float32(-1), np.float32(1), out=x)
    if activation == "TANH":
        return np.tanh(x, out=x)
    raise KernelError(f"fused activation {activation!r} is not supported")


def to_int8(acc: np.ndarray, lo: int = INT8_MIN, hi: int = INT8_MAX) -> np.ndarray:
    return np.clip(acc, lo, hi).astype(np.int8)


def get_prepare(name: str) -> Prepare:
    try:
        return KERNELS[name]
    except KeyError:
        from runtime.errors import UnsupportedOpError

        raise UnsupportedOpError(name, sorted(KERNELS)) from None


# Importing the kernel modules fills KERNELS.
from runtime.lite.kernels import (  # noqa: E402,F401
    activations,
    conv,
    elementary,
    elementwise,
    matmul,
    pooling,
    quant,
    shape,
)
