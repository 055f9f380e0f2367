"""The converter table of the ONNX importer and the context a converter receives.

Adding an op
------------
A converter turns one ONNX node into IR nodes. It is a plain function taking a
:class:`NodeContext` and returning nothing, registered by the decorator
:func:`converter` under its ``(domain, op_type)``::

    from savedmodel.importers.onnx.registry import NodeContext, converter

    @converter("Normalizer", domain="ai.onnx.ml")
    def normalizer(ctx: NodeContext) -> None:
        x = ctx.input(0)                              # IR tensor name, ONNX layout
        norm = ctx.attr("norm", "MAX")               # decoded attribute, with a default
        y = ctx.emit("Reduce", [x], {"function": "l2", "axes": [-1], "keepdims": True})
        ctx.set_output(0, ctx.emit("Divide", [x, y]))

What the context offers (see :class:`NodeContext`):

- ``ctx.name``, ``ctx.op_type``, ``ctx.domain``, ``ctx.opset`` (of the node's
  domain), ``ctx.attr(name, default)`` and ``ctx.attrs`` (every attribute
  decoded to Python values / numpy arrays / strings).
- ``ctx.n_inputs``, ``ctx.has_input(i)`` (present and not the empty name),
  ``ctx.const(i)`` (the input's numpy value when it is a constant folded at
  import, else None), ``ctx.shape(i)`` / ``ctx.dtype(i)`` (ONNX-order shape
  with None for the dynamic batch, and IR dtype name).
- ``ctx.input(i)``: the IR tensor name of input i in ONNX's own layout (a
  constant input becomes a ``Constant`` node). Layout-aware converters use
  ``ctx.input_as(i, perm)`` / ``ctx.layout(i)`` instead (see layout.py);
  elementwise ones take ``x, like = ctx.input_any(i)`` (any stored layout,
  including the grouped layouts of groups.py) and bind their result with
  ``ctx.set_output_like(0, y, like)``.
- ``ctx.emit(op, inputs, attrs, weights)``: add an IR node (catalogue op,
  weights given as numpy arrays by role) and return its output tensor name
  (a tuple for multi-output ops).
- ``ctx.set_output(i, ir_name, perm=None)`` / ``ctx.set_const(i, array)``:
  bind ONNX output i to an IR tensor (in layout ``perm``) or to a constant.
- Raise :class:`savedmodel.errors.UnsupportedError` for an attribute or input
  form the IR cannot express; the importer collects every such error and
  every op without a converter, and reports them all at once.

Domains: ``""`` (alias ``"ai.onnx"``) is the default ONNX domain; ``ai.onnx.ml``
converters (scikit-learn exports) live in ``ml.py``, which registers into the
same table when present (hook at the bottom of this module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from savedmodel.importers.onnx.context import NodeContext

Converter = Callable[["NodeContext"], None]
CONVERTERS: dict[tuple[str, str], Converter] = {}
DEFAULT_DOMAIN = ""


def normalize_domain(domain: str) -> str:
    """ONNX writes the default domain as "" or "ai.onnx"; the table uses ""."""
    return DEFAULT_DOMAIN if domain in ("", "ai.onnx") else domain


def converter(*op_types: str, domain: str = DEFAULT_DOMAIN) -> Callable[[Converter], Converter]:
    """Register the decorated function as the converter of ``op_types`` in ``domain``."""

    def register(fn: Converter) -> Converter:
        for op_type in op_types:
            key = (normalize_domain(domain), op_type)
            if key in CONVERTERS:
                raise ValueError(f"ONNX op {domain or 'ai.onnx'}::{op_type} has two converters")
            CONVERTERS[key] = fn
        return fn

    return register


def supported_ops() -> list[str]:
    """Every ``domain::op_type`` the importer converts (constant-only ops fold in addition)."""
    _load_converters()
    return sorted(f"{d or 'ai.onnx'}::{t}" for d, t in CONVERTERS)


def lookup(domain: str, op_type: str) -> Converter | None:
    _load_converters()
    return CONVERTERS.get((normalize_domain(domain), op_type))


def _load_converters() -> None:
    """Import the converter modules (they fill CONVERTERS). The ai.onnx.ml
    module is optional: it is imported only when it exists in the tree."""
    import importlib.util

    from savedmodel.importers.onnx import ops_activations, ops_math, ops_nn, ops_rnn, ops_shape, ops_tensor  # noqa: F401

    if importlib.util.find_spec("savedmodel.importers.onnx.ml") is not None:
        from savedmodel.importers.onnx import ml  # noqa: F401
