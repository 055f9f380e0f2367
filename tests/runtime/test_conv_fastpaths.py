"""The convolution fast paths against Keras 3: fused Conv2D + MaxPooling2D, small-map depthwise, fast relu.

``conv2d_maxpool`` (the planner's fusion of a Conv2D with a following
non-overlapping 'valid' MaxPooling2D) is compared with the two real Keras
layers applied one after the other, over its three im2col layouts (few input
channels: built transposed, with the input offsets a pool block shares held
once where that pays; many: window rows), strides, dilation,
padding, pool shapes that leave a remainder, and the activations it may
carry. The depthwise small-map path (one matrix product per channel, bias in
the matrix) is compared with ``keras.layers.DepthwiseConv2D`` on both sides of
the size where it takes over. A whole Keras CNN goes through the importer
and the planner, and must fuse and still match ``model.predict``.
"""

from __future__ import annotations

import numpy as np
import pytest

import runtime
from runtime.kernels import activations, conv
from runtime.kernels.activations import apply_activation
from runtime.kernels.conv import conv2d_maxpool, depthwise_conv2d
from savedmodel.export import to_graph

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras

RTOL = 1e-5


def check(got: np.ndarray, want) -> None:
    """Shape, dtype float32, then values (rtol 1e-5, atol 1e-5 x the largest |want|)."""
    want = np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.float32
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-5 * max(scale, 1e-3))


def random_weights(layer, rng) -> dict[str, np.ndarray]:
    """Give ``layer`` random weights; return them by role (kernel, bias)."""
    weights = {v.name: (rng.standard_normal(tuple(v.shape)) * 0.5).astype(np.float32) for v in layer.weights}
    layer.set_weights([weights[v.name] for v in layer.weights])
    return weights


# ------------------------------------------------------------ conv2d_maxpool

CONV_POOL_ROWS = [
    # (input shape, kernel, strides, dilation, padding, pool)
    ((3, 12, 12, 1), [3, 3], [1, 1], [1, 1], "valid", [2, 2]),    # one channel: transposed im2col
    ((2, 13, 11, 1), [3, 3], [1, 1], [1, 1], "valid", [2, 2]),    # odd map: the last conv row/column is dropped
    ((2, 11, 12, 3), [3, 3], [1, 1], [1, 1], "same", [2, 2]),     # padding written in
    ((2, 12, 13, 3), [2, 3], [2, 2], [1, 1], "valid", [2, 2]),    # strided conv
    ((2, 13, 12, 2), [3, 3], [1, 2], [1, 1], "same", [3, 2]),     # unequal strides and pool
    ((2, 14, 14, 2), [3, 3], [1, 1], [2, 2], "valid", [2, 2]),    # dilated
    ((2, 12, 10, 1), [5, 4], [1, 1], [2, 1], "same", [3, 3]),     # dilated, pool 3 leaving remainders
    ((2, 10, 9, 5), [3, 3], [1, 1], [1, 1], "valid", [1, 2]),     # kw * C = 15: still the transposed layout
    ((2, 10, 9, 6), [3, 3], [1, 1], [1, 1], "valid", [2, 2]),     # kw * C = 18: window rows
    ((3, 13, 13, 16), [3, 3], [1, 1], [1, 1], "valid", [2, 2]),   # many channels (the benchmark CNN's 2nd conv)
    ((2, 11, 12, 16), [3, 3], [2, 2], [1, 1], "same", [2, 2]),
    ((2, 12, 12, 8), [3, 3], [1, 1], [2, 2], "same", [2, 3]),     # dilated, window rows (C = 8, dilation > 1)
    ((2, 9, 9, 4), [1, 1], [1, 1], [1, 1], "valid", [2, 2]),      # 1x1 kernel
    ((2, 8, 8, 3), [3, 3], [1, 1], [1, 1], "same", [1, 1]),       # pool 1: a plain conv
    ((2, 15, 14, 2), [5, 5], [1, 1], [1, 1], "same", [2, 2]),     # shared rows, 5x5 kernel, padding
    ((2, 13, 12, 1), [3, 3], [1, 1], [1, 1], "valid", [3, 2]),    # shared rows, three row positions
]

# The rows whose few-channel im2col holds each input offset once (``_pooled_shared_rows``); the other
# few-channel rows would multiply too many zeros that way (strided, dilated, 1x1).
SHARED_ROWS = {0, 1, 2, 7, 13, 14, 15}


