"""Check a LiteModel against the rules LiteRT does not check but silently computes wrong numbers on.

LiteRT refuses, for example, an int8 SOFTMAX whose output scale is not
1/256, but it runs without complaint a file whose weights have a non-zero
zero point, whose bias is not in units of ``input scale x weight scale`` or
whose RESHAPE output is quantized differently from its input, and gives
wrong outputs. ``validate`` refuses such files before they are written,
with a ConversionError naming the op and the rule.

>>> validate(model)          # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np

from converters.errors import ConversionError
from converters.lite import format as fmt
from converters.lite.model import LiteModel, Operator, QuantParams

# op -> (weight input, channel axis, bias input)
WEIGHTED = {"FULLY_CONNECTED": (1, 0, 2), "CONV_2D": (1, 0, 2), "DEPTHWISE_CONV_2D": (1, 3, 2),
            "TRANSPOSE_CONV": (1, 0, 3)}
# int8 ops whose output must carry their (first) input's quantization.
PASS_THROUGH = frozenset({
    "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "PAD", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
    "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "REDUCE_MAX",
})
# int8 ops whose every input and output share one quantization.
SHARED = frozenset({"CONCATENATION", "MAXIMUM", "MINIMUM"})
BIAS_RTOL = 1e-6  # LiteRT's own tolerance where it checks (uint8 convolutions)


def _fail(k: int, op: Operator, rule: str) -> ConversionError:
    return ConversionError(f"operator {k} ({op.op}) breaks a quantization rule: {rule}", op=op.op, node=op.source)


def _same(a: QuantParams | None, b: QuantParams | None) -> bool:
    return a is not None and b is not None and a.same_as(b)


def _describe(q: QuantParams | None) -> str:
    return "none" if q is None else repr(q)


def validate(model: LiteModel) -> None:
    """Raise ConversionError on the first broken rule; return None when the model is sound."""
    n = len(model.tensors)
    for t in [*model.inputs, *model.outputs]:
        if not 0 <= t < n:
            raise ConversionError(f"subgraph input/output {t} is not a tensor index (the model has {n})")
    for i, t in enumerate(model.tensors):
        _check_tensor(i, t.name, t.dtype, t.quant)
    for k, op in enumerate(model.operators):
        if op.op not in fmt.BUILTIN_CODES:
            raise ConversionError(f"operator {k}: {op.op!r} is not a builtin op of the schema", op=op.op,
                                  node=op.source)
        for t in [*op.inputs, *op.outputs]:
            if not -1 <= t < n:
                raise _fail(k, op, f"refers to tensor {t}, the model has {n}")
        _check_op(model, k, op)


def _check_tensor(i: int, name: str, dtype: str, q: QuantParams | None) -> None:
    if dtype in ("int8", "uint8", "int16") and q is None:
        raise ConversionError(f"tensor {i} ({name!r}) is {dtype} without quantization parameters")
    if q is None:
        return
    if not np.all(np.isfinite(q.scale)) or np.any(q.scale <= 0):
        raise ConversionError(f"tensor {i} ({name!r}) has a scale that is not positive and finite: {q.scale[:4]}")
    if dtype == "int8" and (np.any(q.zero_point < fmt.INT8_MIN) or np.any(q.zero_point > fmt.INT8_MAX)):
        raise ConversionError(f"tensor {i} ({name!r}) has an int8 zero point outside [-128, 127]")


def _check_op(model: LiteModel, k: int, op: Operator) -> None:
    tensors = model.tensors
    ins = [tensors[t] if t >= 0 else None for t in op.inputs]
    outs = [tensors[t] for t in op.outputs]
    is_int8 = bool(outs) and outs[0].dtype == "int8"
    if op.op in WEIGHTED:
        _check_weighted(model, k, op)
    if not is_int8:
        return
    if op.op in fmt.FIXED_OUTPUT_QPARAMS:
        scale, zp = fmt.FIXED_OUTPUT_QPARAMS[op.op]
        q = outs[0].quant
        if q.per_channel or float(q.scale[0]) != np.float32(scale) or int(q.zero_point[0]) != zp:
            raise _fail(k, op, f"an int8 {op.op} output must have scale {scale:g} and zero point {zp}, "
                               f"it has {_describe(q)}")
    if op.op in PASS_THROUGH and ins and ins[0] is not None and ins[0].dtype == "int8":
        if not _same(ins[0].quant, outs[0].quant):
            raise _fail(k, op, f"the output must keep its input's quantization ({_describe(ins[0].quant)}), it has "
                               f"{_describe(outs[0].quant)}")
    if op.op in SHARED:
        for j, t in enumerate(ins):
            if t is not None and t.dtype == "int8" and not _same(t.quant, outs[0].quant):
                raise _fail(k, op, f"input {j} is quantized {_describe(t.quant)} but the output "
                                   f"{_describe(outs[0].quant)}; int8 {op.op} needs one quantization for all")


def _check_weighted(model: LiteModel, k: int, op: Operator) -> None:
    w_i, axis, b_i = WEIGHTED[op.op]
    x_i = 2 if op.op == "TRANSPOSE_CONV" else 0
    w = model.tensors[op.inputs[w_i]]
    x = model.tensors[op.inputs[x_i]]
    if w.dtype != "int8":
        return
    q = w.quant
    if np.any(q.zero_point != 0):
        raise _fail(k, op, f"weights {w.name!r} must be symmetric (zero point 0), they have zero points "
                           f"{np.unique(q.zero_point)[:4].tolist()}")
    if w.data is not None and (int(w.data.min(initial=0)) < -fmt.WEIGHT_QMAX):
        raise _fail(k, op, f"weights {w.name!r} must lie in [-127, 127], the minimum is {int(w.data.min())}")
    channels = w.shape[axis]
    if q.per_channel and (q.axis != axis or q.scale.size != channels):
        raise _fail(k, op, f"per-channel weights {w.name!r} need {channels} scales along dimension {axis}, "
                           f"they have {q.scale.size} along {q.axis}")
    if x.dtype != "int8" or b_i >= len(op.inputs) or op.inputs[b_i] < 0:
        return
    b = model.tensors[op.inputs[b_i]]
    if b.dtype != "int32":
        raise _fail(k, op, f"the bias {b.name!r} of an int8 {op.op} must be int32, it is {b.dtype}")
    bq = b.quant
    if bq is None or np.any(bq.zero_point != 0):
        raise _fail(k, op, f"the bias {b.name!r} must be quantized with zero point 0")
    in_scale = float(x.quant.scale[0])
    want = in_scale * np.broadcast_to(q.scale.astype(np.float64), (channels,))
    have = np.broadcast_to(bq.scale.astype(np.float64), (channels,))
    bad = np.abs(have - want) > BIAS_RTOL * np.minimum(np.abs(have), np.abs(want))
    if np.any(bad):
        c = int(np.argmax(bad))
        w_scale = float(q.scale[c] if q.per_channel else q.scale[0])
        raise _fail(k, op, f"the bias scale must be input scale x weight scale; channel {c} has {have[c]:.9g}, "
                           f"expected {in_scale:.9g} x {w_scale:.9g} = {want[c]:.9g}")

