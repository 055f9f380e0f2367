"""ONNX's own backend node tests, run through our ONNX importer and runtime.

The ``onnx`` package ships the node tests as code (``onnx.backend.test.case.node``):
importing one of its modules builds that module's test models and their
expected outputs (computed by onnx's reference implementation). We import the
modules of the ops the importer claims (``supported_ops()``), keep every case
whose nodes are all claimed ops, and for each: import the model, run it with
``runtime.from_graph`` on the case's inputs, and compare every output — shape,
then dtype, then values (integers and bools exactly, floats with the case's
own tolerances, rtol 1e-3 / atol 1e-7).

Two adjustments make a case look like a model an exporter writes:

- Parameter inputs (Slice's starts, Reshape's shape, Pad's pads...; see
  ``PARAMETERS``) become initializers holding the case's values: exporters
  write them as constants, and the importer needs them constant.
- A case is generated at its op's newest opset; the importer reads 13 to 21.
  A case above 21 whose op has the same inputs, outputs and attributes at
  opset 21 (later versions only added types) is relabelled to opset 21, and
  onnx's checker then validates it against that opset. Other cases outside
  13..21 are not collected (``OPSET_GAPS`` counts them).

Cases that fail for a known reason are listed in ``EXPECTED_FAILURES`` under
that reason and marked ``xfail(strict=True)`` for the exception that reason
raises, so a fix shows up as an unexpected pass. ``scripts/onnx_backend_table.py`` writes the per-op counts
in docs/ONNX.md from the same collection.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import numpy_helper  # noqa: E402

import runtime  # noqa: E402
from runtime.errors import InputError  # noqa: E402
from savedmodel.dtypes import as_dtype  # noqa: E402
from savedmodel.errors import SavedModelError, UnsupportedError  # noqa: E402
from savedmodel.importers.onnx import import_onnx_model  # noqa: E402
from savedmodel.importers.onnx.graph import MAX_OPSET, MIN_OPSET  # noqa: E402
from savedmodel.importers.onnx.registry import supported_ops  # noqa: E402

# Inputs (by position) that exporters write as constants: they become initializers.
PARAMETERS: dict[str, tuple[int, ...]] = {
    "Slice": (1, 2, 3, 4), "Pad": (1, 2, 3), "Reshape": (1,), "Expand": (1,), "Tile": (1,), "Resize": (1, 2, 3),
    "Upsample": (1,), "Clip": (1, 2), "Squeeze": (1,), "Unsqueeze": (1,), "Split": (1,), "CumSum": (1,),
    "ReduceMean": (1,), "ReduceSum": (1,), "ReduceMax": (1,), "ReduceMin": (1,), "ReduceProd": (1,),
    "ReduceL1": (1,), "ReduceL2": (1,), "ReduceLogSumExp": (1,), "ReduceSumSquare": (1,), "ReduceLogSum": (1,),
    "TopK": (1,), "BatchNormalization": (1, 2, 3, 4), "LayerNormalization": (1, 2), "PRelu": (1,),
    "Conv": (1, 2), "ConvTranspose": (1, 2), "Gemm": (1, 2), "LSTM": (1, 2, 3, 4, 5, 6, 7), "GRU": (1, 2, 3, 4, 5),
    "RNN": (1, 2, 3, 4, 5), "CastLike": (1,),
}
_NODE_PACKAGE = "onnx.backend.test.case.node"
# 3-D pooling exports: the importer converts 1-D and 2-D pooling only, and computing their expected
# outputs with onnx's reference takes ~13 s; they are not run.
SLOW_EXPORTS = re.compile(r"pool_3d")
_OP_IN_SOURCE = re.compile(r'make_node\(\s*"(\w+)"')

# Why known cases fail, and the exception each raises (the xfail is strict, and limited to that exception).
BATCH_INPUTS = ("runtime: axis 0 of every model input is its batch axis, and inputs whose first dims differ are "
                "refused; the case feeds inputs of different leading sizes", InputError)
BATCH_AXIS = ("importer: axis 0 is the batch axis; the case reduces, slices, gathers, concatenates, tiles, squeezes, "
              "splits, flattens, reshapes, resizes, transposes or broadcasts across it", UnsupportedError)
INTEGER_ARITHMETIC = ("IR: Add, Subtract and Multiply compute integer inputs in float32 (the Keras-level dtype "
                      "rule), where ONNX keeps the integer dtype", AssertionError)
EXTRA_OUTPUTS = ("importer: an output inference does not produce (LayerNormalization's Mean and InvStdDev, "
                 "BatchNormalization's training-mode statistics, MaxPool's Indices)", UnsupportedError)
IMPORTER_REFUSES = ("importer: an attribute form the IR op lacks (pooling ceil_mode, dilations or count_include_pad "
                    "pads; ConvTranspose output_shape, auto_pad, groups, 1-D or 3-D; a Gemm matrix bias; custom Selu "
                    "constants; LSTM peepholes; GRU's candidate bias form; tf_crop_and_resize)",
                    UnsupportedError)
RESIZE_ATTRS = ("importer: Resize's keep_aspect_ratio_policy is not passed on (it changes the output size)",
                AssertionError)
PRELU = ("importer: PRelu with a slope that broadcasts from the last axis of a 3-D input gives other values than "
         "ONNX", AssertionError)

EXPECTED_FAILURES: dict[tuple[str, type[BaseException]], tuple[str, ...]] = {
    BATCH_INPUTS: ("test_add_bcast", "test_and_bcast3v1d", "test_and_bcast3v2d", "test_and_bcast4v2d",
        "test_and_bcast4v3d", "test_and_bcast4v4d", "test_castlike_DOUBLE_to_FLOAT16_expanded",
        "test_castlike_DOUBLE_to_FLOAT_expanded", "test_castlike_FLOAT16_to_DOUBLE_expanded",
        "test_castlike_FLOAT16_to_FLOAT_expanded", "test_castlike_FLOAT_to_DOUBLE_expanded",
        "test_castlike_FLOAT_to_FLOAT16_expanded", "test_div_bcast", "test_equal_bcast",
        "test_equal_string_broadcast", "test_gather_1", "test_gather_2d_indices", "test_greater_bcast",
        "test_greater_equal_bcast", "test_greater_equal_bcast_expanded", "test_less_bcast", "test_less_equal_bcast",
        "test_less_equal_bcast_expanded", "test_matmul_1d_3d", "test_matmul_2d", "test_matmul_4d_1d",
        "test_mod_broadcast", "test_mul_bcast", "test_or_bcast3v1d", "test_or_bcast3v2d", "test_or_bcast4v2d",
        "test_or_bcast4v3d", "test_or_bcast4v4d", "test_pow_bcast_array", "test_sub_bcast", "test_xor_bcast3v1d",
        "test_xor_bcast3v2d", "test_xor_bcast4v2d", "test_xor_bcast4v3d", "test_xor_bcast4v4d",),
    BATCH_AXIS: ("test_top_k_same_values", "test_top_k_same_values_largest",
        "test_argmax_default_axis_example", "test_argmax_default_axis_example_select_last_index",
        "test_argmax_default_axis_random", "test_argmax_default_axis_random_select_last_index",
        "test_argmin_default_axis_example", "test_argmin_default_axis_example_select_last_index",
        "test_argmin_default_axis_random", "test_argmin_default_axis_random_select_last_index",
        "test_concat_1d_axis_0", "test_concat_1d_axis_negative_1", "test_concat_2d_axis_0",
        "test_concat_2d_axis_negative_2", "test_concat_3d_axis_0", "test_concat_3d_axis_negative_3",
        "test_flatten_axis0", "test_flatten_axis2", "test_flatten_axis3", "test_flatten_negative_axis1",
        "test_flatten_negative_axis2", "test_flatten_negative_axis4", "test_gather_0",
        "test_gather_negative_indices", "test_gemm_all_attributes", "test_gemm_transposeA", "test_logsoftmax_axis_0",
        "test_logsoftmax_axis_1", "test_matmul_bcast", "test_reduce_l1_default_axes_keepdims_example",
        "test_reduce_l1_default_axes_keepdims_example_expanded", "test_reduce_l1_default_axes_keepdims_random",
        "test_reduce_l1_default_axes_keepdims_random_expanded", "test_reduce_l2_default_axes_keepdims_example",
        "test_reduce_l2_default_axes_keepdims_random", "test_reduce_log_sum_exp_default_axes_keepdims_example",
        "test_reduce_log_sum_exp_default_axes_keepdims_random", "test_reduce_max_default_axes_keepdim_example",
        "test_reduce_max_default_axes_keepdims_random", "test_reduce_mean_default_axes_keepdims_example",
        "test_reduce_mean_default_axes_keepdims_random", "test_reduce_min_default_axes_keepdims_example",
        "test_reduce_min_default_axes_keepdims_random", "test_reduce_prod_default_axes_keepdims_example",
        "test_reduce_prod_default_axes_keepdims_random", "test_reduce_sum_default_axes_keepdims_example",
        "test_reduce_sum_default_axes_keepdims_random", "test_reduce_sum_square_default_axes_keepdims_example",
        "test_reduce_sum_square_default_axes_keepdims_example_expanded",
        "test_reduce_sum_square_default_axes_keepdims_random",
        "test_reduce_sum_square_default_axes_keepdims_random_expanded", "test_reshape_allowzero_reordered",
        "test_reshape_negative_extended_dims", "test_reshape_one_dim", "test_reshape_reordered_all_dims",
        "test_slice", "test_slice_default_axes", "test_slice_default_steps", "test_slice_neg_steps",
        "test_slice_negative_axes", "test_split_1d_uneven_split_opset18", "test_split_equal_parts_1d_opset13",
        "test_split_equal_parts_1d_opset18", "test_split_equal_parts_default_axis_opset13",
        "test_split_equal_parts_default_axis_opset18", "test_split_variable_parts_1d_opset13",
        "test_split_variable_parts_1d_opset18", "test_split_variable_parts_default_axis_opset13",
        "test_split_variable_parts_default_axis_opset18", "test_split_zero_size_splits_opset13",
        "test_split_zero_size_splits_opset18", "test_squeeze", "test_tile", "test_tile_precomputed",),
    INTEGER_ARITHMETIC: ("test_add_int16", "test_add_int8", "test_add_uint16", "test_add_uint32", "test_add_uint64",
        "test_add_uint8", "test_mul_int16", "test_mul_int8", "test_mul_uint16", "test_mul_uint32", "test_mul_uint64",
        "test_mul_uint8", "test_sub_int16", "test_sub_int8", "test_sub_uint16", "test_sub_uint32", "test_sub_uint64",
        "test_sub_uint8",),
    EXTRA_OUTPUTS: ("test_batchnorm_epsilon_training_mode", "test_batchnorm_example_training_mode",
        "test_layer_normalization_2d_axis0", "test_layer_normalization_2d_axis1",
        "test_layer_normalization_2d_axis_negative_1", "test_layer_normalization_2d_axis_negative_2",
        "test_layer_normalization_3d_axis0_epsilon", "test_layer_normalization_3d_axis1_epsilon",
        "test_layer_normalization_3d_axis2_epsilon", "test_layer_normalization_3d_axis_negative_1_epsilon",
        "test_layer_normalization_3d_axis_negative_2_epsilon", "test_layer_normalization_3d_axis_negative_3_epsilon",
        "test_layer_normalization_4d_axis0", "test_layer_normalization_4d_axis1",
        "test_layer_normalization_4d_axis2", "test_layer_normalization_4d_axis3",
        "test_layer_normalization_4d_axis_negative_1", "test_layer_normalization_4d_axis_negative_2",
        "test_layer_normalization_4d_axis_negative_3", "test_layer_normalization_4d_axis_negative_4",
        "test_layer_normalization_default_axis", "test_maxpool_with_argmax_2d_precomputed_pads",
        "test_maxpool_with_argmax_2d_precomputed_strides",),
    IMPORTER_REFUSES: ("test_averagepool_2d_ceil", "test_averagepool_2d_ceil_last_window_starts_on_pad",
        "test_averagepool_2d_dilations", "test_averagepool_2d_pads", "test_averagepool_2d_same_lower",
        "test_convtranspose_1d", "test_convtranspose_3d", "test_convtranspose_autopad_same",
        "test_convtranspose_group_2", "test_convtranspose_group_2_image_3", "test_convtranspose_kernel_shape",
        "test_convtranspose_output_shape", "test_gemm_default_matrix_bias", "test_gru_seq_length",
        "test_lstm_with_peepholes", "test_maxpool_2d_ceil", "test_maxpool_2d_ceil_output_size_reduce_by_one",
        "test_maxpool_2d_dilations", "test_resize_tf_crop_and_resize", "test_resize_tf_crop_and_resize_axes_2_3",
        "test_resize_tf_crop_and_resize_axes_3_2", "test_resize_tf_crop_and_resize_extrapolation_value", "test_selu",
        "test_selu_example",),
    RESIZE_ATTRS: ("test_resize_downsample_sizes_nearest_not_larger",
        "test_resize_downsample_sizes_nearest_not_smaller", "test_resize_upsample_sizes_nearest_not_larger",
        "test_resize_upsample_sizes_nearest_not_smaller",),
    PRELU: ("test_prelu_example",),
}


@dataclass(frozen=True)
class Case:
    name: str
    op: str
    model: object
    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    rtol: float
    atol: float


def claimed_ops() -> set[str]:
    """The default-domain op types the importer converts."""
    return {op.split("::")[1] for op in supported_ops() if op.startswith("ai.onnx::")}


def _modules_for(ops: set[str]) -> list[str]:
    """The node-test modules whose source builds a node of one of ``ops`` (a text scan, no import)."""
    package = importlib.import_module(_NODE_PACKAGE)
    names = []
    for info in pkgutil.iter_modules(package.__path__):
        source = Path(package.__path__[0], f"{info.name}.py")
        if source.is_file() and ops & set(_OP_IN_SOURCE.findall(source.read_text())):
            names.append(f"{_NODE_PACKAGE}.{info.name}")
    return sorted(names)


def _default_opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _fits_opset(node, version: int) -> bool:
    """Whether ``node`` uses only inputs, outputs and attributes that its op has at opset ``version``."""
    try:
        schema = onnx.defs.get_schema(node.op_type, version)
    except onnx.defs.SchemaError:
        return False
    variadic = onnx.defs.OpSchema.FormalParameterOption.Variadic
    inputs_ok = len(node.input) <= len(schema.inputs) or schema.inputs[-1].option == variadic
    outputs_ok = len(node.output) <= len(schema.outputs) or schema.outputs[-1].option == variadic
    return inputs_ok and outputs_ok and {a.name for a in node.attribute} <= set(schema.attributes)


def _as_exported(model, inputs: dict[str, np.ndarray]):
    """A copy of ``model`` with its parameter inputs as initializers and its opset moved into the importer's
    range, or None when its nodes do not exist in that form there (or the checker refuses the result)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    frozen = set()
    for node in graph.node:
        for i in PARAMETERS.get(node.op_type, ()):
            if i < len(node.input) and node.input[i] in inputs:
                frozen.add(node.input[i])
    for name in sorted(frozen):
        graph.initializer.append(numpy_helper.from_array(inputs[name], name))
    kept = [v for v in graph.input if v.name not in frozen]
    del graph.input[:]
    graph.input.extend(kept)
    opset = _default_opset(model)
    target = min(max(opset, MIN_OPSET), MAX_OPSET)
    if target != opset:
        if not all(_fits_opset(n, target) for n in graph.node if n.domain in ("", "ai.onnx")):
            return None
        for o in model.opset_import:
            if o.domain in ("", "ai.onnx"):
                o.version = target
        try:
            onnx.checker.check_model(model)
        except onnx.checker.ValidationError:
            return None
    return model


