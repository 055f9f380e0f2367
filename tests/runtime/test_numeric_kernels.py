"""The plain tensor ops (savedmodel.ops.numeric) against onnx's reference implementation.

Each row runs one ONNX node with ``onnx.reference.ReferenceEvaluator`` and the
equivalent one-node graph of ours through the runtime's planner (so the
catalogue's shape and dtype rules are checked against what the kernel
returns). Compared: shape, then dtype, then values — integers and bools
exactly, floats with rtol 1e-5 (1e-4 for the transcendental functions and
interpolations, whose float32 rounding differs from numpy's float64 paths).
Rows whose semantics have no ONNX node (rsqrt, not_equal, Expand's -1) are
compared with numpy.
"""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import InputError
from runtime.plan import Plan
from savedmodel.errors import GraphError
from savedmodel.ir import Graph, Node, TensorSpec

onnx = pytest.importorskip("onnx")
from onnx import helper  # noqa: E402
from onnx.reference import ReferenceEvaluator  # noqa: E402

OPSET = 21
RNG = np.random.default_rng(0)


def _f32(*shape, lo=-2.0, hi=2.0):
    return RNG.uniform(lo, hi, shape).astype(np.float32)


def _ints(*shape, lo=-9, hi=10, dtype=np.int64):
    return RNG.integers(lo, hi, shape).astype(dtype)


