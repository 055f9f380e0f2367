"""The bundle file (format v1.0): round trips of every part and every refusal of the reader.

Bad files are crafted with h5py directly. Where a test changes the graph or
signatures JSON it re-signs the file (`_resign`), so the refusal under test is
reached rather than the digest check in front of it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from savedmodel import format as fmt
from savedmodel.bundle import Bundle, Signature, write_bundle
from savedmodel.dtypes import DTYPES, to_numpy
from savedmodel.errors import FormatError, GraphError
from savedmodel.ir import Graph, Node, TensorSpec
from savedmodel.reader import read_bundle
from savedmodel.records import (
    asset_checksum,
    bundle_digest,
    escape_name,
    parse_string_record,
    string_record,
    tensor_checksum,
    unescape_name,
)

KERNEL = np.arange(12, dtype=np.float32).reshape(4, 3) / 7
BIAS = np.array([0.5, -1.0, 2.0], dtype=np.float32)


def dense_graph(**extra_weights: np.ndarray) -> Graph:
    """x[?, 4] -> Dense(3) -> y; extra (unreferenced) weights ride along."""
    return Graph(
        [TensorSpec("x", "float32", (None, 4))],
        [TensorSpec("y", "float32", (None, 3))],
        [Node("d", "Dense", ["x"], ["y"], {"units": 3}, {"kernel": "d/kernel", "bias": "d/bias"})],
        {"d/kernel": KERNEL.copy(), "d/bias": BIAS.copy(), **extra_weights},
    )


def make_bundle(graph: Graph | None = None, **kwargs) -> Bundle:
    graph = graph or dense_graph()
    kwargs.setdefault("signatures", {fmt.DEFAULT_SIGNATURE: Signature.from_graph(graph)})
    return Bundle(graph, **kwargs)


def written(tmp_path: Path, bundle: Bundle | None = None) -> Path:
    path = tmp_path / fmt.FILE_NAME
    write_bundle(bundle or make_bundle(), path)
    return path


def sample(dtype: str, shape: tuple[int, ...] = (2, 3)) -> np.ndarray:
    """Values exercising the edges of each dtype (extremes, NaN/inf, NUL bytes)."""
    n = int(np.prod(shape))
    if dtype == "string":
        values = [b"a\x00b", b"", b"\xff\xfe", "héllo".encode(), b"x" * 300, b"tail"]
        return np.array((values * n)[:n], dtype=object).reshape(shape)
    if dtype == "bool":
        return (np.arange(n) % 2 == 0).reshape(shape)
    np_dtype = to_numpy(dtype)
    if np_dtype.kind == "f":
        values = [0.0, -0.0, np.inf, -np.inf, np.nan, np.finfo(np_dtype).max, np.finfo(np_dtype).tiny, 1 / 3]
    else:
        info = np.iinfo(np_dtype)
        values = [info.min, info.max, 0, 1, info.max // 3]
    return np.array((values * n)[:n], dtype=np_dtype).reshape(shape)


def assert_same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    assert got.dtype == want.dtype
    if want.dtype.kind == "f":
        np.testing.assert_array_equal(got, want)  # NaN == NaN here, bit patterns checked below
        assert got.tobytes() == want.tobytes()
    else:
        assert got.tolist() == want.tolist()


def put_text(group: h5py.Group, name: str, text: str, checksum: bool = True) -> None:
    """(Re)write a JSON member as the writer does: a scalar fixed-length UTF-8 string with its checksum."""
    if name in group:
        del group[name]
    data = np.array(text.encode(), dtype=h5py.string_dtype("utf-8", max(len(text.encode()), 1)))
    ds = group.create_dataset(name, data=data, dtype=data.dtype)
    if checksum:
        ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(hashlib.sha256(text.encode()).hexdigest())


def put_text_asset(group: h5py.Group, name: str, array: np.ndarray) -> None:
    """A text asset as FORMAT.md stores it: uint8 string records, dtype and kind attributes, checksum."""
    if name in group:
        del group[name]
    ds = group.create_dataset(name, data=np.frombuffer(string_record(array), np.uint8))
    put_attr(ds, fmt.ATTR_DTYPE, "string")
    put_attr(ds, fmt.ATTR_ASSET_KIND, "text")
    ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(asset_checksum(name, "text", "string", array).hex())


def put_attr(obj: h5py.HLObject, name: str, text: str) -> None:
    data = np.array(text.encode(), dtype=h5py.string_dtype("utf-8", max(len(text.encode()), 1)))
    obj.attrs.create(name, data=data, dtype=data.dtype)


def _resign(path: Path, *, graph: dict | None = None, signatures: dict | str | None = None) -> None:
    """Rewrite the graph or signatures JSON and recompute checksums and digest as a writer would."""
    with h5py.File(path, "r+") as f:
        if graph is not None:
            put_text(f, fmt.GRAPH, json.dumps(graph))
        if signatures is not None:
            put_text(f, fmt.SIGNATURES, signatures if isinstance(signatures, str) else json.dumps(signatures))
        checksums = {}
        for name, ds in f[fmt.WEIGHTS].items():
            array = ds[()]
            dtype = str(array.dtype)
            if fmt.ATTR_DTYPE in ds.attrs:
                dtype, array = "string", parse_string_record(array.tobytes())
            checksums[unescape_name(name)] = tensor_checksum(dtype, np.asarray(array))
            ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(checksums[unescape_name(name)].hex())
        put_attr(f, fmt.ATTR_DIGEST, bundle_digest(f[fmt.GRAPH][()], checksums))


def graph_json(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f[fmt.GRAPH][()])


# -- round trips ------------------------------------------------------------------------------
def test_round_trip_graph_signatures_metadata(tmp_path):
    graph = dense_graph()
    sigs = {
        "serving_default": Signature.from_graph(graph),
        "classification": Signature("classify", {"features": graph.inputs[0]}, {"scores": graph.outputs[0]},
                                    labels="labels"),
        "regression": Signature("regress", {"x": graph.inputs[0]}, {"value": graph.outputs[0]}),
    }
    metadata = {"source": {"framework": "keras", "version": "3.15.1"}, "user": {"acc": 0.98, "tags": ["a", None]},
                "description": "ünïcode ✓"}
    bundle = Bundle(graph, sigs, {"labels": ["cat", "dog", "émeu"]}, metadata)
    path = written(tmp_path, bundle)

    back = read_bundle(path)
    assert back.graph.to_json() == graph.to_json()
    for key, value in graph.weights.items():
        assert_same(back.graph.weights[key], value)
    assert back.signatures == sigs
    assert back.signatures["classification"].labels == "labels"
    assert back.assets == {"labels": ["cat", "dog", "émeu"]}
    assert back.metadata == metadata
    assert back.path == path
    assert back.format_version == "1.0"
    assert (back.producer, back.producer_version) == (bundle.producer, bundle.producer_version)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", back.created)
    assert back.created == bundle.created and back.digest == bundle.digest
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", back.digest)


def test_root_attributes_and_layout(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r") as f:
        assert f.attrs[fmt.ATTR_FORMAT] == fmt.FORMAT_NAME.encode()
        assert f.attrs[fmt.ATTR_FORMAT_VERSION] == b"1.0"
        assert f.attrs[fmt.ATTR_PRODUCER] == b"savedmodel"
        for name in f.attrs:  # fixed-length strings: no global heap (FORMAT.md 2.1)
            assert not f.attrs.get_id(name).get_type().is_variable_str()
        assert f[fmt.GRAPH].dtype.kind == "S"
        assert set(f) == {fmt.GRAPH, fmt.SIGNATURES, fmt.METADATA, fmt.WEIGHTS, fmt.ASSETS}
        kernel = f[fmt.WEIGHTS]["d%2Fkernel"]
        assert kernel.compression is None and kernel.chunks is None  # contiguous, no filters
        assert len(kernel.attrs[fmt.ATTR_CHECKSUM]) == 64


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3), (), (0, 4)], ids=["matrix", "scalar", "empty"])
def test_every_dtype_round_trips_as_weight(tmp_path, dtype, shape):
    value = sample(dtype, shape)
    back = read_bundle(written(tmp_path, make_bundle(dense_graph(extra=value))))
    assert_same(back.graph.weights["extra"], value)


@pytest.mark.parametrize("dtype", DTYPES)
def test_every_dtype_round_trips_as_array_asset(tmp_path, dtype):
    value = sample(dtype, (3, 2))
    back = read_bundle(written(tmp_path, make_bundle(assets={"arr": value})))
    assert_same(back.assets["arr"], value)


def test_str_elements_are_stored_as_utf8_bytes(tmp_path):
    back = read_bundle(written(tmp_path, make_bundle(dense_graph(words=np.array(["héllo", "x"])))))
    assert back.graph.weights["words"].tolist() == ["héllo".encode(), b"x"]


def test_string_tensors_are_stored_as_uint8_records(tmp_path):
    words = np.array([[b"a", b"\xff\x00"], [b"", b"long" * 50]], dtype=object)
    path = written(tmp_path, make_bundle(dense_graph(words=words), assets={"labels": ["x", "y"]}))
    with h5py.File(path, "r") as f:
        for ds, array in ((f[fmt.WEIGHTS]["words"], words), (f[fmt.ASSETS]["labels"], np.array([b"x", b"y"], object))):
            assert ds.dtype == np.uint8 and ds.attrs[fmt.ATTR_DTYPE] == b"string"
            assert ds[()].tobytes() == string_record(array)
        record = f[fmt.ASSETS]["labels"][()].tobytes()  # rank 1, dim 2, lengths 1 and 1, then "xy"
        assert record == bytes.fromhex("01" + "00" * 7 + "02" + "00" * 7 + ("01" + "00" * 7) * 2) + b"xy"


def test_no_dataset_or_attribute_uses_the_global_heap(tmp_path):
    """Variable-length data lives in HDF5's global heap, whose parser can spin forever on a damaged file."""
    graph = dense_graph(words=np.array([b"a"], dtype=object))
    path = written(tmp_path, make_bundle(graph, assets={"labels": ["a"], "blob": b"x"}, metadata={"k": "v"}))
    found = []

    def visit(name: str, obj: h5py.HLObject) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind == "O":
            found.append(name)
        found.extend(f"{name}@{a}" for a in obj.attrs if obj.attrs.get_id(a).get_type().is_variable_str())

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
    assert found == []


