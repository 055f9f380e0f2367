"""Layer and node names TF.js accepts, made unique.

TF.js matches weights to layers by ``<layer name>/<weight>`` and rejects
names outside ``^[A-Za-z0-9][-A-Za-z0-9._/]*$`` ("Not a valid tensor name").
We also replace ``/`` so that a layer name is a single path segment.

>>> n = Namer(); n.take("my dense"), n.take("my_dense"), n.take("_x")
('my_dense', 'my_dense_1', 'x')
"""

from __future__ import annotations

import re

from converters.web import format as fmt

_BAD = re.compile(r"[^-A-Za-z0-9._]")


def sanitize(name: str) -> str:
    """``name`` with every character TF.js rejects replaced by ``_`` and a valid first character."""
    clean = _BAD.sub("_", name)
    clean = re.sub(r"^[^A-Za-z0-9]+", "", clean)
    return clean or "layer"


class Namer:
    """Hands out valid, unique names (case-sensitive, as TF.js compares them)."""

    def __init__(self) -> None:
        self._taken: set[str] = set()

    def take(self, wanted: str) -> str:
        base = sanitize(wanted)
        name, i = base, 1
        while name in self._taken:
            name = f"{base}_{i}"
            i += 1
        if not fmt.NAME_RE.match(name):  # cannot happen after sanitize; kept as a guard for the validator
            raise ValueError(f"invalid layer name {name!r}")
        self._taken.add(name)
        return name
