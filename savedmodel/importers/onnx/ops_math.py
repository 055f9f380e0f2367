"""Converters of elementwise math: arithmetic, comparisons, logic and unary functions.

Elementwise ops keep their inputs' layout (a channels-last tensor stays
channels-last); constant operands are transposed to match. A float constant
that is a scalar or varies along the last IR axis only becomes a Rescaling
(scale/offset) instead of a Constant node.
"""

from __future__ import annotations

import numpy as np

from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.layout import identity
from savedmodel.importers.onnx.ops_tensor import transposed_constant
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Batch, Fill

BINARY = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply", "Div": "Divide", "Pow": "Power",
          "Max": "Maximum", "Min": "Minimum", "Sum": "Add", "Mean": "Average"}
COMPARE = {"Equal": "equal", "Less": "less", "LessOrEqual": "less_equal", "Greater": "greater",
           "GreaterOrEqual": "greater_equal"}
LOGICAL = {"And": "and", "Or": "or", "Xor": "xor"}
UNARY = {"Sqrt": "sqrt", "Exp": "exp", "Log": "log", "Erf": "erf", "Abs": "abs", "Neg": "neg",
         "Reciprocal": "reciprocal", "Floor": "floor", "Ceil": "ceil", "Round": "round", "Sin": "sin",
         "Cos": "cos", "Tan": "tan", "Sign": "sign", "Not": "not", "IsNaN": "isnan"}
# IsInf by its (detect_positive, detect_negative) attrs.
IS_INF = {(1, 1): "isinf", (1, 0): "isposinf", (0, 1): "isneginf"}


def _layout(ctx: NodeContext) -> tuple[int, ...]:
    """The layout every input can be brought to without a transpose, else identity."""
    present = [i for i in range(ctx.n_inputs) if ctx.has_input(i)]
    rank = max(ctx.rank(i) for i in present)
    layouts = {ctx.layout(i) for i in present if ctx.is_dynamic(i)}
    if len(layouts) == 1 and all(ctx.rank(i) == rank for i in present if ctx.is_dynamic(i)):
        return layouts.pop()
    return identity(rank)


def _operand(ctx: NodeContext, i: int, perm: tuple[int, ...]) -> str:
    const = ctx.const(i)
    fill = ctx.value(i)
    if isinstance(fill, Fill):
        const = _broadcastable(ctx, fill)
    if const is not None:
        return ctx.emitter.constant(transposed_constant(const, perm), f"{ctx.name}/{i}")
    if ctx.rank(i) != len(perm):
        return ctx.input(i)
    return ctx.input_as(i, perm)


def _broadcastable(ctx: NodeContext, fill: Fill) -> np.ndarray:
    """A batch-sized constant (ConstantOfShape of a shape holding the batch) as a constant with a size-1
    batch dim: it broadcasts against the run-time operands, which carry the batch."""
    if any(isinstance(d, Batch) and d.coef != 1 for d in fill.shape):
        raise ctx.unsupported("an operand filled to a multiple of the batch size")
    if not any(ctx.is_dynamic(i) for i in range(ctx.n_inputs)):
        raise ctx.unsupported("a batch-sized constant with no run-time operand to take the batch from")
    return np.full([1 if isinstance(d, Batch) else d for d in fill.shape], fill.value)


def _rescaling(ctx: NodeContext, perm: tuple[int, ...]) -> bool:
    """Emit x*scale+offset for a float tensor and a last-axis-only constant; False when it does not apply."""
    if ctx.op_type not in ("Add", "Sub", "Mul", "Div") or ctx.n_inputs != 2:
        return False
    dyn = [i for i in (0, 1) if ctx.is_dynamic(i)]
    if len(dyn) != 1 or ctx.const(1 - dyn[0]) is None or ctx.dtype(dyn[0]) != "float32":
        return False
    i = dyn[0]
    c = transposed_constant(ctx.const(1 - i).astype(np.float64), perm)
    if ctx.const(1 - i).ndim > ctx.rank(i) or any(d != 1 for d in c.shape[:-1]):
        return False
    c = c.reshape(-1)
    values = float(c[0]) if c.size == 1 else c.tolist()
    if ctx.op_type == "Div" and i == 1:
        return False
    if ctx.op_type == "Div" and not c.all():
        return False
    if ctx.op_type == "Add" and _fold_bias(ctx, i, c):
        return True
    if ctx.op_type == "Add":
        scale, offset = 1.0, values
    elif ctx.op_type == "Mul":
        scale, offset = values, 0.0
    elif ctx.op_type == "Sub":
        scale, offset = (1.0, _plain(-c)) if i == 0 else (-1.0, values)
    else:
        scale, offset = _plain(1.0 / c), 0.0
    y = ctx.emit("Rescaling", [ctx.input_as(i, perm)], {"scale": scale, "offset": offset})
    ctx.set_output(0, y, perm)
    return True


