"""Full-integer int8 quantization of a float32 LiteModel, following TF 2.x's converter.

Conventions (each checked against TF 2.21's output):

- activations: int8, asymmetric, per tensor, from calibrated (min, max)
  widened to include 0: ``scale = (max - min) / 255`` and
  ``zero point = round(-128 - min / scale)``, in float32;
- weights: int8, symmetric, per output channel, ``scale = max|w| / 127`` and
  ``q = round(w / scale)`` (ties away from zero) in [-127, 127];
- bias: int32, ``scale = input scale * weight scale``, zero point 0;
- ops with a fixed output range (SOFTMAX, LOGISTIC, TANH, LOG_SOFTMAX) use
  TFLite's required output quantization;
- ops that move data without changing its scale (pooling, reshape, pad,
  concatenation, ...) share one quantization between inputs and output:
  a single-input op takes its input's, a multi-input op (CONCATENATION)
  imposes its output's calibrated range on its inputs, as TF does; where
  an input's quantization is fixed elsewhere a requantize (QUANTIZE int8 ->
  int8) is inserted;
- ops without an int8 kernel stay float32 between DEQUANTIZE and QUANTIZE.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np

from converters.errors import ConversionError
from converters.lite import format as fmt
from converters.lite.model import LiteModel, Operator, QuantParams, SignatureDef, Tensor

# Ops with an int8 kernel in LiteRT and in runtime.lite (bit-exact to the reference kernels).
INT8_OPS = frozenset({
    "FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MAX_POOL_2D", "AVERAGE_POOL_2D",
    "MEAN", "REDUCE_MAX", "ADD", "SUB", "MUL", "CONCATENATION", "RESHAPE", "SQUEEZE", "SOFTMAX", "LOGISTIC",
    "TANH", "LEAKY_RELU", "RELU", "RELU6", "PAD", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "STRIDED_SLICE",
    "SLICE", "TRANSPOSE", "MAXIMUM", "MINIMUM", "HARD_SWISH", "PRELU", "BATCH_MATMUL", "TILE",
    "SQUARED_DIFFERENCE", "GELU", "EXP", "RSQRT", "LOG_SOFTMAX", "LOG", "ABS", "DIV",
})
# Ops that read any tensor type and write no float (left alone by the quantizer).
TYPE_AGNOSTIC = frozenset({"SHAPE"})
# int8 ops whose inputs and output share one quantization.
SAME_SCALE = frozenset({
    "MAX_POOL_2D", "AVERAGE_POOL_2D", "RESHAPE", "SQUEEZE", "PAD", "TRANSPOSE", "STRIDED_SLICE", "SLICE",
    "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "REDUCE_MAX", "CONCATENATION", "MAXIMUM", "MINIMUM", "TILE",
})
# op -> (weight input, channel axis of the weight, bias input)
WEIGHTED = {
    "FULLY_CONNECTED": (1, 0, 2),
    "CONV_2D": (1, 0, 2),
    "DEPTHWISE_CONV_2D": (1, 3, 2),
    "TRANSPOSE_CONV": (1, 0, 3),
}
# op -> constant input quantized symmetric per tensor (TF: PRELU's alpha), not from its own range.
SYMMETRIC_CONSTANTS = {"PRELU": 1}
QMIN, QMAX = fmt.INT8_MIN, fmt.INT8_MAX


def _round(x):
    """std::round (ties away from zero) of float64 values."""
    x = np.asarray(x, np.float64)
    t = np.trunc(x)
    return np.where(np.abs(x - t) >= 0.5, t + np.sign(x), t)


def activation_params(rmin: float, rmax: float) -> tuple[float, int]:
    """(scale, zero point) of an int8 activation with range [rmin, rmax], widened to include 0.

    In float32 arithmetic, as TF's converter: scale = (max - min) / 255 and
    zero point = round(-128 - min / scale), clamped to [-128, 127].
    """
    f32 = np.float32
    rmin, rmax = min(f32(rmin), f32(0)), max(f32(rmax), f32(0))
    if rmax == rmin:  # a tensor that is always 0: any scale represents it
        return 1.0, QMIN
    scale = (rmax - rmin) / f32(QMAX - QMIN)
    zp = f32(QMIN) - rmin / scale
    nudged = QMIN if zp < QMIN else QMAX if zp > QMAX else int(_round(zp))
    return float(scale), nudged


def quantize_weights(w: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-channel int8 of ``w`` along ``axis``: (q, scales as float64)."""
    w = np.asarray(w, np.float32)
    moved = np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1).astype(np.float64)
    absmax = np.max(np.abs(moved), axis=1) if moved.size else np.zeros(w.shape[axis])
    scales = np.where(absmax > 0, absmax / fmt.WEIGHT_QMAX, 1.0)
    q = np.clip(_round(moved / scales[:, None]), -fmt.WEIGHT_QMAX, fmt.WEIGHT_QMAX)
    q = np.moveaxis(q.reshape(np.moveaxis(w, axis, 0).shape), 0, axis)
    return q.astype(np.int8), scales


