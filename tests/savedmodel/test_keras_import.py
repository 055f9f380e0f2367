"""Live Keras models -> Graph -> numpy runtime, compared with Keras' own predict.

Every layer of the importer's table runs in a tiny model over its
configuration space; whole models cover Sequential, Functional (two inputs,
two outputs, residuals, a nested Sequential, a shared layer) and subclassed
models using keras.ops. Floats are compared at rtol=1e-5, atol=1e-6.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
keras = pytest.importorskip("keras")

from keras import layers as L  # noqa: E402
from keras import ops  # noqa: E402

import runtime  # noqa: E402
from savedmodel.errors import GraphError, UnsupportedError  # noqa: E402
from savedmodel.importers.keras import import_keras_model, supported_classes  # noqa: E402
from savedmodel.importers.keras.activations import resolve  # noqa: E402
from savedmodel.importers.keras.graph import build_graph  # noqa: E402
from savedmodel.importers.keras.layers import DROPPED, LAYERS  # noqa: E402
from savedmodel.importers.keras.records import Call, LayerRecord, ModelRecord, Ref  # noqa: E402
from savedmodel.importers.keras.sequence import SEQUENCE_LAYERS  # noqa: E402

pytestmark = pytest.mark.keras

RTOL, ATOL = 1e-5, 1e-6


# -- helpers ---------------------------------------------------------------------------

def randomize(model: keras.Model, seed: int = 0) -> keras.Model:
    """Random values for every float variable (Keras starts biases and BN statistics at 0/1)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        if "float" not in str(v.dtype):
            continue
        shape = tuple(v.shape)
        if "variance" in v.name:
            v.assign(rng.uniform(0.5, 2.0, shape).astype("float32"))
        else:
            v.assign(rng.uniform(-1.0, 1.0, shape).astype("float32"))
    return model


