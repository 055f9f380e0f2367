"""``convert``: a bundle (or Graph, or Keras model) to a .tflite file, with a report."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import CalibrationDataError, ConversionError
from converters.lite import format as fmt
from converters.lite.calibration import DEFAULT_BATCH_SIZE, batches, collect_ranges
from converters.lite.lowering import lower
from converters.lite.model import LiteModel, compact
from converters.lite.modes import to_dynamic, to_float16
from converters.lite.quantize import quantize_int8
from converters.lite.report import ConversionReport, layer_errors, output_errors
from converters.lite.validate import validate
from converters.lite.versions import assign_versions, min_runtime_version
from converters.lite.writer import serialize
from savedmodel.bundle import Bundle, Signature
from savedmodel.errors import FormatError
from savedmodel.ir import Graph

MODES = ("int8", "float16", "dynamic", "float32")
EVALUATION_SAMPLES = 64  # calibration samples the report evaluates on (without validation data)


def _load_source(src: Any) -> tuple[Graph, dict[str, Signature] | None, int | None, str]:
    """(graph, signatures, source file size, description) of a bundle path, Bundle, Graph or Keras model."""
    if isinstance(src, Bundle):
        return src.graph, dict(src.signatures), None, "bundle"
    if isinstance(src, Graph):
        return src, None, None, "graph"
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.exists():
            raise FileNotFoundError(f"model {str(path)!r} does not exist")
        if path.is_dir() or path.suffix.lower() in (".h5", ".hdf5"):
            import savedmodel

            try:
                bundle = savedmodel.load(path)
            except FormatError:
                if path.is_dir():
                    raise
            else:
                file = Path(bundle.path) if getattr(bundle, "path", None) else None
                size = file.stat().st_size if file is not None and file.is_file() else None
                return bundle.graph, dict(bundle.signatures), size, str(file or path)
    from savedmodel.export import to_graph

    graph, _ = to_graph(src)
    size = Path(src).stat().st_size if isinstance(src, (str, os.PathLike)) else None
    return graph, None, size, str(src)


class _Keep:
    """Passes batches through while keeping the first ``limit`` samples for evaluation."""

    def __init__(self, source: Iterator[dict[str, np.ndarray]], limit: int) -> None:
        self.source = source
        self.limit = limit
        self.kept: list[dict[str, np.ndarray]] = []
        self.samples = 0

    def __iter__(self):
        for batch in self.source:
            n = next(iter(batch.values())).shape[0]
            room = self.limit - sum(next(iter(b.values())).shape[0] for b in self.kept)
            if room > 0:
                self.kept.append({k: v[:room] for k, v in batch.items()})
            self.samples += n
            yield batch

    def evaluation(self) -> dict[str, np.ndarray] | None:
        if not self.kept:
            return None
        return {k: np.concatenate([b[k] for b in self.kept]) for k in self.kept[0]}


def convert(
    src: Any,
    out: str | os.PathLike | None = None,
    *,
    representative_data: Any = None,
    mode: str = "int8",
    int8_io: bool = False,
    calibration: str = "minmax",
    percentile: float = 99.99,
    tf_compatible: bool = True,
    validation_data: Any = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: bool | None = None,
) -> ConversionReport:
    """Convert ``src`` to a .tflite model written to ``out``; returns a ConversionReport.

    ``src`` is a bundle (model base path, version directory or file, or a
    ``Bundle``), a ``Graph``, a Keras model or a ``.keras`` / ``.h5`` file.
    ``mode``: ``int8`` (full-integer; needs ``representative_data``: an array,
    a dict by input name, a .npy/.npz path or an iterable of batches),
    ``float16`` (float16 weights), ``dynamic`` (int8 weights, float
    activations) or ``float32``. ``int8_io`` makes an int8 model take and
    return int8 tensors instead of float32. ``calibration`` is ``minmax`` or
    ``percentile`` (clipping at ``percentile``). ``tf_compatible`` reproduces
    TF's calibration exactly, including its widened ranges for inputs that
    TFLite overwrites in place (``calibration.inplace_inputs``); False keeps
    the true ranges (slightly more accurate, not TF-identical). The report measures errors
    on ``validation_data`` when given, else on the first calibration samples.

    >>> report = convert("models/mnist", "mnist_int8.tflite", representative_data=x_calib)  # doctest: +SKIP
    >>> report.outputs[0].top1_agreement                                                   # doctest: +SKIP
    1.0
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    start = time.perf_counter()
    graph, signatures, source_bytes, source_name = _load_source(src)
    lowered = lower(graph, signatures)
    float_model = lowered.model
    input_specs = [next(s for s in graph.inputs if s.name == name) for name in
                   [float_model.tensors[i].name for i in float_model.inputs]]
    input_names = [s.name for s in input_specs]

    keep = None
    calibration_samples = 0
    if mode == "int8":
        if representative_data is None:
            raise CalibrationDataError("int8 conversion needs representative_data (calibration samples): an array, "
                                       "a dict by input name, a .npy/.npz path or an iterable of batches",
                                       expected="representative data", received="None")
        keep = _Keep(batches(representative_data, input_specs, batch_size), EVALUATION_SAMPLES)
        ranges = collect_ranges(float_model, keep, input_names, method=calibration, percentile=percentile,
                                progress=progress, tf_compatible=tf_compatible)
        calibration_samples = keep.samples
        quantized = quantize_int8(float_model, ranges, int8_io=int8_io)
        model, float_ops = quantized.model, quantized.float_ops
    elif int8_io:
        raise ConversionError(f"int8_io needs mode='int8', not {mode!r}")
    else:
        model = _copy(float_model)
        model = to_float16(model) if mode == "float16" else to_dynamic(model) if mode == "dynamic" else model
        float_ops = []
    index_map = compact(model)
    assign_versions(model)
    model.metadata = {
        fmt.METADATA_MIN_RUNTIME: min_runtime_version(model).encode().ljust(fmt.MIN_RUNTIME_WIDTH, b"\0"),
        fmt.METADATA_TOOLKIT: json.dumps({"producer": "savedmodel-toolkit", "mode": mode, "int8_io": int8_io,
                                          "source": source_name}).encode(),
    }
    validate(model)
    blob = serialize(model)
    path = None
    if out is not None:
        from converters.lite.writer import write_bytes

        path = str(write_bytes(blob, out))
    seconds = time.perf_counter() - start

    report = ConversionReport(
        mode=mode, path=path, tflite_bytes=len(blob),
        float32_weight_bytes=int(sum(np.asarray(w).size * 4 for w in graph.weights.values())),
        source_bytes=source_bytes, seconds=seconds, op_counts=model.op_counts(), float_ops=list(float_ops),
        int8_io=int8_io, calibration_samples=calibration_samples, content=blob)
    evaluation, where = None, ""
    if validation_data is not None:
        evaluation = _concat(batches(validation_data, input_specs, batch_size))
        where = "validation data"
    elif keep is not None:
        evaluation, where = keep.evaluation(), "calibration data"
    if evaluation is not None:
        _evaluate(report, graph, float_model, model, index_map, evaluation, where)
    return report


