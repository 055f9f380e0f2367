"""Reading a bundle: eager, defensive, verified (FORMAT.md, "Reading").

The file is checked for links, virtual or external storage and forged sizes
before any data is read; every checksum and the digest are verified.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5a, h5d, h5l, h5o, h5s, h5t

from savedmodel import format as fmt
from savedmodel.bundle import Bundle, Signature, check_signatures, tensor_names
from savedmodel.dtypes import as_dtype, to_numpy
from savedmodel.errors import FormatError, GraphError, SavedModelError
from savedmodel.ir import Graph, TensorSpec
from savedmodel.records import (
    asset_checksum,
    bundle_digest,
    escape_name,
    parse_string_record,
    tensor_checksum,
    unescape_name,
)

log = logging.getLogger(__name__)
_VERSION_RE = re.compile(r"(\d+)\.(\d+)")
_HEX_DTYPE = np.dtype("S64")  # checksums are stored as fixed-length hex strings
_CHECKSUM_KEY = fmt.ATTR_CHECKSUM.encode()
_TAMPERED = "the file is corrupt or was modified after it was written; export the model again"

# The reader uses h5py's low-level API per dataset: the high-level objects cost
# several times more per dataset, and a model has hundreds of them.
def read_bundle(file: str | Path) -> Bundle:
    """Read, verify and return the bundle in ``file`` (a ``saved_model.h5``).

    Everything is read eagerly and the file closed. Raises FormatError naming
    the file and the problem for anything that is not a complete, unmodified
    bundle of a readable format version (see FORMAT.md, "Reading").

    >>> read_bundle("models/mnist/1/saved_model.h5").signatures   # doctest: +SKIP
    """
    path = Path(file)
    size = _check_hdf5_signature(path)
    corrupt = "truncated or corrupt HDF5 file ({}); expected a complete bundle, copy or export it again"
    try:
        f = h5py.File(path, "r")
    except OSError as e:
        raise FormatError(path, corrupt.format(e)) from e
    try:
        with f:
            bundle = _Reader(path, f, size).read()
    except (OSError, RuntimeError) as e:
        raise FormatError(path, corrupt.format(e)) from e
    bundle.path = path
    return bundle


def _check_hdf5_signature(path: Path) -> int:
    """The file size, after checking the file exists and starts with the HDF5 signature."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(len(fmt.HDF5_SIGNATURE))
            size = stream.seek(0, 2)
    except FileNotFoundError as e:
        raise FormatError(path, f"no such file; expected a bundle file ({fmt.FILE_NAME})") from e
    except IsADirectoryError as e:
        raise FormatError(path, f"is a directory; expected a bundle file ({fmt.FILE_NAME}), or use "
                                "savedmodel.versions.resolve() to find it in a version directory") from e
    if head != fmt.HDF5_SIGNATURE:
        raise FormatError(path, f"not an HDF5 file (it does not start with the HDF5 signature); expected a "
                                f"savedmodel bundle ({fmt.FILE_NAME})")
    return size


_MTYPES: dict[np.dtype, h5t.TypeID] = {}


def _mtype(dtype: np.dtype) -> h5t.TypeID:
    """The cached HDF5 memory type of a numpy dtype (building one costs more than a small read)."""
    if dtype not in _MTYPES:
        _MTYPES[dtype] = h5t.py_create(dtype)
    return _MTYPES[dtype]


