"""TF.js graph model (GraphDef JSON + Consts in the manifest) -> IR graph.

Our own graph models carry their IR graph in ``userDefinedMetadata``; it is
rebuilt with the weights taken from the Const nodes it names (each checked
against the file). Other graph models (tensorflowjs_converter's) are
translated op by op: the TF ops that Keras layers lower to map to catalogue
ops (``_FusedConv2D`` -> Conv2D, ``_FusedMatMul`` -> Dense, ...), and the
shape arithmetic around them (``Shape``, ``StridedSlice``, ``Pack``) is
evaluated at import with a symbolic batch size. An op with no mapping raises
UnsupportedError naming it.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from converters.web import format as fmt
from savedmodel.errors import FormatError, GraphError, UnsupportedError
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.ops import infer_node

BATCH = -(2**40)  # the symbolic batch size inside evaluated shape vectors
UNKNOWN = -(2**41)  # a shape entry that depends on the batch size in other ways
_TF_DTYPES = {"DT_FLOAT": "float32", "DT_INT32": "int32", "DT_INT64": "int32", "DT_BOOL": "bool",
              "DT_HALF": "float32", "DT_DOUBLE": "float32"}
_FUSED_ACTIVATIONS = {"Relu": "relu", "Relu6": "relu6", "Elu": "elu", "Sigmoid": "sigmoid", "Tanh": "tanh"}
_UNARY = {"Relu": "relu", "Relu6": "relu6", "Elu": "elu", "Selu": "selu", "Sigmoid": "sigmoid", "Tanh": "tanh",
          "Softplus": "softplus", "Softsign": "softsign", "Exp": "exponential", "LogSoftmax": "log_softmax"}


def read_graph_model(topology: dict[str, Any], weights: dict[str, np.ndarray], path: Path, ours: dict[str, Any],
                     signature: Any) -> Graph:
    """The IR graph of a graph-model topology with its (dequantized) manifest weights."""
    nodes = topology.get(fmt.KEY_NODE)
    if not isinstance(nodes, list):
        raise FormatError(path, f"{fmt.KEY_TOPOLOGY}.node must be a list")
    if isinstance(ours.get(fmt.META_GRAPH), dict):
        return _from_metadata(ours, nodes, weights, path)
    return Translator(nodes, weights, path, signature).run()


def _from_metadata(ours: dict[str, Any], nodes: list[Any], weights: dict[str, np.ndarray], path: Path) -> Graph:
    where = f"{fmt.KEY_USER_METADATA}.{fmt.META_KEY}"
    consts = {n.get("name") for n in nodes if isinstance(n, dict) and n.get("op") == fmt.OP_CONST}
    mapping = ours.get(fmt.META_WEIGHTS)
    if not isinstance(mapping, dict):
        raise FormatError(path, f"{where}.{fmt.META_WEIGHTS} must map weight keys to Const nodes")
    values = {}
    for key, const in mapping.items():
        if const not in consts:
            raise FormatError(path, f"{where}: weight {key!r} names Const {const!r}, which is not a node of the graph")
        if const not in weights:
            raise FormatError(path, f"Const node {const!r} (weight {key!r}) has no entry in the weights manifest")
        values[key] = weights[const]
    try:
        graph = Graph.from_json(ours[fmt.META_GRAPH], values)
    except (KeyError, TypeError, ValueError) as e:
        raise FormatError(path, f"{where}.{fmt.META_GRAPH} is not an IR graph ({type(e).__name__}: {e})") from e
    return graph


class _Value:
    """What a TF tensor is at import: a constant, a symbolic shape vector, or an IR tensor."""

    __slots__ = ("kind", "value")

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind  # "const", "shape" or "tensor"
        self.value = value


class Translator:
    """Translates a GraphDef op by op into IR nodes (see the module docstring)."""

    def __init__(self, nodes: list[Any], weights: dict[str, np.ndarray], path: Path, signature: Any) -> None:
        self.path = path
        self.weights = weights
        self.tf: dict[str, dict[str, Any]] = {}
        for i, n in enumerate(nodes):
            if not isinstance(n, dict) or not isinstance(n.get("name"), str) or not isinstance(n.get("op"), str):
                raise FormatError(path, f"{fmt.KEY_TOPOLOGY}.node[{i}] needs a string 'name' and 'op'")
            if n["name"] in self.tf:
                raise FormatError(path, f"{fmt.KEY_TOPOLOGY}.node[{i}]: node name {n['name']!r} is used twice")
            self.tf[n["name"]] = n
        self.signature = signature if isinstance(signature, dict) else {}
        self.values: dict[str, _Value] = {}
        self.ir_nodes: list[Node] = []
        self.ir_weights: dict[str, np.ndarray] = {}
        self.specs: dict[str, TensorSpec] = {}
        self.inputs: list[TensorSpec] = []
        self.consumers: dict[str, int] = {}
        for n in self.tf.values():
            for ref in n.get("input", []):
                self.consumers[self._split(ref)[0]] = self.consumers.get(self._split(ref)[0], 0) + 1

    # -- plumbing ------------------------------------------------------------------------------
    def fail(self, node: dict[str, Any], problem: str) -> FormatError:
        return FormatError(self.path, f"node {node['name']!r} ({node['op']}): {problem}")

    def unsupported(self, node: dict[str, Any], problem: str) -> UnsupportedError:
        return UnsupportedError(f"{self.path}: node {node['name']!r}: {problem}.", what=node["name"], kind=node["op"],
                                supported=sorted(OP_TRANSLATIONS))

    @staticmethod
    def _split(ref: str) -> tuple[str, int]:
        ref = ref.lstrip("^")
        name, _, index = ref.partition(":")
        return name, int(index) if index.isdigit() else 0

    def data_inputs(self, node: dict[str, Any]) -> list[str]:
        return [r for r in node.get("input", []) if not r.startswith("^")]

    def value(self, ref: str) -> _Value:
        name, index = self._split(ref)
        if index != 0:
            raise UnsupportedError(f"{self.path}: output {index} of node {name!r} is read; only single-output ops "
                                   "are supported.", what=name)
        if name not in self.values:
            if name not in self.tf:
                raise FormatError(self.path, f"a node reads {ref!r}, which is no node of the graph")
            node = self.tf[name]
            fn = OP_TRANSLATIONS.get(node["op"])
            if fn is None and node["op"] not in _FOLDABLE:
                raise self.unsupported(node, f"op {node['op']} has no mapping to the op catalogue")
            self.values[name] = _Value("pending", None)
            xs = [self.value(r) for r in self.data_inputs(node)] if node["op"] != fmt.OP_CONST else []
            folded = _fold(node["op"], xs)
            if folded is None and fn is None:
                raise self.unsupported(node, f"op {node['op']} on tensors has no mapping to the op catalogue")
            self.values[name] = folded if folded is not None else fn(self, node, xs)
        value = self.values[name]
        if value.kind == "pending":
            raise FormatError(self.path, f"the graph has a cycle through node {name!r}")
        return value

    def attr(self, node: dict[str, Any], key: str, default: Any = None) -> Any:
        a = node.get("attr", {}).get(key)
        if a is None:
            return default
        if "s" in a:
            return base64.b64decode(a["s"]).decode()
        if "i" in a:
            return int(a["i"])
        if "f" in a:
            return float(a["f"])
        if "b" in a:
            return bool(a["b"])
        if "type" in a:
            return a["type"]
        if "list" in a:
            lst = a["list"]
            if "i" in lst:
                return [int(v) for v in lst["i"]]
            if "s" in lst:
                return [base64.b64decode(v).decode() for v in lst["s"]]
            if "f" in lst:
                return [float(v) for v in lst["f"]]
            return []
        return default

    def const(self, node: dict[str, Any], v: _Value, what: str) -> np.ndarray:
        if v.kind != "const":
            raise self.unsupported(node, f"{what} must be a constant")
        return v.value

    def tensor(self, node: dict[str, Any], v: _Value, what: str = "the input") -> str:
        if v.kind != "tensor":
            raise self.unsupported(node, f"{what} must be a tensor computed from the model inputs")
        return v.value

    def emit(self, op: str, inputs: list[str], base: str, attrs: dict[str, Any] | None = None,
             weights: dict[str, np.ndarray | None] | None = None) -> _Value:
        name, i = base, 1
        while name in self.specs:
            name = f"{base}_{i}"
            i += 1
        keys = {}
        for role, array in (weights or {}).items():
            if array is not None:
                keys[role] = f"{name}/{role}"
                self.ir_weights[keys[role]] = np.asarray(array, np.float32)
        node = Node(name, op, list(inputs), [name], dict(attrs or {}), keys)
        try:
            (spec,) = infer_node(node, [self.specs[t] for t in inputs], self.ir_weights)
        except GraphError as e:
            raise FormatError(self.path, f"node {base!r} maps to an invalid {op}: {e}") from e
        self.specs[name] = spec
        self.ir_nodes.append(node)
        return _Value("tensor", name)

    def shape(self, tensor: str) -> tuple[int | None, ...]:
        return self.specs[tensor].shape

    def node_of(self, v: _Value) -> Node | None:
        if v.kind != "tensor":
            return None
        return next((n for n in reversed(self.ir_nodes) if n.outputs[0] == v.value), None)

    # -- the whole graph -----------------------------------------------------------------------
    def run(self) -> Graph:
        sig_in = self.signature.get("inputs") if isinstance(self.signature.get("inputs"), dict) else {}
        sig_out = self.signature.get("outputs") if isinstance(self.signature.get("outputs"), dict) else {}
        placeholders = [n for n in self.tf.values() if n["op"] == fmt.OP_PLACEHOLDER]
        ordered = [self._split(e.get("name", k))[0] for k, e in sig_in.items() if isinstance(e, dict)] \
            or [n["name"] for n in placeholders]
        for name in ordered:
            self.value(name)
        if sig_out:
            outs = [(k, self._split(e.get("name", k))[0]) for k, e in sig_out.items() if isinstance(e, dict)]
        else:
            leaves = [n["name"] for n in self.tf.values()
                      if self.consumers.get(n["name"], 0) == 0 and n["op"] != fmt.OP_CONST]
            outs = [(n, n) for n in leaves]
        outputs = []
        for key, name in outs:
            v = self.value(name)
            t = self.tensor(self.tf[name], v, "a model output")
            alias = key.partition(":")[0]
            if alias != t and alias not in self.specs and alias not in {s.name for s in self.inputs}:
                t = self.emit("Identity", [t], alias).value
            outputs.append(self.specs[t])
        inputs = [s for s in self.inputs if s.name in ordered]
        return Graph(inputs, outputs, self.ir_nodes, self.ir_weights)


# Ops evaluated at import when all their inputs are constants (weights derived in the graph).
_FOLDABLE: dict[str, Callable[..., np.ndarray]] = {
    "Rsqrt": lambda a: 1 / np.sqrt(a), "Sqrt": np.sqrt, "Neg": np.negative, "Square": np.square,
    "Reciprocal": np.reciprocal, "Abs": np.abs, "Exp": np.exp, "Mul": np.multiply, "AddV2": np.add, "Add": np.add,
    "Sub": np.subtract, "RealDiv": np.divide, "Maximum": np.maximum, "Minimum": np.minimum,
    "Reshape": lambda a, s: np.reshape(a, [int(d) for d in np.asarray(s).reshape(-1)]),
    "Transpose": lambda a, p: np.transpose(a, [int(d) for d in np.asarray(p).reshape(-1)]),
}


def _fold(op: str, xs: list[_Value]) -> _Value | None:
    if op not in _FOLDABLE or not xs or any(v.kind != "const" for v in xs):
        return None
    values = [np.asarray(v.value) for v in xs]
    if all(v.dtype.kind == "f" for v in values[:1]):
        values[0] = values[0].astype(np.float32)
    return _Value("const", np.asarray(_FOLDABLE[op](*values)))


# -- op translations ---------------------------------------------------------------------------
Translation = Callable[[Translator, dict[str, Any], list[_Value]], _Value]
OP_TRANSLATIONS: dict[str, Translation] = {}


def translates(*ops: str) -> Callable[[Translation], Translation]:
    def register(fn: Translation) -> Translation:
        for op in ops:
            OP_TRANSLATIONS[op] = fn
        return fn

    return register


@translates(fmt.OP_PLACEHOLDER)
def placeholder(t, node, xs):
    dims = node.get("attr", {}).get("shape", {}).get("shape", {}).get("dim")
    if dims is None:
        raise t.unsupported(node, "a Placeholder without a shape")
    dtype = _TF_DTYPES.get(t.attr(node, "dtype", "DT_FLOAT"), "float32")
    shape = tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in dims)
    spec = TensorSpec(node["name"], dtype, shape)
    t.specs[spec.name] = spec
    t.inputs.append(spec)
    return _Value("tensor", spec.name)


@translates(fmt.OP_CONST)
def const(t, node, xs):
    if node["name"] not in t.weights:
        raise t.fail(node, "the Const has no entry in the weights manifest")
    return _Value("const", t.weights[node["name"]])


@translates("Identity", "Snapshot", "StopGradient", "NoOp", "EnsureShape")
def identity(t, node, xs):
    return xs[0]


@translates("Shape")
def shape(t, node, xs):
    x = t.tensor(node, xs[0])
    dims = t.shape(x)
    if None in dims[1:]:
        raise t.unsupported(node, "Shape of a tensor with unknown non-batch dims")
    return _Value("shape", np.array([BATCH if d is None else d for d in dims], np.int64))


def _ints_value(t, node, v: _Value, what: str) -> np.ndarray:
    if v.kind not in ("const", "shape"):
        raise t.unsupported(node, f"{what} must be computable at import")
    return np.asarray(v.value).astype(np.int64)


def _shape_result(*parts: np.ndarray, out: np.ndarray) -> _Value:
    symbolic = any(np.any(p <= BATCH) for p in parts)
    return _Value("shape" if symbolic else "const", out)


@translates("StridedSlice")
def strided_slice(t, node, xs):
    if xs[0].kind == "tensor":
        return _cropping(t, node, xs)
    x = _ints_value(t, node, xs[0], "the sliced value")
    begin, end, strides = (_ints_value(t, node, v, "slice bounds") for v in xs[1:4])
    if t.attr(node, "ellipsis_mask", 0) or t.attr(node, "new_axis_mask", 0) or x.ndim != 1:
        raise t.unsupported(node, "StridedSlice of shape values with ellipsis/new axes or rank > 1")
    b = None if t.attr(node, "begin_mask", 0) & 1 else int(begin[0])
    e = None if t.attr(node, "end_mask", 0) & 1 else int(end[0])
    out = x[int(begin[0])] if t.attr(node, "shrink_axis_mask", 0) & 1 else x[b:e:int(strides[0])]
    return _shape_result(x, out=np.asarray(out))


@translates("Pack")
def pack(t, node, xs):
    parts = [_ints_value(t, node, v, "packed values") for v in xs]
    return _shape_result(*parts, out=np.stack(parts, axis=int(t.attr(node, "axis", 0))))


@translates("Prod")
def prod(t, node, xs):
    x = _ints_value(t, node, xs[0], "the product's input")
    out = UNKNOWN if np.any(x <= BATCH) else int(np.prod(x))
    return _Value("shape" if out == UNKNOWN else "const", np.asarray(out, np.int64))


@translates("Cast")
def cast(t, node, xs):
    if xs[0].kind == "tensor":
        return t.emit("Identity", [xs[0].value], node["name"])
    return xs[0]


# -- dense and convolutions ------------------------------------------------------------------------
def _fused(t, node, y: _Value, fused: list[str], args: list[_Value], skip_bias: bool = False) -> _Value:
    """Apply a _Fused* op's fused_ops list (after BiasAdd) to y."""
    for op in fused[1 if skip_bias else 0:]:
        if op == "BiasAdd":
            continue
        if op in _FUSED_ACTIVATIONS:
            y = _set_activation(t, y, _FUSED_ACTIVATIONS[op], node)
        elif op == "LeakyRelu":
            y = t.emit("LeakyReLU", [y.value], f"{node['name']}/LeakyRelu",
                       {"negative_slope": t.attr(node, "leakyrelu_alpha", 0.2)})
        elif op == "Prelu":
            y = _prelu(t, node, y.value, t.const(node, args[1], "the PReLU alpha"))
        else:
            raise t.unsupported(node, f"fused op {op!r}")
    return y