def reference(op_type: str, inputs: list[np.ndarray], **attrs) -> np.ndarray:
    """The output of one ONNX node run by onnx's reference evaluator (every input a graph input)."""
    names = [f"i{k}" for k in range(len(inputs))]
    node = helper.make_node(op_type, names, ["out"], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
         for n, x in zip(names, inputs)],
        [helper.make_tensor_value_info("out", onnx.TensorProto.UNDEFINED, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    return ReferenceEvaluator(model).run(None, dict(zip(names, inputs)))[0]


def ours(op: str, attrs: dict, inputs: list[np.ndarray], weights: dict | None = None,
         batch_unknown: bool = False) -> np.ndarray:
    """Our one-node graph run through the planner; checks the inferred spec against the result."""
    specs = [TensorSpec(f"x{k}", x.dtype, ((None,) + x.shape[1:]) if batch_unknown and x.ndim else x.shape)
             for k, x in enumerate(inputs)]
    node = Node("n", op, [s.name for s in specs], ["y"], dict(attrs), {r: f"w/{r}" for r in (weights or {})})
    graph = Graph(specs, [TensorSpec("y", "float32", ())], [node],
                  {f"w/{r}": w for r, w in (weights or {}).items()})
    plan = Plan(graph)
    got = plan.run({s.name: x for s, x in zip(specs, inputs)})["y"]
    spec = plan.specs["y"]
    assert all(w is None or w == g for w, g in zip(spec.shape, got.shape)) and len(spec.shape) == got.ndim, \
        f"inferred shape {spec.shape} but the kernel returned {got.shape}"
    assert spec.dtype == got.dtype.name if got.dtype != np.bool_ else spec.dtype == "bool", \
        f"inferred dtype {spec.dtype} but the kernel returned {got.dtype}"
    return got


def same(got: np.ndarray, want: np.ndarray, rtol: float = 1e-5) -> None:
    """Shape, then dtype, then values (exact for integers and bools)."""
    want = np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    if want.dtype.kind in "fc":
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 1e-2)
    else:
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------ data movement


@pytest.mark.parametrize("a,b", [((2, 3, 4), (4, 5)), ((3,), (3, 4)), ((2, 1, 3, 4), (5, 4, 2)), ((4,), (4,)),
                                 ((2, 3), (3,))], ids=str)
def test_matmul(a, b):
    x, y = _f32(*a), _f32(*b)
    same(ours("MatMul", {}, [x, y]), reference("MatMul", [x, y]))


def test_matmul_unknown_batch_and_int():
    x, y = _ints(3, 2, 4, dtype=np.int32), _ints(4, 3, dtype=np.int32)
    same(ours("MatMul", {}, [x, y], batch_unknown=True), reference("MatMul", [x, y]))


@pytest.mark.parametrize("perm", [[0, 2, 1, 3], [3, 2, 1, 0], [1, 0, 3, 2]], ids=str)
def test_transpose(perm):
    x = _f32(2, 3, 4, 5)
    same(ours("Transpose", {"perm": perm}, [x]), reference("Transpose", [x], perm=perm))


def test_transpose_default_reverses_and_keeps_int():
    x = _ints(2, 3, 4)
    same(ours("Transpose", {}, [x]), reference("Transpose", [x]))


@pytest.mark.parametrize("shape,indices,axis", [
    ((5, 3), [0, 4, -1, -5], 0), ((2, 5, 3), [[1, -2], [0, 4]], 1), ((2, 3, 4), [3, -4, 0], -1),
    ((4, 3), 2, 0), ((4, 3), [], 0),
], ids=str)
def test_gather(shape, indices, axis):
    x, idx = _f32(*shape), np.array(indices, np.int64)
    same(ours("Gather", {"axis": axis}, [x, idx]), reference("Gather", [x, idx], axis=axis))


def test_gather_int32_indices_int_data():
    x, idx = _ints(6, 2, dtype=np.int32), np.array([5, -6, 2], np.int32)
    same(ours("Gather", {"axis": 0}, [x, idx]), reference("Gather", [x, idx], axis=0))


def test_gather_out_of_range_index_is_an_input_error():
    x = _f32(5, 3)
    with pytest.raises(InputError, match=r"Gather index 5 is out of range for axis 0 of size 5; expected .*-5\.\.4"):
        ours("Gather", {"axis": 0}, [x, np.array([0, 5], np.int64)])
    with pytest.raises(InputError, match=r"Gather index -4 is out of range for axis 1 of size 3"):
        ours("Gather", {"axis": 1}, [x, np.array([-4], np.int64)])


@pytest.mark.parametrize("src,to", [
    (np.float32, "int32"), (np.float32, "bool"), (np.int64, "float32"), (np.float32, "float16"),
    (np.bool_, "float32"), (np.int32, "int64"), (np.float64, "float32"), (np.float32, "uint8"),
], ids=str)
def test_cast(src, to):
    x = (_f32(3, 4, lo=0, hi=9) if src != np.bool_ else _f32(3, 4) > 0).astype(src)
    want = reference("Cast", [x], to=helper.np_dtype_to_tensor_dtype(np.dtype(to)))
    same(ours("Cast", {"to": to}, [x]), want)


def test_where_broadcasts_and_keeps_x_dtype():
    c, x, y = _f32(3, 1, 4) > 0, _ints(1, 2, 4), _ints(4)
    same(ours("Where", {}, [c, x, y]), reference("Where", [c, x, y]))


@pytest.mark.parametrize("shape,target", [((3, 1), [2, 3, 4]), ((1, 4), [3, 1]), ((2, 1, 3), [2, 5, 3]),
                                          ((3,), [1])], ids=str)
def test_expand(shape, target):
    x = _f32(*shape)
    same(ours("Expand", {"shape": target}, [x]), reference("Expand", [x, np.array(target, np.int64)]))


def test_expand_minus_one_keeps_the_input_dim():
    x = _f32(3, 1, 4)
    got = ours("Expand", {"shape": [-1, 5, 4]}, [x], batch_unknown=True)
    same(got, np.broadcast_to(x, (3, 5, 4)))


@pytest.mark.parametrize("starts,ends,axes,steps", [
    ([1], [3], [0], [1]), ([0, 1], [-1, 1000], [1, 2], [1, 2]), ([-1], [-1000], [1], [-1]),
    ([5], [0], [2], [-2]), ([2**62], [-(2**62)], [0], [-1]), ([-100], [100], [-1], [3]),
    ([0, 0], [2, 3], [], []), ([3], [1], [0], [1]),
], ids=str)
def test_slice(starts, ends, axes, steps):
    x = _f32(4, 5, 6)
    attrs = {"starts": starts, "ends": ends, "axes": axes, "steps": steps}
    args = [x, np.array(starts, np.int64), np.array(ends, np.int64)]
    if axes:
        args += [np.array(axes, np.int64), np.array(steps, np.int64)]
    same(ours("Slice", attrs, [x]), reference("Slice", args))


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge", "wrap"])
@pytest.mark.parametrize("pads", [[0, 1, 2, 0, 2, 1], [1, 0, 0, 0, 0, 2]], ids=str)
def test_pad(mode, pads):
    x = _f32(2, 4, 5)
    args = [x, np.array(pads, np.int64)] + ([np.array(1.5, np.float32)] if mode == "constant" else [])
    same(ours("Pad", {"pads": pads, "mode": mode, "value": 1.5}, [x]), reference("Pad", args, mode=mode))


@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_pad_negative_entries_crop(mode):
    # onnx's reference refuses negative pads; onnxruntime implements them (crop that side).
    ort = pytest.importorskip("onnxruntime")
    x, pads = _f32(2, 4, 5), [0, -1, 1, 0, 1, -2]
    node = helper.make_node("Pad", ["x", "pads"], ["out"], mode=mode)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, None)],
                              [onnx.numpy_helper.from_array(np.array(pads, np.int64), "pads")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    same(ours("Pad", {"pads": pads, "mode": mode}, [x]), want)


def test_pad_int_constant():
    x = _ints(2, 3, dtype=np.int32)
    want = reference("Pad", [x, np.array([1, 0, 0, 2], np.int64), np.array(7, np.int32)])
    same(ours("Pad", {"pads": [1, 0, 0, 2], "value": 7}, [x]), want)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (None, 0.2), (-0.1, None), (None, None), (1.0, -1.0)], ids=str)
