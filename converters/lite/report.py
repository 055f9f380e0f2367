"""The conversion report: sizes, output error and agreement, and per-layer error.

Errors are measured on evaluation data (the validation data when given, else
the first calibration samples) against the float model run by the float
runtime; per-layer errors compare each tensor of the converted model
(dequantized) with the same tensor of the float TFLite graph, so the layer
where accuracy is lost stands out.

>>> print(report)                                   # doctest: +SKIP
>>> report.worst_layers(3)                          # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass
class OutputError:
    """The converted model's error on one output against the float model."""

    name: str
    max_abs_error: float
    mean_abs_error: float
    top1_agreement: float | None  # share of samples with the same argmax (None when not a class axis)


@dataclass
class LayerError:
    """One tensor's error against the float graph; ``relative`` is max error / value range."""

    tensor: str
    op: str
    node: str | None
    dtype: str
    scale: float | None
    max_abs_error: float
    mean_abs_error: float
    relative: float


@dataclass
class ConversionReport:
    """What ``converters.lite.convert`` did and how close the result is to the float model."""

    mode: str
    path: str | None
    tflite_bytes: int
    float32_weight_bytes: int
    source_bytes: int | None
    seconds: float
    op_counts: dict[str, int]
    float_ops: list[str] = field(default_factory=list)
    int8_io: bool = False
    calibration_samples: int = 0
    evaluated_on: str = ""
    evaluation_samples: int = 0
    outputs: list[OutputError] = field(default_factory=list)
    layers: list[LayerError] = field(default_factory=list)
    content: bytes | None = field(default=None, repr=False)

    @property
    def compression(self) -> float:
        """tflite size / float32 weight bytes."""
        return self.tflite_bytes / self.float32_weight_bytes if self.float32_weight_bytes else float("nan")

    def worst_layers(self, n: int = 5) -> list[LayerError]:
        """The n layers with the largest relative error."""
        return sorted(self.layers, key=lambda e: e.relative, reverse=True)[:n]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("content", None)
        d["compression"] = self.compression
        return d

    def __str__(self) -> str:
        lines = [f"converters.lite: {self.mode} model" + (f" -> {self.path}" if self.path else "")
                 + f" in {self.seconds:.2f} s"]
        src = f", source bundle {self.source_bytes:,} B" if self.source_bytes else ""
        lines.append(f"  size: {self.tflite_bytes:,} B (float32 weights {self.float32_weight_bytes:,} B{src}); "
                     f"{self.compression:.2f}x the float32 weights")
        lines.append("  ops: " + ", ".join(f"{op} x{n}" for op, n in sorted(self.op_counts.items())))
        if self.float_ops:
            lines.append("  kept float32 (no int8 kernel): " + ", ".join(self.float_ops))
        if self.calibration_samples:
            lines.append(f"  calibrated on {self.calibration_samples} samples; int8 I/O: {self.int8_io}")
        if self.outputs:
            lines.append(f"  against the float model on {self.evaluated_on} ({self.evaluation_samples} samples):")
            for o in self.outputs:
                agree = "" if o.top1_agreement is None else f", top-1 agreement {o.top1_agreement:.4f}"
                lines.append(f"    {o.name}: max abs error {o.max_abs_error:.4g}, mean {o.mean_abs_error:.4g}{agree}")
        if self.layers:
            lines.append("  per-layer error (max abs, relative to the tensor's range), worst first:")
            for e in self.worst_layers(8):
                scale = "" if e.scale is None else f", scale {e.scale:.4g}"
                lines.append(f"    {e.tensor} [{e.op}]: {e.max_abs_error:.4g} ({e.relative:.2%}){scale}")
        return "\n".join(lines)


def output_errors(ours: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> list[OutputError]:
    out = []
    for name, r in ref.items():
        o = np.asarray(ours[name], np.float64)
        r = np.asarray(r, np.float64)
        diff = np.abs(o - r)
        agree = None
        if r.ndim == 2 and r.shape[1] > 1:
            agree = float(np.mean(np.argmax(o, axis=1) == np.argmax(r, axis=1)))
        out.append(OutputError(name, float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0, agree))
    return out


def layer_errors(float_values: dict[int, np.ndarray], converted: dict[int, np.ndarray], model,
                 index_map: dict[int, int], float_model) -> list[LayerError]:
    """Per-tensor error of the converted model (dequantized) against the float graph's values."""
    producers = float_model.producers()
    errors = []
    for fi, value in float_values.items():
        ci = index_map.get(fi)
        if ci is None or ci not in converted or fi not in producers:
            continue
        t = model.tensors[ci]
        got = converted[ci]
        if t.dtype == "int8" and t.quant is not None:
            got = t.quant.dequantize(got)
        elif got.dtype.kind != "f":
            continue
        ref = np.asarray(value, np.float64)
        if ref.shape != got.shape:
            continue
        diff = np.abs(np.asarray(got, np.float64) - ref)
        span = float(ref.max(initial=0.0) - ref.min(initial=0.0)) or 1.0
        op = producers[fi]
        scale = float(t.quant.scale[0]) if t.quant is not None and not t.quant.per_channel else None
        errors.append(LayerError(float_model.tensors[fi].name, op.op, op.source, t.dtype, scale,
                                 float(diff.max(initial=0.0)), float(diff.mean()) if diff.size else 0.0,
                                 float(diff.max(initial=0.0)) / span))
    return errors
