"""Read saved Keras models without Keras: ``.keras`` zips and legacy ``.h5`` files.

Only zipfile, json, h5py and numpy are used; the formats are described in
``formats.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from savedmodel.errors import FormatError
from savedmodel.importers.keras import formats as F
from savedmodel.importers.keras.config import parse_model
from savedmodel.importers.keras.graph import build_graph
from savedmodel.importers.keras.records import ModelRecord
from savedmodel.ir import Graph


def import_keras_file(path: str | os.PathLike) -> tuple[Graph, dict[str, str]]:
    """The Graph of a ``.keras`` or legacy ``.h5`` Keras model file, and a description of its source.

    Keras itself is not imported. Raises FormatError for a file that is
    neither, UnsupportedError for a model the catalogue cannot express.

    >>> graph, source = import_keras_file("mnist.keras")   # doctest: +SKIP
    >>> source["class"]                                    # doctest: +SKIP
    'Sequential'
    """
    path = Path(path)
    if not path.is_file():
        raise FormatError(path, "no such file")
    if zipfile.is_zipfile(path):
        record, class_name = _read_keras_zip(path)
    elif h5py.is_hdf5(path):
        record, class_name = _read_legacy_h5(path)
    else:
        raise FormatError(path, "is neither a .keras zip nor an HDF5 (.h5) file")
    graph = build_graph(record)
    graph.validate()
    return graph, {"framework": "keras", "version": record.keras_version, "class": class_name}


# -- .keras ----------------------------------------------------------------------------

def _read_keras_zip(path: Path) -> tuple[ModelRecord, str]:
    with zipfile.ZipFile(path) as zf:
        members = set(zf.namelist())
        if F.CONFIG_JSON not in members:
            raise FormatError(path, f"is a zip without {F.CONFIG_JSON}: not a .keras model")
        config = _json(path, zf.read(F.CONFIG_JSON), F.CONFIG_JSON)
        metadata = _json(path, zf.read(F.METADATA_JSON), F.METADATA_JSON) if F.METADATA_JSON in members else {}
        record = _parse(path, config, str(metadata.get(F.KEY_VERSION, "")))
        if F.WEIGHTS_H5 in members:
            with h5py.File(io.BytesIO(zf.read(F.WEIGHTS_H5)), "r") as h5:
                _attach_keras3(record, h5)
        elif F.SHARDED_WEIGHTS_JSON in members:
            raise FormatError(path, "has sharded weights (model.weights.json); save with max_shard_size=None")
    return record, str(config.get(F.KEY_CLASS, ""))


def _attach_keras3(model: ModelRecord, group: h5py.Group) -> None:
    """Give each layer of ``model`` its variables from ``group`` (the model's own group)."""
    layers = group.get(F.LAYERS_GROUP)
    by_name: dict[str, str] = {}
    if layers is not None:
        for key, child in layers.items():
            name = child[F.VARS_GROUP].attrs.get(F.VARS_NAME_ATTR) if F.VARS_GROUP in child else None
            if name is not None:
                by_name[_text(name)] = key
    used: dict[str, int] = {}
    for record in model.layers:
        if record.is_op or (model.class_name == "Sequential" and record.class_name == "InputLayer"):
            continue
        # Keras names the group after the class (snake case, "_k" for the k-th repeat);
        # newer versions also record the layer name, which we prefer.
        key = _unique(_snake(record.class_name), used)
        child = None if layers is None else layers.get(by_name.get(record.name, key))
        if child is None:
            continue
        groups = [child.get(F.VARS_GROUP)] + [child.get(f"{path}/{F.VARS_GROUP}")
                                              for path in F.SUBLAYER_VARS.get(record.class_name, ())]
        record.weights = [(None, np.asarray(variables[k])) for variables in groups if variables is not None
                          for k in sorted(variables, key=_index)]
        if record.model is not None:
            _attach_keras3(record.model, child)


def _snake(name: str) -> str:
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _unique(name: str, used: dict[str, int]) -> str:
    if name in used:
        used[name] += 1
        return f"{name}_{used[name]}"
    used[name] = 0
    return name


def _index(key: str) -> tuple[int, str]:
    return (int(key), key) if key.isdigit() else (1 << 30, key)


# -- legacy .h5 ------------------------------------------------------------------------

def _read_legacy_h5(path: Path) -> tuple[ModelRecord, str]:
    with h5py.File(path, "r") as h5:
        if F.MODEL_CONFIG_ATTR not in h5.attrs:
            raise FormatError(path, f"is an HDF5 file without the {F.MODEL_CONFIG_ATTR!r} attribute: not a Keras "
                                    "model saved with model.save() (a weights-only file?)")
        config = _json(path, h5.attrs[F.MODEL_CONFIG_ATTR], F.MODEL_CONFIG_ATTR)
        version = _text(h5.attrs.get(F.KERAS_VERSION_ATTR, ""))
        record = _parse(path, config, version)
        weights = h5.get(F.MODEL_WEIGHTS_GROUP, h5)
        for layer in record.layers:
            group = weights.get(layer.name)
            if group is None or layer.is_op:
                continue
            names = [_text(n) for n in group.attrs.get(F.WEIGHT_NAMES_ATTR, [])]
            values = [(n, np.asarray(group[n])) for n in names]
            if layer.model is not None:
                _distribute(layer.model, values, [layer.name])
            else:
                layer.weights = values
    return record, str(config.get(F.KEY_CLASS, ""))


def _distribute(model: ModelRecord, values: list[tuple[str, np.ndarray]], path: list[str]) -> None:
    """Give the layers of a nested model their variables, by the layer path in each variable name
    (``outer/inner/kernel`` in Keras 3; Keras 2 wrote ``inner/kernel:0``)."""
    for record in model.layers:
        here = path + [record.name]
        if record.model is not None:
            _distribute(record.model, values, here)
            continue
        mine = [(n, v) for n, v in values if n.split("/")[:-1] == here]
        if not mine:
            mine = [(n, v) for n, v in values if n.split("/")[-2:-1] == [record.name]]
        record.weights = mine


# -- helpers ---------------------------------------------------------------------------

def _parse(path: Path, config: dict[str, Any], version: str) -> ModelRecord:
    try:
        return parse_model(config, version)
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise FormatError(path, f"has a model config Keras' format does not allow: {e!r}") from e


def _json(path: Path, data: Any, what: str) -> dict[str, Any]:
    try:
        value = json.loads(_text(data))
    except (ValueError, UnicodeDecodeError) as e:
        raise FormatError(path, f"{what} is not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise FormatError(path, f"{what} holds {type(value).__name__}, expected a JSON object")
    return value


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, (bytes, np.bytes_)) else str(value)

