"""The bundle: one model version as one HDF5 file (format v1.0).

``docs/FORMAT.md`` is the normative description of the file; the names it
uses live in :mod:`savedmodel.format`. A bundle holds the graph (JSON), its
weights (one checksummed dataset each), the signatures, assets (label lists,
vocabularies, blobs, arrays) and free-form metadata, plus a digest over graph
and weights. This module writes it; :mod:`savedmodel.reader` reads it back.

>>> sig = Signature.from_graph(graph)                       # doctest: +SKIP
>>> write_bundle(Bundle(graph, {"serving_default": sig}), "m/1/saved_model.h5")  # doctest: +SKIP
>>> savedmodel.reader.read_bundle("m/1/saved_model.h5").graph.ops()          # doctest: +SKIP
['Dense']
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from savedmodel import format as fmt
from savedmodel.dtypes import as_dtype
from savedmodel.errors import FormatError, SavedModelError
from savedmodel.ir import Graph, TensorSpec
from savedmodel.records import asset_checksum, bundle_digest, escape_name, string_record, tensor_checksum


# -- the objects ------------------------------------------------------------------------------
@dataclass
class Signature:
    """A named entry point: method, input and output aliases, optional labels.

    Each alias maps to a :class:`TensorSpec` whose ``name`` is the graph
    tensor it feeds or reads.

    >>> Signature("predict", {"image": TensorSpec("x", "float32", (None, 784))},
    ...           {"probs": TensorSpec("y", "float32", (None, 10))}).method
    'predict'
    """

    method: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    labels: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            fmt.SIG_METHOD: self.method,
            fmt.SIG_INPUTS: {alias: spec.to_json() for alias, spec in self.inputs.items()},
            fmt.SIG_OUTPUTS: {alias: spec.to_json() for alias, spec in self.outputs.items()},
            fmt.SIG_LABELS: self.labels,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Signature:
        return cls(
            data[fmt.SIG_METHOD],
            {str(a): TensorSpec.from_json(s) for a, s in data[fmt.SIG_INPUTS].items()},
            {str(a): TensorSpec.from_json(s) for a, s in data[fmt.SIG_OUTPUTS].items()},
            data.get(fmt.SIG_LABELS),
        )

    @classmethod
    def from_graph(cls, graph: Graph, method: str = fmt.METHOD_PREDICT) -> Signature:
        """The signature exposing every graph input and output under its tensor name.

        >>> Signature.from_graph(graph).inputs                # doctest: +SKIP
        {'x': TensorSpec(name='x', dtype='float32', shape=(None, 4))}
        """
        if method not in fmt.METHODS:
            raise ValueError(f"unknown signature method {method!r}; expected one of {', '.join(fmt.METHODS)}")
        return cls(method, {s.name: s for s in graph.inputs}, {s.name: s for s in graph.outputs})


def _package_version() -> str:
    import savedmodel  # the package is fully imported by the time a Bundle is built

    return str(getattr(savedmodel, "__version__", "0+unknown"))


@dataclass
class Bundle:
    """One model version: graph, signatures, assets and metadata.

    ``assets`` values are ``list[str]`` (labels, vocabularies), ``bytes`` or
    ``numpy.ndarray``; ``metadata`` is any JSON object. ``created`` and
    ``digest`` are set when the bundle is written or read, ``path`` when read
    (or published).
    """

    graph: Graph
    signatures: dict[str, Signature]
    assets: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    format_version: str = fmt.FORMAT_VERSION_STR
    producer: str = fmt.PRODUCER
    producer_version: str = field(default_factory=_package_version)
    created: str = ""
    digest: str = ""
    path: Path | None = None


def tensor_names(graph: Graph, specs: dict[str, TensorSpec]) -> set[str]:
    return set(specs) | {s.name for s in graph.inputs}


def check_signatures(path: Path, signatures: dict[str, Signature], tensors: set[str], assets: dict[str, str]) -> None:
    """Every signature has a known method, names graph tensors and a text labels asset."""
    for name, sig in signatures.items():
        if not isinstance(name, str) or not name:
            raise FormatError(path, f"signature name {name!r} is not a non-empty string")
        if sig.method not in fmt.METHODS:
            raise FormatError(
                path, f"signature {name!r} has method {sig.method!r}; expected one of {', '.join(fmt.METHODS)}"
            )
        for role, specs in (("input", sig.inputs), ("output", sig.outputs)):
            for alias, spec in specs.items():
                if spec.name not in tensors:
                    raise FormatError(
                        path,
                        f"signature {name!r} {role} {alias!r} names tensor {spec.name!r}, which is not in the "
                        f"graph; expected a graph input or a node output such as {sorted(tensors)[:10]}",
                    )
        if sig.labels is not None and assets.get(sig.labels) != fmt.ASSET_TEXT:
            texts = sorted(a for a, kind in assets.items() if kind == fmt.ASSET_TEXT)
            raise FormatError(
                path,
                f"signature {name!r} takes labels from asset {sig.labels!r}, which is not a text asset "
                f"(list[str]); the text assets are {texts}",
            )


# -- writing ----------------------------------------------------------------------------------
def write_bundle(bundle: Bundle, file: str | Path) -> None:
    """Write ``bundle`` as a format v1.0 file at ``file`` (replacing it).

    Validates the graph first (GraphError), then weight keys, signatures,
    assets and metadata (FormatError naming ``file``), all before the file is
    created. Sets ``bundle.created``, ``bundle.digest`` and
    ``bundle.format_version``. A failed write removes the partial file. To
    publish a model version use :func:`savedmodel.versions.publish`, which
    writes atomically.

    >>> write_bundle(Bundle(graph, {"serving_default": Signature.from_graph(graph)}), "x.h5")  # doctest: +SKIP
    """
    from datetime import datetime, timezone

    path = Path(file)
    graph = bundle.graph
    specs = graph.validate()
    for key in graph.weights:
        _check_key(path, "weight", key)
    graph_json = _json_text(path, "graph", graph.to_json()).encode("utf-8")
    weights = {key: _encode_tensor(path, f"weight {key!r}", value) for key, value in graph.weights.items()}
    assets = {name: _encode_asset(path, name, value) for name, value in bundle.assets.items()}
    check_signatures(path, bundle.signatures, tensor_names(graph, specs), {n: a[0] for n, a in assets.items()})
    if not isinstance(bundle.metadata, dict):
        raise FormatError(path, f"metadata must be a dict (a JSON object), got {type(bundle.metadata).__name__}")
    texts = {
        fmt.GRAPH: graph_json.decode("utf-8"),
        fmt.SIGNATURES: _json_text(path, "signatures", {n: s.to_json() for n, s in bundle.signatures.items()}),
        fmt.METADATA: _json_text(path, "metadata", bundle.metadata),
    }
    checksums = {key: tensor_checksum(dtype, array) for key, (dtype, array) in weights.items()}
    attrs = {
        fmt.ATTR_FORMAT: fmt.FORMAT_NAME,
        fmt.ATTR_FORMAT_VERSION: fmt.FORMAT_VERSION_STR,
        fmt.ATTR_PRODUCER: str(bundle.producer),
        fmt.ATTR_PRODUCER_VERSION: str(bundle.producer_version),
        fmt.ATTR_CREATED: datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        fmt.ATTR_DIGEST: bundle_digest(graph_json, checksums),
    }
    try:
        with h5py.File(path, "w") as f:
            _write_file(f, attrs, texts, weights, checksums, assets)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    bundle.format_version = attrs[fmt.ATTR_FORMAT_VERSION]
    bundle.created, bundle.digest = attrs[fmt.ATTR_CREATED], attrs[fmt.ATTR_DIGEST]


def _write_file(
    f: h5py.File,
    attrs: dict[str, str],
    texts: dict[str, str],
    weights: dict[str, tuple[str, np.ndarray]],
    checksums: dict[str, bytes],
    assets: dict[str, tuple[str, str, np.ndarray]],
) -> None:
    for name, value in attrs.items():
        data = _fixed_string(value)
        f.attrs.create(name, data=data, dtype=data.dtype)
    for name, text in texts.items():
        data = _fixed_string(text)
        ds = f.create_dataset(name, data=data, dtype=data.dtype)
        ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(hashlib.sha256(text.encode("utf-8")).hexdigest())
    group = f.create_group(fmt.WEIGHTS)
    for key, (dtype, array) in weights.items():
        ds = _write_tensor(group, escape_name(key), dtype, array)
        ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(checksums[key].hex())
    group = f.create_group(fmt.ASSETS)
    for name, (kind, dtype, array) in assets.items():
        ds = _write_tensor(group, escape_name(name), dtype, array)
        data = _fixed_string(kind)
        ds.attrs.create(fmt.ATTR_ASSET_KIND, data=data, dtype=data.dtype)
        ds.attrs[fmt.ATTR_CHECKSUM] = np.bytes_(asset_checksum(name, kind, dtype, array).hex())


def _fixed_string(text: str) -> np.ndarray:
    """A scalar fixed-length UTF-8 string: read without HDF5's global heap (see FORMAT.md, 2.1)."""
    data = text.encode("utf-8")
    return np.array(data, dtype=h5py.string_dtype("utf-8", max(len(data), 1)))


