"""The keras.ops table: symbolic operations (``keras.src.ops.numpy.Add``, ...) -> catalogue nodes.

Functional models and traced subclassed models record a keras.ops call as an
operation with a config (``{"name": "softmax", "axis": 1}``) and its call
arguments, where non-tensor arguments are constants. The ones the catalogue
can express are mapped; a tensor combined with a constant becomes Rescaling
(``x * scale + offset``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from savedmodel.importers.keras.convert import Converter, Emit, LayerCall, float_or_floats, registrar
from savedmodel.ir import TensorSpec

OPERATIONS: dict[str, Converter] = {}
operation = registrar(OPERATIONS)

_ACTIVATIONS = {
    "Relu": "relu", "Relu6": "relu6", "Sigmoid": "sigmoid", "HardSigmoid": "hard_sigmoid", "Tanh": "tanh",
    "Silu": "silu", "HardSilu": "hard_silu", "Selu": "selu", "Softplus": "softplus", "Softsign": "softsign",
    "Exp": "exponential",
}


def _split(call: LayerCall) -> tuple[list[TensorSpec | None], list[Any]]:
    """The two operands of a binary op: (tensor or None, constant or None) for each."""
    if len(call.args) != 2:
        raise call.unsupported(f"has {len(call.args)} positional arguments; expected 2")
    return ([a if isinstance(a, TensorSpec) else None for a in call.args],
            [None if isinstance(a, TensorSpec) else a for a in call.args])


def _constant(call: LayerCall, value: Any, x: TensorSpec) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiub" or arr.ndim > len(x.shape):
        raise call.unsupported(f"combines a tensor with a constant of type {arr.dtype} and shape {list(arr.shape)}",
                               ["numeric scalars", "vectors over the last axis"])
    return arr.astype(np.float64)


def _rescale(call: LayerCall, scale: Any, offset: Any) -> list[Emit]:
    return [Emit("Rescaling", {"scale": float_or_floats(call, "scale", scale),
                               "offset": float_or_floats(call, "offset", offset)})]


def _binary(op: str):
    def convert(call: LayerCall) -> list[Emit]:
        tensors, constants = _split(call)
        if all(t is not None for t in tensors):
            return [Emit(op, {})]
        if all(t is None for t in tensors):
            raise call.unsupported("has no tensor argument")
        first = tensors[0] is not None
        x = tensors[0] if first else tensors[1]
        c = _constant(call, constants[1] if first else constants[0], x)
        if op in _WITH_CONSTANT_NODE and any(d != 1 for d in c.shape[:-1]):
            return _with_constant_node(op, c, first)
        if op == "Add":
            return _rescale(call, 1.0, c)
        if op == "Multiply":
            return _rescale(call, c, 0.0)
        if op == "Subtract":
            return _rescale(call, 1.0, -c) if first else _rescale(call, -1.0, c)
        if op == "Divide" and first:
            return _rescale(call, 1.0 / c, 0.0)
        if op == "Maximum" and not np.any(c):
            return [Emit("ReLU", {"max_value": None, "negative_slope": 0.0, "threshold": 0.0})]
        raise call.unsupported(f"combines a tensor and a constant in a way the op catalogue cannot express "
                               f"({'tensor, constant' if first else 'constant, tensor'})",
                               ["tensor op tensor", "add/subtract/multiply by a constant", "tensor / constant",
                                "maximum(tensor, 0)"])

    return convert


# Binary ops that take a constant operand as a Constant node when it is not a scalar or a vector over the last
# axis (a positional embedding added to a sequence: the (time, features) table computed at trace time).
_WITH_CONSTANT_NODE = ("Add", "Subtract", "Multiply")


def _with_constant_node(op: str, value: np.ndarray, tensor_first: bool) -> list[Emit]:
    constant = Emit("Constant", {"dtype": "float32", "shape": list(value.shape)},
                    {"value": value.astype(np.float32)}, suffix="constant", inputs=[])
    return [constant, Emit(op, {}, inputs=[0, "constant"] if tensor_first else ["constant", 0])]


@operation("NotEqual")
def not_equal(call: LayerCall) -> list[Emit]:
    tensors, constants = _split(call)
    if tensors[0] is None or tensors[1] is not None or np.ndim(constants[1]) != 0:
        raise call.unsupported("compares other than a tensor with a scalar", ["not_equal(tensor, scalar)"])
    return [Emit("SequenceMask", {"mask_value": float(constants[1]), "reduce_last_axis": False})]


for _name, _op in (("Add", "Add"), ("Subtract", "Subtract"), ("Multiply", "Multiply"), ("Maximum", "Maximum"),
                   ("Minimum", "Minimum"), ("Divide", "Divide"), ("TrueDivide", "Divide")):
    operation(_name)(_binary(_op))


@operation("Negative")
def negative(call: LayerCall) -> list[Emit]:
    return _rescale(call, -1.0, 0.0)


@operation("Square")
def square(call: LayerCall) -> list[Emit]:
    return [Emit("Multiply", {}, inputs=[0, 0])]


def _activation(name: str):
    def convert(call: LayerCall) -> list[Emit]:
        return [Emit("Activation", {"activation": name})]

    return convert


for _name, _act in _ACTIVATIONS.items():
    operation(_name)(_activation(_act))


@operation("Gelu")
def gelu(call: LayerCall) -> list[Emit]:
    return [Emit("Activation", {"activation": "gelu_approximate" if call.config.get("approximate", True) else "gelu"})]


@operation("Elu")
def elu(call: LayerCall) -> list[Emit]:
    return [Emit("ELU", {"alpha": float(call.config.get("alpha", 1.0))})]


@operation("LeakyRelu")
def leaky_relu(call: LayerCall) -> list[Emit]:
    return [Emit("LeakyReLU", {"negative_slope": float(call.config.get("negative_slope", 0.2))})]


@operation("Softmax")
def softmax(call: LayerCall) -> list[Emit]:
    axis = call.config.get("axis", -1)
    if axis is None:
        raise call.unsupported("normalizes over all axes, batch included (axis=None)",
                               ["an int axis", "a list of axes"])
    return [Emit("Softmax", {"axis": [int(a) for a in axis] if isinstance(axis, list) else int(axis)})]


@operation("LogSoftmax")
def log_softmax(call: LayerCall) -> list[Emit]:
    axis = call.config.get("axis", -1)
    if not isinstance(axis, int) or axis % len(call.x.shape) != len(call.x.shape) - 1:
        raise call.unsupported(f"has axis={axis!r}; the catalogue's log_softmax acts on the last axis", ["axis=-1"])
    return [Emit("Activation", {"activation": "log_softmax"})]


@operation("Concatenate")
def concatenate(call: LayerCall) -> list[Emit]:
    return [Emit("Concatenate", {"axis": int(call.config.get("axis", 0))})]


@operation("Transpose")
def transpose(call: LayerCall) -> list[Emit]:
    rank = len(call.x.shape)
    axes = call.config.get("axes")
    axes = list(range(rank))[::-1] if axes is None else [int(a) % rank for a in axes]
    if axes[0] != 0:
        raise call.unsupported(f"moves the batch axis (axes={axes})", ["axes that keep axis 0 first"])
    return [Emit("Permute", {"dims": axes[1:]})]


def _reshape_to(call: LayerCall, shape: list[int | None]) -> list[Emit]:
    """A Reshape of each batch item to ``shape`` (the output shape without the batch axis)."""
    known = [d for d in call.x.shape[1:] if d is not None]
    if any(d is None for d in shape) or len(known) != len(call.x.shape) - 1 or math.prod(known) != math.prod(shape):
        raise call.unsupported(f"reshapes {list(call.x.shape)} in a way that does not keep the batch axis "
                               "(or with unknown dims)", ["reshapes of each batch item to a known shape"])
    return [Emit("Reshape", {"target_shape": [int(d) for d in shape]})]


@operation("Reshape")
def reshape(call: LayerCall) -> list[Emit]:
    newshape = list(call.config.get("newshape") or [])
    if not newshape or newshape[0] not in (-1, None):
        raise call.unsupported(f"reshapes to {newshape}, not keeping the batch axis first",
                               ["newshape = (-1, ...item shape)"])
    target = [int(d) for d in newshape[1:]]
    if -1 in target:
        known = [d for d in call.x.shape[1:] if d is not None]
        rest = math.prod(d for d in target if d != -1)
        if len(known) == len(call.x.shape) - 1 and rest and target.count(-1) == 1:
            target[target.index(-1)] = math.prod(known) // rest
    return _reshape_to(call, target)


@operation("ExpandDims")
def expand_dims(call: LayerCall) -> list[Emit]:
    axis = call.config.get("axis")
    axes = [axis] if isinstance(axis, int) else list(axis)
    rank = len(call.x.shape) + len(axes)
    axes = sorted(a % rank for a in axes)
    if 0 in axes:
        raise call.unsupported("adds an axis in front of the batch axis", ["axis != 0"])
    shape = list(call.x.shape)
    for a in axes:
        shape.insert(a, 1)
    return _reshape_to(call, shape[1:])


@operation("Squeeze")
def squeeze(call: LayerCall) -> list[Emit]:
    axis = call.config.get("axis")
    rank = len(call.x.shape)
    if axis is None:
        axes = [i for i in range(1, rank) if call.x.shape[i] == 1]
    else:
        axes = sorted(a % rank for a in ([axis] if isinstance(axis, int) else axis))
    if 0 in axes:
        raise call.unsupported("squeezes the batch axis", ["axis != 0"])
    return _reshape_to(call, [d for i, d in enumerate(call.x.shape) if i not in axes][1:])


def _reduce(op: str):
    def convert(call: LayerCall) -> list[Emit]:
        rank = len(call.x.shape)
        axis = call.config.get("axis")
        axes = sorted(a % rank for a in ([axis] if isinstance(axis, int) else axis or []))
        if rank not in (3, 4) or axes != list(range(1, rank - 1)) or call.config.get("initial") is not None:
            raise call.unsupported(f"reduces axes {axis} of a rank-{rank} tensor; only a global pooling over the "
                                   "spatial axes can be expressed", ["axis=1 of rank 3", "axis=(1, 2) of rank 4"])
        return [Emit(f"Global{op}Pooling{rank - 2}D", {"keepdims": bool(call.config.get("keepdims", False))})]

    return convert


operation("Mean")(_reduce("Average"))
operation("Max")(_reduce("Max"))


@operation("Cast")
def cast(call: LayerCall) -> list[Emit]:
    dtype = call.config.get("dtype")
    if isinstance(dtype, dict):
        dtype = dtype.get("config", {}).get("name")
    if dtype != call.x.dtype:
        raise call.unsupported(f"casts {call.x.dtype} to {dtype}; the op catalogue has no cast",
                               [f"a cast to {call.x.dtype} (a no-op)"])
    return []