def _set_activation(t, y: _Value, act: str, node) -> _Value:
    ir = t.node_of(y)  # y was just emitted by this fused op: the activation can join it
    if ir is not None and ir.attrs.get("activation") == "linear":
        ir.attrs["activation"] = act
        return y
    return t.emit("Activation", [y.value], f"{node['name']}/{act}", {"activation": act})


@translates("MatMul", "_FusedMatMul")
def matmul(t, node, xs):
    x = t.tensor(node, xs[0])
    if t.attr(node, "transpose_a", False):
        raise t.unsupported(node, "MatMul with transpose_a")
    kernel = t.const(node, xs[1], "the MatMul's second operand")
    if t.attr(node, "transpose_b", False):
        kernel = kernel.T
    fused = t.attr(node, "fused_ops", []) if node["op"] == "_FusedMatMul" else []
    bias = t.const(node, xs[2], "the fused bias") if fused[:1] == ["BiasAdd"] else None
    y = t.emit("Dense", [x], node["name"], {"units": int(kernel.shape[1]), "activation": "linear",
                                            "use_bias": bias is not None}, {"kernel": kernel, "bias": bias})
    return _fused(t, node, y, fused, xs[2:])


def _conv_attrs(t, node) -> dict[str, Any]:
    if t.attr(node, "data_format", "NHWC") != "NHWC":
        raise t.unsupported(node, "data_format other than NHWC")
    padding = t.attr(node, "padding", "VALID")
    if padding not in ("SAME", "VALID"):
        raise t.unsupported(node, f"padding {padding}")
    strides = t.attr(node, "strides", [1, 1, 1, 1])
    dilations = t.attr(node, "dilations", [1, 1, 1, 1]) or [1, 1, 1, 1]
    return {"strides": strides[1:3], "padding": padding.lower(), "dilation_rate": dilations[1:3]}


