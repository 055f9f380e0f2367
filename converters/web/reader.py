"""Read a TF.js model (model.json + shards) back into an IR graph.

``runtime.load("web_model/model.json")`` calls :func:`read_model_json`.
Layers models (ours and tensorflowjs_converter's, Keras-2 style) and graph
models (ours, and tensorflowjs_converter's for the ops we map) are read.

>>> graph = read_model_json("web_model/model.json")     # doctest: +SKIP
>>> runtime.from_graph(graph).predict(x)                 # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from converters.web import format as fmt
from converters.web.shards import unpack_weights
from savedmodel.errors import FormatError, GraphError
from savedmodel.ir import Graph

ShardReader = Callable[[str], "bytes | None"]


def read_model_json(path: str | os.PathLike) -> Graph:
    """The IR graph of the TF.js model at ``path`` (its shards are read from the same directory).

    Raises FormatError naming the file and the entry at fault (a missing
    shard, a manifest that does not match the shard sizes, an unknown layer
    class, a malformed topology) and UnsupportedError for a layer or op that
    TF.js knows but the catalogue cannot express.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FormatError(path, "no such file") from None
    except IsADirectoryError:
        raise FormatError(path, f"is a directory; pass the {fmt.MODEL_JSON} inside it") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(path, f"is not JSON ({e})") from e
    return read_model(doc, path)


def read_model(doc: Any, path: str | os.PathLike, read: ShardReader | None = None) -> Graph:
    """The IR graph of a parsed model.json; ``read(name)`` returns a shard's bytes (default: files next to path)."""
    path = Path(path)
    if not isinstance(doc, dict):
        raise FormatError(path, "a model.json must hold a JSON object")
    topology = doc.get(fmt.KEY_TOPOLOGY)
    if not isinstance(topology, dict):
        raise FormatError(path, f"'{fmt.KEY_TOPOLOGY}' is missing or not an object")
    manifest = doc.get(fmt.KEY_MANIFEST, [])
    weights = unpack_weights(manifest, path, read)
    user = doc.get(fmt.KEY_USER_METADATA)
    ours = user.get(fmt.META_KEY) if isinstance(user, dict) else None
    ours = ours if isinstance(ours, dict) else {}
    is_graph = doc.get(fmt.KEY_FORMAT) == fmt.FORMAT_GRAPH or fmt.KEY_NODE in topology
    if is_graph:
        from converters.web.graph_reader import read_graph_model

        graph = read_graph_model(topology, weights, path, ours, doc.get(fmt.KEY_SIGNATURE))
    else:
        from converters.web.layers_reader import read_layers_model

        graph = read_layers_model(topology, weights, path, ours)
    try:
        specs = graph.validate()
    except GraphError as e:
        raise FormatError(path, f"the model does not form a valid graph: {e}") from e
    graph.outputs = [specs[s.name] for s in graph.outputs]
    return graph