def test_clip(lo, hi):
    x = _f32(3, 4)
    args = [x, np.array(lo if lo is not None else -np.inf, np.float32)]
    if hi is not None:
        args.append(np.array(hi, np.float32))
    same(ours("Clip", {"min": lo, "max": hi}, [x]), reference("Clip", args))


def test_clip_int():
    x = _ints(10)
    same(ours("Clip", {"min": -3, "max": 4}, [x]), reference("Clip", [x, np.array(-3), np.array(4)]))


@pytest.mark.parametrize("reps", [[1, 2], [3, 1], [2, 3]], ids=str)
def test_tile(reps):
    x = _ints(2, 3)
    same(ours("Tile", {"repeats": reps}, [x]), reference("Tile", [x, np.array(reps, np.int64)]))


# ------------------------------------------------------------------------------------------ elementwise math


UNARY_ONNX = {
    "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "erf": "Erf", "abs": "Abs", "neg": "Neg", "reciprocal": "Reciprocal",
    "floor": "Floor", "ceil": "Ceil", "round": "Round", "sin": "Sin", "cos": "Cos", "tan": "Tan", "sign": "Sign",
    "asin": "Asin", "acos": "Acos", "atan": "Atan", "sinh": "Sinh", "cosh": "Cosh", "asinh": "Asinh",
    "acosh": "Acosh", "atanh": "Atanh", "softplus": "Softplus", "softsign": "Softsign", "identity": "Identity",
    "isnan": "IsNaN", "isinf": "IsInf",
}
POSITIVE = {"log", "sqrt", "reciprocal", "acosh"}
UNIT = {"asin", "acos", "atanh"}


@pytest.mark.parametrize("function", sorted(UNARY_ONNX))
def test_unary(function):
    if function in POSITIVE:
        x = _f32(3, 5, lo=1.1, hi=4.0)
    elif function in UNIT:
        x = _f32(3, 5, lo=-0.9, hi=0.9)
    else:
        x = _f32(3, 5, lo=-3, hi=3)
        x[0, :3] = [0.5, -1.5, 2.5]  # ties: round goes to even
    if function in ("isnan", "isinf"):
        x[1, :3] = [np.nan, np.inf, -np.inf]
    same(ours("Unary", {"function": function}, [x]), reference(UNARY_ONNX[function], [x]), rtol=1e-4)


@pytest.mark.parametrize("function", ["abs", "neg", "sign", "identity"])
def test_unary_keeps_integers(function):
    x = _ints(3, 4, dtype=np.int32)
    same(ours("Unary", {"function": function}, [x]), reference(UNARY_ONNX[function], [x]))


def test_unary_not():
    x = _f32(3, 4) > 0
    same(ours("Unary", {"function": "not"}, [x]), reference("Not", [x]))


