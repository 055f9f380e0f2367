"""``save``: from training code (or a builder Graph) to a published bundle version."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from savedmodel.bundle import Bundle, Signature
from savedmodel.errors import SavedModelError, UnsupportedError
from savedmodel.format import METHOD_CLASSIFY
from savedmodel.ir import Graph
from savedmodel.versions import publish

SOURCE_SUFFIXES = (".keras", ".h5", ".hdf5")
LABELS_ASSET = "labels"
CLASSIFY_SIGNATURE = "classification"


def save(
    obj: Any,
    base_path: str | os.PathLike,
    *,
    version: int | None = None,
    signatures: Mapping[str, Signature] | None = None,
    labels: Sequence[str] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Export ``obj`` as a new version under ``base_path``; returns the file written.

    ``obj`` is a live Keras 3 model, a path to a ``.keras`` or legacy Keras
    ``.h5`` file (read without importing Keras), or a :class:`Graph`.
    ``labels`` names the classes of the (single) output and adds a
    ``classification`` signature; ``metadata`` is a JSON-able dict kept with
    the model.

    >>> path = save(model, "models/mnist")      # doctest: +SKIP
    >>> path                                    # doctest: +SKIP
    PosixPath('models/mnist/1/saved_model.h5')
    """
    graph, source = to_graph(obj)
    sigs = {"serving_default": Signature.from_graph(graph)}
    assets: dict[str, Any] = {}
    if labels is not None:
        sigs[CLASSIFY_SIGNATURE] = _classify_signature(graph, list(labels))
        assets[LABELS_ASSET] = [str(label) for label in labels]
    sigs.update(signatures or {})
    bundle = Bundle(graph, sigs, assets, {"source": source, "user": dict(metadata or {})})
    return publish(bundle, base_path, version)


def to_graph(obj: Any) -> tuple[Graph, dict[str, Any]]:
    """The IR graph of a supported source object and a description of its source."""
    if isinstance(obj, Graph):
        obj.validate()
        return obj, {"framework": "savedmodel.builder"}
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.suffix.lower() not in SOURCE_SUFFIXES:
            raise UnsupportedError(
                f"cannot export {str(path)!r}: unknown model file type {path.suffix!r}.",
                what=str(path), kind=path.suffix, supported=SOURCE_SUFFIXES,
            )
        if not path.is_file():
            raise FileNotFoundError(f"model file {str(path)!r} does not exist")
        from savedmodel.importers.keras import import_keras_file

        return import_keras_file(path)
    if type(obj).__module__.split(".")[0] == "keras" or _is_keras_model(obj):
        from savedmodel.importers.keras import import_keras_model

        return import_keras_model(obj)
    raise UnsupportedError(
        f"cannot export an object of type {type(obj).__module__}.{type(obj).__qualname__}.",
        kind=type(obj).__qualname__,
        supported=("keras.Model", "a .keras or .h5 file path", "savedmodel.Graph"),
    )


def _is_keras_model(obj: Any) -> bool:
    """True for subclasses of keras.Model defined outside keras (user models)."""
    return any(c.__module__.split(".")[0] == "keras" and c.__name__ == "Model" for c in type(obj).__mro__)


def _classify_signature(graph: Graph, labels: list[str]) -> Signature:
    base = Signature.from_graph(graph, method=METHOD_CLASSIFY)
    if len(base.outputs) != 1:
        raise SavedModelError(
            f"labels= needs a model with one output; this one has {len(base.outputs)}: {list(base.outputs)}"
        )
    spec = next(iter(base.outputs.values()))
    classes = spec.shape[-1] if spec.shape else None
    if classes is not None and classes != len(labels):
        raise SavedModelError(
            f"labels= has {len(labels)} entries but output {spec.name!r} has {classes} classes (shape "
            f"{list(spec.shape)}); give one label per class"
        )
    return Signature(METHOD_CLASSIFY, base.inputs, {"scores": spec}, labels=LABELS_ASSET)
