"""Plan a LiteModel once (kernels prepared, slots released after last use), then run it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from converters.lite.model import LiteModel
from runtime.lite.kernels import KERNEL_SETS, OpContext, get_prepare
from savedmodel.errors import FormatError


@dataclass(frozen=True)
class Step:
    op: str
    run: Callable[..., Any]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    release: tuple[int, ...]


class Interpreter:
    """Runs the operators of a LiteModel in file order on numpy arrays.

    >>> it = Interpreter(reader.read("m.tflite"))      # doctest: +SKIP
    >>> it.run({0: x})[it.model.outputs[0]]              # doctest: +SKIP
    """

    def __init__(self, model: LiteModel, source: object = "<model>", kernels: str = "reference") -> None:
        if kernels not in KERNEL_SETS:
            raise ValueError(f"unknown kernels {kernels!r}; expected one of {', '.join(KERNEL_SETS)}")
        self.model = model
        self.kernels = kernels
        self.constants = {i: t.data for i, t in enumerate(model.tensors) if t.data is not None}
        available = set(self.constants) | set(model.inputs)
        last_use: dict[int, int] = {}
        for k, op in enumerate(model.operators):
            for t in op.inputs:
                if t < 0:
                    continue
                if t not in available:
                    raise FormatError(source, f"operator {k} ({op.op}) reads tensor {t} "
                                              f"({model.tensors[t].name!r}) before any operator writes it")
                last_use[t] = k
            available.update(op.outputs)
        missing = [t for t in model.outputs if t not in available]
        if missing:
            raise FormatError(source, f"subgraph outputs {missing} are produced by no operator")
        # DEQUANTIZE of a constant (float16 weights) runs once, here, as TFLite does at Prepare.
        folded: dict[int, np.ndarray] = {}
        for k, op in enumerate(model.operators):
            if op.op == "DEQUANTIZE" and op.inputs[0] in self.constants:
                run = get_prepare(op.op)(OpContext(op, model, k, None, kernels))
                folded[op.outputs[0]] = run(self.constants[op.inputs[0]])
        self.constants.update(folded)
        keep = set(model.outputs) | set(self.constants)
        steps = []
        for k, op in enumerate(model.operators):
            if op.outputs and op.outputs[0] in folded:
                continue
            run = get_prepare(op.op)(OpContext(op, model, k, folded, kernels))
            release = tuple(t for t in set(op.inputs) if t >= 0 and t not in keep and last_use.get(t) == k)
            steps.append(Step(op.op, run, tuple(op.inputs), tuple(op.outputs), release))
        self.steps = steps

    def run(self, feeds: dict[int, np.ndarray], keep: bool = False) -> dict[int, np.ndarray]:
        """Run every operator on ``feeds`` (tensor index -> array); the subgraph outputs
        (every tensor when ``keep``) by tensor index."""
        values: dict[int, Any] = dict(self.constants)
        values.update(feeds)
        for step in self.steps:
            result = step.run(*[values[t] if t >= 0 else None for t in step.inputs])
            if len(step.outputs) == 1:
                values[step.outputs[0]] = result
            else:
                for t, r in zip(step.outputs, result, strict=False):
                    values[t] = r
            if not keep:
                for t in step.release:
                    values.pop(t, None)
        if keep:
            return values
        return {t: values[t] for t in self.model.outputs}