def _arrays(values, names) -> dict[str, np.ndarray] | None:
    out = {}
    for name, v in zip(names, values):
        if isinstance(v, onnx.TensorProto):
            v = numpy_helper.to_array(v)
        if isinstance(v, np.generic):
            v = np.asarray(v)
        if not isinstance(v, np.ndarray):
            return None  # sequences, optionals, maps: not IR tensors
        out[name] = v
    return out


@cache
def collect() -> tuple[list[Case], Counter]:
    """Every runnable case of the claimed ops, and a count per op of the cases left out (and why)."""
    ops = claimed_ops()
    node_tests = importlib.import_module(_NODE_PACKAGE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # onnx's reference warns on log(0) and the like while building cases
        for module in _modules_for(ops):
            _run_exports(module)
    cases, left_out = [], Counter()
    # A function-expanded case (test_<name>_expanded[_verN]) tests the op of the one-node case test_<name>.
    single = {tc.name: tc.model.graph.node[0].op_type for tc in node_tests._NodeTestCases
              if len(tc.model.graph.node) == 1}
    for tc in node_tests._NodeTestCases:
        node_ops = {n.op_type for n in tc.model.graph.node}
        if not node_ops <= ops:
            continue
        op = single.get(tc.name.split("_expanded")[0], "+".join(sorted(node_ops)))
        graph = tc.model.graph
        inputs = _arrays(tc.data_sets[0][0], [v.name for v in graph.input])
        outputs = _arrays(tc.data_sets[0][1], [v.name for v in graph.output])
        if inputs is None or outputs is None:
            left_out[(op, "non-tensor inputs or outputs")] += 1
            continue
        foreign = sorted({str(a.dtype) for a in [*inputs.values(), *outputs.values()] if not _ir_dtype(a.dtype)})
        if foreign:
            left_out[(op, f"dtype {', '.join(foreign)} has no IR equivalent")] += 1
            continue
        model = _as_exported(tc.model, inputs)
        if model is None:
            left_out[(op, f"opset {_default_opset(tc.model)}: not expressible at opsets {MIN_OPSET}..{MAX_OPSET}")] += 1
            continue
        feeds = {v.name: inputs[v.name] for v in model.graph.input}
        cases.append(Case(tc.name, op, model, feeds, outputs, tc.rtol, tc.atol))
    return cases, left_out


def _ir_dtype(dtype: np.dtype) -> bool:
    try:
        as_dtype(dtype)
    except SavedModelError:
        return False
    return True


def _run_exports(module_name: str) -> None:
    """Import a node-test module and run its export functions but the slow ones (``SLOW_EXPORTS``).

    Importing one normally runs every export (its classes' metaclass does); here its classes are built on
    a plain base while it is imported, and the exports are then called one by one, each after
    ``np.random.seed(0)`` as onnx does.
    """
    if module_name in sys.modules:
        return  # already imported (and exported) by someone else: its cases are registered
    base_module = importlib.import_module("onnx.backend.test.case.base")
    real_base = base_module.Base

    class Plain:
        pass

    base_module.Base = Plain
    try:
        module = importlib.import_module(module_name)
    finally:
        base_module.Base = real_base
    for cls in list(vars(module).values()):
        if isinstance(cls, type) and issubclass(cls, Plain) and cls is not Plain:
            for key in list(vars(cls)):
                if key.startswith("export") and not SLOW_EXPORTS.search(key):
                    np.random.seed(0)
                    getattr(cls, key)()


def run_case(case: Case) -> dict[str, np.ndarray]:
    """Import the case's model and run it on its inputs; outputs by ONNX name."""
    graph, _ = import_onnx_model(case.model)
    model = runtime.from_graph(graph)
    fn = model.signatures["serving_default"]
    alias = {spec.name: a for a, spec in fn.signature.inputs.items()}
    got = fn(**{alias[name]: value for name, value in case.inputs.items()})
    by_tensor = {spec.name: got[a] for a, spec in fn.signature.outputs.items()}
    return {name: by_tensor[name] for name in case.outputs}


def check_outputs(case: Case, got: dict[str, np.ndarray]) -> None:
    """Shape, then dtype, then values of every output."""
    for name, want in case.outputs.items():
        have = np.asarray(got[name])
        assert have.shape == want.shape, f"output {name!r}: shape {have.shape}, expected {want.shape}"
        assert have.dtype == want.dtype, f"output {name!r}: dtype {have.dtype}, expected {want.dtype}"
        if want.dtype.kind in "fc":
            np.testing.assert_allclose(have, want, rtol=case.rtol, atol=case.atol, err_msg=f"output {name!r}")
        else:
            np.testing.assert_array_equal(have, want, err_msg=f"output {name!r}")


def expected_failure(name: str) -> tuple[str, type[BaseException]] | None:
    """The (reason, exception) a case is known to fail with, or None."""
    return next((why for why, names in EXPECTED_FAILURES.items() if name in names), None)


def _params():
    params = []
    for case in collect()[0]:
        why = expected_failure(case.name)
        marks = [pytest.mark.xfail(reason=why[0], raises=why[1], strict=True)] if why else []
        params.append(pytest.param(case, id=case.name, marks=marks))
    return params


@pytest.mark.parametrize("case", _params())
def test_node(case: Case) -> None:
    check_outputs(case, run_case(case))


def test_expected_failures_name_collected_cases() -> None:
    names = {c.name for c in collect()[0]}
    listed = [n for group in EXPECTED_FAILURES.values() for n in group]
    assert sorted(set(listed) - names) == []
    assert len(listed) == len(set(listed)), "a case is listed under two reasons"
