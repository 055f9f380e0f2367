"""Converters of the activations: ReLU-family, sigmoid-family, GELU, SELU, PReLU, Clip, Softmax and LogSoftmax.

Activations are elementwise, so their output keeps the input's layout
(channels-last, permuted or grouped); Softmax maps its axis through it.
"""

from __future__ import annotations

import numpy as np

from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.groups import single_axis
from savedmodel.importers.onnx.layout import identity, ir_axis
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Dyn

# Keras' constants, for recognising ONNX Selu with its default attrs.
SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805

def _same_layout(ctx: NodeContext) -> tuple[str, Dyn]:
    """Input 0 in the layout it is stored in, and the template to store the output alike."""
    return ctx.input_any(0)


def _activation(name: str):
    def convert(ctx: NodeContext) -> None:
        x, like = _same_layout(ctx)
        ctx.set_output_like(0, ctx.emit("Activation", [x], {"activation": name}), like)

    return convert


for _onnx, _keras in (("Relu", "relu"), ("Sigmoid", "sigmoid"), ("Tanh", "tanh"), ("Softplus", "softplus"),
                      ("Softsign", "softsign"), ("HardSwish", "hard_silu"), ("Mish", "mish")):
    converter(_onnx)(_activation(_keras))


@converter("Gelu")
def gelu(ctx: NodeContext) -> None:
    approx = ctx.attr("approximate", "none")
    _activation("gelu_approximate" if approx == "tanh" else "gelu")(ctx)


@converter("Selu")
def selu(ctx: NodeContext) -> None:
    alpha, gamma = ctx.attr("alpha", SELU_ALPHA), ctx.attr("gamma", SELU_GAMMA)
    if not (np.isclose(alpha, SELU_ALPHA, rtol=1e-6) and np.isclose(gamma, SELU_GAMMA, rtol=1e-6)):
        raise ctx.unsupported(f"alpha={alpha}, gamma={gamma}; only the standard SELU constants are supported")
    _activation("selu")(ctx)


@converter("HardSigmoid")
def hard_sigmoid(ctx: NodeContext) -> None:
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    if np.isclose(alpha, 1 / 6, rtol=1e-6) and beta == 0.5:
        _activation("hard_sigmoid")(ctx)
        return
    x, like = _same_layout(ctx)
    scaled = ctx.emit("Rescaling", [x], {"scale": alpha, "offset": beta}, suffix="/scale")
    ctx.set_output_like(0, ctx.emit("ReLU", [scaled], {"max_value": 1.0}), like)


@converter("LeakyRelu")
def leaky_relu(ctx: NodeContext) -> None:
    x, like = _same_layout(ctx)
    ctx.set_output_like(0, ctx.emit("LeakyReLU", [x], {"negative_slope": float(ctx.attr("alpha", 0.01))}), like)


@converter("Elu")
def elu(ctx: NodeContext) -> None:
    x, like = _same_layout(ctx)
    ctx.set_output_like(0, ctx.emit("ELU", [x], {"alpha": float(ctx.attr("alpha", 1.0))}), like)


@converter("PRelu")
def prelu(ctx: NodeContext) -> None:
    slope = ctx.require_const(1, "slope")
    perm = ctx.layout(0)
    x = ctx.input_as(0, perm)
    rank = len(perm)
    full = slope.reshape((1,) * (rank - slope.ndim) + slope.shape).transpose(perm)[0]
    ir = ctx.ir_shape(x)
    shared = [j for j in range(1, rank) if full.shape[j - 1] == 1 and ir[j] != 1]
    ctx.set_output(0, ctx.emit("PReLU", [x], {"shared_axes": shared}, {"alpha": full.astype(np.float32)}), perm)


@converter("Clip")
def clip(ctx: NodeContext) -> None:
    lo = ctx.const(1) if ctx.has_input(1) else ctx.attr("min")
    hi = ctx.const(2) if ctx.has_input(2) else ctx.attr("max")
    for i in (1, 2):
        if ctx.has_input(i) and ctx.const(i) is None:
            raise ctx.unsupported("its min/max are computed at run time")
    lo = None if lo is None else float(np.asarray(lo))
    hi = None if hi is None else float(np.asarray(hi))
    x, like = _same_layout(ctx)
    if lo == 0.0 and ctx.dtype(0) == "float32":
        y = ctx.emit("ReLU", [x], {"max_value": hi})
    else:
        y = ctx.emit("Clip", [x], {"min": lo, "max": hi})
    ctx.set_output_like(0, y, like)


@converter("Softmax", "LogSoftmax")
def softmax(ctx: NodeContext) -> None:
    rank = ctx.rank(0)
    axis = int(ctx.attr("axis", -1 if ctx.opset >= 13 else 1)) % rank
    dyn = ctx.dyn(0)
    if dyn is not None and dyn.groups is not None and ctx.op_type == "Softmax":
        ir = single_axis(dyn.groups, axis, "Softmax")
        ctx.set_output_like(0, ctx.emit("Softmax", [dyn.ir], {"axis": ir}), dyn)
        return
    perm = ctx.layout(0)
    if ctx.op_type == "LogSoftmax" and ir_axis(axis, perm) != rank - 1:
        perm = identity(rank)
    x = ctx.input_as(0, perm)
    ir = ir_axis(axis, perm)
    if ctx.op_type == "LogSoftmax":
        if ir != rank - 1:
            raise ctx.unsupported(f"axis={axis}; LogSoftmax is supported over the last axis only")
        ctx.set_output(0, ctx.emit("Activation", [x], {"activation": "log_softmax"}), perm)
        return
    ctx.set_output(0, ctx.emit("Softmax", [x], {"axis": ir}), perm)