def _json_text(path: Path, what: str, value: Any) -> str:
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise FormatError(path, f"{what} cannot be stored as JSON: {e}; use plain dicts, lists, str and numbers") from e


def _check_key(path: Path, what: str, key: object) -> None:
    if not isinstance(key, str) or not key:
        raise FormatError(path, f"{what} name {key!r} is not a non-empty string")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError as e:
        raise FormatError(path, f"{what} name {key!r} is not encodable as UTF-8") from e


def _encode_tensor(path: Path, what: str, value: Any) -> tuple[str, np.ndarray]:
    """(IR dtype, array ready to hash and store); string elements become bytes."""
    array = np.asarray(value)
    if array.dtype.kind in "biuf" and not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    try:
        dtype = as_dtype(array.dtype)
    except SavedModelError as e:
        raise FormatError(path, f"{what} has unsupported dtype {array.dtype}: {e}") from e
    if dtype == "string":
        out = np.empty(array.shape, dtype=object)
        flat = out.reshape(-1)
        for i, element in enumerate(array.reshape(-1)):
            if isinstance(element, str):
                element = element.encode("utf-8")
            elif not isinstance(element, bytes):
                raise FormatError(path, f"{what} is a string tensor with a {type(element).__name__} element; "
                                        "expected bytes or str")
            flat[i] = element
        return dtype, out
    array = np.asarray(array, order="C")  # (ascontiguousarray would turn a scalar into 1-D)
    if dtype == "bool":
        return dtype, array.view(np.uint8) != 0  # normalise to 0/1 bytes
    return dtype, array