def sample(shape: tuple[int, ...], seed: int = 1, batch: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def check(model: keras.Model, x, graph=None, predict: bool = True) -> dict[str, np.ndarray]:
    """Import (unless given the graph), run both, compare every output; return the runtime's outputs.

    The reference is ``model.predict``; ``predict=False`` calls the model
    eagerly with training=False instead (the same Keras computation without
    predict's ~0.3 s per-model tf.data/tf.function setup), used by the
    per-layer cases to keep the suite fast.
    """
    if graph is None:
        graph, _ = import_keras_model(model)
    graph.validate()
    got = runtime.from_graph(graph).predict(x)
    if predict:
        want = model.predict(x, verbose=0)
    else:
        want = keras.tree.map_structure(np.asarray, model(x, training=False))
    names = [o.name for o in graph.outputs]
    if not isinstance(got, dict):
        got = {names[0]: got}
    wants = want if isinstance(want, (list, tuple)) else [want]
    wants = list(want.values()) if isinstance(want, dict) else wants
    assert len(wants) == len(names)
    for name, w in zip(names, wants, strict=True):
        w = np.asarray(w)
        assert got[name].shape == w.shape, name
        assert got[name].dtype == w.dtype, name
        np.testing.assert_allclose(got[name], w, rtol=RTOL, atol=ATOL, err_msg=name)
    return got


def wrap(layer: L.Layer, *shapes: tuple[int, ...]) -> keras.Model:
    """A model applying ``layer`` to one input (Sequential) or a list of inputs (Functional)."""
    if len(shapes) == 1:
        return randomize(keras.Sequential([keras.Input(shapes[0]), layer]))
    inputs = [keras.Input(s, name=f"in{i}") for i, s in enumerate(shapes)]
    return randomize(keras.Model(inputs, layer(inputs)))


def run_layer(layer: L.Layer, *shapes: tuple[int, ...]) -> None:
    model = wrap(layer, *shapes)
    xs = [sample(s, seed=i + 1) for i, s in enumerate(shapes)]
    check(model, xs[0] if len(xs) == 1 else {f"in{i}": x for i, x in enumerate(xs)}, predict=False)


# -- every layer over its configuration space ------------------------------------------

ACTIVATION_NAMES = ["linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softmax", "log_softmax",
                    "gelu", "silu", "swish", "hard_silu", "hard_swish", "elu", "selu", "leaky_relu", "softplus",
                    "softsign", "exponential", "mish"]

CASES = [
    # Dense
    *[(f"dense-{a}", lambda a=a: L.Dense(3, activation=a), [(5,)]) for a in ACTIVATION_NAMES],
    ("dense-nobias", lambda: L.Dense(4, use_bias=False), [(5,)]),
    ("dense-rank3", lambda: L.Dense(2, activation="relu"), [(4, 5)]),
    ("dense-act-layer", lambda: L.Dense(3, activation=L.LeakyReLU(negative_slope=0.1)), [(5,)]),
    # Conv1D
    ("conv1d", lambda: L.Conv1D(3, 3), [(11, 2)]),
    ("conv1d-same-s2", lambda: L.Conv1D(4, 3, strides=2, padding="same"), [(11, 2)]),
    ("conv1d-causal-d2", lambda: L.Conv1D(3, 3, padding="causal", dilation_rate=2, activation="tanh"), [(11, 2)]),
    ("conv1d-groups", lambda: L.Conv1D(4, 2, groups=2, use_bias=False), [(9, 4)]),
    ("conv1d-even-same", lambda: L.Conv1D(2, 4, strides=3, padding="same"), [(10, 3)]),
    # Conv2D
    ("conv2d", lambda: L.Conv2D(3, 3), [(7, 9, 2)]),
    ("conv2d-same-s2", lambda: L.Conv2D(4, (2, 3), strides=2, padding="same", activation="relu"), [(7, 9, 2)]),
    ("conv2d-s21", lambda: L.Conv2D(2, 3, strides=(2, 1)), [(8, 7, 3)]),
    ("conv2d-d2", lambda: L.Conv2D(3, 3, dilation_rate=2, padding="same"), [(9, 8, 2)]),
    ("conv2d-groups", lambda: L.Conv2D(6, 3, groups=3, use_bias=False), [(6, 6, 3)]),
    ("conv2d-1x1", lambda: L.Conv2D(5, 1, activation="swish"), [(4, 4, 3)]),
    # DepthwiseConv2D
    ("depthwise", lambda: L.DepthwiseConv2D(3), [(7, 7, 3)]),
    ("depthwise-dm2-s2-same", lambda: L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2),
     [(7, 8, 2)]),
    ("depthwise-d2-relu6", lambda: L.DepthwiseConv2D((2, 3), dilation_rate=2, activation="relu6", use_bias=False),
     [(8, 8, 3)]),
    # SeparableConv2D
    ("separable", lambda: L.SeparableConv2D(4, 3), [(7, 7, 3)]),
    ("separable-dm2-s2", lambda: L.SeparableConv2D(5, 3, strides=2, padding="same", depth_multiplier=2,
                                                   activation="relu"), [(9, 8, 2)]),
    ("separable-d2-nobias", lambda: L.SeparableConv2D(3, 2, dilation_rate=2, use_bias=False), [(7, 7, 2)]),
    # Conv2DTranspose
    ("deconv", lambda: L.Conv2DTranspose(3, 3), [(5, 4, 2)]),
    ("deconv-s2-same", lambda: L.Conv2DTranspose(2, 3, strides=2, padding="same"), [(5, 4, 3)]),
    ("deconv-s2-valid-even", lambda: L.Conv2DTranspose(2, (2, 4), strides=2), [(3, 5, 2)]),
    ("deconv-outpad", lambda: L.Conv2DTranspose(2, 3, strides=2, output_padding=1, activation="relu"), [(4, 4, 2)]),
    ("deconv-nobias-s3", lambda: L.Conv2DTranspose(3, 2, strides=(3, 2), use_bias=False, padding="same"),
     [(3, 4, 2)]),
    # Pooling
    ("maxpool1d", lambda: L.MaxPooling1D(2), [(7, 3)]),
    ("maxpool1d-3-1-same", lambda: L.MaxPooling1D(3, strides=1, padding="same"), [(7, 3)]),
    ("avgpool1d-same", lambda: L.AveragePooling1D(2, padding="same"), [(7, 3)]),
    ("avgpool1d-3-2", lambda: L.AveragePooling1D(3, strides=2), [(8, 2)]),
    ("maxpool2d", lambda: L.MaxPooling2D(), [(7, 9, 3)]),
    ("maxpool2d-3-same", lambda: L.MaxPooling2D(3, strides=2, padding="same"), [(7, 9, 3)]),
    ("avgpool2d-same", lambda: L.AveragePooling2D((2, 3), padding="same"), [(7, 8, 2)]),
    ("avgpool2d-s12", lambda: L.AveragePooling2D(2, strides=(1, 2)), [(5, 6, 2)]),
    ("gmaxpool1d", lambda: L.GlobalMaxPooling1D(), [(5, 3)]),
    ("gavgpool1d-keep", lambda: L.GlobalAveragePooling1D(keepdims=True), [(5, 3)]),
    ("gmaxpool2d-keep", lambda: L.GlobalMaxPooling2D(keepdims=True), [(4, 5, 3)]),
    ("gavgpool2d", lambda: L.GlobalAveragePooling2D(), [(4, 5, 3)]),
    # Normalisation
    ("bn", lambda: L.BatchNormalization(), [(4, 4, 3)]),
    ("bn-nocenter", lambda: L.BatchNormalization(center=False, epsilon=1e-2), [(5,)]),
    ("bn-noscale", lambda: L.BatchNormalization(scale=False), [(5,)]),
    ("bn-none", lambda: L.BatchNormalization(center=False, scale=False), [(3, 5)]),
    ("bn-axis1", lambda: L.BatchNormalization(axis=1), [(4, 3, 2)]),
    ("ln", lambda: L.LayerNormalization(), [(6,)]),
    ("ln-2axes", lambda: L.LayerNormalization(axis=[-2, -1], epsilon=1e-5), [(3, 4)]),
    ("ln-nocenter-noscale", lambda: L.LayerNormalization(center=False, scale=False), [(3, 4)]),
    ("ln-axis1", lambda: L.LayerNormalization(axis=1, scale=False), [(3, 4)]),
    ("ln-rms-scaling", lambda: L.LayerNormalization(rms_scaling=True), [(3, 4)]),
    ("rescaling", lambda: L.Rescaling(1 / 255.0, offset=-0.5), [(4, 3)]),
    ("rescaling-vector", lambda: L.Rescaling([0.5, 2.0, -1.0], offset=[1.0, 0.0, 2.0]), [(2, 3)]),
    # Activation layers
    *[(f"activation-{a}", lambda a=a: L.Activation(a), [(6,)]) for a in ACTIVATION_NAMES],
    ("relu", lambda: L.ReLU(), [(6,)]),
    ("relu-max6", lambda: L.ReLU(max_value=0.5), [(6,)]),
    ("relu-slope", lambda: L.ReLU(negative_slope=0.1), [(6,)]),
    ("relu-threshold", lambda: L.ReLU(max_value=1.0, negative_slope=0.2, threshold=0.3), [(6,)]),
    ("leaky-relu", lambda: L.LeakyReLU(), [(6,)]),
    ("leaky-relu-0.05", lambda: L.LeakyReLU(negative_slope=0.05), [(6,)]),
    ("elu", lambda: L.ELU(alpha=0.5), [(6,)]),
    ("softmax", lambda: L.Softmax(), [(3, 4)]),
    ("softmax-axis1", lambda: L.Softmax(axis=1), [(3, 4)]),
    ("softmax-axes", lambda: L.Softmax(axis=[1, 2]), [(3, 4)]),
    ("prelu", lambda: L.PReLU(), [(3, 4)]),
    ("prelu-shared", lambda: L.PReLU(shared_axes=[1]), [(3, 4)]),
    ("prelu-shared2d", lambda: L.PReLU(shared_axes=[1, 2]), [(3, 4, 2)]),
    # Reshaping
    ("flatten", lambda: L.Flatten(), [(3, 4, 2)]),
    ("flatten-2d", lambda: L.Flatten(), [(5,)]),
    ("reshape", lambda: L.Reshape((4, 3)), [(3, 4)]),
    ("reshape-minus1", lambda: L.Reshape((2, -1)), [(3, 4)]),
    ("permute", lambda: L.Permute((2, 1)), [(3, 4)]),
    ("permute-3", lambda: L.Permute((3, 1, 2)), [(2, 3, 4)]),
    ("repeat-vector", lambda: L.RepeatVector(3), [(4,)]),
    # Merging
    ("concat", lambda: L.Concatenate(), [(3,), (4,)]),
    ("concat-axis1", lambda: L.Concatenate(axis=1), [(2, 3), (4, 3)]),
    ("concat-3", lambda: L.Concatenate(axis=-1), [(2, 3), (2, 1), (2, 2)]),
    ("add", lambda: L.Add(), [(4,), (4,)]),
    ("add-3", lambda: L.Add(), [(2, 3), (2, 3), (2, 3)]),
    ("subtract", lambda: L.Subtract(), [(4,), (4,)]),
    ("multiply", lambda: L.Multiply(), [(4,), (4,)]),
    ("average", lambda: L.Average(), [(4,), (4,), (4,)]),
    ("maximum", lambda: L.Maximum(), [(4,), (4,)]),
    ("minimum", lambda: L.Minimum(), [(3, 2), (3, 2)]),
    ("dot", lambda: L.Dot(axes=1), [(4,), (4,)]),
    ("dot-normalize", lambda: L.Dot(axes=1, normalize=True), [(4,), (4,)]),
    ("dot-3d", lambda: L.Dot(axes=(2, 2)), [(3, 4), (2, 4)]),
    ("dot-3d-12", lambda: L.Dot(axes=(1, 2)), [(3, 4), (2, 3)]),
    # Padding, cropping, resampling
    ("zeropad1d", lambda: L.ZeroPadding1D(2), [(5, 2)]),
    ("zeropad1d-asym", lambda: L.ZeroPadding1D((1, 3)), [(5, 2)]),
    ("zeropad2d", lambda: L.ZeroPadding2D(), [(3, 4, 2)]),
    ("zeropad2d-hw", lambda: L.ZeroPadding2D((2, 1)), [(3, 4, 2)]),
    ("zeropad2d-asym", lambda: L.ZeroPadding2D(((1, 2), (3, 0))), [(3, 4, 2)]),
    ("crop1d", lambda: L.Cropping1D((1, 2)), [(6, 2)]),
    ("crop2d", lambda: L.Cropping2D(1), [(5, 6, 2)]),
    ("crop2d-asym", lambda: L.Cropping2D(((1, 0), (2, 1))), [(5, 6, 2)]),
    ("upsample1d", lambda: L.UpSampling1D(3), [(4, 2)]),
    ("upsample2d", lambda: L.UpSampling2D((2, 3)), [(3, 4, 2)]),
    ("upsample2d-bilinear", lambda: L.UpSampling2D(2, interpolation="bilinear"), [(3, 4, 2)]),
    ("upsample2d-bilinear-23", lambda: L.UpSampling2D((2, 3), interpolation="bilinear"), [(3, 3, 1)]),
]