@pytest.mark.parametrize("function,positive,negative", [("isposinf", 1, 0), ("isneginf", 0, 1)])
def test_unary_signed_infinities(function, positive, negative):
    x = np.array([1.0, np.inf, -np.inf, np.nan, -2.0], np.float32)
    want = reference("IsInf", [x], detect_positive=positive, detect_negative=negative)
    same(ours("Unary", {"function": function}, [x]), want)


def test_unary_rsqrt_against_numpy():
    x = _f32(3, 4, lo=0.1, hi=4)
    same(ours("Unary", {"function": "rsqrt"}, [x]), (1 / np.sqrt(x.astype(np.float64))).astype(np.float32))


def test_unary_float_function_on_integers_gives_float32():
    x = _ints(5, lo=0, hi=5, dtype=np.int32)
    same(ours("Unary", {"function": "exp"}, [x]), np.exp(x.astype(np.float32)))


@pytest.mark.parametrize("op,onnx_op,attrs", [("Divide", "Div", {}), ("Power", "Pow", {}),
                                              ("Mod", "Mod", {"fmod": True})])
def test_binary_float(op, onnx_op, attrs):
    x, y = _f32(2, 3, 4, lo=0.5, hi=3), _f32(3, 1, lo=0.5, hi=3)
    if op == "Mod":
        x = x - 1.5
    same(ours(op, attrs, [x, y]), reference(onnx_op, [x, y], **attrs))


@pytest.mark.parametrize("op,onnx_op,attrs", [("Divide", "Div", {}), ("Mod", "Mod", {"fmod": False}),
                                              ("Mod", "Mod", {"fmod": True}), ("Power", "Pow", {})])
def test_binary_int(op, onnx_op, attrs):
    x = _ints(4, 5, lo=-20, hi=20, dtype=np.int32)
    y = _ints(5, lo=1, hi=4, dtype=np.int32) * np.array([1, -1, 1, -1, 1], np.int32)
    if op == "Power":
        x, y = np.abs(x) % 5, np.abs(y)
    same(ours(op, attrs, [x, y]), reference(onnx_op, [x, y], **attrs))


COMPARE_ONNX = {"equal": "Equal", "less": "Less", "less_equal": "LessOrEqual", "greater": "Greater",
                "greater_equal": "GreaterOrEqual"}


@pytest.mark.parametrize("function", sorted(COMPARE_ONNX))
def test_compare(function):
    x, y = _ints(3, 4, lo=0, hi=3), _ints(4, lo=0, hi=3)
    same(ours("Compare", {"function": function}, [x, y]), reference(COMPARE_ONNX[function], [x, y]))


def test_compare_not_equal_against_numpy():
    x, y = _f32(3, 4).round(), _f32(3, 1).round()
    same(ours("Compare", {"function": "not_equal"}, [x, y]), x != y)


@pytest.mark.parametrize("function", ["and", "or", "xor"])
def test_logical(function):
    x, y = _f32(3, 4) > 0, _f32(1, 4) > 0
    same(ours("Logical", {"function": function}, [x, y]), reference(function.capitalize(), [x, y]))


# ------------------------------------------------------------------------------------------ reductions


REDUCE_ONNX = {"mean": "ReduceMean", "sum": "ReduceSum", "max": "ReduceMax", "min": "ReduceMin",
               "prod": "ReduceProd", "l1": "ReduceL1", "l2": "ReduceL2", "log_sum_exp": "ReduceLogSumExp",
               "sum_square": "ReduceSumSquare", "log_sum": "ReduceLogSum"}


@pytest.mark.parametrize("function", sorted(REDUCE_ONNX))
@pytest.mark.parametrize("axes,keepdims", [([1], True), ([0, -1], False), (None, True), (None, False)], ids=str)
def test_reduce(function, axes, keepdims):
    x = _f32(2, 3, 4, lo=0.2, hi=1.5)
    args = [x] if axes is None else [x, np.array(axes, np.int64)]
    want = reference(REDUCE_ONNX[function], args, keepdims=int(keepdims))
    same(ours("Reduce", {"function": function, "axes": axes, "keepdims": keepdims}, [x]), want, rtol=1e-4)


