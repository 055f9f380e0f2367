"""Lowerings of catalogue ops that TFLite has no single builtin for, each built from
the builtins TF 2.x's converter emits for the same Keras layer.

- 1-D layers (Conv1D, MaxPooling1D, AveragePooling1D) run as their 2-D
  builtin on a height-1 image: RESHAPE to ``[B, 1, W, C]``, the 2-D op,
  RESHAPE back (TF writes EXPAND_DIMS for the first reshape; a RESHAPE is
  the same data movement and keeps the op set small).
- UpSampling1D and RepeatVector are a TILE between two reshapes, as in TF.
- PReLU is PRELU, its alpha a constant shaped like the layer's weight.
- LayerNormalization is TF's decomposition: MEAN, SQUARED_DIFFERENCE, MEAN,
  ADD epsilon, RSQRT, then scale and shift with MUL / SUB / ADD (SUB of the
  mean where TF writes NEG, MUL and ADD: one int8 op instead of a float NEG).
- Dot is BATCH_MATMUL (with adjoint flags for the contracted axes).
- Activations without a builtin are TF's chains: hard_sigmoid ADD (RELU6) and
  MUL, softplus EXP ADD LOG, mish softplus TANH MUL, softsign ABS ADD DIV;
  ELU with alpha != 1 ELU MUL GREATER SELECT_V2, and selu that times its
  scale (TF's selu chain goes through an int8 EXP and loses the negative
  branch to its coarse scale).

>>> MAPPINGS["Conv1D"]                        # doctest: +SKIP
<function _conv1d ...>
"""

from __future__ import annotations

import numpy as np

from converters.lite import format as fmt
from converters.lite.lowering import Lowering, emit_activation, mapping
from converters.lite.model import Tensor
from savedmodel.ir import Node


def _reshape(low: Lowering, src: int, dims: tuple, name: str, dst: int | None = None) -> int:
    """RESHAPE ``src`` to ``dims`` (batch first, written as -1); returns the (new or given) output."""
    if any(d is None for d in dims[1:]):
        raise low.fail(f"cannot reshape to {list(dims)}: only the batch dim may be unknown")
    out = dst if dst is not None else low.new(name, shape=dims)
    shape = low.const(f"{name}/shape", np.asarray([-1, *dims[1:]], np.int32), "int32")
    low.op("RESHAPE", [src, shape], [out])
    return out


def _shape(low: Lowering, tensor: str) -> tuple:
    """The IR shape of tensor ``tensor`` (None for unknown dims)."""
    return tuple(low.specs[tensor].shape)


def _dims(low: Lowering, index: int) -> tuple:
    """The shape of model tensor ``index`` with None for dynamic dims."""
    return tuple(None if d < 0 else d for d in low.model.tensors[index].signature)


# -- 1-D layers as height-1 2-D ops ----------------------------------------------------------


def _causal_pad(low: Lowering, node: Node, x: int, left: int) -> int:
    """PAD ``left`` steps of zeros before the sequence (Conv1D's causal padding)."""
    b, w, c = _shape(low, node.inputs[0])
    padded = low.new(f"{node.name}/causal_pad", shape=(b, None if w is None else w + left, c))
    paddings = low.const(f"{node.name}/paddings", np.asarray([[0, 0], [left, 0], [0, 0]], np.int32), "int32")
    low.op("PAD", [x, paddings], [padded])
    return padded


@mapping("Conv1D")
def _conv1d(low: Lowering, node: Node) -> None:
    a = node.attrs
    kernel, bias = low.weight(node, "kernel"), low.weight(node, "bias")  # kernel: [k, in / groups, out]
    x = low.tensor(node.inputs[0])
    padding = a["padding"].upper()
    if padding == "CAUSAL":
        x = _causal_pad(low, node, x, (kernel.shape[0] - 1) * a["dilation_rate"][0])
        padding = "VALID"
    _, w, c = _dims(low, x)
    x4 = _reshape(low, x, (None, 1, w, c), f"{node.name}/expand")
    _, wo, f = _shape(low, node.outputs[0])
    y4 = low.new(f"{node.name}/conv2d", shape=(None, 1, wo, f))
    act = a.get("activation", "linear")
    fused = fmt.FUSED_ACTIVATIONS.get(act)
    w_t = low.const(f"{node.name}/kernel", kernel.transpose(2, 0, 1)[:, None])
    b_t = low.const(f"{node.name}/bias", bias) if bias is not None else -1
    options = {"padding": padding, "stride_h": 1, "stride_w": a["strides"][0], "dilation_h_factor": 1,
               "dilation_w_factor": a["dilation_rate"][0], "fused_activation_function": fused or "NONE"}
    low.op("CONV_2D", [x4, w_t, b_t], [y4], options)
    out = low.tensor(node.outputs[0])
    y3 = _reshape(low, y4, _shape(low, node.outputs[0]), f"{node.name}/squeeze", out if fused else None)
    if fused is None:
        emit_activation(low, act, y3, out)


