"""A .tflite file as a runtime model: the interface of ``runtime.Model``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from converters.lite.model import LiteModel, SignatureDef
from runtime.lite.interpreter import Interpreter
from runtime.model import Predictor, check_feeds, check_input
from savedmodel.ir import TensorSpec

DEFAULT_SIGNATURE = "serving_default"


def _spec(model: LiteModel, alias: str, index: int) -> TensorSpec:
    t = model.tensors[index]
    return TensorSpec(alias, t.dtype, tuple(None if d < 0 else d for d in t.signature))


class LiteSignatureFunction:
    """One SignatureDef: ``fn(**inputs) -> {output alias: array}``."""

    def __init__(self, model: LiteModel, signature: SignatureDef, interpreter: Interpreter) -> None:
        self.name = signature.key
        self.method = "predict"
        self._signature = signature
        self._interpreter = interpreter
        self.inputs = [_spec(model, a, i) for a, i in signature.inputs.items()]
        self.outputs = [_spec(model, a, i) for a, i in signature.outputs.items()]

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        arrays = check_feeds(self.name, self.inputs, inputs)
        feeds = {self._signature.inputs[alias]: array for alias, array in arrays.items()}
        values = self._interpreter.run(feeds)
        return {alias: values[i] for alias, i in self._signature.outputs.items()}


class LiteRuntimeModel(Predictor):
    """A loaded .tflite model, run with TFLite's reference integer arithmetic
    (``kernels="builtin"``: the rounding of LiteRT's optimized kernels).

    >>> m = runtime.load("mnist_int8.tflite")     # doctest: +SKIP
    >>> m.predict(x).shape                        # doctest: +SKIP
    (32, 10)
    """

    def __init__(self, model: LiteModel, source: object = "<model>", kernels: str = "reference") -> None:
        self.lite = model
        self.source = str(source)
        self.interpreter = Interpreter(model, source, kernels)
        sigs = list(model.signatures) or [SignatureDef(
            DEFAULT_SIGNATURE,
            {model.tensors[i].name: i for i in model.inputs},
            {model.tensors[i].name: i for i in model.outputs},
        )]
        self.signatures = {s.key: LiteSignatureFunction(model, s, self.interpreter) for s in sigs}
        default = self.signatures.get(DEFAULT_SIGNATURE) or next(iter(self.signatures.values()))
        self._default = default
        self.inputs: list[TensorSpec] = default.inputs
        self.outputs: list[TensorSpec] = default.outputs

    def run_all(self, feeds: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Every tensor's value (by tensor name) for inputs given by default-signature alias."""
        sig = self._default._signature
        arrays = {sig.inputs[a]: check_input(s, a, feeds[a]) for a, s in zip(sig.inputs, self.inputs, strict=False)}
        values = self.interpreter.run(arrays, keep=True)
        return {self.lite.tensors[i].name: v for i, v in values.items()}

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.inputs)
        outs = ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in self.outputs)
        return f"<runtime.lite model {self.source} inputs=[{ins}] outputs=[{outs}]>"
