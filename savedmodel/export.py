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

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
ONNX_SUFFIX = ".onnx"
SOURCE_SUFFIXES = (*KERAS_SUFFIXES, ONNX_SUFFIX)
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
    example_inputs: Sequence[Any] | None = None,
) -> Path:
    """Export ``obj`` as a new version under ``base_path``; returns the file written.

    ``obj`` is a live Keras 3 model, a path to a ``.keras`` or legacy Keras
    ``.h5`` file (read without importing Keras), a path to an ``.onnx`` file or
    an ``onnx.ModelProto`` (read with the ``onnx`` package, no onnxruntime), a
    ``torch.nn.Module`` (exported through PyTorch's ONNX exporter with a
    dynamic batch axis; ``example_inputs`` is the tuple of tensors to trace it
    with, required for modules and refused otherwise), or a :class:`Graph`.
    ``labels`` names the classes of the (single) output and adds a
    ``classification`` signature; ``metadata`` is a JSON-able dict kept with
    the model.

    >>> path = save(model, "models/mnist")      # doctest: +SKIP
    >>> path                                    # doctest: +SKIP
    PosixPath('models/mnist/1/saved_model.h5')
    >>> save("resnet.onnx", "models/resnet")                       # doctest: +SKIP
    >>> save(net, "models/net", example_inputs=(torch.randn(1, 3, 32, 32),))   # doctest: +SKIP
    """
    graph, source = to_graph(obj, example_inputs=example_inputs)
    sigs = {"serving_default": Signature.from_graph(graph)}
    assets: dict[str, Any] = {}
    if labels is not None:
        sigs[CLASSIFY_SIGNATURE] = _classify_signature(graph, list(labels))
        assets[LABELS_ASSET] = [str(label) for label in labels]
    sigs.update(signatures or {})
    bundle = Bundle(graph, sigs, assets, {"source": source, "user": dict(metadata or {})})
    return publish(bundle, base_path, version)


def to_graph(obj: Any, *, example_inputs: Sequence[Any] | None = None) -> tuple[Graph, dict[str, Any]]:
    """The IR graph of a supported source object and a description of its source."""
    from savedmodel.importers.onnx.pytorch import import_torch_module, is_torch_module

    if is_torch_module(obj):
        return import_torch_module(obj, example_inputs)
    if example_inputs is not None:
        raise SavedModelError(
            f"example_inputs= is only for torch.nn.Module sources; received a {type(obj).__qualname__}"
        )
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
        if path.suffix.lower() == ONNX_SUFFIX:
            from savedmodel.importers.onnx import import_onnx_file

            return import_onnx_file(path)
        from savedmodel.importers.keras import import_keras_file

        return import_keras_file(path)
    if type(obj).__module__.split(".")[0] == "keras" or _is_keras_model(obj):
        from savedmodel.importers.keras import import_keras_model

        return import_keras_model(obj)
    if _is_onnx_model(obj):
        from savedmodel.importers.onnx import import_onnx_model

        return import_onnx_model(obj)
    raise UnsupportedError(
        f"cannot export an object of type {type(obj).__module__}.{type(obj).__qualname__}.",
        kind=type(obj).__qualname__,
        supported=("keras.Model", "a .keras or .h5 file path", "a .onnx file path", "onnx.ModelProto",
                   "torch.nn.Module", "savedmodel.Graph"),
    )


def _is_keras_model(obj: Any) -> bool:
    """True for subclasses of keras.Model defined outside keras (user models)."""
    return any(c.__module__.split(".")[0] == "keras" and c.__name__ == "Model" for c in type(obj).__mro__)


def _is_onnx_model(obj: Any) -> bool:
    """True for an onnx.ModelProto, without importing onnx."""
    return type(obj).__name__ == "ModelProto" and type(obj).__module__.split(".")[0] == "onnx"


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