def test_assets_of_each_kind_round_trip_with_their_python_type(tmp_path):
    assets = {
        "labels": ["zero", "one", "", "ünï ✓"],
        "vocab": [],
        "blob": b"\x00\x01binary\xff",
        "empty_blob": b"",
        "table": np.arange(6, dtype=np.int64).reshape(2, 3),
        "tokens": np.array([b"[CLS]", b"a\x00"], dtype=object),
        "dir/sub.txt": ["nested", "name"],
    }
    back = read_bundle(written(tmp_path, make_bundle(assets=assets))).assets
    assert set(back) == set(assets)
    assert back["labels"] == assets["labels"] and isinstance(back["labels"], list)
    assert back["vocab"] == []
    assert back["blob"] == assets["blob"] and isinstance(back["blob"], bytes)
    assert back["empty_blob"] == b""
    assert_same(back["table"], assets["table"])
    assert back["tokens"].tolist() == [b"[CLS]", b"a\x00"]
    assert back["dir/sub.txt"] == ["nested", "name"]


def test_text_assets_may_hold_any_character(tmp_path):
    lines = ["nul\x00inside", "trailing\x00", "\U0001F600", "tab\tnewline\n"]
    assert read_bundle(written(tmp_path, make_bundle(assets={"t": lines}))).assets["t"] == lines