@pytest.mark.parametrize("factory,shapes", [pytest.param(f, s, id=i) for i, f, s in CASES])
def test_layer(factory, shapes):
    run_layer(factory(), *shapes)


def test_every_table_layer_has_a_case():
    # The sequence layers have their cases in test_keras_sequence.py.
    tested = {type(f()).__name__ for _, f, _ in CASES} | set(DROPPED) | {"Normalization"} | set(SEQUENCE_LAYERS)
    assert set(LAYERS) <= tested, sorted(set(LAYERS) - tested)


@pytest.mark.parametrize("axis,invert", [(-1, False), (-1, True), (None, False), ((1, 2), False), (1, False)])
def test_normalization_adapted(axis, invert):
    layer = L.Normalization(axis=axis, invert=invert)
    data = sample((3, 4), seed=7, batch=20) * 3.0 + 1.0
    layer.adapt(data)
    model = keras.Sequential([keras.Input((3, 4)), layer])
    check(model, sample((3, 4)), predict=False)


def test_normalization_given_statistics():
    model = keras.Sequential([keras.Input((2, 3)), L.Normalization(mean=[1.0, 2.0, 3.0], variance=[4.0, 0.25, 1.0])])
    check(model, sample((2, 3)), predict=False)


# -- dropped layers --------------------------------------------------------------------