def quantize_bias(b: np.ndarray, input_scale: float, weight_scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int32 bias with scale input_scale * weight_scale[c]: (q, scales as float64)."""
    scales = float(input_scale) * np.asarray(weight_scales, np.float64)
    q = _round(np.asarray(b, np.float64) / scales)
    return np.clip(q, -(2 ** 31), 2 ** 31 - 1).astype(np.int32), scales


def quantize_tensor(value: np.ndarray) -> tuple[np.ndarray, QuantParams]:
    """A float constant (not a weight) as per-tensor asymmetric int8 from its own range."""
    value = np.asarray(value, np.float32)
    scale, zp = activation_params(float(value.min(initial=0.0)), float(value.max(initial=0.0)))
    q = np.clip(_round(value.astype(np.float64) / scale) + zp, QMIN, QMAX).astype(np.int8)
    return q, QuantParams.per_tensor(scale, zp)


@dataclass
class Quantized:
    """The int8 model, and what the report needs about it."""

    model: LiteModel
    float_ops: list[str] = field(default_factory=list)  # ops left float (no int8 kernel), with their source
    params: dict[int, QuantParams] = field(default_factory=dict)  # float-model tensor index -> qparams


def _activation_inputs(model: LiteModel, op: Operator) -> list[int]:
    """Indices of op inputs that are float activations (not constants, not int32 shapes)."""
    out = []
    for i, t in enumerate(op.inputs):
        if t < 0:
            continue
        tensor = model.tensors[t]
        if tensor.data is None and tensor.dtype == "float32":
            if op.op == "TRANSPOSE_CONV" and i != 2:
                continue
            out.append(t)
    return out


def _float_outputs(model: LiteModel, op: Operator) -> list[int]:
    return [t for t in op.outputs if model.tensors[t].dtype == "float32"]


class _Planner:
    """Decides each float activation tensor's int8 quantization (TF's propagation rules)."""

    def __init__(self, model: LiteModel, ranges: dict[int, tuple[float, float]]) -> None:
        self.model = model
        self.ranges = ranges
        self.int8_ops = [op for op in model.operators if op.op in INT8_OPS and _float_outputs(model, op)]
        self.producer = model.producers()
        self.consumers: dict[int, list[Operator]] = {}
        for op in self.int8_ops:
            for t in _activation_inputs(model, op):
                self.consumers.setdefault(t, []).append(op)

    def plan(self) -> dict[int, QuantParams]:
        stats = {t for t in self.ranges}
        redundant: set[int] = set()
        fixed: dict[int, QuantParams] = {}
        for op in self.int8_ops:
            if op.op in fmt.FIXED_OUTPUT_QPARAMS:
                scale, zp = fmt.FIXED_OUTPUT_QPARAMS[op.op]
                fixed[op.outputs[0]] = QuantParams.per_tensor(scale, zp)
                redundant.add(op.outputs[0])
        # Forward: a same-scale op with one float input takes that input's quantization.
        work = list(stats)
        while work:
            t = work.pop()
            for user in self.consumers.get(t, []):
                if user.op in SAME_SCALE and len(_activation_inputs(self.model, user)) <= 1:
                    for r in _float_outputs(self.model, user):
                        if r in stats and r not in redundant:
                            redundant.add(r)
                            work.append(r)
        # Backward: a multi-input same-scale op imposes its output's range on its inputs.
        work = [t for t in stats if t not in redundant]
        seen: set[int] = set()
        while work:
            t = work.pop()
            op = self.producer.get(t)
            if op is None or op.op not in SAME_SCALE or op not in self.int8_ops:
                continue
            for x in _activation_inputs(self.model, op):
                if x in stats and x not in seen:
                    seen.add(x)
                    redundant.add(x)
                    work.append(x)
        params: dict[int, QuantParams] = {}
        for t in stats - redundant:
            scale, zp = activation_params(*self.ranges[t])
            params[t] = QuantParams.per_tensor(scale, zp)
        params.update(fixed)
        self._propagate(params)
        return params

    def _propagate(self, params: dict[int, QuantParams]) -> None:
        changed = True
        while changed:
            changed = False
            for op in self.int8_ops:
                if op.op not in SAME_SCALE:
                    continue
                ins = _activation_inputs(self.model, op)
                out = op.outputs[0]
                if len(ins) == 1:
                    pairs = [(ins[0], out), (out, ins[0])]
                else:
                    known = [x for x in ins if x in params]
                    source = out if out in params else (known[0] if known else None)
                    pairs = [(source, x) for x in [*ins, out]] if source is not None else []
                for src, dst in pairs:
                    if src in params and dst not in params:
                        params[dst] = params[src]
                        changed = True


def quantize_int8(fm: LiteModel, ranges: dict[int, tuple[float, float]], *, int8_io: bool = False) -> Quantized:
    """The int8 model of float model ``fm`` given calibrated ranges (float tensor index -> (min, max))."""
    params = _Planner(fm, ranges).plan()
    m = LiteModel([copy.copy(t) for t in fm.tensors], [], list(fm.inputs), list(fm.outputs),
                  [SignatureDef(s.key, dict(s.inputs), dict(s.outputs)) for s in fm.signatures],
                  fm.description, dict(fm.metadata), fm.subgraph_name)
    result = Quantized(m, params=dict(params))
    domain: dict[int, str] = {}  # activation tensor -> "int8" | "float32"
    for op in fm.operators:
        for t in _float_outputs(fm, op):
            domain[t] = "int8" if op.op in INT8_OPS else "float32"
    twins: dict[tuple[int, str], int] = {}

    def qparams(t: int) -> QuantParams:
        if t not in params:
            if t not in ranges:
                raise ConversionError(f"tensor {fm.tensors[t].name!r} was never computed during calibration; "
                                      "cannot choose its quantization")
            scale, zp = activation_params(*ranges[t])
            params[t] = QuantParams.per_tensor(scale, zp)
        return params[t]

    def as_int8(t: int, want: QuantParams | None = None) -> int:
        """Tensor t in int8 (QUANTIZE inserted once when it is float), requantized to ``want`` if given."""
        if domain.get(t) != "int8":
            key = (t, "int8")
            if key not in twins:
                src = m.tensors[t]
                twins[key] = m.add_tensor(Tensor(f"{src.name}/quantized", "int8", src.shape, src.shape_signature,
                                                 None, qparams(t)))
                m.operators.append(Operator("QUANTIZE", [t], [twins[key]], {}, 1, "quantize"))
            t = twins[key]
        q = m.tensors[t].quant
        if want is not None and not want.same_as(q):
            key = (t, f"requantize:{float(want.scale[0])!r}:{int(want.zero_point[0])}")
            if key not in twins:
                src = m.tensors[t]
                twins[key] = m.add_tensor(Tensor(f"{src.name}/requantized", "int8", src.shape, src.shape_signature,
                                                 None, want))
                m.operators.append(Operator("QUANTIZE", [t], [twins[key]], {}, 2, "requantize"))
            t = twins[key]
        return t

    def as_float(t: int) -> int:
        if domain.get(t) != "int8":
            return t
        key = (t, "float32")
        if key not in twins:
            src = m.tensors[t]
            twins[key] = m.add_tensor(Tensor(f"{src.name}/dequantized", "float32", src.shape, src.shape_signature))
            m.operators.append(Operator("DEQUANTIZE", [t], [twins[key]], {}, 2, "dequantize"))
        return twins[key]

    for t in fm.inputs:
        if int8_io:
            domain[t] = "int8"
            m.tensors[t].dtype = "int8"
            m.tensors[t].quant = qparams(t)
        else:
            domain[t] = "float32"

    for op in fm.operators:
        new = Operator(op.op, list(op.inputs), list(op.outputs), dict(op.options), op.version, op.source)
        acts = set(_activation_inputs(fm, op))
        if not acts and not _float_outputs(fm, op):
            pass  # integer shape arithmetic (e.g. the output shape of TRANSPOSE_CONV)
        elif op.op in INT8_OPS:
            out_q = {t: qparams(t) for t in _float_outputs(fm, op)}
            same = out_q[op.outputs[0]] if op.op in SAME_SCALE else None
            new.inputs = [as_int8(t, same) if t in acts else t for t in op.inputs]
            for t, q in out_q.items():
                m.tensors[t].dtype, m.tensors[t].quant = "int8", q
            _quantize_constants(m, new, op)
        elif op.op in TYPE_AGNOSTIC:
            pass
        else:
            new.inputs = [as_float(t) if t in acts else t for t in op.inputs]
            result.float_ops.append(f"{op.op} ({op.source})" if op.source else op.op)
        m.operators.append(new)

    _finish_outputs(m, fm, domain, int8_io, as_int8, qparams)
    result.params = dict(params)
    return result


def _quantize_constants(m: LiteModel, new: Operator, op: Operator) -> None:
    """Weights to per-channel int8 and biases to int32 (WEIGHTED ops); other float constants to int8."""
    spec = WEIGHTED.get(op.op)
    if spec is not None:
        w_i, axis, b_i = spec
        x_index = 2 if op.op == "TRANSPOSE_CONV" else 0
        w_t = m.tensors[op.inputs[w_i]]
        if w_t.data is None:
            raise ConversionError(f"{op.op} with weights computed at run time cannot be quantized", op=op.op,
                                  node=op.source)
        qw, w_scales = quantize_weights(w_t.data, axis)
        new.inputs[w_i] = m.add_constant(w_t.name, qw, QuantParams(w_scales, np.zeros(w_scales.size), axis))
        in_q = m.tensors[new.inputs[x_index]].quant
        if b_i < len(op.inputs) and op.inputs[b_i] >= 0:
            b_t = m.tensors[op.inputs[b_i]]
            in_scale = float(in_q.scale[0]) if in_q is not None else 1.0
            qb, b_scales = quantize_bias(b_t.data, in_scale, np.asarray(m.tensors[new.inputs[w_i]].quant.scale,
                                                                         np.float64))
            new.inputs[b_i] = m.add_constant(b_t.name, qb, QuantParams(b_scales, np.zeros(b_scales.size), 0))
        return
    for i, t in enumerate(op.inputs):
        if t >= 0 and m.tensors[t].data is not None and m.tensors[t].dtype == "float32":
            if SYMMETRIC_CONSTANTS.get(op.op) == i:
                q, scales = quantize_weights(m.tensors[t].data.reshape(1, -1), 0)
                q, qp = q.reshape(m.tensors[t].data.shape), QuantParams.per_tensor(float(scales[0]), 0)
            else:
                q, qp = quantize_tensor(m.tensors[t].data)
            new.inputs[i] = m.add_constant(m.tensors[t].name, q, qp)


def _finish_outputs(m: LiteModel, fm: LiteModel, domain, int8_io: bool, as_int8, qparams) -> None:
    """Float (or int8) graph outputs, renaming the int8 tensor behind a DEQUANTIZE."""
    remap: dict[int, int] = {}
    for t in fm.outputs:
        if int8_io:
            remap[t] = as_int8(t) if domain.get(t) != "int8" else t
        elif domain.get(t) == "int8":
            src = m.tensors[t]
            out = m.add_tensor(Tensor(src.name, "float32", src.shape, src.shape_signature))
            src.name = f"{src.name}/int8"
            m.operators.append(Operator("DEQUANTIZE", [t], [out], {}, 2, "dequantize"))
            remap[t] = out
        else:
            remap[t] = t
    m.outputs = [remap[t] for t in fm.outputs]
    for sig in m.signatures:
        sig.outputs = {alias: remap.get(t, t) for alias, t in sig.outputs.items()}
        sig.inputs = dict(sig.inputs)