def _fold_bias(ctx: NodeContext, i: int, bias: np.ndarray) -> bool:
    """Add of a per-unit vector right after a bias-less Dense (MatMul then Add, as exporters write a linear
    layer) becomes that Dense's bias, when nothing else reads the product."""
    dyn = ctx.dyn(i)
    node = ctx.emitter.producer(dyn.ir) if dyn is not None else None
    if node is None or node.op != "Dense" or node.attrs.get("use_bias") or ctx.emitter.readers.get(
            ctx.node.input[i]) != 1 or bias.size != node.attrs["units"]:
        return False
    key = f"{node.name}/bias"
    ctx.emitter.weights[key] = bias.astype(np.float32)
    node.weights["bias"] = key
    node.attrs["use_bias"] = True
    ctx.set_output_like(0, dyn.ir, dyn)  # type: ignore[union-attr,arg-type]
    return True


def _plain(v):
    if isinstance(v, np.ndarray):
        return float(v[0]) if v.size == 1 else [float(e) for e in v]
    return v


def _grouped(ctx: NodeContext) -> bool:
    """Elementwise math on grouped tensors (attention's batch*heads tensors): a scalar constant becomes a
    Rescaling, two run-time tensors stored alike combine directly. False when neither applies."""
    dyns = [ctx.dyn(i) for i in range(ctx.n_inputs)]
    if not any(d is not None and d.groups is not None for d in dyns) or ctx.n_inputs != 2:
        return False
    if all(d is not None for d in dyns):
        a, b = dyns
        if a.groups != b.groups or ctx.ir_shape(a.ir) != ctx.ir_shape(b.ir):  # type: ignore[union-attr]
            return False
        ctx.set_output_like(0, ctx.emit(BINARY[ctx.op_type], [a.ir, b.ir]), a)  # type: ignore[union-attr]
        return True
    i = 0 if dyns[0] is not None else 1
    c = ctx.const(1 - i)
    if c is None or c.size != 1 or ctx.op_type not in ("Add", "Sub", "Mul", "Div") or (ctx.op_type == "Div" and i):
        return False
    v = float(c.reshape(()))
    if ctx.op_type == "Div" and v == 0.0:
        return False
    scale, offset = {"Add": (1.0, v), "Mul": (v, 0.0), "Div": (1.0 / v, 0.0),
                     "Sub": (1.0, -v) if i == 0 else (-1.0, v)}[ctx.op_type]
    x = dyns[i]
    ctx.set_output_like(0, ctx.emit("Rescaling", [x.ir], {"scale": scale, "offset": offset}), x)  # type: ignore
    return True


@converter(*BINARY)
def binary(ctx: NodeContext) -> None:
    if _grouped(ctx):
        return
    perm = _layout(ctx)
    if _rescaling(ctx, perm):
        return
    exponent = ctx.const(1) if ctx.op_type == "Pow" else None
    if exponent is not None and exponent.size == 1 and float(exponent) in (2.0, 0.5) and ctx.is_dynamic(0):
        x = ctx.input_as(0, perm)
        y = ctx.emit("Multiply", [x, x]) if float(exponent) == 2.0 else ctx.emit("Unary", [x], {"function": "sqrt"})
        ctx.set_output(0, y, perm)
        return
    inputs = [_operand(ctx, i, perm) for i in range(ctx.n_inputs) if ctx.has_input(i)]
    ctx.set_output(0, ctx.emit(BINARY[ctx.op_type], inputs), _out_layout(ctx, perm))


def _out_layout(ctx: NodeContext, perm: tuple[int, ...]) -> tuple[int, ...] | None:
    return perm if all(ctx.rank(i) == len(perm) for i in range(ctx.n_inputs) if ctx.is_dynamic(i)) else None


@converter("Mod")
def mod(ctx: NodeContext) -> None:
    perm = _layout(ctx)
    inputs = [_operand(ctx, i, perm) for i in (0, 1)]
    ctx.set_output(0, ctx.emit("Mod", inputs, {"fmod": bool(ctx.attr("fmod", 0))}), _out_layout(ctx, perm))


@converter(*COMPARE)
def compare(ctx: NodeContext) -> None:
    perm = _layout(ctx)
    inputs = [_operand(ctx, i, perm) for i in (0, 1)]
    ctx.set_output(0, ctx.emit("Compare", inputs, {"function": COMPARE[ctx.op_type]}), _out_layout(ctx, perm))


@converter(*LOGICAL)
def logical(ctx: NodeContext) -> None:
    perm = _layout(ctx)
    inputs = [_operand(ctx, i, perm) for i in (0, 1)]
    ctx.set_output(0, ctx.emit("Logical", inputs, {"function": LOGICAL[ctx.op_type]}), _out_layout(ctx, perm))


@converter("Where")
def where(ctx: NodeContext) -> None:
    perm = _layout(ctx)
    inputs = [_operand(ctx, i, perm) for i in (0, 1, 2)]
    ctx.set_output(0, ctx.emit("Where", inputs), _out_layout(ctx, perm))


@converter(*UNARY)
def unary(ctx: NodeContext) -> None:
    x, like = ctx.input_any(0)
    ctx.set_output_like(0, ctx.emit("Unary", [x], {"function": UNARY[ctx.op_type]}), like)


@converter("IsInf")
def is_inf(ctx: NodeContext) -> None:
    detect = (int(ctx.attr("detect_positive", 1)), int(ctx.attr("detect_negative", 1)))
    if detect not in IS_INF:
        raise ctx.unsupported("detect_positive=0 with detect_negative=0 (an output that is always false)")
    x, like = ctx.input_any(0)
    ctx.set_output_like(0, ctx.emit("Unary", [x], {"function": IS_INF[detect]}), like)
