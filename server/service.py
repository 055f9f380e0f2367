"""The protocol-agnostic layer between the HTTP routes and the runtime.

Routes parse their protocol's payload into numpy arrays and call
``InferenceService.infer``; it leases the model version, picks and checks
the signature, validates every input (so a bad request never reaches a
batch), runs the signature off the event loop (merged with other requests
when batching is on) within the request timeout, and returns the outputs.

>>> result = await service.infer(ModelRef("mnist"), "serving_default", lambda fn: {"x": x})  # doctest: +SKIP
>>> result.version, result.outputs["probs"].shape                                          # doctest: +SKIP
(3, (1, 10))
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

import runtime
from savedmodel.dtypes import as_dtype, to_numpy
from server.errors import DeadlineExceeded, InvalidArgument, PayloadTooLarge
from server.manager import Lease, ModelManager

DEFAULT_SIGNATURE = "serving_default"
METHOD_NOUN = {"classify": "classification", "regress": "regression", "predict": "prediction"}

Inputs = dict[str, np.ndarray]


class Runner(Protocol):
    def submit(self, model: str, key: object, fn: Callable[..., Inputs], inputs: Inputs,
               rows: int) -> asyncio.Future[Inputs]: ...


@dataclass(frozen=True)
class ModelRef:
    """Which servable a request names: the latest version, a specific version, or a label."""

    name: str
    version: int | None = None
    label: str | None = None


@dataclass
class InferResult:
    name: str
    version: int
    signature_name: str
    function: runtime.SignatureFunction
    model: runtime.Model
    outputs: Inputs


def dims_text(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


def _castable(have: np.dtype, want: np.dtype) -> bool:
    if want.kind == "f":
        return have.kind in "fiub"
    if want.kind in "iu":
        return have.kind in "iub"
    if want.kind == "b":
        return have.kind == "b"
    return have.kind in "OSU"


def check_sizes(inputs: Inputs, max_elements: int) -> None:
    """PayloadTooLarge (413) naming the first input with more than ``max_elements`` elements (0: no limit)."""
    if not max_elements:
        return
    for name, arr in inputs.items():
        if arr.size > max_elements:
            raise PayloadTooLarge(f"Input '{name}' has {arr.size} elements (shape {dims_text(arr.shape)}); the "
                                  f"server accepts at most {max_elements} elements per input tensor")


def validate_inputs(fn: runtime.SignatureFunction, signature_name: str, inputs: Inputs,
                    max_elements: int = 0) -> tuple[Inputs, int | None]:
    """Inputs cast to the signature's dtypes and checked against its shapes; and the batch size.

    Raises InvalidArgument naming the input, what it has and what the
    signature expects, and PayloadTooLarge for an input of more than
    ``max_elements`` elements (0: no limit).
    """
    check_sizes(inputs, max_elements)
    expected = [spec.name for spec in fn.inputs]
    for name in expected:
        if name not in inputs:
            raise InvalidArgument(f"Missing input '{name}'; signature '{signature_name}' has inputs: "
                                  f"{', '.join(expected)}")
    for name in inputs:
        if name not in expected:
            raise InvalidArgument(f"Unknown input '{name}'; signature '{signature_name}' has inputs: "
                                  f"{', '.join(expected)}")
    feeds: Inputs = {}
    for spec in fn.inputs:
        arr = inputs[spec.name]
        want = to_numpy(spec.dtype)
        if arr.dtype != want:
            if not _castable(arr.dtype, want):
                raise InvalidArgument(f"Input '{spec.name}' has dtype {as_dtype(arr.dtype)} but signature "
                                      f"'{signature_name}' expects {spec.dtype}")
            arr = arr.astype(want)
        fits = arr.ndim == len(spec.shape) and all(
            d is None or d == n for d, n in zip(spec.shape, arr.shape, strict=True))
        if not fits:
            raise InvalidArgument(f"Input '{spec.name}' has shape {dims_text(arr.shape)} but signature "
                                  f"'{signature_name}' expects {dims_text(spec.shape)}")
        feeds[spec.name] = arr
    sizes = {name: arr.shape[0] for name, arr in feeds.items() if arr.ndim}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{name} {size}" for name, size in sizes.items())
        raise InvalidArgument(f"Inputs have different batch sizes: {listing}")
    rows = next(iter(sizes.values())) if sizes and len(sizes) == len(feeds) else None
    return feeds, rows


def batchable(fn: runtime.SignatureFunction) -> bool:
    """Whether requests to ``fn`` can be merged: every input and output has a free batch dimension."""
    return all(spec.shape and spec.shape[0] is None for spec in (*fn.inputs, *fn.outputs))


class InferenceService:
    """Leases versions, validates inputs and runs signatures; shared by every protocol's routes."""

    def __init__(self, manager: ModelManager, runner: Runner, batcher: Runner | None, timeout_ms: int,
                 max_tensor_elements: int = 0) -> None:
        self.manager = manager
        self.runner = runner
        self.batcher = batcher
        self.timeout_ms = timeout_ms
        self.max_tensor_elements = max_tensor_elements

    def lease(self, ref: ModelRef) -> Lease:
        return self.manager.lease(ref.name, ref.version, ref.label)

    @staticmethod
    def signature(model: runtime.Model, name: str, method: str | None = None) -> runtime.SignatureFunction:
        """The signature ``name`` of ``model``; for classify/regress it must have that method."""
        fn = model.signatures.get(name)
        if fn is None:
            raise InvalidArgument(f'Serving signature name: "{name}" not found in signature def')
        if method is not None and method != "predict" and fn.method != method:
            raise InvalidArgument(
                f"Expected {METHOD_NOUN[method]} signature method_name to be tensorflow/serving/{method}. "
                f"Was: tensorflow/serving/{fn.method}"
            )
        return fn

    async def infer(
        self,
        ref: ModelRef,
        signature_name: str,
        decode: Callable[[runtime.SignatureFunction], Inputs],
        method: str | None = None,
    ) -> InferResult:
        """Run one request; ``decode(fn)`` turns the payload into arrays once the signature is known."""
        with self.lease(ref) as lease:
            fn = self.signature(lease.model, signature_name, method)
            feeds, rows = validate_inputs(fn, signature_name, decode(fn), self.max_tensor_elements)
            key = (lease.name, lease.version, signature_name)
            runner = self.batcher if self.batcher is not None and rows is not None and batchable(fn) else self.runner
            outputs = await self._within_timeout(runner.submit(lease.name, key, fn, feeds, rows or 0))
            return InferResult(lease.name, lease.version, signature_name, fn, lease.model, outputs)

    async def _within_timeout(self, future: asyncio.Future[Inputs]) -> Inputs:
        """The result of ``future``, which is cancelled with DeadlineExceeded after the request timeout.

        Does what ``asyncio.wait_for`` does for a future, without its extra future and event loop turn.
        """
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            future.cancel()

        timer = asyncio.get_running_loop().call_later(self.timeout_ms / 1000, expire)
        try:
            return await future
        except asyncio.CancelledError as e:
            if expired:
                raise DeadlineExceeded(f"Request timed out after {self.timeout_ms} ms") from e
            raise
        finally:
            timer.cancel()