@mapping("MaxPooling1D", "AveragePooling1D")
def _pool1d(low: Lowering, node: Node) -> None:
    a = node.attrs
    _, w, c = _shape(low, node.inputs[0])
    _, wo, _ = _shape(low, node.outputs[0])
    x4 = _reshape(low, low.tensor(node.inputs[0]), (None, 1, w, c), f"{node.name}/expand")
    y4 = low.new(f"{node.name}/pool2d", shape=(None, 1, wo, c))
    options = {"padding": a["padding"].upper(), "stride_h": 1, "stride_w": a["strides"][0], "filter_height": 1,
               "filter_width": a["pool_size"][0], "fused_activation_function": "NONE"}
    low.op("MAX_POOL_2D" if node.op == "MaxPooling1D" else "AVERAGE_POOL_2D", [x4], [y4], options)
    _reshape(low, y4, _shape(low, node.outputs[0]), f"{node.name}/squeeze", low.tensor(node.outputs[0]))


# -- repeats -----------------------------------------------------------------------------------


def _tile(low: Lowering, node: Node, src: int, dims: tuple, multiples: list[int]) -> int:
    tiled = low.new(f"{node.name}/tile", shape=tuple(None if d is None else d * m for d, m in
                                                      zip(dims, multiples, strict=True)))
    low.op("TILE", [src, low.const(f"{node.name}/multiples", np.asarray(multiples, np.int32), "int32")], [tiled])
    return tiled


@mapping("UpSampling1D")
def _upsampling1d(low: Lowering, node: Node) -> None:
    _, w, c = _shape(low, node.inputs[0])
    size = node.attrs["size"]
    x4 = _reshape(low, low.tensor(node.inputs[0]), (None, w, 1, c), f"{node.name}/expand")
    tiled = _tile(low, node, x4, (None, w, 1, c), [1, 1, size, 1])
    _reshape(low, tiled, _shape(low, node.outputs[0]), f"{node.name}/merge", low.tensor(node.outputs[0]))


@mapping("RepeatVector")
def _repeat_vector(low: Lowering, node: Node) -> None:
    _, f = _shape(low, node.inputs[0])
    x3 = _reshape(low, low.tensor(node.inputs[0]), (None, 1, f), f"{node.name}/expand")
    low.op("TILE", [x3, low.const(f"{node.name}/multiples", np.asarray([1, node.attrs["n"], 1], np.int32), "int32")],
           [low.tensor(node.outputs[0])])


# -- PReLU ---------------------------------------------------------------------------------------


@mapping("PReLU")
def _prelu(low: Lowering, node: Node) -> None:
    alpha = low.const(f"{node.name}/alpha", low.weight(node, "alpha"))
    low.op("PRELU", [low.tensor(node.inputs[0]), alpha], [low.tensor(node.outputs[0])])


# -- LayerNormalization ----------------------------------------------------------------------------


def _binary(low: Lowering, op: str, a: int, b: int, name: str, like: str, dst: int | None = None,
            shape: tuple | None = None) -> int:
    out = dst if dst is not None else low.new(name, like=None if shape else like, shape=shape)
    options = {"fused_activation_function": "NONE"} if op in ("ADD", "SUB", "MUL") else None
    low.op(op, [a, b], [out], options)
    return out