def test_tuple_of_str_and_bytearray_assets_come_back_as_list_and_bytes(tmp_path):
    back = read_bundle(written(tmp_path, make_bundle(assets={"t": ("a", "b"), "b": bytearray(b"xy")}))).assets
    assert back == {"t": ["a", "b"], "b": b"xy"}


@pytest.mark.parametrize("key,name", [
    ("dense_1/kernel", "dense_1%2Fkernel"),
    ("100%/x", "100%25%2Fx"),
    (".hidden", "%2Ehidden"),
    (".", "%2E"),
    ("a.b", "a.b"),
    ("ünï/çødé", "ünï%2Fçødé"),
])
def test_weight_key_escaping(tmp_path, key, name):
    assert escape_name(key) == name and unescape_name(name) == key
    path = written(tmp_path, make_bundle(dense_graph(**{key: np.ones(2, np.float32)})))
    with h5py.File(path, "r") as f:
        assert name in f[fmt.WEIGHTS]
    assert key in read_bundle(path).graph.weights


@pytest.mark.parametrize("name", ["%41", "a%2f", "%2Ex%2E", ".x", "%"])
def test_non_canonical_escapes_are_not_names(name):
    assert unescape_name(name) is None


def test_weight_order_is_kept(tmp_path):
    graph = dense_graph(z=np.ones(1, np.float32), a=np.ones(1, np.float32))
    assert list(read_bundle(written(tmp_path, make_bundle(graph))).graph.weights) == list(graph.weights)


def test_digest_covers_graph_and_weights_only(tmp_path):
    first = make_bundle(metadata={"run": 1})
    second = make_bundle(metadata={"run": 2}, assets={"labels": ["a"]})
    write_bundle(first, tmp_path / "a.h5")
    write_bundle(second, tmp_path / "b.h5")
    assert first.digest == second.digest
    third = make_bundle(dense_graph(extra=np.zeros(1, np.float32)))
    write_bundle(third, tmp_path / "c.h5")
    assert third.digest != first.digest


def test_digest_definition_matches_format_md(tmp_path):
    """Recompute the digest from the stored bytes exactly as FORMAT.md defines it."""
    import hashlib
    import struct

    path = written(tmp_path)

    def u64(n: int) -> bytes:
        return struct.pack("<Q", n)

    with h5py.File(path, "r") as f:
        graph = f[fmt.GRAPH][()]
        h = hashlib.sha256(u64(len(graph)) + graph)
        for key in sorted(["d/kernel", "d/bias"], key=str.encode):
            array = f[fmt.WEIGHTS][escape_name(key)][()]
            record = u64(7) + b"float32" + u64(array.ndim) + b"".join(u64(d) for d in array.shape)
            checksum = hashlib.sha256(record + array.astype("<f4").tobytes()).digest()
            assert f[fmt.WEIGHTS][escape_name(key)].attrs[fmt.ATTR_CHECKSUM] == checksum.hex().encode()
            h.update(u64(len(key)) + key.encode() + checksum)
        assert f.attrs[fmt.ATTR_DIGEST] == b"sha256:" + h.hexdigest().encode()


def test_newer_minor_version_loads_and_ignores_unknown_parts(tmp_path, caplog):
    path = written(tmp_path, make_bundle(assets={"labels": ["a"]}))
    with h5py.File(path, "r+") as f:
        put_attr(f, fmt.ATTR_FORMAT_VERSION, "1.7")
        put_attr(f, "compression_hint", "none")
        f.create_group("calibration").create_dataset("ranges", data=np.ones(3))
        ds = f[fmt.ASSETS].create_dataset("sparse", data=np.ones(2))
        put_attr(ds, fmt.ATTR_ASSET_KIND, "sparse_matrix")
    with caplog.at_level(logging.WARNING, logger="savedmodel.bundle"):
        back = read_bundle(path)
    assert back.format_version == "1.7"
    assert back.assets == {"labels": ["a"]}
    assert "unknown to this reader" in caplog.text


