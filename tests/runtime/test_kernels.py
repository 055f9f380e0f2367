"""Every float32 kernel against the Keras 3 layer it stands for.

Each row builds the real ``keras.layers.<Op>`` with the row's attrs, gives it
random weights, runs it, and calls our kernel with the same attrs (catalogue
defaults filled in, as the planner does) and weights by role. Compared: shape,
then dtype float32, then values with rtol=1e-5 and an atol of 1e-5 times the
largest output magnitude (sums of many products cancel). Each row also runs
the kernel on a batch of 0 and checks the output shape.
"""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest

from runtime.kernels import KERNELS
from runtime.kernels.activations import apply_activation, erf
from savedmodel.ops import ACTIVATIONS, OPS

keras = pytest.importorskip("keras")

pytestmark = pytest.mark.keras

RTOL = 1e-5
# Worst relative error seen per op (max |got - want| / max |want|), for reports.
MAX_ERR: dict[str, float] = {}
MERGES = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}
# Catalogue attrs that the Keras constructor does not take.
NOT_KERAS = {"Conv2DTranspose": {"groups"}, "Normalization": {"epsilon"}}


def _keras_activation(name: str):
    if name == "gelu_approximate":
        return lambda x: keras.activations.gelu(x, approximate=True)
    return name


def _random_weights(layer, rng) -> dict[str, np.ndarray]:
    weights = {}
    for v in layer.weights:
        shape = tuple(v.shape)
        if v.name == "moving_variance":
            weights[v.name] = rng.uniform(0.3, 2.0, shape).astype(np.float32)
        elif v.name == "gamma":
            weights[v.name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            weights[v.name] = (rng.standard_normal(shape) * 0.5).astype(np.float32)
    layer.set_weights([weights[v.name] for v in layer.weights])
    return weights


def check(op: str, got, want, atol: float | None = None) -> None:
    """Shape, dtype float32, then values; atol defaults to 1e-5 x the largest |want|."""
    want = np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.float32
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=1e-5 * max(scale, 1e-3) if atol is None else atol)
    if want.size:
        err = float(np.abs(got.astype(np.float64) - want).max()) / max(scale, 1e-30)
        MAX_ERR[op] = max(MAX_ERR.get(op, 0.0), err)


def run(op: str, attrs: dict, shapes: list[tuple[int, ...]], *, keras_kwargs: dict | None = None,
        inputs: list[np.ndarray] | None = None, weights: dict | None = None, seed: int = 0) -> None:
    """Compare kernel ``op`` with ``keras.layers.<op>(**attrs)`` on random inputs of ``shapes``."""
    rng = np.random.default_rng(seed)
    if inputs is None:
        inputs = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    full = copy.deepcopy({k: a.default for k, a in OPS[op].attrs.items()})
    assert set(attrs) <= set(full), f"unknown attrs {set(attrs) - set(full)}"
    full.update(attrs)
    kwargs = {k: v for k, v in attrs.items() if k not in NOT_KERAS.get(op, ())}
    if "activation" in kwargs:
        kwargs["activation"] = _keras_activation(kwargs["activation"])
    kwargs.update(keras_kwargs or {})
    layer = getattr(keras.layers, op)(**kwargs)
    arg = list(inputs) if op in MERGES else inputs[0]
    layer(arg)
    if weights is None:
        weights = _random_weights(layer, rng)
    want = keras.ops.convert_to_numpy(layer(arg))
    fn = KERNELS[op]
    check(op, fn(*inputs, **full, **weights), want)
    empty = fn(*(x[:0] for x in inputs), **full, **weights)
    assert empty.shape == (0, *want.shape[1:])
    assert empty.dtype == np.float32


def test_every_op_has_a_kernel():
    assert sorted(OPS) == sorted(KERNELS)