def _encode_asset(path: Path, name: str, value: Any) -> tuple[str, str, np.ndarray]:
    """(kind, IR dtype, array) of an asset value."""
    _check_key(path, "asset", name)
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        array = np.empty(len(value), dtype=object)
        array[:] = [v.encode("utf-8") for v in value]
        return fmt.ASSET_TEXT, "string", array
    if isinstance(value, (bytes, bytearray)):
        return fmt.ASSET_BYTES, "uint8", np.frombuffer(bytes(value), dtype=np.uint8)
    if isinstance(value, np.ndarray):
        return (fmt.ASSET_ARRAY, *_encode_tensor(path, f"asset {name!r}", value))
    raise FormatError(path, f"asset {name!r} is a {type(value).__name__}; expected list[str] (labels, "
                            "vocabulary), bytes or numpy.ndarray")


def _write_tensor(group: h5py.Group, name: str, dtype: str, array: np.ndarray) -> h5py.Dataset:
    """One contiguous, unfiltered dataset; a string tensor as its record bytes (FORMAT.md, 3.1)."""
    if dtype != "string":
        return group.create_dataset(name, data=array)
    ds = group.create_dataset(name, data=np.frombuffer(string_record(array), dtype=np.uint8))
    marker = _fixed_string("string")
    ds.attrs.create(fmt.ATTR_DTYPE, data=marker, dtype=marker.dtype)
    return ds
