"""Shared helpers of the converters.lite and runtime.lite tests: graphs built with the
GraphBuilder (no Keras needed), LiteRT runs on its builtin and reference kernels, and
single-op .tflite models."""

from __future__ import annotations

import numpy as np

from converters.lite.model import LiteModel, QuantParams, Tensor
from converters.lite.writer import serialize
from savedmodel import GraphBuilder

Q = QuantParams.per_tensor


def litert(blob: bytes, inputs: list[np.ndarray], kernels: str = "reference") -> list[np.ndarray]:
    """Run a .tflite model in LiteRT ('reference' or 'builtin' kernels, no delegates); outputs in order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = {"reference": OpResolverType.BUILTIN_REF,
                "builtin": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}[kernels]
    it = Interpreter(model_content=blob, experimental_op_resolver_type=resolver)
    details = it.get_input_details()
    for d, x in zip(details, inputs, strict=True):
        if tuple(d["shape"]) != x.shape:
            it.resize_tensor_input(d["index"], x.shape)
    it.allocate_tensors()
    for d, x in zip(details, inputs, strict=True):
        it.set_tensor(d["index"], x)
    it.invoke()
    return [it.get_tensor(d["index"]) for d in it.get_output_details()]


def single_op(op: str, inputs: list[tuple], outputs: list[tuple], options: dict | None = None,
              version: int = 1) -> LiteModel:
    """A one-op model; inputs are (dtype, shape, quant, constant data or None), outputs (dtype, shape, quant)."""
    m = LiteModel()
    idx = []
    for dtype, shape, q, data in inputs:
        if data is not None:
            idx.append(m.add_constant(f"c{len(m.tensors)}", np.asarray(data, dtype), q))
        else:
            i = m.add_tensor(Tensor(f"in{len(m.tensors)}", dtype, tuple(shape), None, None, q))
            idx.append(i)
            m.inputs.append(i)
    outs = [m.add_tensor(Tensor(f"out{k}", d, tuple(s), None, None, q)) for k, (d, s, q) in enumerate(outputs)]
    m.add_operator(op, idx, outs, options or {}, version)
    m.outputs = outs
    return m


def run_both(model: LiteModel, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ours, LiteRT reference, LiteRT builtin) first output of a model."""
    import runtime.lite

    blob = serialize(model)
    ours = runtime.lite.from_bytes(blob).interpreter.run(dict(zip(model.inputs, xs, strict=True)))[model.outputs[0]]
    return ours, litert(blob, xs, "reference")[0], litert(blob, xs, "builtin")[0]


# -- graphs -----------------------------------------------------------------------------------


def _w(rng, *shape, scale=0.3):
    return (rng.standard_normal(shape) * scale).astype("f4")


def mlp(seed: int = 0):
    """Flatten -> Dense 32 relu -> Dense 16 relu -> Dense 5 softmax over 6x6x1 images."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("image", (None, 6, 6, 1))
    h = b.op("Flatten", x, name="flatten")
    h = b.op("Dense", h, units=32, activation="relu", kernel=_w(rng, 36, 32), bias=_w(rng, 32, scale=0.1), name="fc1")
    h = b.op("Dense", h, units=16, activation="relu", kernel=_w(rng, 32, 16), bias=_w(rng, 16, scale=0.1), name="fc2")
    y = b.op("Dense", h, units=5, activation="softmax", kernel=_w(rng, 16, 5), bias=_w(rng, 5, scale=0.1),
             name="probs")
    return b.build(y)


def _bn(b, rng, x, c, name):
    return b.op("BatchNormalization", x, gamma=rng.uniform(0.5, 1.5, c).astype("f4"), beta=_w(rng, c, scale=0.1),
                moving_mean=_w(rng, c, scale=0.1), moving_variance=rng.uniform(0.5, 2.0, c).astype("f4"), name=name)


def cnn(seed: int = 1):
    """Conv (no bias) + BN + ReLU, depthwise + ReLU6, max and average pooling, GAP, Dense softmax."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("image", (None, 12, 12, 3))
    h = b.op("Conv2D", x, filters=8, kernel_size=[3, 3], padding="same", use_bias=False, kernel=_w(rng, 3, 3, 3, 8),
             name="conv")
    h = _bn(b, rng, h, 8, "bn")
    h = b.op("ReLU", h, name="relu")
    h = b.op("DepthwiseConv2D", h, kernel_size=[3, 3], padding="same", activation="relu6",
             kernel=_w(rng, 3, 3, 8, 1), bias=_w(rng, 8, scale=0.1), name="dw")
    h = b.op("MaxPooling2D", h, pool_size=[2, 2], strides=[2, 2], name="maxpool")
    h = b.op("Conv2D", h, filters=12, kernel_size=[3, 3], strides=[2, 2], padding="valid", activation="relu",
             kernel=_w(rng, 3, 3, 8, 12), bias=_w(rng, 12, scale=0.1), name="conv2")
    h = b.op("AveragePooling2D", h, pool_size=[2, 2], strides=[1, 1], padding="same", name="avgpool")
    h = b.op("GlobalAveragePooling2D", h, name="gap")
    y = b.op("Dense", h, units=4, activation="softmax", kernel=_w(rng, 12, 4), bias=_w(rng, 4, scale=0.1),
             name="probs")
    return b.build(y)


