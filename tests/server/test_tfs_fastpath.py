"""The fast path of TF Serving predict bodies: ``instances`` as one array of plain numbers.

It must give exactly the arrays of the general path (orjson + predict_inputs), and step aside (None) for
every body it does not fully understand, so that the general path reports the exact error.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import orjson
import pytest

from savedmodel.ir import TensorSpec
from server.errors import InvalidArgument
from server.service import validate_inputs
from server.tfs_codec import numeric_rows, predict_inputs, request_object, split_numeric_instances


def _fn(*specs: TensorSpec) -> SimpleNamespace:
    return SimpleNamespace(inputs=list(specs))


IMAGE = _fn(TensorSpec("image", "float32", (None, 3, 2, 1)))


def _general(body: bytes, fn) -> dict[str, np.ndarray]:
    return predict_inputs(request_object(orjson.loads(body)), fn)[0]


def _fast(body: bytes, fn) -> dict[str, np.ndarray] | None:
    split = split_numeric_instances(body)
    return None if split is None else numeric_rows(split, fn)


@pytest.mark.parametrize("body", [
    orjson.dumps({"instances": np.random.default_rng(0).standard_normal((4, 3, 2, 1)).tolist()}),
    orjson.dumps({"signature_name": "serving_default", "instances": [[[[1], [2]], [[3], [4]], [[5], [6]]]]}),
    b'{ "instances" :\n [ [ [[1e3],[ -2.5E-2]],[[0],[7]],[[1.0000001],[3]] ] ] ,"signature_name":"x"}',
    json.dumps({"instances": [[[[0.1], [0.2]], [[0.3], [1e-45]], [[3.4e38], [-0.0]]]]}, indent=2).encode(),
])
def test_fast_path_gives_the_arrays_of_the_general_path(body):
    fast, general = _fast(body, IMAGE), _general(body, IMAGE)
    assert fast is not None
    assert fast.keys() == general.keys()
    for name in fast:
        assert fast[name].dtype == general[name].dtype
        np.testing.assert_array_equal(fast[name], general[name])


def test_fast_path_keeps_the_signature_name():
    split = split_numeric_instances(b'{"signature_name": "other", "instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]]}')
    assert split.doc == {"signature_name": "other", "instances": 0}
    assert split.text == b"[[[[1],[2]],[[3],[4]],[[5],[6]]]]"
    assert split.brackets == b"[[[[],[]],[[],[]],[[],[]]]]"


@pytest.mark.parametrize("body", [
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]], "inputs": [1]}',   # both keys: the general path's error
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[true]]]]}',              # not a number
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],["6"]]]]}',
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[NaN]]]]}',
    b'{"instances": [{"image": [[[1],[2]],[[3],[4]],[[5],[6]]]}]}',      # named rows
    b'{"instances": 7}',
    b'{"examples": [], "x": "\\"instances\\": [1]"}',
    b'{"instances": [[1]], "instances": [[2]]}',
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]], "signature_name": "a]"}',  # a ']' after the array
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]], "x": [1]}',       # another key
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]]',                  # no closing brace
    b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]]}}',
])
def test_bodies_the_fast_path_does_not_take(body):
    assert _fast(body, IMAGE) is None


@pytest.mark.parametrize("array", [
    b"[[[[1],[2]],[[3],[4]],[[5],[6]]],[[[1],[2]],[[3],[4]]]]",  # ragged rows
    b"[[[[1],[2]],[[3],[4]],[[5],[6],[7]]]]",                    # a row of the wrong shape
    b"[[[[1,2],[2]],[[3],[4]],[[5],[6]]]]",
    b"[[[[1],[2]],[[3],[4]],[[5],[]]]]",                          # a missing number
    b"[[[[1 2],[2]],[[3],[4]],[[5],[6]]]]",                       # numbers not separated by commas
    b"[[[[1-2],[2]],[[3],[4]],[[5],[6]]]]",
    b"[]",
])
def test_arrays_the_fast_path_leaves_to_the_general_path(array):
    split = split_numeric_instances(b'{"instances": ' + array + b"}")
    assert split is None or numeric_rows(split, IMAGE) is None


@pytest.mark.parametrize("fn", [
    _fn(TensorSpec("ids", "int32", (None, 3, 2, 1))),                       # integers: range checks stay general
    _fn(TensorSpec("image", "float32", (None, None, 2, 1))),                # a dim the body must decide
    _fn(TensorSpec("a", "float32", (None, 3, 2, 1)), TensorSpec("b", "float32", (None, 1))),
])
def test_signatures_the_fast_path_leaves_to_the_general_path(fn):
    split = split_numeric_instances(b'{"instances": [[[[1],[2]],[[3],[4]],[[5],[6]]]]}')
    assert numeric_rows(split, fn) is None


def test_scalar_rows():
    fn = _fn(TensorSpec("x", "float32", (None,)))
    body = b'{"instances": [1, 2.5, -3]}'
    np.testing.assert_array_equal(_fast(body, fn)["x"], _general(body, fn)["x"])


def test_an_empty_array_of_scalar_rows_is_left_to_the_general_path():
    fn = _fn(TensorSpec("x", "float32", (None,)))
    assert _fast(b'{"instances": []}', fn) is None
    with pytest.raises(InvalidArgument, match="No values in 'instances' array"):
        _general(b'{"instances": []}', fn)


@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
@pytest.mark.parametrize("dims", [(), (1,), (5,), (2, 3), (4, 1, 2), (28, 28, 1), (2, 2, 2, 2)])
@pytest.mark.parametrize("rows", [1, 3])
@pytest.mark.parametrize("style", ["compact", "spaced", "indented", "orjson"])
def test_fast_path_matches_the_general_path_on_many_shapes(dtype, dims, rows, style):
    rng = np.random.default_rng(len(dims) * 10 + rows)
    values = rng.standard_normal((rows, *dims)) * 10.0 ** rng.integers(-30, 30, (rows, *dims))
    values[..., ::2] = np.round(values[..., ::2])  # whole numbers too, written without a point by json
    instances = values.tolist()
    body = {
        "compact": lambda: json.dumps({"instances": instances}, separators=(",", ":")).encode(),
        "spaced": lambda: json.dumps({"signature_name": "s", "instances": instances}).encode(),
        "indented": lambda: json.dumps({"instances": instances, "signature_name": "s"}, indent=3).encode(),
        "orjson": lambda: orjson.dumps({"instances": instances}),
    }[style]()
    fn = _fn(TensorSpec("x", dtype, (None, *dims)))
    with np.errstate(over="ignore"):
        fast, general = _fast(body, fn), _general(body, fn)
    assert fast is not None
    assert fast["x"].dtype == general["x"].dtype == np.dtype(dtype)
    assert fast["x"].shape == (rows, *dims)
    np.testing.assert_array_equal(fast["x"], general["x"])


@pytest.mark.parametrize("dims", [(3,), (2, 3), (28, 28, 1)])
def test_misshapen_arrays_of_many_shapes_are_left_to_the_general_path(dims):
    good = np.zeros((2, *dims)).tolist()
    fn = _fn(TensorSpec("x", "float32", (None, *dims)))
    bad_rows = [good[0], np.zeros(dims[:-1] + (dims[-1] + 1,)).tolist()]  # the second row is too long
    for instances in (bad_rows, good[0], [good]):
        body = json.dumps({"instances": instances}).encode()
        assert _fast(body, fn) is None
        with pytest.raises(InvalidArgument):  # ragged rows fail to parse, the others fail the signature's shape
            validate_inputs(fn, "serving_default", _general(body, fn))