DROPPED_CASES = [
    (lambda: L.Dropout(0.5), (4, 3)),
    (lambda: L.SpatialDropout1D(0.5), (4, 3)),
    (lambda: L.SpatialDropout2D(0.5), (4, 4, 3)),
    (lambda: L.GaussianNoise(1.0), (4, 3)),
    (lambda: L.GaussianDropout(0.5), (4, 3)),
    (lambda: L.AlphaDropout(0.5), (4, 3)),
    (lambda: L.ActivityRegularization(l1=0.1), (4, 3)),
    (lambda: L.Identity(), (4, 3)),
    (lambda: L.RandomFlip(), (4, 4, 3)),
    (lambda: L.RandomRotation(0.2), (4, 4, 3)),
    (lambda: L.RandomTranslation(0.2, 0.2), (4, 4, 3)),
    (lambda: L.RandomZoom(0.2), (4, 4, 3)),
    (lambda: L.RandomContrast(0.2), (4, 4, 3)),
    (lambda: L.RandomBrightness(0.2), (4, 4, 3)),
]


@pytest.mark.parametrize("factory,shape", DROPPED_CASES, ids=lambda v: getattr(v, "__name__", None) or str(v))
def test_dropped_layer_is_gone(factory, shape):
    dropped = factory()
    model = randomize(keras.Sequential([keras.Input(shape), L.Dense(2, name="before"), dropped,
                                        L.Dense(3, name="after")]))
    graph, _ = import_keras_model(model)
    assert [n.name for n in graph.nodes] == ["before", "after"]
    assert graph.node("after").inputs == ["before"]
    check(model, sample(shape), graph, predict=False)