def test_big_endian_weights_are_read_as_native(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        attrs = dict(f["weights/d%2Fbias"].attrs)
        del f["weights/d%2Fbias"]
        f.create_dataset("weights/d%2Fbias", data=BIAS.astype(">f4")).attrs.update(attrs)
    bias = read_bundle(path).graph.weights["d/bias"]
    assert bias.dtype == np.float32 and bias.dtype.isnative
    assert bias.tolist() == BIAS.tolist()


def test_non_finite_float_attrs_round_trip(tmp_path):
    """JSON has no inf/NaN; the graph JSON uses the Infinity/NaN tokens (FORMAT.md, "JSON")."""
    graph = dense_graph()
    graph.nodes.append(Node("r", "ReLU", ["y"], ["z"], {"threshold": float("-inf"), "max_value": float("inf")}))
    graph.outputs = [TensorSpec("z", "float32", (None, 3))]
    back = read_bundle(written(tmp_path, make_bundle(graph)))
    assert back.graph.node("r").attrs["threshold"] == float("-inf")
    assert back.graph.to_json() == graph.to_json()


# -- writer refusals --------------------------------------------------------------------------
def test_write_validates_graph_first(tmp_path):
    graph = dense_graph()
    graph.nodes[0].attrs["units"] = 5
    with pytest.raises(GraphError, match=r"node 'd': weight 'd/kernel' \(role kernel\) has shape \[4, 3\]"):
        write_bundle(make_bundle(graph), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("sig,match", [
    (Signature("predict", {"x": TensorSpec("ghost", "float32", (None, 4))}, {}),
     r"signature 'serving_default' input 'x' names tensor 'ghost', which is not in the graph"),
    (Signature("predict", {}, {"y": TensorSpec("nowhere", "float32", (None,))}),
     r"signature 'serving_default' output 'y' names tensor 'nowhere', which is not in the graph"),
    (Signature("embed", {}, {}), r"signature 'serving_default' has method 'embed'; expected one of predict, classify"),
    (Signature("classify", {}, {}, labels="labels"), r"takes labels from asset 'labels', which is not a text asset"),
])
def test_write_refuses_bad_signatures(tmp_path, sig, match):
    with pytest.raises(FormatError, match=match):
        write_bundle(make_bundle(signatures={"serving_default": sig}), tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


@pytest.mark.parametrize("assets,match", [
    ({"cfg": {"a": 1}}, r"asset 'cfg' is a dict; expected list\[str\] \(labels, vocabulary\), bytes or numpy"),
    ({"mixed": ["a", 1]}, r"asset 'mixed' is a list; expected list\[str\]"),
    ({"": b"x"}, r"asset name '' is not a non-empty string"),
    ({"c": np.array([1 + 2j])}, r"asset 'c' has unsupported dtype complex128"),
    ({"o": np.array([b"a", 3], dtype=object)}, r"asset 'o' is a string tensor with a int element; expected bytes"),
])
def test_write_refuses_bad_assets(tmp_path, assets, match):
    with pytest.raises(FormatError, match=match):
        write_bundle(make_bundle(assets=assets), tmp_path / "x.h5")


def test_write_refuses_non_json_metadata(tmp_path):
    with pytest.raises(FormatError, match=r"metadata cannot be stored as JSON: .*set"):
        write_bundle(make_bundle(metadata={"tags": {"a", "b"}}), tmp_path / "x.h5")
    with pytest.raises(FormatError, match=r"metadata must be a dict \(a JSON object\), got list"):
        write_bundle(make_bundle(metadata=[1, 2]), tmp_path / "x.h5")


def test_write_refuses_empty_weight_key(tmp_path):
    with pytest.raises(FormatError, match=r"weight name '' is not a non-empty string"):
        write_bundle(make_bundle(dense_graph(**{"": np.ones(1)})), tmp_path / "x.h5")


def test_failed_write_removes_the_partial_file(tmp_path, monkeypatch):
    import savedmodel.bundle as module

    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(*args, **kwargs)

    real = module._write_tensor
    monkeypatch.setattr(module, "_write_tensor", failing)
    with pytest.raises(OSError, match="disk full"):
        write_bundle(make_bundle(), tmp_path / "x.h5")
    assert list(tmp_path.iterdir()) == []


def test_signature_from_graph_refuses_unknown_method():
    with pytest.raises(ValueError, match=r"unknown signature method 'score'; expected one of predict, classify"):
        Signature.from_graph(dense_graph(), method="score")


def test_signature_json_round_trip():
    sig = Signature("classify", {"in": TensorSpec("x", "int8", (None, 2))}, {"out": TensorSpec("y", "float32", (1,))},
                    labels="labels")
    assert Signature.from_json(json.loads(json.dumps(sig.to_json()))) == sig


# -- reader refusals: not a bundle ---------------------------------------------------------------
def test_refuses_missing_file(tmp_path):
    with pytest.raises(FormatError, match=r"saved_model.h5: no such file; expected a bundle file"):
        read_bundle(tmp_path / fmt.FILE_NAME)


def test_refuses_directory(tmp_path):
    with pytest.raises(FormatError, match=r"is a directory; expected a bundle file \(saved_model.h5\)"):
        read_bundle(tmp_path)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 a zip, maybe a .keras file", b"\x89HDF"])
def test_refuses_non_hdf5(tmp_path, content):
    path = tmp_path / "model.h5"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=r"model.h5: not an HDF5 file \(it does not start with the HDF5 signature\)"):
        read_bundle(path)


def test_refuses_hdf5_without_format_attribute(tmp_path):
    path = tmp_path / "keras.h5"
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.create_group("model_weights")
    with pytest.raises(FormatError, match=r"keras.h5: not a savedmodel bundle: the HDF5 file has no 'format' "
                                          r"attribute; expected format='savedmodel-bundle'"):
        read_bundle(path)


@pytest.mark.parametrize("value,shown", [("tfjs-layers", "'tfjs-layers'"), (3, "'<not a string>'"),
                                         ("variable-length", "'<not a string>'")])
def test_refuses_other_format_name(tmp_path, value, shown):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.attrs[fmt.ATTR_FORMAT] = value  # str values become variable-length strings
        if value == "tfjs-layers":
            put_attr(f, fmt.ATTR_FORMAT, value)
    with pytest.raises(FormatError, match=rf"not a savedmodel bundle: the HDF5 file has format={shown}; expected "
                                          r"format='savedmodel-bundle'"):
        read_bundle(path)


@pytest.mark.parametrize("member", fmt.REQUIRED_MEMBERS)
def test_refuses_missing_member(tmp_path, member):
    """All five are required: a damaged link name must not make the assets or metadata silently vanish."""
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.move(member, member + "_")
    with pytest.raises(FormatError, match=rf"not a savedmodel bundle: /{member} missing; expected /graph, "
                                          r"/signatures, /metadata, /weights, /assets"):
        read_bundle(path)


def test_refuses_non_string_attribute(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs[fmt.ATTR_FORMAT_VERSION] = 1.0
    with pytest.raises(FormatError, match=r"attribute 'format_version' of the root is not a scalar fixed-length "
                                          r"string; expected one"):
        read_bundle(path)


def test_refuses_variable_length_attribute(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs[fmt.ATTR_PRODUCER] = "vlen"  # h5py writes str attributes as variable-length strings
    with pytest.raises(FormatError, match=r"attribute 'producer' of the root is not a scalar fixed-length string"):
        read_bundle(path)


# -- reader refusals: damage ------------------------------------------------------------------
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99, 200])
def test_refuses_truncated_file(tmp_path, keep):
    graph = dense_graph(big=np.ones((64, 64), np.float32))
    path = written(tmp_path, make_bundle(graph, assets={"labels": ["a", "b"]}))
    size = path.stat().st_size
    with open(path, "r+b") as stream:
        stream.truncate(int(size * keep) if keep < 1 else keep)
    with pytest.raises(FormatError, match=r"saved_model.h5: truncated or corrupt HDF5 file \(.*\); expected a "
                                          r"complete bundle"):
        read_bundle(path)


def test_refuses_tampered_weight_bytes(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f[fmt.WEIGHTS]["d%2Fkernel"][0, 0] = 42.0
    with pytest.raises(FormatError, match=r"checksum mismatch in weight 'd/kernel': stored [0-9a-f]{64}, its data "
                                          r"hashes to [0-9a-f]{64}; the file is corrupt or was modified"):
        read_bundle(path)


def test_refuses_tampered_asset(tmp_path):
    path = written(tmp_path, make_bundle(assets={"labels": ["cat", "dog"]}))
    with h5py.File(path, "r+") as f:
        f[fmt.ASSETS]["labels"][-3:] = np.frombuffer(b"cow", np.uint8)  # "dog" -> "cow", same lengths
    with pytest.raises(FormatError, match=r"checksum mismatch in asset 'labels'"):
        read_bundle(path)


@pytest.mark.parametrize("member", [fmt.SIGNATURES, fmt.METADATA, fmt.GRAPH])
def test_refuses_edited_json_with_stale_checksum(tmp_path, member):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        checksum = f[member].attrs[fmt.ATTR_CHECKSUM]
        put_text(f, member, f[member][()].decode().replace("{", "{ ", 1), checksum=False)
        f[member].attrs[fmt.ATTR_CHECKSUM] = checksum
    with pytest.raises(FormatError, match=rf"checksum mismatch in /{member}: stored [0-9a-f]{{64}}, its text hashes "
                                          r"to [0-9a-f]{64}; the file is corrupt or was modified"):
        read_bundle(path)


def test_refuses_json_without_checksum(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_text(f, fmt.METADATA, "{}", checksum=False)
    with pytest.raises(FormatError, match=r"/metadata has no 'sha256' attribute; expected its SHA-256 checksum"):
        read_bundle(path)


def test_refuses_missing_checksum(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f[fmt.WEIGHTS]["d%2Fbias"].attrs[fmt.ATTR_CHECKSUM]
    with pytest.raises(FormatError, match=r"weight 'd/bias' has no 'sha256' attribute; expected its SHA-256"):
        read_bundle(path)


def test_refuses_digest_mismatch_on_edited_graph(tmp_path):
    path = written(tmp_path)
    edited = graph_json(path)
    edited["nodes"][0]["attrs"]["activation"] = "relu"
    with h5py.File(path, "r+") as f:
        put_text(f, fmt.GRAPH, json.dumps(edited))
    with pytest.raises(FormatError, match=r"digest mismatch: the file records sha256:[0-9a-f]{64}, its graph and "
                                          r"weights hash to sha256:[0-9a-f]{64}; the file is corrupt or was modified"):
        read_bundle(path)


def test_refuses_digest_mismatch_on_resigned_weight(tmp_path):
    """A weight rewritten together with its own checksum is still caught by the root digest."""
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        ds = f[fmt.WEIGHTS]["d%2Fbias"]
        ds[...] = np.zeros(3, np.float32)
        ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(tensor_checksum("float32", np.zeros(3, np.float32)).hex())
    with pytest.raises(FormatError, match=r"digest mismatch"):
        read_bundle(path)


@pytest.mark.parametrize("digest", [None, "md5:abc", ""])
def test_refuses_missing_or_malformed_digest(tmp_path, digest):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        if digest is None:
            del f.attrs[fmt.ATTR_DIGEST]
        else:
            put_attr(f, fmt.ATTR_DIGEST, digest)
    with pytest.raises(FormatError, match=r"the root attribute 'digest' is missing or malformed"):
        read_bundle(path)


# -- reader refusals: versions ----------------------------------------------------------------
@pytest.mark.parametrize("version", ["2.0", "2.3", "10.0"])
def test_refuses_newer_major_version(tmp_path, version):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_attr(f, fmt.ATTR_FORMAT_VERSION, version)
    major = version.split(".")[0]
    with pytest.raises(FormatError, match=rf"format version {re.escape(version)} is newer than this reader \(1\.x\); "
                                          rf"upgrade savedmodel-toolkit to a release that reads format {major}\.x"):
        read_bundle(path)


@pytest.mark.parametrize("version", ["1", "v1.0", "1.0.0", "one.zero", ""])
def test_refuses_malformed_version(tmp_path, version):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_attr(f, fmt.ATTR_FORMAT_VERSION, version)
    with pytest.raises(FormatError, match=rf"format_version '{re.escape(version)}' is missing or malformed; expected "
                                          r"'major.minor' such as '1.0'"):
        read_bundle(path)


def test_refuses_unreleased_major_zero(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_attr(f, fmt.ATTR_FORMAT_VERSION, "0.9")
    with pytest.raises(FormatError, match=r"format version 0.9 was never released; expected 1.x"):
        read_bundle(path)


# -- reader refusals: links and storage ---------------------------------------------------------
@pytest.mark.parametrize("where", ["soft_root", "weights/d%2Fkernel", "extra/deep/link"])
def test_refuses_soft_links(tmp_path, where):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        if where == "weights/d%2Fkernel":
            del f[where]
        f[where] = h5py.SoftLink("/weights/d%2Fbias")
    with pytest.raises(FormatError, match=rf"/{re.escape(where)} is a soft link to '/weights/d%2Fbias'; a bundle "
                                          r"may contain only hard links"):
        read_bundle(path)


@pytest.mark.parametrize("where", ["ext", "assets/labels"])
def test_refuses_external_links(tmp_path, where):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["labels"] = np.ones(3)
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f[where] = h5py.ExternalLink(str(other), "/labels")
    with pytest.raises(FormatError, match=rf"/{re.escape(where)} is an external link to '/labels' in file "
                                          r"'.*other.h5'; a bundle may contain only hard links"):
        read_bundle(path)


def _replace_with_virtual(path: Path, name: str, source_file: Path) -> None:
    with h5py.File(source_file, "w") as f:
        f["data"] = KERNEL
    layout = h5py.VirtualLayout(shape=KERNEL.shape, dtype=KERNEL.dtype)
    layout[...] = h5py.VirtualSource(str(source_file), "data", shape=KERNEL.shape)
    with h5py.File(path, "r+") as f:
        attrs = dict(f[name].attrs)
        del f[name]
        f.create_virtual_dataset(name, layout).attrs.update(attrs)


def test_refuses_virtual_weight(tmp_path):
    path = written(tmp_path)
    _replace_with_virtual(path, "weights/d%2Fkernel", tmp_path / "source.h5")
    with pytest.raises(FormatError, match=r"weight 'd/kernel' is a virtual dataset \(its data lives elsewhere\)"):
        read_bundle(path)


def test_refuses_virtual_dataset_anywhere(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.create_group("extra")
        f["extra/v"] = np.zeros(1)
    _replace_with_virtual(path, "extra/v", tmp_path / "source.h5")
    with pytest.raises(FormatError, match=r"dataset /extra/v is a virtual dataset"):
        read_bundle(path)


def test_refuses_external_raw_storage(tmp_path):
    path = written(tmp_path)
    raw = tmp_path / "raw.bin"
    raw.write_bytes(KERNEL.tobytes())
    with h5py.File(path, "r+") as f:
        checksum = f["weights/d%2Fkernel"].attrs[fmt.ATTR_CHECKSUM]
        del f["weights/d%2Fkernel"]
        ds = f.create_dataset("weights/d%2Fkernel", shape=(4, 3), dtype="f4", external=[(str(raw), 0, 48)])
        ds.attrs[fmt.ATTR_CHECKSUM] = checksum
    with pytest.raises(FormatError, match=r"weight 'd/kernel' stores its data in external raw files"):
        read_bundle(path)


@pytest.mark.parametrize("dtype,shape", [("f4", (10**9,)), ("f8", (10**5, 10**5)), (h5py.string_dtype(), (10**8,))])
def test_refuses_forged_shape_of_weight(tmp_path, dtype, shape):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["weights/d%2Fkernel"]
        f.create_dataset("weights/d%2Fkernel", shape=shape, dtype=dtype)  # fill-only: nothing written
    assert path.stat().st_size < 100_000
    with pytest.raises(FormatError, match=r"weight 'd/kernel' declares shape \[.*\] of .* \([\d,]+ bytes\) but "
                                          r"the file has only [\d,]+ bytes; the shape is forged"):
        read_bundle(path)


def test_refuses_forged_shape_anywhere(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f.create_dataset("junk", shape=(10**9,), dtype="f4")
    with pytest.raises(FormatError, match=r"dataset /junk declares shape \[1000000000\] of float32 "
                                          r"\(4,000,000,000 bytes\)"):
        read_bundle(path)


def test_refuses_forged_asset(tmp_path):
    path = written(tmp_path, make_bundle(assets={"table": np.ones(3)}))
    with h5py.File(path, "r+") as f:
        del f["assets/table"]
        put_attr(f.create_dataset("assets/table", shape=(10**9,), dtype="f8"), fmt.ATTR_ASSET_KIND, "array")
    with pytest.raises(FormatError, match=r"asset 'table' declares shape \[1000000000\]"):
        read_bundle(path)


# -- reader refusals: contents ------------------------------------------------------------------
def test_refuses_graph_that_is_not_json(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_text(f, fmt.GRAPH, "{not json")
    with pytest.raises(FormatError, match=r"/graph is not valid JSON \(.*\); expected a JSON object"):
        read_bundle(path)


def test_refuses_graph_that_is_not_a_string(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f[fmt.GRAPH]
        f[fmt.GRAPH] = np.arange(3)
    with pytest.raises(FormatError, match=r"/graph is a int64 dataset of shape \[3\]; expected a scalar fixed-length "
                                          r"UTF-8 string \(JSON\)"):
        read_bundle(path)


def test_refuses_variable_length_json(tmp_path):
    """Variable-length strings live in HDF5's global heap, whose parser can hang on damaged files."""
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f[fmt.GRAPH]
        f.create_dataset(fmt.GRAPH, data="{}", dtype=h5py.string_dtype("utf-8"))
    with pytest.raises(FormatError, match=r"/graph is a object dataset of shape \[\]; expected a scalar fixed-length"):
        read_bundle(path)


def test_refuses_malformed_graph_json(tmp_path):
    path = written(tmp_path)
    data = graph_json(path)
    del data["nodes"]
    _resign(path, graph=data)
    with pytest.raises(FormatError, match=r"/graph is malformed \(KeyError: 'nodes'\); expected Graph.to_json\(\)"):
        read_bundle(path)


def test_refuses_graph_with_unknown_dtype(tmp_path):
    path = written(tmp_path)
    data = graph_json(path)
    data["inputs"][0]["dtype"] = "float128"
    _resign(path, graph=data)
    with pytest.raises(FormatError, match=r"/graph is malformed \(SavedModelError: unknown dtype 'float128'"):
        read_bundle(path)


def test_refuses_graph_that_fails_validation(tmp_path):
    path = written(tmp_path)
    data = graph_json(path)
    data["nodes"][0]["op"] = "Dense9000"
    _resign(path, graph=data)
    with pytest.raises(FormatError, match=r"the graph is invalid: node 'd': unknown op 'Dense9000'; the catalogue "
                                          r"has: .*Dense"):
        read_bundle(path)


def test_refuses_weight_undeclared_by_graph(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        f["weights/stowaway"] = np.ones(2)
    with pytest.raises(FormatError, match=r"/weights/stowaway is not a weight the graph declares; expected only the "
                                          r"2 declared weights"):
        read_bundle(path)


def test_refuses_declared_weight_without_dataset(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["weights/d%2Fbias"]
    with pytest.raises(FormatError, match=r"weight 'd/bias' is declared by the graph but has no dataset "
                                          r"/weights/d%2Fbias"):
        read_bundle(path)


def test_refuses_weight_that_differs_from_declaration(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["weights/d%2Fbias"]
        f["weights/d%2Fbias"] = BIAS.astype(np.float64)
    with pytest.raises(FormatError, match=r"weight 'd/bias' is float64 \[3\] in the file but the graph declares "
                                          r"\('float32', \[3\]\)"):
        read_bundle(path)


def test_refuses_unsupported_hdf5_type(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["weights/d%2Fbias"]
        f["weights/d%2Fbias"] = np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])
    with pytest.raises(FormatError, match=r"weight 'd/bias' has HDF5 type .*; expected one of the IR dtypes"):
        read_bundle(path)


@pytest.mark.parametrize("cut,match", [
    (slice(0, 4), r"4 bytes cannot hold the 8-byte rank"),
    (slice(0, -1), r"an element length of 3 exceeds the 2 bytes stored"),
    (slice(0, 12), r"12 bytes cannot hold the 1 dims"),
])
def test_refuses_malformed_string_record(tmp_path, cut, match):
    words = np.array([b"abc"], dtype=object)
    path = written(tmp_path, make_bundle(dense_graph(words=words)))
    with h5py.File(path, "r+") as f:
        record = f["weights/words"][()][cut]
        attrs = dict(f["weights/words"].attrs)
        del f["weights/words"]
        f.create_dataset("weights/words", data=record).attrs.update(attrs)
    with pytest.raises(FormatError, match=rf"weight 'words' is a malformed string tensor: {match}"):
        read_bundle(path)


def test_refuses_string_record_with_extra_bytes(tmp_path):
    words = np.array([b"abc"], dtype=object)
    path = written(tmp_path, make_bundle(dense_graph(words=words)))
    with h5py.File(path, "r+") as f:
        record = np.concatenate([f["weights/words"][()], np.zeros(5, np.uint8)])
        attrs = dict(f["weights/words"].attrs)
        del f["weights/words"]
        f.create_dataset("weights/words", data=record).attrs.update(attrs)
    with pytest.raises(FormatError, match=r"weight 'words' is a malformed string tensor: the element lengths do not "
                                          r"add up to the 8 bytes stored"):
        read_bundle(path)


def test_refuses_string_marker_on_non_uint8_dataset(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_attr(f["weights/d%2Fbias"], fmt.ATTR_DTYPE, "string")
    with pytest.raises(FormatError, match=r"weight 'd/bias' has dtype attribute 'string' on a float32 dataset of shape "
                                          r"\[3\]; expected 'string' on a 1-D uint8 dataset"):
        read_bundle(path)


def test_refuses_variable_length_strings(tmp_path):
    path = written(tmp_path, make_bundle(dense_graph(words=np.array([b"a"], dtype=object))))
    with h5py.File(path, "r+") as f:
        checksum = f["weights/words"].attrs[fmt.ATTR_CHECKSUM]
        del f["weights/words"]
        ds = f.create_dataset("weights/words", data=np.array([b"a"], dtype=object), dtype=h5py.string_dtype())
        ds.attrs[fmt.ATTR_CHECKSUM] = checksum
    with pytest.raises(FormatError, match=r"weight 'words' has a variable-length HDF5 type; expected a fixed-size "
                                          r"type"):
        read_bundle(path)


def test_refuses_group_in_place_of_weight(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["weights/d%2Fbias"]
        f.create_group("weights/d%2Fbias")
    with pytest.raises(FormatError, match=r"weight 'd/bias' is not a dataset; expected one"):
        read_bundle(path)


@pytest.mark.parametrize("tensor,role", [("ghost", "input"), ("phantom", "output")])
def test_refuses_signature_naming_unknown_tensor(tmp_path, tensor, role):
    path = written(tmp_path)
    spec = {"name": tensor, "dtype": "float32", "shape": [None, 4]}
    sig = {"method": "predict", "inputs": {"x": spec}, "outputs": {}, "labels": None}
    if role == "output":
        sig = {"method": "predict", "inputs": {}, "outputs": {"out": spec}, "labels": None}
    _resign(path, signatures={"serving_default": sig})
    alias = "x" if role == "input" else "out"
    with pytest.raises(FormatError, match=rf"signature 'serving_default' {role} '{alias}' names tensor '{tensor}', "
                                          r"which is not in the graph"):
        read_bundle(path)


@pytest.mark.parametrize("signatures,match", [
    ("[1, 2", r"/signatures is not valid JSON"),
    ("[1, 2]", r"/signatures holds a JSON list; expected a JSON object"),
    ('{"s": {"inputs": {}, "outputs": {}}}', r"signature 's' is malformed \(KeyError: 'method'\)"),
    ('{"s": {"method": "predict", "inputs": [], "outputs": {}}}', r"signature 's' is malformed \(AttributeError"),
    ('{"s": {"method": "rank", "inputs": {}, "outputs": {}}}', r"signature 's' has method 'rank'; expected one of"),
    ('{"s": {"method": "classify", "inputs": {}, "outputs": {}, "labels": "nope"}}',
     r"signature 's' takes labels from asset 'nope', which is not a text asset"),
])
def test_refuses_malformed_signatures(tmp_path, signatures, match):
    path = written(tmp_path)
    _resign(path, signatures=signatures)
    with pytest.raises(FormatError, match=match):
        read_bundle(path)


def test_refuses_metadata_that_is_not_an_object(tmp_path):
    path = written(tmp_path)
    with h5py.File(path, "r+") as f:
        put_text(f, fmt.METADATA, "[1]")
    with pytest.raises(FormatError, match=r"/metadata holds a JSON list; expected a JSON object"):
        read_bundle(path)


def test_refuses_asset_of_unknown_kind_in_current_minor(tmp_path):
    path = written(tmp_path, make_bundle(assets={"t": np.ones(2)}))
    with h5py.File(path, "r+") as f:
        put_attr(f["assets/t"], fmt.ATTR_ASSET_KIND, "sparse")
    with pytest.raises(FormatError, match=r"asset 't' has kind 'sparse'; expected one of text, bytes, array"):
        read_bundle(path)


def test_refuses_renamed_asset(tmp_path):
    """An asset's checksum covers its name and kind, not only its data."""
    path = written(tmp_path, make_bundle(assets={"labels": ["a"], "blob": b"xyz"}))
    with h5py.File(path, "r+") as f:
        f.move("assets/blob", "assets/bgob")
    with pytest.raises(FormatError, match=r"checksum mismatch in asset 'bgob'"):
        read_bundle(path)


def test_refuses_asset_with_edited_kind(tmp_path):
    path = written(tmp_path, make_bundle(assets={"raw": np.frombuffer(b"xyz", np.uint8)}))
    with h5py.File(path, "r+") as f:
        put_attr(f["assets/raw"], fmt.ATTR_ASSET_KIND, "bytes")
    with pytest.raises(FormatError, match=r"checksum mismatch in asset 'raw'"):
        read_bundle(path)


def test_refuses_asset_without_kind(tmp_path):
    path = written(tmp_path, make_bundle(assets={"dir/t": np.ones(2)}))
    with h5py.File(path, "r+") as f:
        del f["assets/dir%2Ft"].attrs[fmt.ATTR_ASSET_KIND]
    with pytest.raises(FormatError, match=r"asset 'dir/t' has no 'kind' attribute; expected one of text, bytes"):
        read_bundle(path)


def test_refuses_badly_escaped_asset_name(tmp_path):
    path = written(tmp_path, make_bundle(assets={"t": np.ones(2)}))
    with h5py.File(path, "r+") as f:
        f.move("assets/t", "assets/%74")
    with pytest.raises(FormatError, match=r"/assets/%74 is not a canonically escaped name"):
        read_bundle(path)


def test_refuses_asset_whose_kind_does_not_fit_its_data(tmp_path):
    path = written(tmp_path, make_bundle(assets={"t": np.ones(2)}))
    with h5py.File(path, "r+") as f:
        put_attr(f["assets/t"], fmt.ATTR_ASSET_KIND, "text")
        f["assets/t"].attrs[fmt.ATTR_CHECKSUM] = np.bytes_(asset_checksum("t", "text", "float64", np.ones(2)).hex())
    with pytest.raises(FormatError, match=r"asset 't' of kind 'text' is a float64 array of shape \[2\]; expected a "
                                          r"1-D string tensor"):
        read_bundle(path)


def test_refuses_text_asset_that_is_not_utf8(tmp_path):
    path = written(tmp_path, make_bundle(assets={"labels": ["a"]}))
    with h5py.File(path, "r+") as f:
        put_text_asset(f[fmt.ASSETS], "labels", np.array([b"\xff"], dtype=object))
    with pytest.raises(FormatError, match=r"asset 'labels' is not valid UTF-8 text"):
        read_bundle(path)


def test_error_carries_path_and_problem(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"nope")
    with pytest.raises(FormatError) as info:
        read_bundle(path)
    assert info.value.path == str(path)
    assert info.value.problem.startswith("not an HDF5 file")


# -- damage in general ------------------------------------------------------------------------
def _content(bundle: Bundle) -> tuple:
    def plain(value):
        return value.tolist() if isinstance(value, np.ndarray) else value

    weights = {k: (str(v.dtype), v.shape, v.tobytes() if v.dtype != object else v.tolist())
               for k, v in bundle.graph.weights.items()}
    assets = {k: (type(v).__name__, plain(v)) for k, v in bundle.assets.items()}
    return bundle.graph.to_json(), weights, assets, bundle.signatures, bundle.metadata


def test_damaged_files_are_refused_or_read_unchanged(tmp_path):
    """Random byte changes anywhere: FormatError, or (bytes HDF5 does not use) the same bundle back."""
    import random

    graph = dense_graph(words=np.array([b"ab", b"c\x00"], dtype=object), flags=np.array([True, False]))
    bundle = make_bundle(graph, assets={"labels": ["cat", "dog"], "blob": b"xyz", "table": np.ones((2, 2))},
                         metadata={"user": {"k": 1}})
    path = written(tmp_path, bundle)
    original, want = path.read_bytes(), _content(read_bundle(path))
    rng = random.Random(20240531)
    refused = 0
    for _ in range(300):
        damaged = bytearray(original)
        for _ in range(rng.randint(1, 3)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        path.write_bytes(bytes(damaged))
        try:
            got = read_bundle(path)
        except FormatError:
            refused += 1
            continue
        assert _content(got) == want
    assert refused > 100  # most damage is seen
