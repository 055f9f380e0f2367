"""Converters of ONNX's recurrent ops (LSTM, GRU, RNN) to the IR's Keras-style LSTM / GRU / SimpleRNN.

ONNX runs time-major (layout=0: X is (seq, batch, features)) and stacks the
directions: Y is (seq, directions, batch, hidden), Y_h (directions, batch,
hidden). The IR ops are batch-major with one direction each, so X is asked for
in the (batch, seq, features) layout and the outputs are built batch-major
and described by their layout; PyTorch's surrounding Transposes then cancel.
Weights are rewritten once: ONNX's gate order i, o, f, c becomes Keras' i, f,
c, o; the input and recurrent biases are summed where Keras has one bias.
"""

from __future__ import annotations

import numpy as np

from savedmodel.importers.onnx.context import NodeContext
from savedmodel.importers.onnx.registry import converter
from savedmodel.importers.onnx.values import Fill

# Per op: IR op, number of gates, number of states, ONNX gate block -> Keras position.
KINDS = {"LSTM": ("LSTM", 4, 2, (0, 3, 1, 2)), "GRU": ("GRU", 3, 1, (0, 1, 2)), "RNN": ("SimpleRNN", 1, 1, (0,))}
DEFAULT_ACTIVATIONS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}


@converter("LSTM", "GRU", "RNN")
def recurrent(ctx: NodeContext) -> None:
    ir_op, n_gates, n_states, order = KINDS[ctx.op_type]
    _check_supported(ctx, n_states)
    hidden = int(ctx.attr("hidden_size"))
    direction = ctx.attr("direction", "forward")
    batch_first = bool(ctx.attr("layout", 0))
    w, r = ctx.require_const(1, "W"), ctx.require_const(2, "R")
    b = ctx.const(3)
    x = ctx.input_as(0, (0, 1, 2) if batch_first else (1, 0, 2))
    reverse = [direction == "reverse"] if direction != "bidirectional" else [False, True]
    want_seq, want_states = ctx.output_used(0), any(ctx.output_used(i) for i in range(1, 1 + n_states))
    per_direction = []
    for d, backwards in enumerate(reverse):
        weights = _weights(ctx, w[d], r[d], None if b is None else b[d], hidden, n_gates, order)
        attrs = {"units": hidden, "return_sequences": want_seq, "return_state": want_states,
                 "go_backwards": backwards, "use_bias": "bias" in weights}
        if ir_op == "GRU":
            attrs["reset_after"] = bool(ctx.attr("linear_before_reset", 0))
        outs = ctx.emit(ir_op, [x], attrs, weights, suffix=f"/{d}" if len(reverse) > 1 else "")
        outs = list(outs) if isinstance(outs, tuple) else [outs]
        if backwards and want_seq:
            outs[0] = ctx.emit("ReverseTime", [outs[0]], suffix=f"/{d}/reverse")
        per_direction.append(outs)
    if want_seq:
        ctx.set_output(0, _stack(ctx, [o[0] for o in per_direction], 2, "/Y"),
                       (0, 1, 2, 3) if batch_first else (2, 0, 1, 3))
    for s in range(n_states):
        if ctx.output_used(1 + s):
            ctx.set_output(1 + s, _stack(ctx, [o[1 + s] for o in per_direction], 1, f"/state{s}"),
                           (0, 1, 2) if batch_first else (1, 0, 2))


def _check_supported(ctx: NodeContext, n_states: int) -> None:
    acts = [a.lower() for a in ctx.attr("activations", [])]
    defaults = [a.lower() for a in DEFAULT_ACTIVATIONS[ctx.op_type]]
    if acts and acts not in (defaults, defaults * 2):  # one list per direction
        raise ctx.unsupported(f"activations {ctx.attr('activations')}; only the defaults "
                              f"{DEFAULT_ACTIVATIONS[ctx.op_type]} are supported")
    if ctx.attr("clip") is not None or ctx.attr("input_forget", 0):
        raise ctx.unsupported("clip / input_forget are not supported")
    if ctx.op_type == "LSTM" and ctx.has_input(7):
        raise ctx.unsupported("peephole weights (input P) are not supported")
    lens = ctx.const(4)
    if ctx.has_input(4) and (lens is None or len(set(lens.tolist())) != 1 or int(lens[0]) != ctx.shape(0)[
            1 if ctx.attr("layout", 0) else 0]):
        raise ctx.unsupported("sequence_lens shorter than the sequence (masking) is not supported")
    for i in range(5, 5 + n_states):
        if ctx.has_input(i) and not _is_zero(ctx, i):
            raise ctx.unsupported(f"a non-zero initial state (input {i}) is not supported")


def _is_zero(ctx: NodeContext, i: int) -> bool:
    v = ctx.value(i)
    if isinstance(v, Fill):
        return float(v.value) == 0.0
    return isinstance(v, np.ndarray) and not v.any()


def _weights(ctx: NodeContext, w: np.ndarray, r: np.ndarray, b: np.ndarray | None, hidden: int,
             n_gates: int, order: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Keras-layout kernel, recurrent kernel and bias of one direction."""

    def gates(m: np.ndarray) -> np.ndarray:
        blocks = m.reshape(n_gates, hidden, *m.shape[1:])
        keras = np.empty_like(blocks)
        for onnx_pos, keras_pos in enumerate(order):
            keras[keras_pos] = blocks[onnx_pos]
        return keras.reshape(m.shape)

    weights = {"kernel": gates(w).T.astype(np.float32), "recurrent_kernel": gates(r).T.astype(np.float32)}
    if b is not None:
        wb, rb = gates(b[: n_gates * hidden]), gates(b[n_gates * hidden:])
        if ctx.op_type == "GRU" and ctx.attr("linear_before_reset", 0):
            weights["bias"] = np.stack([wb, rb]).astype(np.float32)
        else:
            if ctx.op_type == "GRU" and rb[2 * hidden:].any():
                raise ctx.unsupported("a recurrent bias on the candidate gate with linear_before_reset=0")
            weights["bias"] = (wb + rb).astype(np.float32)
    return weights


def _stack(ctx: NodeContext, parts: list[str], axis: int, suffix: str) -> str:
    """The per-direction tensors with a new direction axis at ``axis`` (batch-major)."""
    expanded = []
    for d, part in enumerate(parts):
        shape = list(ctx.ir_shape(part))
        shape.insert(axis, 1)
        expanded.append(ctx.emit("Reshape", [part], {"target_shape": [int(s) for s in shape[1:]]},
                                 suffix=f"{suffix}/{d}"))
    if len(expanded) == 1:
        return expanded[0]
    return ctx.emit("Concatenate", expanded, {"axis": axis}, suffix=suffix)