# -- whole models ----------------------------------------------------------------------

def mlp() -> keras.Model:
    return randomize(keras.Sequential([
        keras.Input((8,), name="features"),
        L.Dense(16, activation="relu", name="hidden"),
        L.Dropout(0.3),
        L.Dense(8, activation="gelu"),
        L.Dense(4, activation="softmax", name="probs"),
    ], name="mlp"))


def cnn() -> keras.Model:
    return randomize(keras.Sequential([
        keras.Input((12, 12, 3), name="image"),
        L.Rescaling(1 / 4.0),
        L.Conv2D(8, 3, padding="same", use_bias=False),
        L.BatchNormalization(),
        L.ReLU(max_value=6.0),
        L.DepthwiseConv2D(3, strides=2, padding="same"),
        L.BatchNormalization(),
        L.Activation("relu"),
        L.MaxPooling2D(),
        L.SeparableConv2D(6, 3, padding="same", activation="swish"),
        L.AveragePooling2D(2),
        L.Conv2D(5, 1),
        L.GlobalAveragePooling2D(),
        L.Dense(3, activation="softmax"),
    ], name="cnn"), seed=3)


def functional() -> keras.Model:
    """Two inputs, two outputs, a residual Add, a Concatenate and a nested Sequential."""
    image = keras.Input((6, 6, 2), name="image")
    meta = keras.Input((5,), name="meta")
    x = L.Conv2D(4, 3, padding="same", activation="relu", name="conv_a")(image)
    y = L.Conv2D(4, 3, padding="same", name="conv_b")(x)
    x = L.Add(name="residual")([x, y])
    x = L.GlobalMaxPooling2D(name="pool")(x)
    block = keras.Sequential([keras.Input((5,)), L.Dense(6, activation="tanh", name="block_dense"),
                              L.BatchNormalization(name="block_bn")], name="meta_block")
    m = block(meta)
    h = L.Concatenate(name="joined")([x, m])
    h = L.Dense(8, activation="relu", name="trunk")(h)
    score = L.Dense(1, activation="sigmoid", name="score")(h)
    classes = L.Dense(3, activation="softmax", name="classes")(h)
    return randomize(keras.Model([image, meta], [score, classes], name="two_heads"), seed=4)


