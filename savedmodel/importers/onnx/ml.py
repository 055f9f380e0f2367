"""Converters of the ``ai.onnx.ml`` ops that scikit-learn models exported with skl2onnx use.

Linear models become a ``Dense`` (its activation doing the post transform),
preprocessing becomes elementwise math, and the class label output becomes an
``ArgMax`` followed, when the labels are not 0..n-1, by a ``Gather`` from a
``Constant`` table of the labels (int64, or byte strings for string labels).

``ZipMap`` turns a probability matrix into a sequence of {label: probability}
maps, which the IR has no type for: it is imported as the probability tensor
itself, shape (batch, classes), its columns in the order of the classifier's
labels. ``ArrayFeatureExtractor`` on a constant 1-D table with run-time
indices (skl2onnx's label lookup) is a ``Gather`` along the table and keeps
the indices' shape, where onnxruntime returns one row; the Reshape that
skl2onnx puts after it makes both the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.registry import converter

ML = "ai.onnx.ml"
# post_transform -> the Dense activation doing it; SOFTMAX_ZERO and PROBIT have no IR equivalent.
POST_TRANSFORMS = {"NONE": "linear", "LOGISTIC": "sigmoid", "SOFTMAX": "softmax"}
NORMS = {"MAX": "max", "L1": "l1", "L2": "l2"}
# The floor of a Normalizer's divisor (onnxruntime's and onnx's reference: a zero row stays zero).
NORM_FLOOR = 1e-30


def _features(ctx: NodeContext) -> str:
    """Input 0 as a (batch, features) tensor with a known feature count."""
    shape = ctx.shape(0)
    if len(shape) != 2 or shape[1] is None:
        raise ctx.unsupported(f"expected a (batch, features) input with a known feature count, got shape "
                              f"{list(shape)}")
    return ctx.input(0)


def _post_transform(ctx: NodeContext) -> str:
    post = ctx.attr("post_transform", "NONE")
    if post not in POST_TRANSFORMS:
        raise ctx.unsupported(f"post_transform {post!r} has no IR equivalent; supported: {sorted(POST_TRANSFORMS)}")
    return POST_TRANSFORMS[post]


def _linear_weights(ctx: NodeContext, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, features) coefficients and (rows,) intercepts from the flat attrs."""
    coef = np.asarray(ctx.attr("coefficients", []), np.float32)
    if coef.size == 0 or coef.size % n_features:
        raise ctx.unsupported(f"its {coef.size} coefficients are not a whole number of rows of {n_features} features")
    rows = coef.reshape(-1, n_features)
    intercepts = np.asarray(ctx.attr("intercepts", [0.0] * rows.shape[0]), np.float32)
    if intercepts.shape != (rows.shape[0],):
        raise ctx.unsupported(f"it has {intercepts.size} intercepts for {rows.shape[0]} coefficient rows")
    return rows, intercepts


def _class_labels(ctx: NodeContext) -> np.ndarray:
    """The classifier's labels: int64, or byte strings (the IR's string dtype)."""
    ints, strings = ctx.attr("classlabels_ints"), ctx.attr("classlabels_strings")
    if ints:
        return np.asarray(ints, np.int64)
    if strings:
        return np.array([s.encode() for s in strings], dtype=object)
    raise ctx.unsupported("it has neither classlabels_ints nor classlabels_strings")


def _labels_of(ctx: NodeContext, scores: str, labels: np.ndarray) -> str:
    """The label of each row's largest score."""
    index = ctx.emit("ArgMax", [scores], {"axis": -1, "keepdims": False, "select_last_index": False},
                     suffix="/argmax")
    if labels.dtype == np.int64 and np.array_equal(labels, np.arange(len(labels))):
        return index
    table = ctx.emitter.constant(labels, f"{ctx.name}/classes")
    return ctx.emit("Gather", [table, index], {"axis": 0}, suffix="/label")