@translates("Conv2D", "_FusedConv2D")
def conv2d(t, node, xs):
    x = t.tensor(node, xs[0])
    kernel = t.const(node, xs[1], "the filter")
    fused = t.attr(node, "fused_ops", []) if node["op"] == "_FusedConv2D" else []
    bias = t.const(node, xs[2], "the fused bias") if fused[:1] == ["BiasAdd"] else None
    cin = t.shape(x)[-1]
    groups = 1 if cin is None else cin // kernel.shape[2]
    attrs = {"filters": int(kernel.shape[3]), "kernel_size": list(kernel.shape[:2]), "groups": groups,
             "activation": "linear", "use_bias": bias is not None, **_conv_attrs(t, node)}
    y = t.emit("Conv2D", [x], node["name"], attrs, {"kernel": kernel, "bias": bias})
    return _fused(t, node, y, fused, xs[2:])


@translates("DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def depthwise(t, node, xs):
    x = t.tensor(node, xs[0])
    kernel = t.const(node, xs[1], "the filter")
    fused = t.attr(node, "fused_ops", []) if node["op"].startswith("Fused") else []
    bias = t.const(node, xs[2], "the fused bias") if fused[:1] == ["BiasAdd"] else None
    attrs = {"kernel_size": list(kernel.shape[:2]), "depth_multiplier": int(kernel.shape[3]),
             "activation": "linear", "use_bias": bias is not None, **_conv_attrs(t, node)}
    y = t.emit("DepthwiseConv2D", [x], node["name"], attrs, {"kernel": kernel, "bias": bias})
    return _fused(t, node, y, fused, xs[2:])


@translates("Conv2DBackpropInput")
def conv_transpose(t, node, xs):
    out_shape = _ints_value(t, node, xs[0], "the output shape")
    kernel = t.const(node, xs[1], "the filter")
    x = t.tensor(node, xs[2])
    attrs = _conv_attrs(t, node)
    if attrs["dilation_rate"] != [1, 1]:
        raise t.unsupported(node, "dilated Conv2DBackpropInput")
    h, w = t.shape(x)[1:3]
    if h is None or w is None or np.any(out_shape[1:] < 0):
        raise t.unsupported(node, "Conv2DBackpropInput with unknown spatial sizes")
    # Our Conv2DTranspose derives its size; output_padding reproduces the size the graph asks for.
    pads = []
    for n, k, s, want in zip((h, w), kernel.shape[:2], attrs["strides"], out_shape[1:3]):
        pad = k // 2 if attrs["padding"] == "same" else 0
        pads.append(int(want - ((n - 1) * s + k - 2 * pad)))
    default = [h * attrs["strides"][0], w * attrs["strides"][1]] if attrs["padding"] == "same" else \
        [n * s + max(k - s, 0) for n, s, k in zip((h, w), attrs["strides"], kernel.shape[:2])]
    attrs.update(filters=int(kernel.shape[2]), kernel_size=list(kernel.shape[:2]), activation="linear",
                 use_bias=False, output_padding=None if list(out_shape[1:3]) == default else pads)
    return t.emit("Conv2DTranspose", [x], node["name"], attrs, {"kernel": kernel})


@translates("BiasAdd")
def bias_add(t, node, xs):
    x = t.tensor(node, xs[0])
    bias = t.const(node, xs[1], "the bias")
    ir = t.node_of(xs[0])
    producer = t._split(t.data_inputs(node)[0])[0]
    if ir is not None and "use_bias" in ir.attrs and not ir.attrs["use_bias"] and ir.attrs["activation"] == "linear" \
            and t.consumers.get(producer, 0) == 1:
        ir.attrs["use_bias"] = True
        key = f"{ir.name}/bias"
        ir.weights["bias"] = key
        t.ir_weights[key] = np.asarray(bias, np.float32)
        return xs[0]
    return t.emit("Rescaling", [x], node["name"], {"scale": 1.0, "offset": [float(v) for v in bias.reshape(-1)]})


@translates("MaxPool", "AvgPool")
def pool(t, node, xs):
    x = t.tensor(node, xs[0])
    attrs = _conv_attrs(t, node)
    ksize = t.attr(node, "ksize", [1, 1, 1, 1])
    op = "MaxPooling2D" if node["op"] == "MaxPool" else "AveragePooling2D"
    return t.emit(op, [x], node["name"], {"pool_size": ksize[1:3], "strides": attrs["strides"],
                                          "padding": attrs["padding"]})


@translates("Mean", "Max")
def reduce(t, node, xs):
    x = t.tensor(node, xs[0])
    rank = len(t.shape(x))
    axes = sorted(int(a) % rank for a in np.asarray(t.const(node, xs[1], "the axes")).reshape(-1))
    if axes != list(range(1, rank - 1)) or rank not in (3, 4):
        raise t.unsupported(node, f"{node['op']} over axes {axes} of a rank-{rank} tensor (only global pooling)")
    kind = "Max" if node["op"] == "Max" else "Average"
    return t.emit(f"Global{kind}Pooling{rank - 2}D", [x], node["name"], {"keepdims": t.attr(node, "keep_dims", False)})


# -- activations -----------------------------------------------------------------------------------
@translates(*_UNARY)
def unary(t, node, xs):
    x = t.tensor(node, xs[0])
    return t.emit("Activation", [x], node["name"], {"activation": _UNARY[node["op"]]})


@translates("Softmax")
def softmax(t, node, xs):
    return t.emit("Softmax", [t.tensor(node, xs[0])], node["name"], {"axis": -1})


@translates("LeakyRelu")
def leaky_relu(t, node, xs):
    return t.emit("LeakyReLU", [t.tensor(node, xs[0])], node["name"], {"negative_slope": t.attr(node, "alpha", 0.2)})


def _prelu(t, node, x: str, alpha: np.ndarray) -> _Value:
    shape = t.shape(x)[1:]
    alpha = np.asarray(alpha, np.float32)
    alpha = alpha.reshape((1,) * (len(shape) - alpha.ndim) + alpha.shape)
    shared = [i + 1 for i, (a, d) in enumerate(zip(alpha.shape, shape)) if a == 1 and d != 1]
    full = np.broadcast_to(alpha, tuple(1 if i + 1 in shared else d for i, d in enumerate(shape)))
    return t.emit("PReLU", [x], node["name"], {"shared_axes": shared}, {"alpha": np.ascontiguousarray(full)})


@translates("Prelu")
def prelu(t, node, xs):
    return _prelu(t, node, t.tensor(node, xs[0]), t.const(node, xs[1], "alpha"))


@translates("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def fused_batch_norm(t, node, xs):
    x = t.tensor(node, xs[0])
    if t.attr(node, "is_training", False):
        raise t.unsupported(node, "FusedBatchNorm in training mode (batch statistics)")
    scale, offset, mean, var = (t.const(node, v, "a batch-norm statistic") for v in xs[1:5])
    return t.emit("BatchNormalization", [x], node["name"],
                  {"axis": -1, "epsilon": t.attr(node, "epsilon", 1e-3), "center": True, "scale": True},
                  {"gamma": scale, "beta": offset, "moving_mean": mean, "moving_variance": var})


# -- elementwise ------------------------------------------------------------------------------------
_MERGE = {"AddV2": "Add", "Add": "Add", "Mul": "Multiply", "Sub": "Subtract", "Maximum": "Maximum",
          "Minimum": "Minimum"}


def _vector(t, node, c: np.ndarray, x: str) -> float | list[float]:
    """A constant operand as a Rescaling attr (a scalar, or a vector along the last axis)."""
    c = np.asarray(c, np.float64)
    if c.size == 1:
        return float(c.reshape(()))
    if c.ndim >= 1 and c.shape[-1] == c.size and c.size == t.shape(x)[-1]:
        return [float(v) for v in c.reshape(-1)]
    raise t.unsupported(node, f"an elementwise constant of shape {list(c.shape)} (only scalars or last-axis vectors)")


@translates("AddV2", "Add", "Mul", "Sub", "RealDiv", "Maximum", "Minimum", "AddN")
def elementwise(t, node, xs):
    if all(v.kind in ("const", "shape") for v in xs):  # shape arithmetic
        a, b = (np.asarray(v.value) for v in xs[:2])
        fn = {"AddV2": np.add, "Add": np.add, "Mul": np.multiply, "Sub": np.subtract, "Maximum": np.maximum,
              "Minimum": np.minimum, "RealDiv": np.divide}.get(node["op"])
        if fn is None or any(v.kind == "shape" for v in xs):
            raise t.unsupported(node, f"{node['op']} of shape values")
        return _Value("const", fn(a, b))
    if node["op"] == "AddN" or all(v.kind == "tensor" for v in xs):
        if node["op"] == "RealDiv":
            raise t.unsupported(node, "division of two tensors")
        op = "Add" if node["op"] == "AddN" else _MERGE[node["op"]]
        return t.emit(op, [t.tensor(node, v) for v in xs], node["name"])
    tensor_first = xs[0].kind == "tensor"
    x = t.tensor(node, xs[0] if tensor_first else xs[1])
    c = t.const(node, xs[1] if tensor_first else xs[0], "the constant operand")
    op = node["op"]
    if op in ("Maximum", "Minimum"):
        return _clip(t, node, x, op, c)
    if op == "Mul":
        return t.emit("Rescaling", [x], node["name"], {"scale": _vector(t, node, c, x), "offset": 0.0})
    if op in ("AddV2", "Add"):
        return t.emit("Rescaling", [x], node["name"], {"scale": 1.0, "offset": _vector(t, node, c, x)})
    if op == "Sub":
        v = _vector(t, node, -np.asarray(c, np.float64), x)
        if tensor_first:  # x - c
            return t.emit("Rescaling", [x], node["name"], {"scale": 1.0, "offset": v})
        return t.emit("Rescaling", [x], node["name"], {"scale": -1.0, "offset": [-a for a in v]
                                                       if isinstance(v, list) else -v})
    if not tensor_first:
        raise t.unsupported(node, "a constant divided by a tensor")
    inv = _vector(t, node, 1.0 / np.asarray(c, np.float64), x)
    return t.emit("Rescaling", [x], node["name"], {"scale": inv, "offset": 0.0})


def _clip(t, node, x: str, op: str, c: np.ndarray) -> _Value:
    """max(x, lo) / min(x, hi) with a scalar bound: ReLU(max_value) for the clip patterns TF emits."""
    if np.asarray(c).size != 1:
        raise t.unsupported(node, f"{op} with a non-scalar constant")
    bound = float(np.asarray(c).reshape(()))
    inner = t.node_of(_Value("tensor", x))
    if op == "Maximum" and bound == 0:
        clipped = inner is not None and inner.op == "ReLU" and inner.attrs.get("negative_slope") == 0 \
            and inner.name.endswith("/upper")
        if clipped:  # max(min(x, hi), 0): the min already produced relu-clipped values
            return _Value("tensor", x)
        return t.emit("ReLU", [x], node["name"], {"max_value": None})
    if op == "Minimum":
        # min(x, hi) followed by max(., 0) is ReLU(max_value=hi); alone it is hi - relu(hi - x).
        consumers = [n for n in t.tf.values() if any(t._split(r)[0] == node["name"] for r in n.get("input", []))]
        if len(consumers) == 1 and consumers[0]["op"] == "Maximum":
            other = [r for r in t.data_inputs(consumers[0]) if t._split(r)[0] != node["name"]]
            lo = t.values.get(t._split(other[0])[0]) if other else None
            lo = lo if lo is not None else (t.value(other[0]) if other else None)
            if lo is not None and lo.kind == "const" and np.asarray(lo.value).size == 1 \
                    and float(np.asarray(lo.value).reshape(())) == 0 and bound >= 0:
                return t.emit("ReLU", [x], f"{node['name']}/upper", {"max_value": bound})
    raise t.unsupported(node, f"{op} with a constant outside the clip(x, 0, hi) pattern")


# -- shapes ------------------------------------------------------------------------------------------
def _target(t, node, x: str, shape: np.ndarray) -> list[int]:
    shape = np.asarray(shape).astype(np.int64).reshape(-1)
    if shape.size == 0 or shape[0] not in (BATCH, -1) or np.any(shape[1:] <= BATCH):
        shown = ["batch" if d == BATCH else "?" if d <= UNKNOWN else int(d) for d in shape.tolist()]
        raise t.unsupported(node, f"a reshape of {list(t.shape(x))} to {shown} that does not keep the batch axis")
    return [int(d) for d in shape[1:]]


@translates("Reshape")
def reshape(t, node, xs):
    x = t.tensor(node, xs[0])
    target = _target(t, node, x, _ints_value(t, node, xs[1], "the target shape"))
    if target.count(-1) > 1:
        raise t.unsupported(node, "a reshape with two unknown dims")
    return t.emit("Reshape", [x], node["name"], {"target_shape": target or [1]})


@translates("Squeeze")
def squeeze(t, node, xs):
    x = t.tensor(node, xs[0])
    shape = t.shape(x)
    axes = {a % len(shape) for a in (t.attr(node, "squeeze_dims") or t.attr(node, "axis") or [])}
    if not axes or 0 in axes or any(shape[a] != 1 for a in axes) or None in shape[1:]:
        raise t.unsupported(node, "a Squeeze that is not of known size-1 non-batch axes")
    kept = [d for i, d in enumerate(shape) if i and i not in axes]
    return t.emit("Reshape", [x], node["name"], {"target_shape": kept})


@translates("ExpandDims")
def expand_dims(t, node, xs):
    if xs[0].kind != "tensor":
        c = np.expand_dims(np.asarray(xs[0].value), int(np.asarray(t.const(node, xs[1], "the axis")).reshape(())))
        return _Value(xs[0].kind, c)
    x = t.tensor(node, xs[0])
    shape = list(t.shape(x))
    axis = int(np.asarray(t.const(node, xs[1], "the axis")).reshape(()))
    axis = axis % (len(shape) + 1)
    if axis == 0 or None in shape[1:]:
        raise t.unsupported(node, "ExpandDims at the batch axis or of unknown dims")
    shape.insert(axis, 1)
    return t.emit("Reshape", [x], node["name"], {"target_shape": shape[1:]})


@translates("Transpose")
def transpose(t, node, xs):
    perm = [int(p) for p in t.const(node, xs[1], "the permutation").reshape(-1)]
    if perm[0] != 0:
        raise t.unsupported(node, "a Transpose that moves the batch axis")
    return t.emit("Permute", [t.tensor(node, xs[0])], node["name"], {"dims": perm[1:]})


@translates("ConcatV2")
def concat(t, node, xs):
    axis = int(np.asarray(_ints_value(t, node, xs[-1], "the axis")).reshape(()))
    if all(v.kind in ("const", "shape") for v in xs[:-1]):
        parts = [np.asarray(v.value).reshape(-1) for v in xs[:-1]]
        return _shape_result(*parts, out=np.concatenate(parts))
    return t.emit("Concatenate", [t.tensor(node, v) for v in xs[:-1]], node["name"], {"axis": axis})


@translates("Pad", "PadV2")
def pad(t, node, xs):
    x = t.tensor(node, xs[0])
    pads = t.const(node, xs[1], "the paddings").astype(int).tolist()
    rank = len(t.shape(x))
    if len(xs) > 2 and float(np.asarray(t.const(node, xs[2], "the pad value")).reshape(())) != 0:
        raise t.unsupported(node, "padding with a value other than 0")
    if rank not in (3, 4) or pads[0] != [0, 0] or pads[-1] != [0, 0]:
        raise t.unsupported(node, "padding of the batch or channel axis")
    op = f"ZeroPadding{rank - 2}D"
    return t.emit(op, [x], node["name"], {"padding": pads[1] if rank == 3 else pads[1:3]})


def _cropping(t, node, xs) -> _Value:
    x = t.tensor(node, xs[0])
    shape = t.shape(x)
    rank = len(shape)
    begin, end, strides = (t.const(node, v, "slice bounds").astype(int).tolist() for v in xs[1:4])
    if rank not in (3, 4) or any(s != 1 for s in strides) or len(begin) != rank or None in shape[1:] \
            or t.attr(node, "shrink_axis_mask", 0) or t.attr(node, "new_axis_mask", 0) \
            or t.attr(node, "ellipsis_mask", 0):
        raise t.unsupported(node, "a StridedSlice that is not a cropping of the spatial axes")
    bm, em = t.attr(node, "begin_mask", 0), t.attr(node, "end_mask", 0)
    crops = []
    for i in range(rank):
        size = shape[i]
        lo = 0 if bm & (1 << i) else begin[i]
        if em & (1 << i):
            hi = 0
        elif i == 0 or end[i] == 0:
            raise t.unsupported(node, "a StridedSlice that is not a cropping of the spatial axes")
        else:
            hi = size - (end[i] + size if end[i] < 0 else end[i])
        if i and lo < 0:
            lo += size
        crops.append([lo, hi])
    if crops[0] != [0, 0] or crops[-1] != [0, 0]:
        raise t.unsupported(node, "a StridedSlice of the batch or channel axis")
    op = f"Cropping{rank - 2}D"
    return t.emit(op, [x], node["name"], {"cropping": crops[1] if rank == 3 else crops[1:3]})


@translates("ResizeNearestNeighbor", "ResizeBilinear")
def resize(t, node, xs):
    x = t.tensor(node, xs[0])
    size = _ints_value(t, node, xs[1], "the size").reshape(-1).tolist()
    h, w = t.shape(x)[1:3]
    if h is None or w is None or size[0] % h or size[1] % w:
        raise t.unsupported(node, "a resize by a non-integer factor")
    bilinear = node["op"] == "ResizeBilinear"
    if t.attr(node, "align_corners", False) or (bilinear and not t.attr(node, "half_pixel_centers", False)):
        raise t.unsupported(node, "a resize with align_corners, or bilinear without half-pixel centers")
    return t.emit("UpSampling2D", [x], node["name"], {"size": [size[0] // h, size[1] // w],
                                                      "interpolation": "bilinear" if bilinear else "nearest"})
