"""Representative data in, activation ranges out.

``batches(data, specs)`` accepts an array (single-input models), a dict by
input name, a ``.npy`` / ``.npz`` path, or an iterable of such batches, and
checks every batch against the model's inputs (CalibrationDataError names the
input, what was expected and what came). ``collect_ranges`` runs the float
LiteModel with this toolkit's runtime, keeping every intermediate tensor,
and records each tensor's min/max, or percentiles of its values, over all
batches, with a tqdm progress bar.

>>> ranges = collect_ranges(float_model, batches(x_calib, specs))   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from converters.errors import CalibrationDataError
from converters.lite.model import LiteModel
from runtime.errors import InputError
from runtime.model import check_input
from savedmodel.ir import TensorSpec

DEFAULT_BATCH_SIZE = 32
METHODS = ("minmax", "percentile")
_SAMPLE_CAP = 1 << 16  # values kept per tensor and batch for percentile ranges


def _check(spec: TensorSpec, value: Any, where: str) -> np.ndarray:
    """One input's representative data as float32, checked as ``predict`` checks it."""
    try:
        arr = check_input(TensorSpec(spec.name, "float32", spec.shape), spec.name, value)
    except InputError as e:
        raise CalibrationDataError(f"{where}: {e}", input=e.input, expected=e.expected, received=e.received) from e
    return arr


def _load_file(path: Path, specs: list[TensorSpec]) -> Any:
    if not path.is_file():
        raise CalibrationDataError(f"calibration file {str(path)!r} does not exist", received=str(path))
    try:
        loaded = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise CalibrationDataError(f"calibration file {str(path)!r} is not a .npy or .npz file ({e})",
                                   expected=".npy or .npz", received=str(path)) from e
    if isinstance(loaded, np.ndarray):
        return loaded
    with loaded:
        arrays = {k: loaded[k] for k in loaded.files}
    names = [s.name for s in specs]
    if len(arrays) == 1 and len(specs) == 1:
        return next(iter(arrays.values()))
    missing = [n for n in names if n not in arrays]
    if missing:
        raise CalibrationDataError(
            f"calibration file {str(path)!r} has arrays {sorted(arrays)}; expected one per input {names}",
            input=missing[0], expected=str(names), received=str(sorted(arrays)))
    return {n: arrays[n] for n in names}


def _as_dict(item: Any, specs: list[TensorSpec], where: str) -> dict[str, Any]:
    names = [s.name for s in specs]
    if isinstance(item, Mapping):
        missing = [n for n in names if n not in item]
        unknown = [k for k in item if k not in names]
        if missing or unknown:
            raise CalibrationDataError(
                f"{where}: expected inputs {names}, received {sorted(map(str, item))}",
                input=(missing or unknown)[0], expected=str(names), received=str(sorted(map(str, item))))
        return dict(item)
    if isinstance(item, (list, tuple)) and len(specs) > 1 and len(item) == len(specs):
        return dict(zip(names, item, strict=True))
    if len(specs) != 1:
        raise CalibrationDataError(
            f"{where}: the model has {len(specs)} inputs {names}; pass a dict with one array per input",
            expected=str(names), received=type(item).__name__)
    return {names[0]: item}


def batches(data: Any, specs: list[TensorSpec],
            batch_size: int = DEFAULT_BATCH_SIZE) -> Iterator[dict[str, np.ndarray]]:
    """Checked float32 batches (dicts by input name) from representative data in any accepted form."""
    if isinstance(data, (str, os.PathLike)):
        data = _load_file(Path(data), specs)
    if isinstance(data, (np.ndarray, Mapping)):
        given = _as_dict(data, specs, "representative data")
        arrays = {s.name: _check(s, given[s.name], "representative data") for s in specs}
        sizes = {a.shape[0] for a in arrays.values()}
        if len(sizes) > 1:
            raise CalibrationDataError(f"representative data: inputs have different numbers of samples {sorted(sizes)}",
                                       expected="one sample count", received=str(sorted(sizes)))
        n = sizes.pop()
        if n == 0:
            raise CalibrationDataError("representative data holds no samples", expected="at least one sample",
                                       received="0 samples")
        for i in range(0, n, batch_size):
            yield {k: v[i:i + batch_size] for k, v in arrays.items()}
        return
    if not isinstance(data, Iterable):
        raise CalibrationDataError(
            f"representative data of type {type(data).__name__} is not supported; pass an array, a dict of arrays, "
            "a .npy/.npz path or an iterable of batches", received=type(data).__name__)
    count = 0
    for k, item in enumerate(data):
        d = _as_dict(item, specs, f"representative batch {k}")
        yield {s.name: _check(s, d[s.name], f"representative batch {k}") for s in specs}
        count += 1
    if count == 0:
        raise CalibrationDataError("representative data holds no batches", expected="at least one batch",
                                   received="an empty iterable")