@converter("LinearClassifier", domain=ML)
def linear_classifier(ctx: NodeContext) -> None:
    """scores = post_transform(x @ coefficients.T + intercepts); label = the label of the largest score.
    A binary classifier with one coefficient row scores its two classes as (-z, z), as onnxruntime does."""
    x = _features(ctx)
    labels = _class_labels(ctx)
    rows, bias = _linear_weights(ctx, ctx.shape(0)[1])
    if rows.shape[0] == 1 and len(labels) == 2:
        rows, bias = np.concatenate([-rows, rows]), np.concatenate([-bias, bias])
    if rows.shape[0] != len(labels):
        raise ctx.unsupported(f"it has {rows.shape[0]} coefficient rows for {len(labels)} classes")
    attrs = {"units": rows.shape[0], "activation": _post_transform(ctx), "use_bias": True}
    scores = ctx.emit("Dense", [x], attrs, {"kernel": rows.T.copy(), "bias": bias}, suffix="/scores")
    ctx.set_output(1, scores)
    if ctx.output_used(0):
        ctx.set_output(0, _labels_of(ctx, scores, labels))


@converter("LinearRegressor", domain=ML)
def linear_regressor(ctx: NodeContext) -> None:
    """y = x @ coefficients.T + intercepts, one column per target."""
    x = _features(ctx)
    rows, bias = _linear_weights(ctx, ctx.shape(0)[1])
    targets = ctx.attr("targets", 1)
    if rows.shape[0] != targets:
        raise ctx.unsupported(f"it has {rows.shape[0]} coefficient rows for {targets} targets")
    attrs = {"units": targets, "activation": _post_transform(ctx), "use_bias": True}
    ctx.set_output(0, ctx.emit("Dense", [x], attrs, {"kernel": rows.T.copy(), "bias": bias}))


def _per_feature(ctx: NodeContext, name: str, n_features: int) -> np.ndarray:
    values = np.asarray(ctx.attr(name, []), np.float32)
    if values.size not in (1, n_features):
        raise ctx.unsupported(f"its {name} has {values.size} entries, expected 1 or {n_features} (one per feature)")
    return values


@converter("Scaler", domain=ML)
def scaler(ctx: NodeContext) -> None:
    """y = (x - offset) * scale, per feature (a single entry applies to every feature)."""
    x = _features(ctx)
    n = ctx.shape(0)[1]
    offset = ctx.emitter.constant(_per_feature(ctx, "offset", n), f"{ctx.name}/offset")
    scale = ctx.emitter.constant(_per_feature(ctx, "scale", n), f"{ctx.name}/scale")
    centred = ctx.emit("Subtract", [x, offset], suffix="/centred")
    ctx.set_output(0, ctx.emit("Multiply", [centred, scale]))


@converter("Normalizer", domain=ML)
def normalizer(ctx: NodeContext) -> None:
    """Each row divided by its max |x|, L1 or L2 norm (floored at 1e-30, so a zero row stays zero)."""
    x = _features(ctx)
    norm = ctx.attr("norm", "MAX")
    if norm not in NORMS:
        raise ctx.unsupported(f"norm {norm!r} is not one of {sorted(NORMS)}")
    source = ctx.emit("Unary", [x], {"function": "abs"}, suffix="/abs") if norm == "MAX" else x
    attrs: dict[str, Any] = {"function": NORMS[norm], "axes": [1], "keepdims": True}
    divisor = ctx.emit("Reduce", [source], attrs, suffix="/norm")
    floor = ctx.emitter.constant(np.array(NORM_FLOOR, np.float32), f"{ctx.name}/floor")
    divisor = ctx.emit("Maximum", [divisor, floor], suffix="/floored")
    ctx.set_output(0, ctx.emit("Divide", [x, divisor]))


@converter("ZipMap", domain=ML)
def zip_map(ctx: NodeContext) -> None:
    """The probability tensor itself (the IR has no sequence-of-maps type; see the module docstring)."""
    ctx.set_output(0, ctx.input(0))


@converter("ArrayFeatureExtractor", domain=ML)
def array_feature_extractor(ctx: NodeContext) -> None:
    """data[..., indices]: constant indices gather along the last axis; run-time indices into a constant
    1-D table (skl2onnx's label lookup) gather from the table, keeping the indices' shape."""
    indices = ctx.const(1)
    if indices is not None:
        flat = np.asarray(indices, np.int64).ravel()
        table = ctx.emitter.constant(flat, f"{ctx.name}/indices")
        ctx.set_output(0, ctx.emit("Gather", [ctx.input(0), table], {"axis": -1}))
        return
    data = ctx.const(0)
    if data is None or data.ndim != 1:
        raise ctx.unsupported("run-time indices are supported into a constant 1-D table only")
    ctx.set_output(0, ctx.emit("Gather", [ctx.input(0), ctx.input(1)], {"axis": 0}))