def keras_conv_pool(x, *, filters, kernel, strides, dilation, padding, pool, activation, use_bias, seed):
    """Keras' Conv2D then MaxPooling2D(pool, strides=pool, 'valid') on x, and the conv's weights by role."""
    layer = keras.layers.Conv2D(filters, kernel, strides=strides, dilation_rate=dilation, padding=padding,
                                activation=activation, use_bias=use_bias)
    layer(x)
    weights = random_weights(layer, np.random.default_rng(seed))
    pooled = keras.layers.MaxPooling2D(pool, strides=pool, padding="valid")(layer(x))
    return keras.ops.convert_to_numpy(pooled), weights


def run_conv_pool(shape, kernel, strides, dilation, padding, pool, activation="relu", use_bias=True, filters=7):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    want, weights = keras_conv_pool(x, filters=filters, kernel=kernel, strides=strides, dilation=dilation,
                                    padding=padding, pool=pool, activation=activation, use_bias=use_bias, seed=2)
    attrs = {"pool": pool, "filters": filters, "kernel_size": kernel, "strides": strides, "padding": padding,
             "dilation_rate": dilation, "groups": 1, "activation": activation, "use_bias": use_bias}
    check(conv2d_maxpool(x, **attrs, **weights), want)
    empty = conv2d_maxpool(x[:0], **attrs, **weights)
    assert empty.shape == (0, *want.shape[1:]) and empty.dtype == np.float32


@pytest.mark.parametrize("shape,kernel,strides,dilation,padding,pool", CONV_POOL_ROWS, ids=str)
def test_conv2d_maxpool_matches_keras_conv_then_pool(shape, kernel, strides, dilation, padding, pool):
    run_conv_pool(shape, kernel, strides, dilation, padding, pool)


@pytest.fixture(autouse=True)
def share_rows_on_small_maps(monkeypatch):
    # The tests' maps are small: let the shared-row layout take them, as it takes large batches.
    monkeypatch.setattr(conv, "_SHARED_ROWS_MIN_ROWS", 0)


def spy_shared_rows(monkeypatch) -> list[int]:
    calls: list[int] = []
    shared = conv._pooled_shared_rows
    monkeypatch.setattr(conv, "_pooled_shared_rows", lambda *a: calls.append(1) or shared(*a))
    return calls


@pytest.mark.parametrize("row", range(len(CONV_POOL_ROWS)))
def test_conv2d_maxpool_shares_rows_where_it_pays(row, monkeypatch):
    calls = spy_shared_rows(monkeypatch)
    run_conv_pool(*CONV_POOL_ROWS[row])
    assert bool(calls) == (row in SHARED_ROWS)


@pytest.mark.parametrize("batch,shared", [(16, False), (32, True)])
def test_conv2d_maxpool_shares_rows_only_for_enough_outputs(batch, shared, monkeypatch):
    monkeypatch.setattr(conv, "_SHARED_ROWS_MIN_ROWS", 4096)
    calls = spy_shared_rows(monkeypatch)
    run_conv_pool((batch, 28, 28, 1), [3, 3], [1, 1], [1, 1], "valid", [2, 2])  # 13 x 13 pooled per image
    assert bool(calls) == shared


@pytest.mark.parametrize("activation,use_bias", [("linear", True), ("relu6", True), ("relu", False),
                                                 ("linear", False)], ids=str)
@pytest.mark.parametrize("cin", [1, 16])
def test_conv2d_maxpool_activations_and_bias(activation, use_bias, cin):
    run_conv_pool((2, 12, 11, cin), [3, 3], [1, 1], [1, 1], "valid", [2, 2], activation, use_bias)


def test_conv2d_maxpool_batch_of_one_and_reused_scratch():
    # The scratch buffers are reused from call to call: a large call, then a small one, then the large again.
    for shape in ((5, 14, 14, 16), (1, 14, 14, 16), (5, 14, 14, 16), (1, 28, 28, 1)):
        run_conv_pool(shape, [3, 3], [1, 1], [1, 1], "valid", [2, 2])


# ------------------------------------------------------- depthwise small maps

def run_depthwise(shape, kernel, strides, dilation, padding, mult, activation, use_bias):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32)
    layer = keras.layers.DepthwiseConv2D(kernel, strides=strides, dilation_rate=dilation, padding=padding,
                                         depth_multiplier=mult, activation=activation, use_bias=use_bias)
    layer(x)
    weights = random_weights(layer, rng)
    want = keras.ops.convert_to_numpy(layer(x))
    attrs = {"kernel_size": kernel, "strides": strides, "padding": padding, "dilation_rate": dilation,
             "activation": activation, "use_bias": use_bias, "depth_multiplier": mult}
    got = depthwise_conv2d(x, **attrs, kernel=weights["kernel"],
                           **({"bias": weights["bias"]} if use_bias else {}))
    check(got, want)
    assert got.flags.c_contiguous