def functional_inputs() -> dict[str, np.ndarray]:
    return {"image": sample((6, 6, 2)), "meta": sample((5,), seed=2)}


@keras.saving.register_keras_serializable(package="tests")
class Subclassed(keras.Model):
    """Layers and keras.ops in call(); a nested Sequential; a layer called twice."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.embed = L.Dense(8, name="embed")
        self.shared = L.Dense(8, name="shared")
        self.block = keras.Sequential([L.Dense(8, activation="relu", name="inner"), L.LayerNormalization(name="ln")],
                                      name="block")
        self.drop = L.Dropout(0.5)
        self.head = L.Dense(3, name="head")

    def call(self, inputs, training=False):
        h = ops.relu(self.embed(inputs))
        h = self.shared(h) + self.shared(ops.sigmoid(h)) * 0.5
        h = self.drop(self.block(h), training=training)
        h = ops.concatenate([h, -h], axis=-1)
        h = ops.reshape(h, (-1, 4, 4))
        h = ops.mean(h, axis=1)
        return ops.softmax(self.head(h) - 1.0)


def subclassed() -> keras.Model:
    model = Subclassed(name="sub")
    model(sample((5,)))
    return randomize(model, seed=5)


def test_mlp():
    model = mlp()
    graph, source = import_keras_model(model)
    assert source == {"framework": "keras", "version": keras.__version__, "class": "Sequential"}
    assert [s.name for s in graph.inputs] == ["features"]
    assert [n.op for n in graph.nodes] == ["Dense", "Dense", "Dense"]
    assert graph.node("hidden").weights == {"kernel": "hidden/kernel", "bias": "hidden/bias"}
    assert graph.outputs[0].name == "probs" and graph.outputs[0].shape == (None, 4)
    check(model, sample((8,)), graph)


def test_cnn():
    model = cnn()
    graph, _ = import_keras_model(model)
    assert "BatchNormalization" in graph.ops() and "DepthwiseConv2D" in graph.ops()
    check(model, sample((12, 12, 3)), graph)


def test_functional_two_inputs_two_outputs_nested():
    model = functional()
    graph, source = import_keras_model(model)
    assert source["class"] == "Functional"
    assert [s.name for s in graph.inputs] == ["image", "meta"]
    assert [s.name for s in graph.outputs] == ["score", "classes"]
    # the nested Sequential is flattened into the outer graph
    assert graph.node("block_dense").inputs == ["meta"]
    assert graph.node("joined").inputs == ["pool", "block_bn"]
    assert graph.node("residual").inputs == ["conv_a", "conv_b"]
    check(model, functional_inputs(), graph)


def test_subclassed_with_keras_ops():
    model = subclassed()
    graph, source = import_keras_model(model)
    assert source["class"] == "Subclassed"
    assert [s.name for s in graph.inputs] == ["inputs"]
    names = [n.name for n in graph.nodes]
    assert "shared:0" in names and "shared:1" in names
    assert graph.node("shared:0").weights == graph.node("shared:1").weights == {
        "kernel": "shared/kernel", "bias": "shared/bias"}
    assert "Dropout" not in graph.ops()
    check(model, sample((5,)), graph)


def test_shared_layer_in_functional():
    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    tower = L.Dense(3, activation="tanh", name="tower")
    model = randomize(keras.Model([a, b], L.Subtract(name="diff")([tower(a), tower(b)])))
    graph, _ = import_keras_model(model)
    assert graph.node("diff").inputs == ["tower:0", "tower:1"]
    assert sorted(graph.weights) == ["tower/bias", "tower/kernel"]
    check(model, {"a": sample((4,)), "b": sample((4,), seed=2)}, graph)


def test_nested_functional_called_twice():
    inner_in = keras.Input((3,))
    inner = keras.Model(inner_in, L.Dense(2, name="proj")(inner_in), name="encoder")
    a, b = keras.Input((3,), name="a"), keras.Input((3,), name="b")
    model = randomize(keras.Model([a, b], L.Concatenate(name="both")([inner(a), inner(b)])))
    graph, _ = import_keras_model(model)
    assert graph.node("both").inputs == ["proj:0", "proj:1"]
    check(model, {"a": sample((3,)), "b": sample((3,), seed=2)}, graph)


def test_keras_ops_in_functional():
    x = keras.Input((4, 6), name="x")
    y = keras.Input((4, 6), name="y")
    h = ops.add(x, y)
    h = 2.0 * h - 1.0
    h = ops.maximum(h, 0.0) + ops.tanh(y) / 4.0
    h = ops.multiply(h, np.linspace(0.5, 1.5, 6).astype("float32"))
    h = ops.transpose(h, (0, 2, 1))
    h = ops.leaky_relu(ops.gelu(h), negative_slope=0.1)
    h = ops.max(ops.expand_dims(ops.square(h), 1), axis=(1, 2))
    h = ops.squeeze(ops.expand_dims(h, -1), axis=-1)
    out = ops.log_softmax(ops.elu(ops.subtract(1.0, h)))
    model = keras.Model([x, y], ops.softmax(out, axis=1))
    check(model, {"x": sample((4, 6)), "y": sample((4, 6), seed=2)})


# -- refusals --------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="tests")
class Doubler(L.Layer):
    def call(self, x):
        return x * 2.0


def test_lambda_layer_is_unsupported():
    model = keras.Sequential([keras.Input((3,)), L.Lambda(lambda t: t + 1.0, name="plus_one")])
    with pytest.raises(UnsupportedError, match=r"'plus_one' \(Lambda\).*Supported: .*Dense") as info:
        import_keras_model(model)
    assert info.value.what == "plus_one" and info.value.kind == "Lambda"
    assert "Conv2D" in info.value.supported


def test_custom_layer_is_unsupported():
    model = keras.Sequential([keras.Input((3,)), Doubler(name="twice")])
    with pytest.raises(UnsupportedError, match=r"'twice' \(Doubler\)"):
        import_keras_model(model)


def test_every_unsupported_layer_is_listed_at_once():
    model = keras.Sequential([keras.Input((5, 3)), L.Conv1DTranspose(4, 1, name="deconv"), L.Dense(2),
                              Doubler(name="twice"), L.UnitNormalization(name="unit")])
    listed = r"3 Keras layers have .*'deconv' \(Conv1DTranspose\).*'twice' \(Doubler\).*'unit' \(UnitNormalization\)"
    with pytest.raises(UnsupportedError, match=listed):
        import_keras_model(model)


def test_channels_first_is_unsupported():
    model = keras.Sequential([keras.Input((2, 6, 6)), L.Conv2D(3, 3, data_format="channels_first", name="c")])
    with pytest.raises(UnsupportedError, match=r"'c' \(Conv2D\) uses data_format='channels_first'"):
        import_keras_model(model)


@pytest.mark.parametrize("activation", ["celu", "hard_tanh", "sparsemax"])
def test_unsupported_activation(activation):
    model = keras.Sequential([keras.Input((3,)), L.Dense(2, activation=activation, name="d")])
    with pytest.raises(UnsupportedError, match=rf"'d' \(Dense\) uses the activation '{activation}'.*Supported:.*gelu"):
        import_keras_model(model)


def test_custom_activation_function_is_unsupported():
    model = keras.Sequential([keras.Input((3,)), L.Activation(lambda t: t * 3.0, name="act")])
    with pytest.raises(UnsupportedError, match=r"'act' \(Activation\) uses the activation"):
        import_keras_model(model)


def test_bicubic_upsampling_is_unsupported():
    model = keras.Sequential([keras.Input((3, 3, 1)), L.UpSampling2D(interpolation="bicubic", name="up")])
    with pytest.raises(UnsupportedError, match=r"'up' \(UpSampling2D\) has interpolation='bicubic'"):
        import_keras_model(model)


def test_unadapted_normalization_is_unsupported():
    model = keras.Sequential([keras.Input((3,)), L.Normalization(name="norm")])
    with pytest.raises(UnsupportedError, match=r"'norm' \(Normalization\).*never adapted"):
        import_keras_model(model)


def test_unsupported_keras_op():
    x = keras.Input((3, 4))
    model = keras.Model(x, ops.matmul(x, ops.transpose(x, (0, 2, 1))))
    with pytest.raises(UnsupportedError, match=r"\(keras.ops Matmul\).*Supported:.*keras.ops Add"):
        import_keras_model(model)


def test_op_with_unsupported_arguments():
    x = keras.Input((3, 4))
    model = keras.Model(x, ops.reshape(x, (-1, 4)))  # folds axis 1 into the batch axis
    with pytest.raises(UnsupportedError, match=r"\(Reshape\) reshapes \[None, 3, 4\] in a way that does not keep"):
        import_keras_model(model)


def test_unbuilt_models_are_refused():
    with pytest.raises(ValueError, match="not built"):
        import_keras_model(keras.Sequential([L.Dense(2)]))
    with pytest.raises(ValueError, match="not built"):
        import_keras_model(Subclassed())


def test_activation_forms():
    assert resolve("hard_swish", what="a", kind="Activation") == "hard_silu"
    assert resolve("keras.activations.gelu", what="a", kind="Activation") == "gelu"
    assert resolve({"module": "keras.activations", "class_name": "function", "config": "swish",
                    "registered_name": "function"}, what="a", kind="Activation") == "silu"
    assert resolve({"module": "keras.layers", "class_name": "ReLU", "config": {"max_value": 6.0}},
                   what="a", kind="Dense") == ("ReLU", {"max_value": 6.0})
    with pytest.raises(UnsupportedError, match=r"'a' \(Dense\) uses the activation 'function' from module '__main__'"):
        resolve({"module": "__main__", "class_name": "function", "config": "relu"}, what="a", kind="Dense")
    with pytest.raises(UnsupportedError, match="Keras 2.15.0 activation 'hard_sigmoid'"):
        resolve("hard_sigmoid", what="a", kind="Dense", keras_version="2.15.0")


def test_supported_classes_lists_the_table():
    names = supported_classes()
    assert "Dense" in names and "Sequential" in names and "Lambda" not in names


def test_quantized_layer_is_unsupported():
    model = randomize(keras.Sequential([keras.Input((4,)), L.Dense(3, name="q")]))
    model.quantize("int8")
    with pytest.raises(UnsupportedError, match=r"'q' \(Dense\) is quantized"):
        import_keras_model(model)


def test_lora_dense_uses_the_merged_kernel():
    model = keras.Sequential([keras.Input((6,)), L.Dense(4, name="d")])
    model.layers[0].enable_lora(2)
    randomize(model)
    graph, _ = import_keras_model(model)
    assert sorted(graph.weights) == ["d/bias", "d/kernel"]
    check(model, sample((6,)), graph, predict=False)


# -- records, without Keras ------------------------------------------------------------

def conv_record(**config) -> ModelRecord:
    conv = LayerRecord("c", "Conv2D", {"filters": 2, "kernel_size": [3, 3], "padding": "same", **config},
                       [Call([Ref("x")])], [(None, np.zeros((3, 3, 1, 2), "f4")), (None, np.zeros(2, "f4"))])
    source = LayerRecord("x", "InputLayer", {"batch_shape": [None, 8, 8, 1], "dtype": "float32"})
    return ModelRecord("m", "Functional", [source, conv], [Ref("x")], [Ref("c")])


def test_record_conv_with_strides_and_dilation_is_unsupported():
    with pytest.raises(UnsupportedError, match=r"'c' \(Conv2D\) combines strides=\[2, 2\] with dilation_rate=\[2, 2\]"):
        build_graph(conv_record(strides=[2, 2], dilation_rate=[2, 2]))


def test_record_with_missing_variables_is_refused():
    record = conv_record(strides=1, dilation_rate=1)
    record.layers[1].weights = record.layers[1].weights[:1]
    expected = r"'c' \(Conv2D\) has 1 variables \['#0'\].*expects \['kernel', 'bias'\]"
    with pytest.raises(UnsupportedError, match=expected):
        build_graph(record)


def test_record_reading_a_missing_layer_is_refused():
    record = conv_record(strides=1, dilation_rate=1)
    record.layers[1].calls = [Call([Ref("nowhere")])]
    with pytest.raises(GraphError, match="'nowhere', which the model does not have"):
        build_graph(record)