def _copy(model: LiteModel) -> LiteModel:
    import copy

    return copy.deepcopy(model)


def _concat(items) -> dict[str, np.ndarray]:
    items = list(items)
    return {k: np.concatenate([b[k] for b in items]) for k in items[0]}


def _evaluate(report: ConversionReport, graph: Graph, float_model: LiteModel, model: LiteModel,
              index_map: dict[int, int], data: dict[str, np.ndarray], where: str) -> None:
    import runtime
    from runtime.lite.interpreter import Interpreter

    n = next(iter(data.values())).shape[0]
    reference = runtime.from_graph(graph).signatures["serving_default"](**data)
    converted = Interpreter(model)
    feeds = {}
    for i, name in zip(model.inputs, [float_model.tensors[j].name for j in float_model.inputs], strict=True):
        x = data[name]
        t = model.tensors[i]
        if t.dtype == "int8":
            from converters.lite.quantize import _round

            scale, zp = float(t.quant.scale[0]), int(t.quant.zero_point[0])
            x = np.clip(_round(x.astype(np.float32) / np.float32(scale)) + zp, -128, 127).astype(np.int8)
        feeds[i] = x
    values = converted.run(feeds, keep=True)
    outputs = {}
    for spec, i in zip(graph.outputs, model.outputs, strict=True):
        v = values[i]
        t = model.tensors[i]
        outputs[spec.name] = t.quant.dequantize(v) if t.dtype == "int8" else v
    report.outputs = output_errors(outputs, {k: reference[k] for k in outputs})
    float_values = Interpreter(float_model).run({i: data[float_model.tensors[i].name] for i in float_model.inputs},
                                                keep=True)
    constants = {i for i, t in enumerate(float_model.tensors) if t.data is not None}
    float_values = {i: v for i, v in float_values.items() if i not in constants}
    report.layers = layer_errors(float_values, values, model, index_map, float_model)
    report.evaluated_on = where
    report.evaluation_samples = n