def residual(seed: int = 2):
    """Two convolutions and a residual Add (ReLU fused into the Add), then a Concatenate."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("image", (None, 8, 8, 4))
    h = b.op("Conv2D", x, filters=6, kernel_size=[3, 3], padding="same", activation="relu",
             kernel=_w(rng, 3, 3, 4, 6), bias=_w(rng, 6, scale=0.1), name="conv_a")
    r = b.op("Conv2D", h, filters=6, kernel_size=[3, 3], padding="same", kernel=_w(rng, 3, 3, 6, 6),
             bias=_w(rng, 6, scale=0.1), name="conv_b")
    s = b.op("Add", h, r, name="add")
    s = b.op("ReLU", s, name="add_relu")
    side = b.op("Conv2D", x, filters=3, kernel_size=[1, 1], kernel=_w(rng, 1, 1, 4, 3), bias=_w(rng, 3, scale=0.1),
                name="side")
    c = b.op("Concatenate", s, side, axis=-1, name="concat")
    c = b.op("GlobalAveragePooling2D", c, name="gap")
    y = b.op("Dense", c, units=3, kernel=_w(rng, 9, 3), bias=_w(rng, 3, scale=0.1), name="logits")
    return b.build(y)


def inverted_residual(seed: int = 3):
    """A MobileNetV2 block: 1x1 expand + BN + ReLU6, 3x3 depthwise + BN + ReLU6, 1x1 project + BN, Add."""
    rng = np.random.default_rng(seed)
    b = GraphBuilder()
    x = b.input("image", (None, 10, 10, 8))
    h = b.op("Conv2D", x, filters=24, kernel_size=[1, 1], use_bias=False, kernel=_w(rng, 1, 1, 8, 24), name="expand")
    h = _bn(b, rng, h, 24, "expand_bn")
    h = b.op("ReLU", h, max_value=6.0, name="expand_relu")
    h = b.op("DepthwiseConv2D", h, kernel_size=[3, 3], padding="same", use_bias=False, kernel=_w(rng, 3, 3, 24, 1),
             name="depthwise")
    h = _bn(b, rng, h, 24, "depthwise_bn")
    h = b.op("ReLU", h, max_value=6.0, name="depthwise_relu")
    h = b.op("Conv2D", h, filters=8, kernel_size=[1, 1], use_bias=False, kernel=_w(rng, 1, 1, 24, 8), name="project")
    h = _bn(b, rng, h, 8, "project_bn")
    y = b.op("Add", x, h, name="add")
    return b.build(y)


GRAPHS = {"mlp": mlp, "cnn": cnn, "residual": residual, "inverted_residual": inverted_residual}


def sample_inputs(graph, n: int, seed: int = 10) -> np.ndarray:
    shape = graph.inputs[0].shape[1:]
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype("f4")