def small_map(shape, out_hw) -> bool:
    return shape[1] * shape[2] * out_hw[0] * out_hw[1] <= conv._SMALL_MAP


@pytest.mark.parametrize("activation", ["relu", "relu6", "linear", "tanh"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_depthwise_small_map_activations(activation, use_bias):
    assert small_map((4, 5, 5, 32), (5, 5))
    run_depthwise((4, 5, 5, 32), [3, 3], [1, 1], [1, 1], "same", 1, activation, use_bias)


def test_depthwise_small_map_relu_above_the_zeros_limit(monkeypatch):
    monkeypatch.setattr(conv, "ZEROS_LIMIT", 100)  # the relu then runs before the transpose, as relu6 does
    run_depthwise((4, 5, 5, 32), [3, 3], [1, 1], [1, 1], "same", 1, "relu", True)


@pytest.mark.parametrize("shape,kernel,strides,dilation,padding,mult,small", [
    ((3, 8, 8, 6), [3, 3], [1, 1], [1, 1], "same", 1, True),       # 64 x 64 pixels = 4096: the last small map
    ((3, 8, 9, 6), [3, 3], [1, 1], [1, 1], "same", 1, False),      # 72 x 72: the tap-by-tap path
    ((2, 9, 10, 3), [3, 3], [2, 2], [1, 1], "same", 2, True),      # strided, depth multiplier 2
    ((2, 7, 6, 4), [3, 2], [1, 1], [2, 1], "valid", 3, True),      # dilated, valid
    ((2, 6, 7, 40), [2, 3], [2, 2], [1, 1], "same", 1, True),      # strided, many channels
], ids=str)
def test_depthwise_small_map_boundary(shape, kernel, strides, dilation, padding, mult, small):
    from runtime.kernels._windows import geometry

    out_hw, _ = geometry(np.empty(shape), kernel, strides, dilation, padding)
    assert small_map(shape, out_hw) is small
    run_depthwise(shape, kernel, strides, dilation, padding, mult, "relu", True)


# ---------------------------------------------------------------- fast relu

def test_in_place_relu_is_a_max_against_shared_zeros():
    rng = np.random.default_rng(4)
    for shape in ((3, 5), (2, 40, 40, 8), (7,)):  # growing, then a smaller array reusing the zeros
        x = rng.standard_normal(shape).astype(np.float32)
        want = apply_activation(x.copy(), "relu")  # the out-of-place relu: np.clip
        got = apply_activation(x, "relu", inplace=True)
        assert got is x
        np.testing.assert_array_equal(got, want)
    assert not activations.shared_zeros((4,)).flags.writeable


def test_in_place_relu_on_a_strided_view_and_above_the_zeros_limit(monkeypatch):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    before = x.copy()
    apply_activation(x[:, ::2], "relu", inplace=True)
    np.testing.assert_array_equal(x[:, ::2], np.maximum(before[:, ::2], 0))
    np.testing.assert_array_equal(x[:, 1::2], before[:, 1::2])  # the columns between untouched
    monkeypatch.setattr(activations, "ZEROS_LIMIT", 10)  # above the limit: np.clip
    y = rng.standard_normal(50).astype(np.float32)
    want = np.maximum(y, 0)
    np.testing.assert_array_equal(apply_activation(y, "relu", inplace=True), want)


# ------------------------------------------------------------- whole network

def test_planner_fuses_the_cnn_and_matches_keras_predict():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, activation="relu"), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3), keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.MaxPooling2D(),
        keras.layers.DepthwiseConv2D(3, padding="same", activation="relu"),
        keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    rng = np.random.default_rng(6)
    bn = model.layers[3]
    bn.set_weights([rng.uniform(0.5, 1.5, 32), rng.normal(0, 0.1, 32), rng.normal(0, 0.1, 32),
                    rng.uniform(0.5, 1.5, 32)])
    graph, _ = to_graph(model)
    m = runtime.from_graph(graph)
    steps = m.signatures["serving_default"]._plan.steps
    assert sum(s.fn is conv2d_maxpool for s in steps) == 2
    for batch in (1, 7, 32):
        x = rng.standard_normal((batch, 28, 28, 1)).astype(np.float32)
        np.testing.assert_allclose(m.predict(x), model.predict_on_batch(x), rtol=1e-5, atol=1e-6)
