"""The dtypes of the IR: canonical names and their numpy equivalents.

The IR names dtypes with plain strings (``"float32"``), which is what the
bundle stores. ``string`` holds variable-length byte strings (numpy object
arrays of ``bytes``).
"""

from __future__ import annotations

import numpy as np

from savedmodel.errors import SavedModelError

_NUMPY = {
    "float16": np.dtype(np.float16),
    "float32": np.dtype(np.float32),
    "float64": np.dtype(np.float64),
    "int8": np.dtype(np.int8),
    "int16": np.dtype(np.int16),
    "int32": np.dtype(np.int32),
    "int64": np.dtype(np.int64),
    "uint8": np.dtype(np.uint8),
    "uint16": np.dtype(np.uint16),
    "uint32": np.dtype(np.uint32),
    "uint64": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
    "string": np.dtype(object),
}

DTYPES: tuple[str, ...] = tuple(_NUMPY)
FLOATS = frozenset({"float16", "float32", "float64"})
INTEGERS = frozenset(d for d in DTYPES if d.startswith(("int", "uint")))


def as_dtype(value: object) -> str:
    """Return the canonical dtype name of a name, numpy dtype or array type.

    >>> as_dtype(np.float32), as_dtype("int8")
    ('float32', 'int8')
    """
    if isinstance(value, str) and value in _NUMPY:
        return value
    try:
        dt = np.dtype(value)  # type: ignore[call-overload]
    except TypeError:
        dt = None
    if dt is not None:
        if dt.kind in "OSU":
            return "string"
        dt = dt.newbyteorder("=")  # '>f4' and '<f4' are both float32
        for name, candidate in _NUMPY.items():
            if candidate == dt and name != "string":
                return name
    raise SavedModelError(
        f"unknown dtype {value!r}; expected one of {', '.join(DTYPES)}"
    )


def to_numpy(name: str) -> np.dtype:
    """The numpy dtype of a canonical dtype name."""
    return _NUMPY[as_dtype(name)]