@mapping("LayerNormalization")
def _layer_norm(low: Lowering, node: Node) -> None:
    a = node.attrs
    x_name, y_name = node.inputs[0], node.outputs[0]
    dims = _shape(low, x_name)
    rank = len(dims)
    axes = sorted({ax % rank for ax in a["axis"]})
    if 0 in axes:
        raise low.fail("LayerNormalization over the batch axis has no TFLite mapping here")
    stat_shape = tuple(1 if i in axes else d for i, d in enumerate(dims))
    param_shape = tuple(d if i in axes else 1 for i, d in enumerate(dims))[1:]
    x, out = low.tensor(x_name), low.tensor(y_name)
    axes_t = low.const(f"{node.name}/axes", np.asarray(axes, np.int32), "int32")
    gamma, beta = low.weight(node, "gamma"), low.weight(node, "beta")
    n = node.name
    mean = low.new(f"{n}/mean", shape=stat_shape)
    low.op("MEAN", [x, axes_t], [mean], {"keep_dims": True})
    square = _binary(low, "SQUARED_DIFFERENCE", x, mean, f"{n}/squared_difference", x_name)
    # Keras' rms_scaling divides the uncentred input by the standard deviation
    centred = x if a["rms_scaling"] else _binary(low, "SUB", x, mean, f"{n}/centred", x_name)
    var = low.new(f"{n}/variance", shape=stat_shape)
    low.op("MEAN", [square, axes_t], [var], {"keep_dims": True})
    eps = low.const(f"{n}/epsilon", np.float32(a["epsilon"]).reshape(()))
    shifted = _binary(low, "ADD", var, eps, f"{n}/variance_plus_epsilon", x_name, shape=stat_shape)
    inv = low.new(f"{n}/rsqrt", shape=stat_shape)
    low.op("RSQRT", [shifted], [inv])
    if gamma is not None and a["scale"]:
        g = low.const(f"{n}/gamma", gamma.reshape(param_shape))
        inv = _binary(low, "MUL", inv, g, f"{n}/scaled_rsqrt", x_name, shape=tuple(
            max(s, p) if s is not None else None for s, p in zip(stat_shape, (1, *param_shape), strict=True)))
    centre = beta is not None and a["center"] and not a["rms_scaling"]
    normed = _binary(low, "MUL", centred, inv, f"{n}/normalized", x_name, None if centre else out)
    if centre:
        _binary(low, "ADD", normed, low.const(f"{n}/beta", beta.reshape(param_shape)), f"{n}/shifted", x_name, out)


# -- Dot -------------------------------------------------------------------------------------------


@mapping("Dot")
def _dot(low: Lowering, node: Node) -> None:
    a = node.attrs
    if a["normalize"]:
        raise low.fail("Dot with normalize=True has no TFLite mapping here (L2-normalize the inputs first)")
    x_dims, y_dims = _shape(low, node.inputs[0]), _shape(low, node.inputs[1])
    if len(x_dims) != len(y_dims) or len(x_dims) not in (2, 3):
        raise low.fail(f"Dot of inputs of rank {len(x_dims)} and {len(y_dims)}: expected two rank-2 or two "
                       "rank-3 inputs")
    x, y, out = low.tensor(node.inputs[0]), low.tensor(node.inputs[1]), low.tensor(node.outputs[0])
    if len(x_dims) == 2:  # (B, K) . (B, K) -> (B, 1): one 1 x K by K x 1 product per sample
        k = x_dims[1]
        x3 = _reshape(low, x, (None, 1, k), f"{node.name}/lhs")
        y3 = _reshape(low, y, (None, k, 1), f"{node.name}/rhs")
        prod = low.new(f"{node.name}/matmul", shape=(None, 1, 1))
        low.op("BATCH_MATMUL", [x3, y3], [prod], {"adj_x": False, "adj_y": False, "asymmetric_quantize_inputs": False})
        _reshape(low, prod, (None, 1), f"{node.name}/squeeze", out)
        return
    ax, ay = (ax % 3 for ax in a["axes"])
    low.op("BATCH_MATMUL", [x, y], [out], {"adj_x": ax == 1, "adj_y": ay == 2, "asymmetric_quantize_inputs": False})


# -- ELU with alpha, softmax on another axis -----------------------------------------------------