@pytest.mark.parametrize("op,attrs,shapes", [
    ("MaxPooling2D", {"padding": "same", "pool_size": [3, 3]}, [(2, 5, 5, 3)]),
    ("MaxPooling1D", {"padding": "same", "pool_size": [3]}, [(2, 5, 3)]),
    ("GlobalMaxPooling2D", {}, [(2, 4, 4, 3)]), ("GlobalMaxPooling1D", {}, [(2, 4, 3)]), ("Identity", {}, [(2, 3)]),
    ("Flatten", {}, [(2, 3, 4)]), ("Reshape", {"target_shape": [4, 3]}, [(2, 3, 4)]),
    ("Permute", {"dims": [2, 1]}, [(2, 3, 4)]), ("RepeatVector", {"n": 2}, [(2, 3)]),
    ("Maximum", {}, [(2, 3), (2, 3)]), ("Minimum", {}, [(2, 3), (2, 3)]), ("Concatenate", {}, [(2, 3), (2, 2)]),
    ("ZeroPadding1D", {}, [(2, 3, 2)]), ("ZeroPadding2D", {}, [(2, 3, 3, 2)]),
    ("Cropping1D", {}, [(2, 4, 2)]), ("Cropping2D", {"cropping": [[1, 0], [0, 1]]}, [(2, 3, 3, 2)]),
    ("UpSampling1D", {}, [(2, 3, 2)]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_data_movers_keep_integer_dtypes(op, attrs, shapes):
    # The catalogue's keeps_dtype ops get integer tensors as they are: same dtype out, same values as on floats.
    assert OPS[op].keeps_dtype
    rng = np.random.default_rng(0)
    xs = [rng.integers(-100, 100, s).astype(np.int32) for s in shapes]
    full = {**copy.deepcopy({k: a.default for k, a in OPS[op].attrs.items()}), **attrs}
    got = KERNELS[op](*xs, **full)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, KERNELS[op](*(x.astype(np.float32) for x in xs), **full))


# ---------------------------------------------------------------- activations

@pytest.mark.parametrize("name", ACTIVATIONS)
def test_apply_activation(name):
    x = np.concatenate([np.linspace(-30, 30, 601), np.linspace(-3, 3, 599)]).astype(np.float32).reshape(8, 150)
    if name == "exponential":
        x = x / 2
    fn = _keras_activation(name)
    fn = keras.activations.get(fn) if isinstance(fn, str) else fn
    want = keras.ops.convert_to_numpy(fn(x))
    # Elementwise, so a tight absolute floor: the only differences above rtol are where TF's float32 formulas
    # cancel (exp(x) - 1 in elu near 0, 1 + tanh(u) in gelu_approximate for x << 0) and ours do not.
    check(f"activation:{name}", apply_activation(x, name), want, atol=1e-6)
    x_copy = x.copy()
    apply_activation(x, name)
    np.testing.assert_array_equal(x, x_copy)  # never overwrites its input by default


def test_erf_against_math():
    import math

    z = np.linspace(-6, 6, 20001)
    want = np.array([math.erf(v) for v in z])
    np.testing.assert_allclose(erf(z), want, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_layer(name):
    run("Activation", {"activation": name}, [(3, 4, 7)])


@pytest.mark.parametrize("attrs", [
    {}, {"max_value": 6.0}, {"max_value": 1.5}, {"negative_slope": 0.1}, {"threshold": 0.5},
    {"max_value": 2.0, "negative_slope": 0.1}, {"max_value": 1.0, "threshold": 0.3},
    {"max_value": 3.0, "negative_slope": 0.2, "threshold": 0.5}, {"negative_slope": 0.3, "threshold": 1.0},
], ids=str)
def test_relu(attrs):
    run("ReLU", attrs, [(4, 5, 6)])


@pytest.mark.parametrize("slope", [0.3, 0.01, 1.5])
def test_leaky_relu(slope):
    run("LeakyReLU", {"negative_slope": slope}, [(4, 9)])


@pytest.mark.parametrize("alpha", [1.0, 0.5, 2.0])
def test_elu(alpha):
    run("ELU", {"alpha": alpha}, [(4, 9)])


@pytest.mark.parametrize("axis,shape", [(-1, (3, 7)), (1, (3, 4, 5)), ([1, 2], (3, 4, 5)), ([2], (2, 3, 4, 5)),
                                        ([-1, 1], (2, 3, 4, 5))], ids=str)
def test_softmax(axis, shape):
    run("Softmax", {"axis": axis}, [shape])


@pytest.mark.parametrize("shared_axes,shape", [([], (3, 7)), ([], (2, 4, 5, 3)), ([1, 2], (2, 4, 5, 3)),
                                               ([1], (2, 6, 3)), ([3], (2, 4, 5, 3))], ids=str)
def test_prelu(shared_axes, shape):
    run("PReLU", {"shared_axes": shared_axes}, [shape])


def test_identity():
    run("Identity", {}, [(3, 4, 2)])


# ---------------------------------------------------------------------- dense

@pytest.mark.parametrize("shape,units,use_bias", [
    ((5, 8), 3, True), ((5, 8), 1, False), ((4, 3, 6), 7, True), ((2, 3, 4, 5), 2, True), ((1, 1), 4, False),
], ids=str)
def test_dense(shape, units, use_bias):
    run("Dense", {"units": units, "use_bias": use_bias}, [shape])


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_activation(activation):
    run("Dense", {"units": 6, "activation": activation}, [(4, 3, 5)])


# ----------------------------------------------------------------------- conv

def _conv2d_rows():
    rows = []
    for k, s, d, pad, shape in itertools.product(
        ([1, 1], [3, 3], [2, 3], [5, 4]), ([1, 1], [2, 2], [1, 3]), ([1, 1], [2, 2], [1, 2]), ("valid", "same"),
        ((2, 9, 11, 4), (3, 8, 8, 2)),
    ):
        if d != [1, 1] and s != [1, 1]:
            continue  # TF's convolution takes either strides or dilation above 1, not both
        if pad == "valid" and any((k_ - 1) * d_ + 1 > n for k_, d_, n in zip(k, d, shape[1:3], strict=True)):
            continue
        rows.append({"kernel_size": k, "strides": s, "dilation_rate": d, "padding": pad, "_shape": shape})
    return rows


@pytest.mark.parametrize("row", _conv2d_rows(), ids=str)
def test_conv2d(row):
    row = dict(row)
    shape = row.pop("_shape")
    run("Conv2D", {"filters": 5, **row}, [shape])


@pytest.mark.parametrize("k,s,d,pad", [([3, 3], [1, 1], [1, 1], "same"), ([3, 3], [2, 2], [1, 1], "same"),
                                       ([5, 3], [1, 1], [2, 2], "same"), ([3, 3], [1, 2], [1, 1], "valid"),
                                       ([2, 2], [2, 2], [1, 1], "valid")], ids=str)
def test_conv2d_many_channels(k, s, d, pad):
    # 16 input channels take the window-view im2col (kernel rows of kw*C values); the rows above, with few
    # channels, the transposed one built from Phases.
    run("Conv2D", {"filters": 7, "kernel_size": k, "strides": s, "dilation_rate": d, "padding": pad,
                   "activation": "relu"}, [(2, 9, 8, 16)])


@pytest.mark.parametrize("groups,filters,use_bias,activation,cin", [
    (2, 4, True, "relu", 4), (4, 8, False, "linear", 8), (3, 6, True, "tanh", 3), (1, 3, False, "sigmoid", 1),
    (1, 16, True, "relu6", 3),
], ids=str)
def test_conv2d_groups_bias_activation(groups, filters, use_bias, activation, cin):
    for pad, s in (("same", [1, 1]), ("valid", [2, 2])):
        run("Conv2D", {"filters": filters, "kernel_size": [3, 3], "groups": groups, "use_bias": use_bias,
                       "activation": activation, "padding": pad, "strides": s}, [(2, 7, 6, cin)])


@pytest.mark.parametrize("k,s,d,pad,groups", [
    (k, s, d, pad, g)
    for k, s, d, pad, g in itertools.product((1, 3, 4), (1, 2, 3), (1, 2), ("valid", "same", "causal"), (1, 2))
    if not (s > 1 and d > 1)
], ids=str)
def test_conv1d(k, s, d, pad, groups):
    run("Conv1D", {"filters": 4, "kernel_size": [k], "strides": [s], "dilation_rate": [d], "padding": pad,
                   "groups": groups, "activation": "relu"}, [(3, 11, 4)])


@pytest.mark.parametrize("pad", ["valid", "same", "causal"])
def test_conv1d_many_channels(pad):
    run("Conv1D", {"filters": 6, "kernel_size": [3], "padding": pad, "use_bias": False}, [(2, 9, 24)])


@pytest.mark.parametrize("k,s,d,pad,mult,use_bias", [
    ([3, 3], [1, 1], [1, 1], "same", 1, True), ([3, 3], [2, 2], [1, 1], "same", 1, False),
    ([3, 3], [2, 2], [1, 1], "valid", 2, True), ([2, 3], [2, 2], [1, 1], "same", 3, True),
    ([5, 5], [1, 1], [2, 2], "same", 1, True), ([3, 2], [1, 1], [2, 1], "valid", 2, False),
    ([1, 1], [1, 1], [1, 1], "valid", 2, True), ([4, 4], [3, 3], [1, 1], "same", 1, True),
    ([3, 3], [1, 1], [1, 1], "valid", 1, True),
], ids=str)
@pytest.mark.parametrize("cin", [3, 40])  # below and above the 32 channels where the kernel switches to einsum
def test_depthwise_conv2d(k, s, d, pad, mult, use_bias, cin):
    run("DepthwiseConv2D", {"kernel_size": k, "strides": s, "dilation_rate": d, "padding": pad,
                            "depth_multiplier": mult, "use_bias": use_bias, "activation": "relu6"},
        [(2, 9, 10, cin)])


@pytest.mark.parametrize("k,s,d,pad,mult,filters,use_bias", [
    ([3, 3], [1, 1], [1, 1], "same", 11, 4, True), ([3, 3], [1, 1], [1, 1], "same", 1, 4, True),
    ([3, 3], [2, 2], [1, 1], "valid", 2, 5, False),
    ([2, 3], [2, 2], [1, 1], "same", 3, 2, True), ([3, 3], [1, 1], [2, 2], "same", 1, 6, True),
    ([1, 1], [1, 1], [1, 1], "valid", 1, 3, True),
], ids=str)
def test_separable_conv2d(k, s, d, pad, mult, filters, use_bias):
    run("SeparableConv2D", {"filters": filters, "kernel_size": k, "strides": s, "dilation_rate": d,
                            "padding": pad, "depth_multiplier": mult, "use_bias": use_bias,
                            "activation": "elu"}, [(2, 8, 9, 3)])


def test_depthwise_conv2d_unequal_strides():
    # TF's depthwise op refuses unequal strides; a grouped Conv2D with one group per input channel computes the
    # same function (output channel c*mult+m), so it is the reference here.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 9, 10, 3)).astype(np.float32)
    w = rng.standard_normal((3, 2, 3, 2)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    for pad in ("same", "valid"):
        attrs = {"kernel_size": [3, 2], "strides": [1, 2], "padding": pad}
        ref = keras.layers.Conv2D(6, groups=3, **attrs)
        ref.build(x.shape)
        ref.set_weights([w.reshape(3, 2, 1, 6), b])
        full = {**{k: a.default for k, a in OPS["DepthwiseConv2D"].attrs.items()}, **attrs, "depth_multiplier": 2}
        check("DepthwiseConv2D", KERNELS["DepthwiseConv2D"](x, **full, kernel=w, bias=b),
              keras.ops.convert_to_numpy(ref(x)))


def _transpose_rows():
    rows = []
    for k, s, pad, op in itertools.product(
        ([3, 3], [2, 2], [4, 3], [1, 1], [5, 5]), ([1, 1], [2, 2], [3, 2]), ("valid", "same"), (None, "max"),
    ):
        out_pad = None if op is None else [s_ - 1 for s_ in s]
        if pad == "same" and out_pad is not None and any(
            -(-((5 - 1) * s_ + k_ % 2 + p) // s_) != 5 for k_, s_, p in zip(k, s, out_pad, strict=True)
        ):
            continue  # Keras' output length (n-1)*s + k%2 + output_padding is not one TF's 'same' conv maps to n
        rows.append((k, s, pad, out_pad))
    rows += [([3, 3], [2, 2], "same", [0, 1]), ([2, 2], [3, 3], "valid", [1, 2])]
    return rows


@pytest.mark.parametrize("k,s,pad,out_pad", _transpose_rows(), ids=str)
def test_conv2d_transpose(k, s, pad, out_pad):
    run("Conv2DTranspose", {"filters": 3, "kernel_size": k, "strides": s, "padding": pad,
                            "output_padding": out_pad, "activation": "relu"}, [(2, 5, 5, 4)])


def test_conv2d_transpose_no_bias():
    run("Conv2DTranspose", {"filters": 2, "kernel_size": [3, 3], "strides": [2, 2], "use_bias": False},
        [(2, 4, 4, 3)])


@pytest.mark.parametrize("k,d,pad", [([3, 3], [2, 2], "valid"), ([3, 2], [2, 3], "same"), ([2, 2], [3, 1], "same")],
                         ids=str)
def test_conv2d_transpose_dilated_is_adjoint_of_conv2d(k, d, pad):
    # TF has no CPU kernel for dilated transposed convolutions, so the reference is the definition: the transpose
    # is the adjoint of Conv2D (checked against Keras above) with the same kernel, <T x, y> = <x, C y>.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    w = rng.standard_normal((*k, 3, 4)).astype(np.float32)
    attrs = {"kernel_size": k, "dilation_rate": d, "padding": pad, "filters": 3}
    full = {**{n: a.default for n, a in OPS["Conv2DTranspose"].attrs.items()}, **attrs}
    tx = KERNELS["Conv2DTranspose"](x, **full, kernel=w)
    y = rng.standard_normal(tx.shape).astype(np.float32)
    conv = {**{n: a.default for n, a in OPS["Conv2D"].attrs.items()}, **attrs, "filters": 4}
    cy = KERNELS["Conv2D"](y, **conv, kernel=w)
    assert cy.shape == x.shape
    np.testing.assert_allclose(np.vdot(tx, y), np.vdot(x, cy), rtol=1e-4)


# -------------------------------------------------------------------- pooling

def _pool_rows(rank):
    sizes = ([2, 2], [3, 3], [2, 3], [1, 1]) if rank == 2 else ([2], [3], [1], [4])
    strides = ([2, 2], [1, 1], [3, 2], [2, 1]) if rank == 2 else ([2], [1], [3])
    return list(itertools.product(sizes, strides, ("valid", "same")))


@pytest.mark.parametrize("op", ["MaxPooling2D", "AveragePooling2D"])
@pytest.mark.parametrize("size,strides,pad", _pool_rows(2), ids=str)
def test_pooling2d(op, size, strides, pad):
    run(op, {"pool_size": size, "strides": strides, "padding": pad}, [(2, 7, 9, 3)])


@pytest.mark.parametrize("op", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize("size,strides,pad", _pool_rows(1), ids=str)
def test_pooling1d(op, size, strides, pad):
    run(op, {"pool_size": size, "strides": strides, "padding": pad}, [(2, 11, 3)])


@pytest.mark.parametrize("op,shape", [("GlobalMaxPooling1D", (3, 7, 4)), ("GlobalAveragePooling1D", (3, 7, 4)),
                                      ("GlobalMaxPooling2D", (3, 5, 6, 4)),
                                      ("GlobalAveragePooling2D", (3, 5, 6, 4))])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(op, shape, keepdims):
    run(op, {"keepdims": keepdims}, [shape])


# -------------------------------------------------------------- normalisation

@pytest.mark.parametrize("axis,shape,center,scale", [
    (-1, (4, 5), True, True), (-1, (2, 4, 5, 3), True, True), (1, (2, 4, 5, 3), True, False),
    (2, (3, 4, 5), False, True), (-2, (3, 4, 5), False, False), (3, (2, 3, 4, 5), True, True),
], ids=str)
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_batch_normalization(axis, shape, center, scale, epsilon):
    run("BatchNormalization", {"axis": axis, "epsilon": epsilon, "center": center, "scale": scale}, [shape])


@pytest.mark.parametrize("axis,shape", [([-1], (4, 6)), ([-1], (2, 3, 7)), ([1, 2], (2, 3, 4, 5)),
                                        ([2, 3], (2, 3, 4, 5)), ([-2], (3, 4, 5)), ([1, 2, 3], (2, 3, 4, 5))],
                         ids=str)
@pytest.mark.parametrize("center,scale,rms", [(True, True, False), (False, True, False), (True, False, False),
                                              (False, False, False), (True, True, True)], ids=str)
def test_layer_normalization(axis, shape, center, scale, rms):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rms_scaling is deprecated in Keras 3, and still supported
        run("LayerNormalization", {"axis": axis, "center": center, "scale": scale, "rms_scaling": rms,
                                   "epsilon": 1e-3}, [shape])


def test_layer_normalization_offset_input():
    # Inputs far from 0: Keras' float32 statistics lose digits here (errors ~1e-4), ours are computed in float64,
    # so the reference is float64 numpy.
    x = (np.random.default_rng(3).standard_normal((4, 16)) * 0.1 + 50).astype(np.float32)
    full = {n: a.default for n, a in OPS["LayerNormalization"].attrs.items()}
    x64 = x.astype(np.float64)
    want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-3)
    check("LayerNormalization", KERNELS["LayerNormalization"](x, **full), want.astype(np.float32))


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("zero_variance", [False, True])
def test_normalization(invert, zero_variance):
    rng = np.random.default_rng(1)
    mean = rng.standard_normal(4).astype(np.float32)
    var = rng.uniform(0.1, 3, 4).astype(np.float32)
    if zero_variance:
        var[1] = 0
    run("Normalization", {"invert": invert}, [(3, 5, 4)], keras_kwargs={"mean": mean, "variance": var},
        weights={"mean": mean, "variance": var})


@pytest.mark.parametrize("scale,offset", [(1 / 255, 0.0), (2.0, -1.0), ([0.5, 2.0, -1.0], [0.1, 0.2, 0.3]),
                                          (0.5, [1.0, 2.0, 3.0])], ids=str)
def test_rescaling(scale, offset):
    run("Rescaling", {"scale": scale, "offset": offset}, [(2, 4, 5, 3)])


# ----------------------------------------------------------------- reshaping

@pytest.mark.parametrize("shape", [(3, 4), (3, 4, 5), (2, 3, 4, 5)], ids=str)
def test_flatten(shape):
    run("Flatten", {}, [shape])


@pytest.mark.parametrize("target", [[-1], [4, -1], [2, 3, 4], [-1, 2, 2], [24, 1]], ids=str)
def test_reshape(target):
    run("Reshape", {"target_shape": target}, [(3, 4, 6)])


@pytest.mark.parametrize("dims,shape", [([2, 1], (3, 4, 5)), ([3, 1, 2], (2, 3, 4, 5)), ([1, 3, 2], (2, 3, 4, 5))],
                         ids=str)
def test_permute(dims, shape):
    run("Permute", {"dims": dims}, [shape])


@pytest.mark.parametrize("n", [1, 3])
def test_repeat_vector(n):
    run("RepeatVector", {"n": n}, [(4, 5)])


@pytest.mark.parametrize("padding", [[1, 1], [0, 3], [2, 0]], ids=str)
def test_zero_padding1d(padding):
    run("ZeroPadding1D", {"padding": padding}, [(2, 5, 3)])


@pytest.mark.parametrize("padding", [[[1, 1], [1, 1]], [[0, 2], [3, 1]], [[2, 0], [0, 0]]], ids=str)
def test_zero_padding2d(padding):
    run("ZeroPadding2D", {"padding": padding}, [(2, 4, 5, 3)])


@pytest.mark.parametrize("cropping", [[1, 1], [0, 2], [3, 0]], ids=str)
def test_cropping1d(cropping):
    run("Cropping1D", {"cropping": cropping}, [(2, 7, 3)])


@pytest.mark.parametrize("cropping", [[[0, 0], [0, 0]], [[1, 2], [0, 3]], [[2, 0], [1, 1]]], ids=str)
def test_cropping2d(cropping):
    run("Cropping2D", {"cropping": cropping}, [(2, 6, 7, 3)])


@pytest.mark.parametrize("size", [1, 2, 3])
def test_upsampling1d(size):
    run("UpSampling1D", {"size": size}, [(2, 5, 3)])


@pytest.mark.parametrize("size", [[2, 2], [3, 2], [1, 3], [4, 4]], ids=str)
@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d(size, interpolation):
    run("UpSampling2D", {"size": size, "interpolation": interpolation}, [(2, 5, 4, 3)])


# --------------------------------------------------------------------- merges

@pytest.mark.parametrize("op", ["Add", "Multiply", "Average", "Maximum", "Minimum"])
@pytest.mark.parametrize("shapes", [[(3, 4, 5), (3, 4, 5)], [(3, 4, 5)] * 3, [(2, 3, 4), (2, 1, 4)]], ids=str)
def test_elementwise_merge(op, shapes):
    run(op, {}, shapes)


@pytest.mark.parametrize("shapes", [[(3, 4), (3, 4)], [(2, 3, 4), (2, 1, 4)]], ids=str)
def test_subtract(shapes):
    run("Subtract", {}, shapes)


@pytest.mark.parametrize("axis,shapes", [(-1, [(2, 3, 4), (2, 3, 5)]), (1, [(2, 3, 4), (2, 1, 4), (2, 2, 4)]),
                                         (2, [(2, 3, 4, 1), (2, 3, 2, 1)])], ids=str)
def test_concatenate(axis, shapes):
    run("Concatenate", {"axis": axis}, shapes)


@pytest.mark.parametrize("axes,shapes", [
    ([1, 1], [(3, 5), (3, 5)]), ([2, 1], [(3, 4, 5), (3, 5, 6)]), ([2, 2], [(3, 4, 5), (3, 6, 5)]),
    ([1, 2], [(3, 5), (3, 4, 5)]), ([2, 1], [(3, 4, 5), (3, 5)]), ([-1, 1], [(2, 3, 4, 5), (2, 5, 6)]),
    ([1, 1], [(2, 5, 3), (2, 5, 4)]), ([1, 2], [(2, 5, 3, 2), (2, 4, 5)]),
], ids=str)
@pytest.mark.parametrize("normalize", [False, True])
def test_dot(axes, shapes, normalize):
    run("Dot", {"axes": axes, "normalize": normalize}, shapes)