class _Reader:
    """Reads one open file; every check raises FormatError naming the file."""

    def __init__(self, path: Path, f: h5py.File, size: int) -> None:
        self.path, self.f, self.size = path, f, size
        sizeof_addr = f.id.get_create_plist().get_sizes()[0]
        self.vlen_size = fmt.VLEN_LENGTH_SIZE + sizeof_addr + fmt.VLEN_INDEX_SIZE
        self.minor = 0

    def fail(self, problem: str) -> FormatError:
        return FormatError(self.path, problem)

    def read(self) -> Bundle:
        attrs = self.header()
        members = self.check_links()
        missing = [name for name in fmt.REQUIRED_MEMBERS if name not in members]
        if missing:
            raise self.fail(f"not a savedmodel bundle: {', '.join('/' + m for m in missing)} missing; expected "
                            f"{', '.join('/' + m for m in fmt.REQUIRED_MEMBERS)}")
        graph_bytes = self.text(fmt.GRAPH)
        graph_json = self.json(fmt.GRAPH, graph_bytes)
        weights, checksums = self.weights(graph_json.get(fmt.GRAPH_WEIGHTS))
        digest = bundle_digest(graph_bytes, checksums)
        if attrs[fmt.ATTR_DIGEST] != digest:
            raise self.fail(f"digest mismatch: the file records {attrs[fmt.ATTR_DIGEST]}, its graph and weights "
                            f"hash to {digest}; {_TAMPERED}")
        graph, specs = self.graph(graph_json, weights)
        assets, kinds = self.assets()
        signatures = self.signatures()
        check_signatures(self.path, signatures, tensor_names(graph, specs), kinds)
        metadata = self.json(fmt.METADATA, self.text(fmt.METADATA))
        return Bundle(
            graph, signatures, assets, metadata,
            format_version=attrs[fmt.ATTR_FORMAT_VERSION], producer=attrs[fmt.ATTR_PRODUCER],
            producer_version=attrs[fmt.ATTR_PRODUCER_VERSION], created=attrs[fmt.ATTR_CREATED], digest=digest,
        )

    # -- structure ----------------------------------------------------------------------
    def header(self) -> dict[str, str | None]:
        try:
            name = self.str_attr(self.f.id, fmt.ATTR_FORMAT, "the root")
        except FormatError:  # another program's 'format' attribute, of another type
            name = "<not a string>"
        if name != fmt.FORMAT_NAME:
            found = "has no 'format' attribute" if name is None else f"has format={name!r}"
            raise self.fail(f"not a savedmodel bundle: the HDF5 file {found}; expected format={fmt.FORMAT_NAME!r} "
                            f"(write bundles with savedmodel.save, import other models with savedmodel.importers)")
        attrs = {key: self.str_attr(self.f.id, key, "the root") for key in (
            fmt.ATTR_FORMAT_VERSION, fmt.ATTR_PRODUCER, fmt.ATTR_PRODUCER_VERSION, fmt.ATTR_CREATED, fmt.ATTR_DIGEST)}
        version = attrs[fmt.ATTR_FORMAT_VERSION]
        match = _VERSION_RE.fullmatch(version or "")
        if match is None:
            raise self.fail(f"format_version {version!r} is missing or malformed; expected 'major.minor' such as "
                            f"{fmt.FORMAT_VERSION_STR!r}")
        major, self.minor = int(match.group(1)), int(match.group(2))
        if major > fmt.FORMAT_VERSION[0]:
            raise self.fail(f"format version {version} is newer than this reader ({fmt.FORMAT_VERSION[0]}.x); "
                            f"upgrade {fmt.PACKAGE} to a release that reads format {major}.x")
        if major < fmt.FORMAT_VERSION[0]:
            raise self.fail(f"format version {version} was never released; expected {fmt.FORMAT_VERSION[0]}.x")
        digest = attrs[fmt.ATTR_DIGEST]
        if digest is None or not digest.startswith(fmt.DIGEST_PREFIX):
            raise self.fail(f"the root attribute 'digest' is missing or malformed ({digest!r}); expected "
                            f"'{fmt.DIGEST_PREFIX}<64 hex digits>'")
        for key in (fmt.ATTR_PRODUCER, fmt.ATTR_PRODUCER_VERSION, fmt.ATTR_CREATED):
            attrs[key] = attrs[key] or ""
        return attrs

    def str_attr(self, oid: h5py.h5o.ObjectID, name: str, where: str) -> str | None:
        """A scalar fixed-length string attribute, or None if absent."""
        key = name.encode()
        if not h5a.exists(oid, key):
            return None
        attr = h5a.open(oid, key)
        atype = attr.get_type()
        if attr.shape != () or atype.get_class() != h5t.STRING or atype.is_variable_str():
            raise self.fail(f"attribute {name!r} of {where} is not a scalar fixed-length string; expected one")
        buf = np.empty((), dtype=f"S{atype.get_size()}")
        attr.read(buf, mtype=atype)
        try:
            return bytes(buf[()]).decode("utf-8")
        except UnicodeDecodeError as e:
            raise self.fail(f"attribute {name!r} of {where} is not valid UTF-8 ({e})") from e

    def checksum_attr(self, dsid: h5d.DatasetID, what: str) -> bytes:
        """The stored checksum: a fixed-length 64-character ASCII hex string."""
        if not h5a.exists(dsid, _CHECKSUM_KEY):
            raise self.fail(f"{what} has no {fmt.ATTR_CHECKSUM!r} attribute; expected its SHA-256 checksum")
        attr = h5a.open(dsid, _CHECKSUM_KEY)
        atype = attr.get_type()
        if (attr.shape != () or atype.get_class() != h5t.STRING or atype.is_variable_str()
                or atype.get_size() != _HEX_DTYPE.itemsize):
            raise self.fail(f"the {fmt.ATTR_CHECKSUM!r} attribute of {what} is not a 64-character string")
        buf = np.empty((), dtype=_HEX_DTYPE)
        attr.read(buf, mtype=_mtype(_HEX_DTYPE))
        return bytes(buf[()])

    def check_links(self) -> set[str]:
        """Refuse soft, external and user-defined links; check datasets outside the known places.

        Returns the names of the root's members.
        """
        links: list[tuple[bytes, int]] = []
        try:
            self.f.id.links.visit(lambda name, info: links.append((name, info.type)), info=True)
        except UnicodeDecodeError as e:  # raised by h5py for a damaged link
            raise self.fail(f"truncated or corrupt HDF5 file: unreadable link ({e}); expected a complete bundle, "
                            "copy or export it again") from e
        for raw, kind in links:
            if kind == h5l.TYPE_HARD:
                continue
            name = raw.decode("utf-8", "replace")
            if kind == h5l.TYPE_SOFT:
                what = f"a soft link to {self.f.id.links.get_val(raw).decode('utf-8', 'replace')!r}"
            elif kind == h5l.TYPE_EXTERNAL:
                target_file, target = (v.decode("utf-8", "replace") for v in self.f.id.links.get_val(raw))
                what = f"an external link to {target!r} in file {target_file!r}"
            else:
                what = f"a user-defined link (type {kind})"
            raise self.fail(f"/{name} is {what}; a bundle may contain only hard links (links can point "
                            "outside the file or alias its data)")
        known = {fmt.GRAPH, fmt.SIGNATURES, fmt.METADATA}
        members = set()
        for raw, _ in links:
            top, _, rest = raw.decode("utf-8", "replace").partition("/")
            members.add(top)
            if (top in known and not rest) or (top in (fmt.WEIGHTS, fmt.ASSETS) and "/" not in rest):
                continue  # read and checked below
            oid = self.open(self.f.id, raw)
            if isinstance(oid, h5d.DatasetID):
                self.check_dataset(oid, f"dataset /{raw.decode('utf-8', 'replace')}")
        return members

    def open(self, group: h5py.h5g.GroupID, name: bytes) -> h5py.h5o.ObjectID:
        try:
            return h5o.open(group, name)
        except KeyError as e:  # h5py reports an unreadable object header as KeyError
            raise self.fail(f"truncated or corrupt HDF5 file: cannot open {name.decode('utf-8', 'replace')!r} "
                            f"({e}); expected a complete bundle, copy or export it again") from e

    def dataset(self, group: h5py.h5g.GroupID, name: str, what: str) -> h5d.DatasetID:
        oid = self.open(group, name.encode("utf-8"))
        if not isinstance(oid, h5d.DatasetID):
            raise self.fail(f"{what} is not a dataset; expected one")
        return oid

    def check_dataset(self, dsid: h5d.DatasetID, what: str) -> tuple[tuple[int, ...], np.dtype]:
        """Refuse virtual and external storage and declared sizes the file cannot hold, before any read.

        Returns the dataset's shape and numpy dtype.
        """
        dcpl = dsid.get_create_plist()
        if dcpl.get_layout() == h5d.VIRTUAL:
            raise self.fail(f"{what} is a virtual dataset (its data lives elsewhere); expected data stored in "
                            "the bundle itself")
        if dcpl.get_external_count():
            raise self.fail(f"{what} stores its data in external raw files; expected data stored in the bundle itself")
        space = dsid.get_space()
        if space.get_simple_extent_type() == h5s.NULL:
            raise self.fail(f"{what} has an empty (null) dataspace; expected an array")
        try:
            shape, dtype = space.shape, dsid.dtype
        except (TypeError, ValueError) as e:  # h5py cannot map a damaged or exotic HDF5 type to numpy
            raise self.fail(f"{what} has an HDF5 type this reader cannot represent ({e}); expected one of the IR "
                            "dtypes") from e
        itemsize = self.vlen_size if dtype.kind == "O" else dtype.itemsize
        declared = math.prod(shape) * itemsize
        if declared > self.size:
            raise self.fail(f"{what} declares shape {list(shape)} of {dtype} ({declared:,} bytes) but the "
                            f"file has only {self.size:,} bytes; the shape is forged or the file truncated")
        return shape, dtype

    # -- datasets -----------------------------------------------------------------------
    def text(self, name: str) -> bytes:
        """The checked bytes of a scalar fixed-length string dataset."""
        dsid = self.dataset(self.f.id, name, f"/{name}")
        shape, dtype = self.check_dataset(dsid, f"/{name}")
        if shape != () or dtype.kind != "S":
            raise self.fail(f"/{name} is a {dtype} dataset of shape {list(shape)}; expected a scalar fixed-length "
                            "UTF-8 string (JSON)")
        buf = np.empty((), dtype=f"S{dtype.itemsize}")
        dsid.read(h5s.ALL, h5s.ALL, buf, dsid.get_type())
        data = bytes(buf[()])
        stored, actual = self.checksum_attr(dsid, f"/{name}"), hashlib.sha256(data).hexdigest()
        if stored != actual.encode("ascii"):
            raise self.fail(f"checksum mismatch in /{name}: stored {stored.decode('ascii', 'replace')}, its text "
                            f"hashes to {actual}; {_TAMPERED}")
        return data

    def json(self, name: str, raw: bytes) -> dict[str, Any]:
        try:
            value = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise self.fail(f"/{name} is not valid JSON ({e}); expected a JSON object") from e
        if not isinstance(value, dict):
            raise self.fail(f"/{name} holds a JSON {type(value).__name__}; expected a JSON object")
        return value

    def tensor(self, dsid: h5d.DatasetID, what: str) -> tuple[str, np.ndarray]:
        """(IR dtype, array) of a checked dataset; string tensors as object arrays of bytes."""
        shape, dt = self.check_dataset(dsid, what)
        marker = self.str_attr(dsid, fmt.ATTR_DTYPE, what)
        if marker is not None:
            if marker != "string" or dt != np.uint8 or len(shape) != 1:
                raise self.fail(f"{what} has dtype attribute {marker!r} on a {dt} dataset of shape {list(shape)}; "
                                "expected 'string' on a 1-D uint8 dataset")
            raw = np.empty(shape, dtype=np.uint8)
            dsid.read(h5s.ALL, h5s.ALL, raw, _mtype(raw.dtype))
            try:
                return "string", parse_string_record(raw.tobytes())
            except ValueError as e:
                raise self.fail(f"{what} is a malformed string tensor: {e}") from e
        if dt.kind == "O":
            raise self.fail(f"{what} has a variable-length HDF5 type; expected a fixed-size type (this format "
                            "stores strings as uint8 records, never in HDF5's global heap)")
        if dt.kind not in "biuf" or (dt.metadata and dt.kind != "b"):
            raise self.fail(f"{what} has HDF5 type {dt}; expected one of the IR dtypes (float16..64, int8..64, "
                            "uint8..64, bool, string)")
        try:
            dtype = as_dtype(dt.newbyteorder("="))
        except SavedModelError as e:
            raise self.fail(f"{what} has unsupported dtype {dt}: {e}") from e
        array = np.empty(shape, dtype=to_numpy(dtype))
        if array.size:
            dsid.read(h5s.ALL, h5s.ALL, array, _mtype(array.dtype))
        return dtype, array

    def verified(self, dsid: h5d.DatasetID, actual: bytes, what: str) -> bytes:
        """``actual`` (a checksum of what was read), after comparing it with the stored one."""
        stored = self.checksum_attr(dsid, what)
        if stored != actual.hex().encode("ascii"):
            raise self.fail(f"checksum mismatch in {what}: stored {stored.decode('ascii', 'replace')}, its data "
                            f"hashes to {actual.hex()}; {_TAMPERED}")
        return actual

    def group(self, name: str) -> tuple[h5py.h5g.GroupID, list[str]]:
        gid = self.open(self.f.id, name.encode())
        if not isinstance(gid, h5py.h5g.GroupID):
            raise self.fail(f"/{name} is not a group; expected a group of datasets")
        return gid, [n.decode("utf-8", "replace") for n in gid]

    def weights(self, declared: Any) -> tuple[dict[str, np.ndarray], dict[str, bytes]]:
        if not isinstance(declared, dict):
            raise self.fail(f"/{fmt.GRAPH} has no '{fmt.GRAPH_WEIGHTS}' object; expected key -> dtype and shape")
        gid, names = self.group(fmt.WEIGHTS)
        stored = {}
        for name in names:
            key = unescape_name(name)
            if key is None or key not in declared:
                raise self.fail(f"/{fmt.WEIGHTS}/{name} is not a weight the graph declares; expected only the "
                                f"{len(declared)} declared weights")
            stored[key] = name
        weights: dict[str, np.ndarray] = {}
        checksums: dict[str, bytes] = {}
        for key, spec in declared.items():
            what = f"weight {key!r}"
            if key not in stored:
                raise self.fail(f"{what} is declared by the graph but has no dataset "
                                f"/{fmt.WEIGHTS}/{escape_name(key)}")
            dsid = self.dataset(gid, stored[key], what)
            dtype, array = self.tensor(dsid, what)
            want = (spec.get(fmt.WEIGHT_DTYPE), spec.get(fmt.WEIGHT_SHAPE)) if isinstance(spec, dict) else spec
            if want != (dtype, list(array.shape)):
                raise self.fail(f"{what} is {dtype} {list(array.shape)} in the file but the graph declares "
                                f"{want}; {_TAMPERED}")
            checksums[key] = self.verified(dsid, tensor_checksum(dtype, array), what)
            weights[key] = array
        return weights, checksums

    def graph(self, data: dict[str, Any], weights: dict[str, np.ndarray]) -> tuple[Graph, dict[str, TensorSpec]]:
        try:
            graph = Graph.from_json(data, weights)
        except (KeyError, TypeError, ValueError, AttributeError, SavedModelError) as e:
            raise self.fail(f"/{fmt.GRAPH} is malformed ({type(e).__name__}: {e}); expected Graph.to_json() "
                            "with inputs, outputs, nodes and weights") from e
        try:
            specs = graph.validate()
        except GraphError as e:
            raise self.fail(f"the graph is invalid: {e}") from e
        return graph, specs

    def assets(self) -> tuple[dict[str, Any], dict[str, str]]:
        gid, names = self.group(fmt.ASSETS)
        assets: dict[str, Any] = {}
        kinds: dict[str, str] = {}
        for name in names:
            key = unescape_name(name)
            if key is None:
                raise self.fail(f"/{fmt.ASSETS}/{name} is not a canonically escaped name; expected names escaped "
                                "as in FORMAT.md")
            what = f"asset {key!r}"
            dsid = self.dataset(gid, name, what)
            kind = self.str_attr(dsid, fmt.ATTR_ASSET_KIND, what)
            if kind not in fmt.ASSET_KINDS:
                if kind is not None and self.minor > fmt.FORMAT_VERSION[1]:
                    log.warning("%s: skipping asset %r of kind %r, unknown to this reader", self.path, key, kind)
                    continue
                found = f"has no {fmt.ATTR_ASSET_KIND!r} attribute" if kind is None else f"has kind {kind!r}"
                raise self.fail(f"{what} {found}; expected one of {', '.join(fmt.ASSET_KINDS)}")
            dtype, array = self.tensor(dsid, what)
            self.verified(dsid, asset_checksum(key, kind, dtype, array), what)
            assets[key] = self.asset_value(kind, dtype, array, what)
            kinds[key] = kind
        return assets, kinds

    def asset_value(self, kind: str, dtype: str, array: np.ndarray, what: str) -> Any:
        if kind == fmt.ASSET_ARRAY:
            return array
        if kind == fmt.ASSET_BYTES and dtype == "uint8" and array.ndim == 1:
            return array.tobytes()
        if kind == fmt.ASSET_TEXT and dtype == "string" and array.ndim == 1:
            try:
                return [element.decode("utf-8") for element in array]
            except UnicodeDecodeError as e:
                raise self.fail(f"{what} is not valid UTF-8 text ({e}); expected a list of strings") from e
        raise self.fail(f"{what} of kind {kind!r} is a {dtype} array of shape {list(array.shape)}; expected "
                        f"{'a 1-D uint8' if kind == fmt.ASSET_BYTES else 'a 1-D string'} tensor")

    def signatures(self) -> dict[str, Signature]:
        data = self.json(fmt.SIGNATURES, self.text(fmt.SIGNATURES))
        out: dict[str, Signature] = {}
        for name, value in data.items():
            try:
                out[name] = Signature.from_json(value)
            except (KeyError, TypeError, ValueError, AttributeError, SavedModelError) as e:
                raise self.fail(f"signature {name!r} is malformed ({type(e).__name__}: {e}); expected method, "
                                "inputs and outputs") from e
        return out