@pytest.mark.parametrize("function,dtype", [(f, np.float32) for f in ("max", "min", "sum", "prod", "log_sum_exp", "l2")]
                         + [(f, np.int32) for f in ("max", "min", "sum", "prod")], ids=str)
def test_reduce_empty_set(function, dtype):
    # Reducing a zero-length axis gives the function's identity (-inf for max, 0 for sum...), as ONNX says.
    x = np.zeros((2, 0, 4), dtype)
    want = reference(REDUCE_ONNX[function], [x, np.array([1], np.int64)], keepdims=1)
    same(ours("Reduce", {"function": function, "axes": [1], "keepdims": True}, [x]), want)


@pytest.mark.parametrize("function", ["sum", "max", "mean", "prod"])
def test_reduce_int(function):
    x = _ints(3, 4, lo=-5, hi=6, dtype=np.int32)
    want = reference(REDUCE_ONNX[function], [x, np.array([1], np.int64)], keepdims=0)
    same(ours("Reduce", {"function": function, "axes": [1], "keepdims": False}, [x]), want)


@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
@pytest.mark.parametrize("axis,keepdims,last", [(0, True, False), (1, False, True), (-1, True, True),
                                                (2, False, False)], ids=str)
def test_arg_reduce(op, axis, keepdims, last):
    x = _ints(3, 4, 5, lo=0, hi=3).astype(np.float32)  # many ties: first vs last index matters
    want = reference(op, [x], axis=axis, keepdims=int(keepdims), select_last_index=int(last))
    same(ours(op, {"axis": axis, "keepdims": keepdims, "select_last_index": last}, [x]), want)


@pytest.mark.parametrize("axis,exclusive,reverse", [(0, False, False), (1, True, False), (-1, False, True),
                                                    (1, True, True)], ids=str)
def test_cumsum(axis, exclusive, reverse):
    x = _f32(3, 4, 5)
    want = reference("CumSum", [x, np.array(axis, np.int64)], exclusive=int(exclusive), reverse=int(reverse))
    same(ours("CumSum", {"axis": axis, "exclusive": exclusive, "reverse": reverse}, [x]), want)


