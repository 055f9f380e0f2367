"""Convert a bundle (or an IR graph) to a TF.js model directory: model.json + weight shards.

>>> from converters.web import convert
>>> result = convert("models/mnist", "web_model/", quantization="uint8")   # doctest: +SKIP
>>> result.format, sorted(result.files)                                    # doctest: +SKIP
('layers-model', ['group1-shard1of1.bin', 'model.json'])

In the browser: ``await tf.loadLayersModel("web_model/model.json")`` (a
graph model: ``tf.loadGraphModel``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from converters.web import format as fmt
from converters.web.errors import ConversionError, NotExpressible
from converters.web.graph_writer import graph_model
from converters.web.layers_writer import layers_model
from converters.web.shards import pack_weights
from savedmodel.errors import UnsupportedError
from savedmodel.ir import Graph

logger = logging.getLogger("converters.web")

FORMATS = ("auto", "layers", "graph")
QUANTIZATIONS = ("uint8", "uint16", "float16")


@dataclass
class WebModel:
    """A converted model in memory: ``model.json`` (as a dict) and the shard files.

    ``fallback`` says why a graph model was written when a layers model was
    wanted (``format="auto"``), else None.
    """

    format: str
    model_json: dict[str, Any]
    shards: dict[str, bytes]
    fallback: str | None = None
    path: Path | None = field(default=None, compare=False)

    @property
    def files(self) -> dict[str, bytes]:
        """Every file of the model directory, model.json included."""
        return {fmt.MODEL_JSON: self.model_json_bytes(), **self.shards}

    def model_json_bytes(self) -> bytes:
        return json.dumps(self.model_json, separators=(",", ":"), allow_nan=False).encode()

    @property
    def size(self) -> int:
        """Total bytes of the files."""
        return sum(len(b) for b in self.files.values())

    def write(self, out_dir: str | os.PathLike) -> Path:
        """Write the files into ``out_dir`` (created if needed); returns the model.json path.

        Shards are written first and model.json last, each through a temporary
        file and a rename, so a loader never sees a model.json whose shards are
        missing; shards of an earlier conversion that this one does not use are removed.
        """
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        for name, data in [*self.shards.items(), (fmt.MODEL_JSON, self.model_json_bytes())]:
            tmp = out / f".{name}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, out / name)
        for stale in out.iterdir():
            if fmt.SHARD_RE.match(stale.name) and stale.name not in self.shards:
                stale.unlink()
        self.path = out / fmt.MODEL_JSON
        return self.path


def convert_graph(
    graph: Graph,
    *,
    quantization: str | None = None,
    shard_size: int = fmt.DEFAULT_SHARD_SIZE,
    format: str = "auto",
    name: str = "model",
    metadata: dict[str, Any] | None = None,
    validate: bool = True,
) -> WebModel:
    """``graph`` as a TF.js model in memory.

    ``format`` is ``"layers"`` (a layers model or an error), ``"graph"`` or
    ``"auto"`` (a layers model when every node has a faithful TF.js layer,
    else a graph model). ``quantization`` is None, ``"uint8"``, ``"uint16"``
    or ``"float16"`` for every float weight. ``metadata`` goes to
    ``userDefinedMetadata``. The output is checked by ``validate_model``.
    """
    if format not in FORMATS:
        raise ConversionError(f"unknown format {format!r}; expected one of {list(FORMATS)}")
    if quantization not in (None, *QUANTIZATIONS):
        raise ConversionError(f"unknown quantization {quantization!r}; expected one of {list(QUANTIZATIONS)}")
    if not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size < 1:
        raise ConversionError(f"the shard size must be a positive number of bytes, got {shard_size!r}")
    graph = copy.deepcopy(graph)
    specs = graph.validate()
    user = {fmt.META_KEY: {}}
    if metadata:
        user.update({k: v for k, v in metadata.items() if k != fmt.META_KEY})
    ours = user[fmt.META_KEY]
    fallback = None
    if format in ("auto", "layers"):
        try:
            model = layers_model(graph, specs, name)
        except NotExpressible as e:
            if format == "layers":
                raise UnsupportedError(
                    f"node {e.node!r} cannot be written as a TF.js layer: {e.reason}. "
                    "Use --format graph (or auto) for a TF.js graph model.", what=e.node) from e
            fallback = str(e)
            logger.info("writing a TF.js graph model: %s", fallback)
        else:
            manifest, shards = pack_weights(model.weights, quantization=quantization, shard_size=shard_size)
            ours.update({fmt.META_INPUTS: [list(p) for p in model.inputs],
                         fmt.META_OUTPUTS: [list(p) for p in model.outputs]})
            result = WebModel(fmt.FORMAT_LAYERS, _model_json(fmt.FORMAT_LAYERS, model.topology, manifest, user),
                              shards)
            if validate:
                from converters.web.validate import validate_model

                validate_model(result, graph)
            return result
    gm = graph_model(graph, specs)
    manifest, shards = pack_weights(gm.weights, quantization=quantization, shard_size=shard_size,
                                    quantize_names=gm.quantizable)
    ours.update({fmt.META_INPUTS: [list(p) for p in gm.inputs], fmt.META_OUTPUTS: [list(p) for p in gm.outputs],
                 fmt.META_GRAPH: graph.to_json(), fmt.META_WEIGHTS: gm.weight_nodes})
    doc = _model_json(fmt.FORMAT_GRAPH, gm.topology, manifest, user)
    doc[fmt.KEY_SIGNATURE] = gm.signature
    result = WebModel(fmt.FORMAT_GRAPH, doc, shards, fallback)
    if validate:
        from converters.web.validate import validate_model

        validate_model(result, graph)
    return result


def _model_json(kind: str, topology: dict[str, Any], manifest: list, user: dict[str, Any]) -> dict[str, Any]:
    from savedmodel import __version__

    producer = f"{fmt.PRODUCER} {__version__}"
    return {fmt.KEY_FORMAT: kind, fmt.KEY_GENERATED_BY: producer, fmt.KEY_CONVERTED_BY: producer,
            fmt.KEY_TOPOLOGY: topology, fmt.KEY_MANIFEST: manifest, fmt.KEY_USER_METADATA: user}


def source_graph(src: Any) -> tuple[Graph, dict[str, Any]]:
    """The graph and metadata of ``src``: a Graph, a bundle path (file, version dir, base path), a .keras/.h5 file."""
    if isinstance(src, Graph):
        return src, {}
    path = Path(src)
    from savedmodel.export import SOURCE_SUFFIXES, to_graph

    if path.suffix.lower() in SOURCE_SUFFIXES and path.is_file():
        graph, source = to_graph(path)
        return graph, {"source": source}
    import savedmodel

    bundle = savedmodel.load(path)
    meta: dict[str, Any] = {}
    if bundle.metadata:
        meta["bundle"] = bundle.metadata
    labels = bundle.assets.get("labels")
    if isinstance(labels, list):
        meta["labels"] = labels
    return bundle.graph, meta


def convert(
    src: Any,
    out_dir: str | os.PathLike,
    *,
    quantization: str | None = None,
    shard_size: int = fmt.DEFAULT_SHARD_SIZE,
    format: str = "auto",
) -> WebModel:
    """Convert ``src`` (see ``source_graph``) and write it into ``out_dir``; returns the written model."""
    graph, meta = source_graph(src)
    name = Path(src).name if not isinstance(src, Graph) else "model"
    result = convert_graph(graph, quantization=quantization, shard_size=shard_size, format=format,
                           name=name or "model", metadata=meta)
    result.write(out_dir)
    return result
