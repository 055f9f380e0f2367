"""Test graphs covering every op of the catalogue (and the attrs TF.js treats specially).

Each case is a small graph built with ``GraphBuilder`` from seeded random
weights, plus a batch of inputs. ``expect`` is the format the automatic
choice must pick: ``layers`` where TF.js has a faithful layer, ``graph``
where the converter must fall back.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from savedmodel import GraphBuilder
from savedmodel.ir import Graph
from savedmodel.ops import ACTIVATIONS, OPS


@dataclass
class Case:
    id: str
    build: Callable[[], Graph]
    expect: str  # "layers" or "graph"
    batch: int = 3

    def graph(self) -> Graph:
        return self.build()

    def inputs(self, graph: Graph, seed: int = 1) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out = {}
        for spec in graph.inputs:
            shape = [self.batch if d is None else d for d in spec.shape]
            if spec.dtype.startswith("int"):
                out[spec.name] = rng.integers(0, 5, shape).astype(np.int32)
            else:
                out[spec.name] = rng.normal(0, 1, shape).astype(np.float32)
        return out


def _w(rng: np.random.Generator, *shape: int, scale: float = 0.5) -> np.ndarray:
    return (rng.normal(0, scale, shape)).astype(np.float32)


def _single(op: str, in_shape: tuple, weights: Callable[[np.random.Generator], dict] | None = None,
            **attrs) -> Callable[[], Graph]:
    def build() -> Graph:
        rng = np.random.default_rng(zlib.crc32(repr((op, in_shape, sorted(attrs.items()))).encode()))
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        y = b.op(op, x, name="out", **attrs, **(weights(rng) if weights else {}))
        return b.build(y)

    return build


def dense_case(act: str, in_shape=(6,), units=5, bias=True) -> Callable[[], Graph]:
    def build() -> Graph:
        rng = np.random.default_rng(7)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        y = b.op("Dense", x, name="out", units=units, activation=act, use_bias=bias,
                 kernel=_w(rng, in_shape[-1], units), bias=_w(rng, units) if bias else None)
        return b.build(y)

    return build


def conv_case(op: str, in_shape, filters, kernel, **attrs) -> Callable[[], Graph]:
    def build() -> Graph:
        rng = np.random.default_rng(11)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        groups = attrs.get("groups", 1)
        y = b.op(op, x, name="out", filters=filters, kernel_size=list(kernel),
                 kernel=_w(rng, *kernel, in_shape[-1] // groups, filters), bias=_w(rng, filters), **attrs)
        return b.build(y)

    return build


def depthwise_case(in_shape, kernel, mult, **attrs):
    def build() -> Graph:
        rng = np.random.default_rng(12)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        c = in_shape[-1]
        y = b.op("DepthwiseConv2D", x, name="out", kernel_size=list(kernel), depth_multiplier=mult,
                 kernel=_w(rng, *kernel, c, mult), bias=_w(rng, c * mult), **attrs)
        return b.build(y)

    return build


def separable_case(in_shape, filters, kernel, mult, **attrs):
    def build() -> Graph:
        rng = np.random.default_rng(13)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        c = in_shape[-1]
        y = b.op("SeparableConv2D", x, name="out", filters=filters, kernel_size=list(kernel), depth_multiplier=mult,
                 depthwise_kernel=_w(rng, *kernel, c, mult), pointwise_kernel=_w(rng, 1, 1, c * mult, filters),
                 bias=_w(rng, filters), **attrs)
        return b.build(y)

    return build


def transpose_case(in_shape, filters, kernel, **attrs):
    def build() -> Graph:
        rng = np.random.default_rng(14)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        y = b.op("Conv2DTranspose", x, name="out", filters=filters, kernel_size=list(kernel),
                 kernel=_w(rng, *kernel, filters, in_shape[-1]), bias=_w(rng, filters), **attrs)
        return b.build(y)

    return build


def bn_case(in_shape, axis=-1, center=True, scale=True):
    def build() -> Graph:
        rng = np.random.default_rng(15)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        c = (None, *in_shape)[axis]
        extra = {}
        if scale:
            extra["gamma"] = _w(rng, c) + 1
        if center:
            extra["beta"] = _w(rng, c)
        y = b.op("BatchNormalization", x, name="out", axis=axis, epsilon=1e-3, center=center, scale=scale,
                 moving_mean=_w(rng, c), moving_variance=np.abs(_w(rng, c)) + 0.5, **extra)
        return b.build(y)

    return build


def ln_case(in_shape, axis, rms=False):
    def build() -> Graph:
        rng = np.random.default_rng(16)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        full = (None, *in_shape)
        dims = [full[a] for a in sorted(a % len(full) for a in axis)]
        y = b.op("LayerNormalization", x, name="out", axis=axis, epsilon=1e-3, rms_scaling=rms,
                 gamma=_w(rng, *dims) + 1, beta=_w(rng, *dims))
        return b.build(y)

    return build


def norm_case(in_shape, stat_shape, invert=False):
    def build() -> Graph:
        rng = np.random.default_rng(17)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        y = b.op("Normalization", x, name="out", invert=invert, mean=_w(rng, *stat_shape),
                 variance=np.abs(_w(rng, *stat_shape)) + 0.1)
        return b.build(y)

    return build


def prelu_case(in_shape, shared):
    def build() -> Graph:
        rng = np.random.default_rng(18)
        b = GraphBuilder()
        x = b.input("x", (None, *in_shape))
        shape = [1 if i + 1 in shared else d for i, d in enumerate(in_shape)]
        y = b.op("PReLU", x, name="out", shared_axes=shared, alpha=_w(rng, *shape))
        return b.build(y)

    return build


def merge_case(op, shapes, **attrs):
    def build() -> Graph:
        b = GraphBuilder()
        xs = [b.input(f"x{i}", (None, *s)) for i, s in enumerate(shapes)]
        return b.build(b.op(op, *xs, name="out", **attrs))

    return build


def residual_cnn():
    """A small functional CNN: conv, BN, relu, a residual add, concat, pooling, dense (multi-output)."""
    rng = np.random.default_rng(21)
    b = GraphBuilder()
    x = b.input("image", (None, 12, 12, 3))
    h = b.op("Conv2D", x, name="conv1", filters=8, kernel_size=[3, 3], padding="same", activation="relu",
             kernel=_w(rng, 3, 3, 3, 8), bias=_w(rng, 8))
    h = b.op("BatchNormalization", h, name="bn1", moving_mean=_w(rng, 8), moving_variance=np.abs(_w(rng, 8)) + .5,
             gamma=_w(rng, 8) + 1, beta=_w(rng, 8))
    r = b.op("Conv2D", h, name="conv2", filters=8, kernel_size=[3, 3], padding="same", kernel=_w(rng, 3, 3, 8, 8),
             bias=_w(rng, 8))
    h = b.op("Add", h, r, name="residual")
    h = b.op("ReLU", h, name="relu")
    d = b.op("DepthwiseConv2D", h, name="dw", kernel_size=[3, 3], strides=[2, 2], padding="same",
             kernel=_w(rng, 3, 3, 8, 1), bias=_w(rng, 8))
    p = b.op("MaxPooling2D", h, name="pool", pool_size=[2, 2], strides=[2, 2])
    h = b.op("Concatenate", d, p, name="concat", axis=-1)
    g = b.op("GlobalAveragePooling2D", h, name="gap")
    f = b.op("Flatten", h, name="flat")
    y1 = b.op("Dense", g, name="probs", units=4, activation="softmax", kernel=_w(rng, 16, 4), bias=_w(rng, 4))
    y2 = b.op("Dense", f, name="regress", units=2, kernel=_w(rng, 16 * 36, 2, scale=0.05), bias=_w(rng, 2))
    return b.build(y1, y2)


def big_mlp():
    """Several MB of weights: exercises sharding."""
    rng = np.random.default_rng(22)
    b = GraphBuilder()
    x = b.input("x", (None, 64))
    h = b.op("Dense", x, name="wide", units=1200, activation="relu", kernel=_w(rng, 64, 1200, scale=0.1),
             bias=_w(rng, 1200))
    h = b.op("Dense", h, name="wide2", units=900, activation="tanh", kernel=_w(rng, 1200, 900, scale=0.03),
             bias=_w(rng, 900))
    return b.build(b.op("Dense", h, name="out", units=10, kernel=_w(rng, 900, 10, scale=0.05), bias=_w(rng, 10)))


def two_input_graph():
    """Two inputs, an odd name, Subtract, Multiply, Dot and a graph-only activation: forces a graph model."""
    rng = np.random.default_rng(23)
    b = GraphBuilder()
    a = b.input("left input", (None, 6))
    c = b.input("right", (None, 6))
    d = b.op("Subtract", a, c, name="diff")
    m = b.op("Multiply", a, c, name="prod")
    h = b.op("Dense", d, name="proj", units=6, activation="hard_silu", kernel=_w(rng, 6, 6), bias=_w(rng, 6))
    dot = b.op("Dot", h, m, name="dot", axes=[1, 1], normalize=True)
    cat = b.op("Concatenate", h, m, dot, name="cat", axis=1)
    return b.build(b.op("Dense", cat, name="head/out", units=3, activation="exponential", kernel=_w(rng, 13, 3),
                        bias=_w(rng, 3)))


CASES: list[Case] = [
    # Dense and every activation (fused): the TF.js strings, leaky_relu split off, the rest as graph models.
    *[Case(f"dense_{act}", dense_case(act),
           "graph" if act in ("hard_sigmoid", "hard_silu", "gelu_approximate", "exponential") else "layers")
      for act in ACTIVATIONS],
    Case("dense_rank3_nobias", dense_case("relu", in_shape=(4, 6), bias=False), "layers"),
    *[Case(f"activation_{act}", _single("Activation", (4, 5), activation=act),
           "graph" if act in ("hard_sigmoid", "hard_silu", "gelu_approximate", "exponential") else "layers")
      for act in ("softmax", "log_softmax", "gelu", "silu", "leaky_relu", "hard_sigmoid", "exponential")],
    Case("conv2d_same", conv_case("Conv2D", (9, 9, 3), 4, (3, 3), padding="same", activation="relu"), "layers"),
    Case("conv2d_stride2_odd", conv_case("Conv2D", (9, 7, 2), 3, (3, 2), strides=[2, 2], padding="same"), "layers"),
    Case("conv2d_dilated", conv_case("Conv2D", (10, 10, 2), 3, (3, 3), dilation_rate=[2, 2]), "layers"),
    Case("conv2d_groups", conv_case("Conv2D", (6, 6, 4), 6, (3, 3), groups=2, padding="same"), "graph"),
    Case("conv1d_valid", conv_case("Conv1D", (12, 3), 4, (3,), strides=[2], activation="tanh"), "layers"),
    Case("conv1d_causal", conv_case("Conv1D", (12, 3), 4, (3,), padding="causal", dilation_rate=[2]), "layers"),
    Case("conv1d_causal_groups", conv_case("Conv1D", (12, 4), 4, (3,), padding="causal", groups=2), "graph"),
    Case("conv1d_same", conv_case("Conv1D", (11, 3), 4, (4,), padding="same"), "layers"),
    Case("conv1d_groups", conv_case("Conv1D", (10, 4), 4, (3,), groups=4), "graph"),
    Case("depthwise", depthwise_case((8, 8, 3), (3, 3), 2, padding="same", activation="relu6"), "layers"),
    Case("depthwise_stride", depthwise_case((9, 9, 2), (3, 3), 1, strides=[2, 2]), "layers"),
    Case("separable", separable_case((8, 8, 3), 5, (3, 3), 2, padding="same", activation="elu"), "layers"),
    Case("conv_transpose", transpose_case((5, 5, 3), 4, (3, 3), strides=[2, 2], padding="same"), "layers"),
    Case("conv_transpose_valid", transpose_case((4, 4, 2), 3, (2, 2), strides=[2, 2]), "layers"),
    Case("conv_transpose_outpad", transpose_case((4, 4, 2), 3, (3, 3), strides=[2, 2], padding="same",
                                                 output_padding=[0, 1]), "graph"),
    *[Case(f"{op.lower()}_{pad}", _single(op, (9, 9, 2) if op.endswith("2D") else (9, 2),
                                          pool_size=[3, 3] if op.endswith("2D") else [3],
                                          strides=[2, 2] if op.endswith("2D") else [2], padding=pad), "layers")
      for op in ("MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D") for pad in ("valid", "same")],
    *[Case(f"{op.lower()}_keep{int(k)}", _single(op, (5, 4, 3) if op.endswith("2D") else (6, 3), keepdims=k),
           "layers")
      for op in ("GlobalMaxPooling1D", "GlobalMaxPooling2D", "GlobalAveragePooling1D", "GlobalAveragePooling2D")
      for k in (False, True)],
    Case("batchnorm", bn_case((5, 5, 4)), "layers"),
    Case("batchnorm_axis1_noscale", bn_case((3, 4), axis=1, scale=False), "graph"),
    Case("batchnorm_noscale", bn_case((3, 4), scale=False), "layers"),
    Case("batchnorm_nocenter", bn_case((6,), center=False), "layers"),
    Case("layernorm", ln_case((4, 6), [-1]), "layers"),
    Case("layernorm_2axes", ln_case((3, 4, 5), [2, 3]), "layers"),
    Case("layernorm_rms", ln_case((4, 6), [-1], rms=True), "graph"),
    Case("normalization_channel", norm_case((4, 3), (1, 3)), "layers"),
    Case("normalization_invert", norm_case((5,), (5,), invert=True), "layers"),
    Case("normalization_scalar", norm_case((2, 3), ()), "layers"),
    Case("normalization_2d_stats", norm_case((2, 3), (2, 3)), "graph"),
    Case("relu_cap", _single("ReLU", (7,), max_value=1.5), "layers"),
    Case("relu_slope", _single("ReLU", (7,), negative_slope=0.1), "layers"),
    Case("relu_threshold", _single("ReLU", (7,), threshold=0.3), "layers"),
    Case("relu_all", _single("ReLU", (7,), max_value=2.0, negative_slope=0.1, threshold=-0.5), "graph"),
    Case("relu6", _single("ReLU", (7,), max_value=6.0), "layers"),
    Case("leakyrelu", _single("LeakyReLU", (7,), negative_slope=0.25), "layers"),
    Case("elu_alpha", _single("ELU", (7,), alpha=0.7), "graph"),
    Case("softmax_axis1", _single("Softmax", (4, 5), axis=1), "graph"),
    Case("softmax_last", _single("Softmax", (4, 5), axis=[-1]), "layers"),
    Case("softmax_axes", _single("Softmax", (4, 5), axis=[1, 2]), "graph"),
    Case("prelu", prelu_case((4, 4, 3), []), "layers"),
    Case("prelu_shared", prelu_case((4, 4, 3), [1, 2]), "layers"),
    Case("rescaling", _single("Rescaling", (4,), scale=0.25, offset=-1.0), "layers"),
    Case("rescaling_vector", _single("Rescaling", (2, 3), scale=[1.0, 2.0, 0.5], offset=[0.0, 1.0, -1.0]), "layers"),
    Case("identity", _single("Identity", (3,)), "layers"),
    Case("flatten", _single("Flatten", (3, 2, 4)), "layers"),
    Case("reshape", _single("Reshape", (12,), target_shape=[3, -1]), "layers"),
    Case("permute", _single("Permute", (2, 3, 4), dims=[3, 1, 2]), "layers"),
    Case("repeat_vector", _single("RepeatVector", (4,), n=3), "layers"),
    *[Case(f"merge_{op.lower()}", merge_case(op, [(4, 3), (4, 3), (4, 3)]), "layers")
      for op in ("Add", "Multiply", "Average", "Maximum", "Minimum")],
    Case("merge_subtract", merge_case("Subtract", [(5,), (5,)]), "layers"),
    Case("concatenate_axis1", merge_case("Concatenate", [(2, 3), (4, 3)], axis=1), "layers"),
    Case("dot", merge_case("Dot", [(5,), (5,)], axes=[1, 1]), "layers"),
    Case("dot_normalize_3d", merge_case("Dot", [(3, 4), (3, 5)], axes=[1, 1], normalize=True), "layers"),
    Case("zeropad1d", _single("ZeroPadding1D", (5, 2), padding=[1, 2]), "layers"),
    Case("zeropad2d", _single("ZeroPadding2D", (3, 4, 2), padding=[[1, 0], [2, 1]]), "layers"),
    Case("crop1d", _single("Cropping1D", (7, 2), cropping=[2, 1]), "layers"),
    Case("crop2d", _single("Cropping2D", (6, 5, 2), cropping=[[1, 2], [0, 1]]), "layers"),
    Case("upsample1d", _single("UpSampling1D", (4, 3), size=3), "layers"),
    Case("upsample2d", _single("UpSampling2D", (3, 4, 2), size=[2, 3]), "layers"),
    Case("upsample2d_bilinear", _single("UpSampling2D", (3, 4, 2), size=[2, 2], interpolation="bilinear"), "graph"),
    Case("residual_cnn", residual_cnn, "layers"),
    Case("two_input_graph", two_input_graph, "graph"),
]



def missing_ops() -> list[str]:
    """Catalogue ops the web converter maps that no case covers (the coverage test asserts this is empty)."""
    covered = {n.op for case in CASES for n in case.graph().nodes}
    return sorted(set(OPS) - set(unmapped_ops()) - covered)


def unmapped_ops() -> list[str]:
    """Catalogue ops with neither a TF.js layer nor a graph lowering (the sequence and ONNX-level ops)."""
    from converters.web.graph_map import GRAPH_MAPPINGS
    from converters.web.layers_map import LAYER_MAPPINGS

    return sorted(set(OPS) - set(GRAPH_MAPPINGS) - set(LAYER_MAPPINGS))