class RangeRecorder:
    """Running per-tensor min/max, and value samples for percentile ranges."""

    def __init__(self, method: str = "minmax", percentile: float = 99.99, seed: int = 0) -> None:
        if method not in METHODS:
            raise ValueError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        self.method = method
        self.percentile = percentile
        self.mins: dict[int, float] = {}
        self.maxs: dict[int, float] = {}
        self.samples: dict[int, list[np.ndarray]] = {}
        self._rng = np.random.default_rng(seed)

    def update(self, index: int, value: np.ndarray) -> None:
        if value.size == 0:
            return
        lo, hi = float(value.min()), float(value.max())
        self.mins[index] = min(lo, self.mins.get(index, lo))
        self.maxs[index] = max(hi, self.maxs.get(index, hi))
        if self.method == "percentile":
            flat = value.reshape(-1)
            if flat.size > _SAMPLE_CAP:
                flat = self._rng.choice(flat, _SAMPLE_CAP, replace=False)
            self.samples.setdefault(index, []).append(np.asarray(flat, np.float32))

    def ranges(self) -> dict[int, tuple[float, float]]:
        """tensor index -> (min, max) as float32 values."""
        out = {}
        for i in self.mins:
            lo, hi = self.mins[i], self.maxs[i]
            if self.method == "percentile":
                pooled = np.concatenate(self.samples[i])
                lo, hi = (float(v) for v in np.percentile(pooled, [100.0 - self.percentile, self.percentile]))
            out[i] = (float(np.float32(lo)), float(np.float32(hi)))
        return out


# Elementwise ops whose TFLite kernels may write their output over an input's buffer.
INPLACE_OPS = frozenset({"ADD", "SUB", "MUL", "DIV"})


def inplace_inputs(model: LiteModel) -> dict[int, int]:
    """output tensor -> the input whose buffer TFLite's arena lets it overwrite.

    TFLite's calibrator logs an op's inputs after the op has run; when the
    arena planner let the op write in place (the first of its two inputs that
    no other op reads, of the output's size, not a graph input, when the output
    is not a graph output), that input's
    logged range also covers the output's values. TF's converter quantizes
    with those ranges, so reproducing them is part of matching its output.
    """
    readers: dict[int, int] = {}
    for op in model.operators:
        for t in op.inputs:
            if t >= 0:
                readers[t] = readers.get(t, 0) + 1
    for t in model.outputs:
        readers[t] = readers.get(t, 0) + 1
    shared = {}
    for op in model.operators:
        if op.op not in INPLACE_OPS or op.outputs[0] in model.outputs:  # graph outputs get their own buffer
            continue
        out = model.tensors[op.outputs[0]]
        for t in op.inputs[:2]:
            x = model.tensors[t] if t >= 0 else None
            if (x is not None and x.data is None and t not in model.inputs and readers.get(t) == 1
                    and x.dtype == out.dtype and x.shape == out.shape):
                shared[op.outputs[0]] = t
                break
    return shared


def collect_ranges(model: LiteModel, data: Iterable[dict[str, np.ndarray]], input_names: list[str], *,
                   method: str = "minmax", percentile: float = 99.99, progress: bool | None = None,
                   total: int | None = None, tf_compatible: bool = True) -> dict[int, tuple[float, float]]:
    """Run the float ``model`` on every batch; the (min, max) of each float tensor it computes.

    With ``tf_compatible`` the inputs that TFLite's calibrator sees overwritten
    by an in-place ADD/SUB/MUL/DIV get the same widened range (``inplace_inputs``).
    """
    from tqdm.auto import tqdm

    from runtime.lite.interpreter import Interpreter

    interpreter = Interpreter(model)
    recorder = RangeRecorder(method, percentile)
    constants = set(interpreter.constants)
    shared = inplace_inputs(model) if tf_compatible else {}
    bar = tqdm(data, total=total, desc="calibrating", unit="batch", disable=None if progress is None else not progress,
               leave=False)
    for batch in bar:
        feeds = {model.inputs[i]: batch[name] for i, name in enumerate(input_names)}
        values = interpreter.run(feeds, keep=True)
        for index, value in values.items():
            if index not in constants and isinstance(value, np.ndarray) and value.dtype == np.float32:
                recorder.update(index, value)
        for out, victim in shared.items():
            recorder.update(victim, values[out])
    return recorder.ranges()