def elu_with_alpha(low: Lowering, src: int, dst: int, alpha: float, name: str) -> None:
    """alpha * ELU(x) below zero, x above, as TF writes it: ELU, MUL, GREATER, SELECT_V2."""
    dims = _dims(low, dst)
    elu = low.new(f"{name}/elu", shape=dims)
    low.op("ELU", [src], [elu])
    scaled = _binary(low, "MUL", elu, low.const(f"{name}/alpha", np.float32(alpha).reshape(())), f"{name}/scaled",
                     None, shape=dims)
    like = low.model.tensors[elu]
    positive = low.model.add_tensor(Tensor(f"{name}/positive", "bool", like.shape, like.shape_signature))
    low.op("GREATER", [src, low.const(f"{name}/zero", np.float32(0).reshape(()))], [positive])
    low.op("SELECT_V2", [positive, elu, scaled], [dst])


def softmax_on_axis(low: Lowering, src: int, dst: int, axis: int, rank: int, name: str) -> None:
    """SOFTMAX over ``axis`` as TRANSPOSE (axis <-> last), SOFTMAX, TRANSPOSE back, as TF does."""
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    dims = _dims(low, src)
    moved = tuple(dims[p] for p in perm)
    perm_t = low.const(f"{name}/perm", np.asarray(perm, np.int32), "int32")
    t1 = low.new(f"{name}/transposed", shape=moved)
    low.op("TRANSPOSE", [src, perm_t], [t1])
    t2 = low.new(f"{name}/softmax", shape=moved)
    low.op("SOFTMAX", [t1], [t2], {"beta": 1.0})
    low.op("TRANSPOSE", [t2, perm_t], [dst])


def _scalar(low: Lowering, name: str, value: float) -> int:
    return low.const(name, np.float32(value).reshape(()))


def _softplus(low: Lowering, src: int, dims: tuple, name: str, dst: int | None = None) -> int:
    """log(exp(x) + 1) as TF writes it: EXP, ADD, LOG."""
    e = low.new(f"{name}/exp", shape=dims)
    low.op("EXP", [src], [e])
    e1 = _binary(low, "ADD", e, _scalar(low, f"{name}/one", 1.0), f"{name}/exp_plus_one", None, shape=dims)
    out = dst if dst is not None else low.new(f"{name}/softplus", shape=dims)
    low.op("LOG", [e1], [out])
    return out


def _selu(low: Lowering, src: int, dst: int, dims: tuple, name: str) -> None:
    """scale * ELU_alpha(x). TF writes GREATER, MUL, EXP, SUB, MUL, SELECT_V2, whose int8 EXP is quantized
    over exp's whole range and resolves the negative branch coarsely; ELU (kept float, as TF keeps ELU) is not."""
    alpha, scale = 1.6732632423543772, 1.0507009873554805
    elu = low.new(f"{name}/elu_alpha", shape=dims)
    elu_with_alpha(low, src, elu, alpha, name)
    _binary(low, "MUL", elu, _scalar(low, f"{name}/scale", scale), name, None, dst)


def emit_composite_activation(low: Lowering, act: str, src: int, dst: int) -> bool:
    """Lower an activation that TFLite has no builtin for as TF's chain of builtins; False if unknown."""
    dims = _dims(low, dst)
    name = low.model.tensors[dst].name
    if act == "hard_sigmoid":
        shifted = low.new(f"{name}/relu6", shape=dims)
        low.op("ADD", [src, _scalar(low, f"{name}/three", 3.0)], [shifted], {"fused_activation_function": "RELU6"})
        _binary(low, "MUL", shifted, _scalar(low, f"{name}/one_sixth", 1.0 / 6.0), name, None, dst)
    elif act == "softplus":
        _softplus(low, src, dims, name, dst)
    elif act == "mish":
        t = low.new(f"{name}/tanh", shape=dims)
        low.op("TANH", [_softplus(low, src, dims, name)], [t])
        _binary(low, "MUL", src, t, name, None, dst)
    elif act == "selu":
        _selu(low, src, dst, dims, name)
    elif act == "softsign":
        a = low.new(f"{name}/abs", shape=dims)
        low.op("ABS", [src], [a])
        a1 = _binary(low, "ADD", a, _scalar(low, f"{name}/one", 1.0), f"{name}/abs_plus_one", None, shape=dims)
        low.op("DIV", [src, a1], [dst], {"fused_activation_function": "NONE"})
    elif act == "elu":
        low.op("ELU", [src], [dst])
    else:
        return False
    return True