def test_cumsum_int():
    x = _ints(4, 3, dtype=np.int32)
    want = reference("CumSum", [x, np.array(0, np.int32)], exclusive=1)
    same(ours("CumSum", {"axis": 0, "exclusive": True, "reverse": False}, [x]), want)


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(4, 4)]),
    ("ij", [(3, 4)]), ("ji", [(3, 4)]), ("...ij,...jk->...ik", [(2, 3, 4), (4, 5)]), ("i,i", [(5,), (5,)]),
    ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
    ("i...", [(3, 2, 4)]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_einsum(equation, shapes):
    xs = [_f32(*s) for s in shapes]
    same(ours("Einsum", {"equation": equation}, xs), reference("Einsum", xs, equation=equation))


@pytest.mark.parametrize("k,axis,largest", [(2, -1, True), (3, 0, False), (1, 1, True), (4, 1, False), (0, 2, True)],
                         ids=str)
def test_top_k(k, axis, largest):
    x = _ints(4, 5, 3, lo=0, hi=4).astype(np.float32)  # many ties: equal values must keep their index order
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], axis=axis, largest=int(largest))
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [helper.make_tensor_value_info(n, onnx.TensorProto.UNDEFINED, None) for n in ("values", "indices")],
        [onnx.numpy_helper.from_array(np.array([k], np.int64), "k")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    want_values, want_indices = ReferenceEvaluator(model).run(None, {"x": x})
    spec = TensorSpec("x", "float32", (None, 5, 3))
    attrs = {"k": k, "axis": axis, "largest": largest, "sorted": True}
    plan = Plan(Graph([spec], [TensorSpec("v", "float32", ()), TensorSpec("i", "int64", ())],
                      [Node("n", "TopK", ["x"], ["v", "i"], attrs)]))
    got = plan.run({"x": x})
    assert [plan.specs[t].dtype for t in ("v", "i")] == ["float32", "int64"]
    same(got["v"], want_values)
    same(got["i"], want_indices)


@pytest.mark.parametrize("start,end", [(0, None), (1, None), (-2, None), (1, -1), (-10, 10), (2, 1)], ids=str)
def test_shape(start, end):
    x = _f32(2, 3, 4)
    attrs = {"start": start} if end is None else {"start": start, "end": end}
    same(ours("Shape", {"start": start, "end": end}, [x]), reference("Shape", [x], **attrs))


@pytest.mark.parametrize("value", [np.arange(6, dtype=np.int64).reshape(2, 3), np.array([True, False]),
                                   np.float32(2.5) * np.ones((2, 2), np.float32), np.array(3.0, np.float32)],
                         ids=["int64", "bool", "float32", "scalar"])
def test_constant(value):
    want = reference("Constant", [], value=onnx.numpy_helper.from_array(value))
    dtype = "bool" if value.dtype == np.bool_ else value.dtype.name
    same(ours("Constant", {"dtype": dtype, "shape": list(value.shape)}, [], weights={"value": value}), want)


def test_constant_value_takes_the_declared_dtype():
    value = np.array([1.0, 2.0, 3.0])
    got = ours("Constant", {"dtype": "int64", "shape": [3]}, [], weights={"value": value})
    same(got, value.astype(np.int64))


# ------------------------------------------------------------------------------------------ Resize


def _resize_reference(x: np.ndarray, size=None, scale=None, **attrs) -> np.ndarray:
    nchw = x.transpose(0, 3, 1, 2)
    args = [nchw, np.array([], np.float32)]
    if size is not None:
        args += [np.array([], np.float32), np.array([x.shape[0], x.shape[3], *size], np.int64)]
    else:
        args += [np.array([1, 1, *scale], np.float32)]
    return reference("Resize", args, **attrs).transpose(0, 2, 3, 1)


RESIZE_ROWS = [
    ({"mode": "nearest", "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}, None, [2.0, 3.0]),
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_ceil"},
     [7, 3], None),
    ({"mode": "nearest", "coordinate_transformation_mode": "align_corners", "nearest_mode": "ceil"}, [3, 8], None),
    ({"mode": "nearest", "coordinate_transformation_mode": "half_pixel", "nearest_mode": "round_prefer_floor"},
     None, [0.5, 1.5]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel"}, None, [2.0, 2.0]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, [7, 9], None),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, [1, 3], None),
    ({"mode": "linear", "coordinate_transformation_mode": "asymmetric"}, None, [0.6, 1.7]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel_symmetric"}, [6, 3], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "half_pixel"}, None, [2.0, 1.5]),
    ({"mode": "cubic", "coordinate_transformation_mode": "align_corners", "cubic_coeff_a": -0.5}, [7, 8], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "exclude_outside": True}, [3, 9], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric"}, None, [0.8, 0.5]),
    ({"mode": "linear", "coordinate_transformation_mode": "align_corners"}, None, [0.6, 0.7]),
    ({"mode": "linear", "coordinate_transformation_mode": "pytorch_half_pixel"}, None, [0.25, 0.6]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel", "antialias": True}, None, [0.5, 0.4]),
    ({"mode": "linear", "coordinate_transformation_mode": "half_pixel", "antialias": True}, [3, 9], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "half_pixel", "antialias": True}, [2, 3], None),
    ({"mode": "cubic", "coordinate_transformation_mode": "asymmetric", "antialias": True,
      "exclude_outside": True}, None, [0.6, 0.5]),
]


@pytest.mark.parametrize("attrs,size,scale", RESIZE_ROWS, ids=str)
def test_resize(attrs, size, scale):
    x = _f32(2, 4, 5, 3)
    onnx_attrs = {k: int(v) if isinstance(v, bool) else v for k, v in attrs.items()}
    want = _resize_reference(x, size=size, scale=scale, **onnx_attrs)
    same(ours("Resize", {**attrs, "size": size, "scale": scale}, [x], batch_unknown=True), want, rtol=1e-4)


# ------------------------------------------------------------------------------------------ validation errors


def _validate(op: str, attrs: dict, shapes: list[tuple], dtypes: list[str] | None = None,
              weights: dict | None = None) -> None:
    specs = [TensorSpec(f"x{k}", (dtypes or ["float32"] * len(shapes))[k], s) for k, s in enumerate(shapes)]
    node = Node("n", op, [s.name for s in specs], ["y"], dict(attrs), {r: f"w/{r}" for r in (weights or {})})
    Graph(specs, [TensorSpec("y", "float32", ())], [node], {f"w/{r}": w for r, w in (weights or {}).items()}).validate()


@pytest.mark.parametrize("op,attrs,shapes,dtypes,message", [
    ("Divide", {}, [(2, 3), (4,)], None, r"shapes \[\[2, 3\], \[4\]\] do not broadcast"),
    ("Where", {}, [(2, 3), (2, 3), (2, 3)], None, r"cond must be bool, got float32"),
    ("Compare", {"function": "equal"}, [(2, 3), (3, 2)], None, r"do not broadcast"),
    ("Unary", {"function": "cube"}, [(2,)], None, r"attr 'function' of op Unary must be one of \['exp'"),
    ("Unary", {"function": "not"}, [(2,)], None, r"'not' takes a bool input, got float32"),
    ("Logical", {"function": "and"}, [(2,), (2,)], ["bool", "int32"], r"Logical takes bool inputs, got int32"),
    ("Transpose", {"perm": [0, 2]}, [(2, 3, 4)], None, r"perm \[0, 2\] is not a permutation of 0\.\.2"),
    ("Gather", {"axis": 2}, [(2, 3), (4,)], ["float32", "int64"], r"axis 2 is out of range for a rank-2 input"),
    ("Gather", {"axis": 0}, [(2, 3), (4,)], ["float32", "float32"], r"indices must be integers, got float32"),
    ("Pad", {"pads": [1, 1]}, [(2, 3)], None, r"pads has 2 entries, expected 4 \(2 x rank\)"),
    ("Pad", {"pads": [0, -2, 0, -2]}, [(2, 3)], None, r"pads -2, -2 crop more than the dim 3"),
    ("Pad", {"pads": [0, 0], "mode": "mirror"}, [(2,)], None, r"attr 'mode' of op Pad must be one of"),
    ("Slice", {"starts": [0], "ends": [1, 2]}, [(2, 3)], None, r"starts, ends, axes and steps differ in length"),
    ("Slice", {"starts": [0], "ends": [1], "axes": [0], "steps": [0]}, [(2, 3)], None, r"steps may not be 0"),
    ("Slice", {"starts": [0], "ends": [1], "axes": [3], "steps": [1]}, [(2, 3)], None,
     r"axes entry 3 is out of range for a rank-2 input \(expected -2\.\.1\)"),
    ("Reduce", {"axes": [0, -2]}, [(2, 3)], None, r"axes \[0, -2\] name an axis twice"),
    ("Reduce", {"function": "median"}, [(2, 3)], None, r"attr 'function' of op Reduce must be one of"),
    ("Tile", {"repeats": [2]}, [(2, 3)], None, r"repeats must be 2 non-negative ints \(one per axis\), got \[2\]"),
    ("Expand", {"shape": [3, 3]}, [(2, 3)], None, r"do not broadcast"),
    ("Expand", {"shape": [-2, 3]}, [(2, 3)], None, r"shape entry -2 is negative"),
    ("MatMul", {}, [(2, 3), (4, 5)], None, r"contracted dims differ: 3 vs 4"),
    ("Resize", {"size": [4, 4], "scale": [2.0, 2.0]}, [(1, 2, 2, 3)], None, r"give exactly one of size and scale"),
    ("Resize", {"size": [4, 4]}, [(1, 2, 3)], None, r"expected a rank-4 \(N, H, W, C\) input, got rank 3"),
    ("Resize", {"scale": [2.0]}, [(1, 2, 2, 3)], None, r"scale must be two positive floats \(H, W\), got \[2\.0\]"),
    ("Cast", {"to": "string"}, [(2,)], None, r"attr 'to' of op Cast must be one of"),
    ("Einsum", {"equation": "ij,jk->ik"}, [(2, 3)], None, r"has 2 operands, got 1 inputs"),
    ("Einsum", {"equation": "ijk->i"}, [(2, 3)], None, r"operand 'ijk' of 'ijk->i' has 3 subscripts for a rank-2"),
    ("Einsum", {"equation": "ij,jk->ik"}, [(2, 3), (4, 5)], None, r"subscript 'j' has sizes \[3, 4\]"),
    ("Einsum", {"equation": "ij->iz"}, [(2, 3)], None, r"output subscripts of 'ij->iz' use a letter no operand has"),
    ("CumSum", {"axis": 3}, [(2, 3)], None, r"axis 3 is out of range for a rank-2 input"),
    ("MatMul", {}, [(), (3,)], None, r"MatMul takes no scalars"),
    ("Slice", {"starts": [0, 0], "ends": [1, 1], "axes": [1, -1], "steps": [1, 1]}, [(2, 3)], None,
     r"axes \[1, -1\] name an axis twice"),
    ("Resize", {"size": [4, 0]}, [(1, 2, 2, 3)], None, r"size must be two positive ints \(H, W\), got \[4, 0\]"),
    ("Einsum", {"equation": "iJ->i"}, [(2, 3)], None, r"operand 'iJ' of 'iJ->i' must use lower-case letters"),
    ("ArgMax", {"axis": -3}, [(2, 3)], None, r"axis -3 is out of range"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_validation_errors(op, attrs, shapes, dtypes, message):
    with pytest.raises(GraphError, match=message) as info:
        _validate(op, attrs, shapes, dtypes)
    assert info.value.node == "n"


def test_top_k_larger_than_its_axis_is_refused():
    node = Node("n", "TopK", ["x"], ["v", "i"], {"k": 4, "axis": 1})
    graph = Graph([TensorSpec("x", "float32", (2, 3))], [TensorSpec("v", "float32", ())], [node])
    with pytest.raises(GraphError, match=r"node 'n': .*k 4 is outside 0\.\.3 \(the size of axis 1\)"):
        graph.validate()


def test_constant_weight_shape_must_match_its_attr():
    with pytest.raises(GraphError, match=r"weight 'w/value' \(role value\) has shape \[3\], expected \[2\]"):
        _validate("Constant", {"dtype": "int64", "shape": [2]}, [], weights={"value": np.arange(3)})


def test_constant_shape_may_not_be_negative():
    with pytest.raises(GraphError, match=r"shape \[-1, 2\] has a negative dim"):
        _validate("Constant", {"dtype": "int64", "shape": [-1, 2]}, [], weights={"value": np.zeros((1, 2), np.int64)})


def test_constant_takes_no_inputs():
    with pytest.raises(GraphError, match=r"op Constant takes 0 inputs, got 1"):
        _validate("Constant", {"dtype": "int64", "shape": [3]}, [(3,)], weights={"value": np.arange(3)})


def test_ops_with_a_dtype_rule_get_integer_inputs_uncast():
    # Divide on int32 truncates toward zero in int32 (ONNX), unlike the Keras-level ops that compute in float32.
    x, y = np.array([7, -7, 9, -9], np.int32), np.array([2, 2, -4, -4], np.int32)
    same(ours("Divide", {}, [x, y]), reference("Div", [x, y]))


def test_integer_and_bool_constants_keep_their_dtype_through_a_bundle(tmp_path):
    import runtime
    import savedmodel

    table = np.array([10, -20, 30, 2**40, -7], np.int64)
    mask = np.array([True, False, True, False, True])
    nodes = [
        Node("table", "Constant", [], ["table"], {"dtype": "int64", "shape": [5]}, {"value": "table/value"}),
        Node("mask", "Constant", [], ["mask"], {"dtype": "bool", "shape": [5]}, {"value": "mask/value"}),
        Node("pick", "Gather", ["table", "ids"], ["picked"], {"axis": 0}),
        Node("keep", "Gather", ["mask", "ids"], ["kept"], {"axis": 0}),
        Node("neg", "Unary", ["picked"], ["negated"], {"function": "neg"}),
        Node("sign", "Where", ["kept", "picked", "negated"], ["y"]),
    ]
    graph = Graph([TensorSpec("ids", "int64", (None,))], [TensorSpec("y", "int64", (None,))], nodes,
                  {"table/value": table, "mask/value": mask})
    savedmodel.save(graph, tmp_path / "m")
    ids = np.array([3, -1, 0, 3], np.int64)
    got = runtime.load(tmp_path / "m").predict(ids)
    # 2**40 survives only if no float32 cast happens anywhere on the way.
    same(got, np.where(mask[ids], table[ids], -table[ids]))
