"""Byte records shared by the bundle writer and reader (FORMAT.md sections 3 and 8).

Weight and asset names as HDF5 link names, string tensors as byte records,
and the SHA-256 checksums and digest that make tampering visible.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

import numpy as np

from savedmodel import format as fmt

_U64 = struct.Struct("<Q")
_ESCAPED_RE = re.compile(r"%(25|2F|2E)")
_UNESCAPE = {"25": "%", "2F": "/", "2E": "."}
_MAX_RANK = 32


def escape_name(key: str) -> str:
    """The HDF5 link name of a weight key or asset name (see FORMAT.md, "Names").

    >>> escape_name("dense_1/kernel"), escape_name(".x%")
    ('dense_1%2Fkernel', '%2Ex%25')
    """
    name = "".join(fmt.NAME_ESCAPES.get(c, c) for c in key)
    return fmt.LEADING_DOT_ESCAPE + name[1:] if name.startswith(".") else name


def unescape_name(name: str) -> str | None:
    """The key of an HDF5 link name, or None if ``name`` is not a canonical escape."""
    key = _ESCAPED_RE.sub(lambda m: _UNESCAPE[m.group(1)], name)
    return key if key and escape_name(key) == name else None


def string_record(array: np.ndarray) -> bytes:
    """The stored bytes of a string tensor (FORMAT.md, 3.1): rank, dims, element lengths, element bytes.

    >>> parse_string_record(string_record(np.array([b"ab", b""], dtype=object)))
    array([b'ab', b''], dtype=object)
    """
    flat = array.reshape(-1)
    lengths = np.fromiter((len(e) for e in flat), dtype="<u8", count=flat.size)
    dims = b"".join(_U64.pack(d) for d in array.shape)
    return b"".join([_U64.pack(array.ndim), dims, lengths.tobytes(), *flat])


def parse_string_record(data: bytes) -> np.ndarray:
    """The object array of ``bytes`` stored by :func:`string_record`; ValueError if malformed."""
    if len(data) < _U64.size:
        raise ValueError(f"{len(data)} bytes cannot hold the 8-byte rank")
    ndim = _U64.unpack_from(data)[0]
    if ndim > _MAX_RANK:
        raise ValueError(f"rank {ndim} exceeds HDF5's maximum of {_MAX_RANK}")
    header = _U64.size * (1 + ndim)
    if len(data) < header:
        raise ValueError(f"{len(data)} bytes cannot hold the {ndim} dims")
    shape = struct.unpack_from(f"<{ndim}Q", data, _U64.size)
    count = math.prod(shape)
    if header + _U64.size * count > len(data):
        raise ValueError(f"shape {list(shape)} needs {count} lengths but only {len(data)} bytes are stored")
    lengths = np.frombuffer(data, dtype="<u8", count=count, offset=header)
    start = header + _U64.size * count
    if count and int(lengths.max()) > len(data) - start:
        raise ValueError(f"an element length of {int(lengths.max())} exceeds the {len(data) - start} bytes stored")
    ends = (np.cumsum(lengths, dtype=np.uint64) + np.uint64(start)).tolist()
    if (ends[-1] if count else start) != len(data):
        raise ValueError(f"the element lengths do not add up to the {len(data) - start} bytes stored")
    out = np.empty(count, dtype=object)
    out[:] = [data[end - n:end] for end, n in zip(ends, lengths.tolist(), strict=True)]
    return out.reshape(shape)


def tensor_checksum(dtype: str, array: np.ndarray, prefix: bytes = b"") -> bytes:
    """SHA-256 of a tensor record: dtype name, shape and element bytes (FORMAT.md, section 8)."""
    name = dtype.encode("ascii")
    h = hashlib.sha256(prefix + _U64.pack(len(name)) + name)
    if dtype == "string":
        h.update(string_record(array))
    else:
        h.update(_U64.pack(array.ndim) + b"".join(_U64.pack(d) for d in array.shape))
        little = array.dtype.newbyteorder("<")
        h.update(np.ascontiguousarray(array if array.dtype == little else array.astype(little)))
    return h.digest()


def asset_checksum(name: str, kind: str, dtype: str, array: np.ndarray) -> bytes:
    """SHA-256 binding an asset's name and kind to its tensor record (FORMAT.md, section 8)."""
    key, kind_bytes = name.encode("utf-8"), kind.encode("utf-8")
    prefix = _U64.pack(len(key)) + key + _U64.pack(len(kind_bytes)) + kind_bytes
    return tensor_checksum(dtype, array, prefix)


def bundle_digest(graph_json: bytes, checksums: dict[str, bytes]) -> str:
    """The root digest: graph JSON bytes, then every weight key and checksum in key order."""
    h = hashlib.sha256()
    h.update(_U64.pack(len(graph_json)))
    h.update(graph_json)
    for key in sorted(checksums, key=lambda k: k.encode("utf-8")):
        encoded = key.encode("utf-8")
        h.update(_U64.pack(len(encoded)) + encoded + checksums[key])
    return fmt.DIGEST_PREFIX + h.hexdigest()
