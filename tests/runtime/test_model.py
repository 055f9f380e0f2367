"""runtime.Model: input checking, signatures, batch 0 and the planner's rewrites."""

import numpy as np
import pytest

import runtime
from runtime import InputError
from runtime.plan import Plan
from savedmodel import GraphBuilder

RNG = np.random.default_rng(0)


def two_input_graph():
    b = GraphBuilder()
    a = b.input("a", (None, 3))
    c = b.input("c", (None, 3))
    s = b.op("Add", a, c, name="sum")
    y = b.op("Dense", s, units=2, kernel=RNG.standard_normal((3, 2)).astype("f4"), bias=np.ones(2, "f4"), name="y")
    z = b.op("Activation", s, activation="relu", name="z")
    return b.build(y, z)


def conv_bn_graph():
    b = GraphBuilder()
    x = b.input("x", (None, 6, 6, 2))
    h = b.op(
        "Conv2D",
        x,
        filters=4,
        kernel_size=[3, 3],
        padding="same",
        kernel=RNG.standard_normal((3, 3, 2, 4)).astype("f4"),
        bias=RNG.standard_normal(4).astype("f4"),
        name="conv",
    )
    h = b.op(
        "BatchNormalization",
        h,
        epsilon=1e-3,
        gamma=RNG.uniform(0.5, 2, 4).astype("f4"),
        beta=RNG.standard_normal(4).astype("f4"),
        moving_mean=RNG.standard_normal(4).astype("f4"),
        moving_variance=RNG.uniform(0.5, 2, 4).astype("f4"),
        name="bn",
    )
    y = b.op("ReLU", h, name="relu")
    return b.build(y)


def test_multi_input_multi_output_dicts():
    m = runtime.from_graph(two_input_graph())
    a, c = RNG.standard_normal((4, 3)), RNG.standard_normal((4, 3))
    out = m.predict({"a": a, "c": c})
    assert sorted(out) == ["y", "z"]
    np.testing.assert_allclose(out["z"], np.maximum(a + c, 0), rtol=1e-6)
    assert out["y"].dtype == np.float32 and out["y"].shape == (4, 2)
    assert [s.name for s in m.inputs] == ["a", "c"] and m.inputs[0].shape == (None, 3)
    assert m.signatures["serving_default"](a=a, c=c)["z"].shape == (4, 3)


def test_batch_of_zero():
    m = runtime.from_graph(conv_bn_graph())
    out = m.predict(np.zeros((0, 6, 6, 2), "f4"))
    assert out.shape == (0, 6, 6, 4)


def test_planner_folds_batchnorm_and_fuses_relu_without_changing_results():
    g = conv_bn_graph()
    plan = Plan(g)
    assert [s.name for s in plan.steps] == ["conv"]
    x = RNG.standard_normal((3, 6, 6, 2)).astype("f4")
    # The same graph run node by node, without rewrites.
    from runtime.kernels import get_kernel

    h = get_kernel("Conv2D")(x, **g.nodes[0].attrs, **{r: g.weights[k] for r, k in g.nodes[0].weights.items()})
    h = get_kernel("BatchNormalization")(
        h, **g.nodes[1].attrs, **{r: g.weights[k] for r, k in g.nodes[1].weights.items()}
    )
    h = np.maximum(h, 0)
    np.testing.assert_allclose(runtime.from_graph(g).predict(x), h, rtol=1e-5, atol=1e-5)


def test_missing_and_unknown_inputs_list_expected_names():
    m = runtime.from_graph(two_input_graph())
    with pytest.raises(InputError, match=r"missing \['c'\] and unknown \['d'\] inputs; expected inputs \['a', 'c'\]"):
        m.predict({"a": np.zeros((1, 3)), "d": np.zeros((1, 3))})
    with pytest.raises(InputError, match=r"this model has 2 inputs; pass a dict with keys \['a', 'c'\]"):
        m.predict(np.zeros((1, 3)))


@pytest.mark.parametrize(
    "value, match",
    [
        (
            np.zeros((2, 4), "f4"),
            r"input 'a': expected float32 with shape \(None, 3\), received float32 with shape \(2, 4\)",
        ),
        (
            np.zeros((3,), "f4"),
            r"input 'a': expected float32 with shape \(None, 3\), received float32 with shape \(3,\)",
        ),
        (np.array([["x", "y", "z"]]), r"input 'a': expected float32 with shape \(None, 3\), received <U1"),
    ],
)
def test_bad_input_names_input_expected_and_received(value, match):
    m = runtime.from_graph(two_input_graph())
    with pytest.raises(InputError, match=match) as info:
        m.predict({"a": value, "c": np.zeros((2, 3))})
    assert info.value.input == "a"


def test_inputs_of_other_numeric_dtypes_are_cast():
    m = runtime.from_graph(two_input_graph())
    out = m.predict({"a": np.ones((1, 3), np.int64), "c": np.ones((1, 3), np.float64)})
    assert out["z"].dtype == np.float32
    np.testing.assert_array_equal(out["z"], 2 * np.ones((1, 3)))


def test_different_batch_sizes_are_refused():
    m = runtime.from_graph(two_input_graph())
    with pytest.raises(InputError, match=r"inputs have different batch sizes \[1, 2\]"):
        m.predict({"a": np.zeros((1, 3)), "c": np.zeros((2, 3))})


def test_integer_inputs_compute_in_float32_and_data_movement_keeps_dtype():
    b = GraphBuilder()
    x = b.input("x", (None, 2, 2, 1), dtype="uint8")
    flat = b.op("Flatten", x, name="flat")
    y = b.op("Rescaling", x, scale=0.5, offset=0.0, name="scaled")
    g = b.build(flat, y)
    assert [s.dtype for s in g.outputs] == ["uint8", "float32"]
    out = runtime.from_graph(g).predict(np.full((1, 2, 2, 1), 255, np.uint8))
    assert out["flat"].dtype == np.uint8
    assert out["scaled"].dtype == np.float32
    np.testing.assert_array_equal(out["scaled"], np.full((1, 2, 2, 1), 127.5, np.float32))
