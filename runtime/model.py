"""The runtime's Model: signatures over one planned graph, with input checks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from runtime.errors import InputError
from runtime.plan import Plan
from savedmodel.bundle import Bundle, Signature
from savedmodel.dtypes import to_numpy
from savedmodel.ir import Graph, TensorSpec


def _describe(spec: TensorSpec) -> str:
    dims = ", ".join("None" if d is None else str(d) for d in spec.shape)
    return f"{spec.dtype} with shape ({dims}{',' if len(spec.shape) == 1 else ''})"


def check_input(spec: TensorSpec, alias: str, value: Any) -> np.ndarray:
    """``value`` as an array of the spec's dtype, or InputError naming ``alias``."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as e:
        expected = _describe(spec)
        raise InputError(
            f"input {alias!r}: expected {expected}, received a value numpy cannot read ({e})",
            input=alias, expected=expected, received=type(value).__name__,
        ) from e
    want = to_numpy(spec.dtype)
    castable = (
        arr.dtype == want
        or (want.kind == "f" and arr.dtype.kind in "fiub")
        or (want.kind in "iu" and arr.dtype.kind in "iub")
        or (want.kind == "b" and arr.dtype.kind == "b")
        or (want.kind == "O" and arr.dtype.kind in "OSU")
    )
    shape_ok = arr.ndim == len(spec.shape) and all(d is None or d == n for d, n in zip(spec.shape, arr.shape))
    if not castable or not shape_ok:
        expected, received = _describe(spec), f"{arr.dtype} with shape {arr.shape}"
        raise InputError(
            f"input {alias!r}: expected {expected}, received {received}",
            input=alias, expected=expected, received=received,
        )
    if arr.dtype != want:
        arr = arr.astype(want)
    return arr


class SignatureFunction:
    """One signature of a Model: ``fn(**inputs) -> {output alias: array}``."""

    def __init__(self, name: str, signature: Signature, plan: Plan) -> None:
        self.name = name
        self.signature = signature
        self.method = signature.method
        self.inputs = [TensorSpec(a, s.dtype, s.shape) for a, s in signature.inputs.items()]
        self.outputs = [TensorSpec(a, s.dtype, s.shape) for a, s in signature.outputs.items()]
        self._plan = plan

    def __call__(self, **inputs: Any) -> dict[str, np.ndarray]:
        arrays = check_feeds(self.name, self.inputs, inputs)
        values = self._plan.run({spec.name: arrays[alias] for alias, spec in self.signature.inputs.items()})
        return {alias: values[spec.name] for alias, spec in self.signature.outputs.items()}


def check_feeds(signature: str, specs: list[TensorSpec], inputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The inputs of a signature (``specs`` named by alias) checked and converted, by alias.

    Raises InputError for missing or unknown names, a bad dtype or shape, and
    inputs with different batch sizes.
    """
    expected = [s.name for s in specs]
    missing = [a for a in expected if a not in inputs]
    unknown = [a for a in inputs if a not in expected]
    if missing or unknown:
        parts = [f"missing {missing}" if missing else "", f"unknown {unknown}" if unknown else ""]
        raise InputError(
            f"signature {signature!r}: {' and '.join(p for p in parts if p)} inputs; expected inputs {expected}",
            expected=str(expected), received=str(sorted(inputs)),
        )
    arrays = {spec.name: check_input(spec, spec.name, inputs[spec.name]) for spec in specs}
    batches = {a.shape[0] for a in arrays.values() if a.ndim}
    if len(batches) > 1:
        raise InputError(
            f"signature {signature!r}: inputs have different batch sizes {sorted(batches)}",
            expected="one batch size", received=str(sorted(batches)),
        )
    return arrays


class Predictor:
    """``predict`` over a default signature; ``inputs``/``outputs`` are its specs."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    _default: Any

    def predict(self, x: Any) -> Any:
        """Run the default signature.

        ``x`` is an array (single-input models) or a dict by input name; the
        result is an array (single output) or a dict by output name.
        """
        names = [s.name for s in self.inputs]
        if isinstance(x, Mapping):
            inputs = dict(x)
        elif len(names) == 1:
            inputs = {names[0]: x}
        else:
            raise InputError(
                f"this model has {len(names)} inputs; pass a dict with keys {names}",
                expected=str(names), received=type(x).__name__,
            )
        out = self._default(**inputs)
        return next(iter(out.values())) if len(out) == 1 else out


class Model(Predictor):
    """A loaded model, ready to ``predict``.

    >>> m = runtime.load("models/mnist")          # doctest: +SKIP
    >>> m.inputs[0].shape, m.predict(x).shape     # doctest: +SKIP
    ((None, 28, 28, 1), (32, 10))
    """

    def __init__(self, graph: Graph, signatures: Mapping[str, Signature], *, bundle: Bundle | None = None) -> None:
        if not signatures:
            signatures = {"serving_default": Signature.from_graph(graph)}
        self.graph = graph
        self.bundle = bundle
        self._plan = Plan(graph)
        self.signatures = {name: SignatureFunction(name, sig, self._plan) for name, sig in signatures.items()}
        default = self.signatures.get("serving_default") or next(iter(self.signatures.values()))
        self._default = default
        self.inputs: list[TensorSpec] = default.inputs
        self.outputs: list[TensorSpec] = default.outputs

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> Model:
        return cls(bundle.graph, bundle.signatures, bundle=bundle)

    def __repr__(self) -> str:
        ins = ", ".join(f"{s.name}: {_describe(s)}" for s in self.inputs)
        outs = ", ".join(f"{s.name}: {_describe(s)}" for s in self.outputs)
        return f"<runtime.Model inputs=[{ins}] outputs=[{outs}] signatures={list(self.signatures)}>"
