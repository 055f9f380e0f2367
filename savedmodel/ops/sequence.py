"""Sequence ops: embeddings, masks, recurrent layers and attention.

Inputs are (batch, time, features), channels-last like the rest of the IR. A
mask is an ordinary graph tensor of shape (batch, time), bool or numeric
(nonzero = keep the step): ops that honour one take it as an extra input and
say so with a ``has_..._mask`` attr, so the ONNX and Keras importers emit the
same nodes.
"""

from __future__ import annotations

from typing import Any

from savedmodel.ir import Shape, TensorSpec
from savedmodel.ops import ACTIVATIONS, Attr, op

_BOOL = Attr("bool", False)


def _bool_out(inputs: list[TensorSpec], a: dict[str, Any]) -> list[str]:
    return ["bool"]


def _rank(x: TensorSpec, rank: int, what: str) -> None:
    if len(x.shape) != rank:
        raise ValueError(f"{x.name} must be a rank-{rank} {what}, it has shape {list(x.shape)}")


def _mask_check(mask: TensorSpec, x: TensorSpec, time_axis: int = 1) -> None:
    """A mask must be (batch, time) of the tensor it masks."""
    _rank(mask, 2, "(batch, time) mask")
    t_mask, t_x = mask.shape[1], x.shape[time_axis]
    if t_mask is not None and t_x is not None and t_mask != t_x:
        raise ValueError(f"mask {mask.name} has {t_mask} steps, {x.name} has {t_x}")


# -- embedding and masks ---------------------------------------------------------------

@op("Embedding", attrs={"input_dim": Attr("int", 1), "output_dim": Attr("int", 1)}, weights=("embeddings",),
    weight_shapes=lambda i, a: {"embeddings": (a["input_dim"], a["output_dim"])},
    dtypes=lambda i, a: ["float32"])
def embedding(inputs, a):
    """Row ``ids`` of ``embeddings`` (input_dim, output_dim) for integer ids (or floats holding integers) of any
    rank: output shape = input shape + (output_dim,), float32. An id outside [0, input_dim) is an error at run
    time. The mask of Keras' ``mask_zero`` is a separate SequenceMask node."""
    return [(*inputs[0].shape, a["output_dim"])]


@op("SequenceMask", attrs={"mask_value": Attr("float", 0.0), "reduce_last_axis": _BOOL}, dtypes=_bool_out)
def sequence_mask(inputs, a):
    """The bool mask ``x != mask_value``; with ``reduce_last_axis``, any over the last axis (Keras' Masking:
    a step is kept when any feature differs from mask_value). Embedding(mask_zero=True) is mask_value 0
    over the token ids without reduction."""
    shape = inputs[0].shape
    return [shape[:-1] if a["reduce_last_axis"] else shape]


@op("Masking", attrs={"mask_value": Attr("float", 0.0)})
def masking(inputs, a):
    """x with every step whose features all equal mask_value set to zero (Keras' Masking layer output)."""
    return [inputs[0].shape]


@op("CombineMasks", attrs={"function": Attr("str", "and", ("and", "or"))}, inputs=(2, None), dtypes=_bool_out)
def combine_masks(inputs, a):
    """The elementwise AND (or OR) of several masks of one shape (Keras' merge layers OR their inputs'
    masks)."""
    shape = inputs[0].shape
    for m in inputs[1:]:
        if len(m.shape) != len(shape):
            raise ValueError(f"masks of different ranks: {list(shape)} and {list(m.shape)}")
    return [shape]


@op("MaskedGlobalAveragePooling1D", attrs={"keepdims": _BOOL}, inputs=(2, 2))
def masked_global_average_pooling1d(inputs, a):
    """The mean over the kept steps of x (batch, time, channels); input 1 is the (batch, time) mask.
    A sequence with no kept step gives 0/0 = NaN, as in Keras."""
    x, mask = inputs
    _rank(x, 3, "(batch, time, channels) input")
    _mask_check(mask, x)
    return [(x.shape[0], 1, x.shape[-1]) if a["keepdims"] else (x.shape[0], x.shape[-1])]


@op("ReverseTime", keeps_dtype=True)
def reverse_time(inputs, a):
    """x with axis 1 (time) reversed: the backward half of a Bidirectional layer back in input order."""
    if len(inputs[0].shape) < 2:
        raise ValueError("expected at least (batch, time)")
    return [inputs[0].shape]


@op("FoldTime", keeps_dtype=True)
def fold_time(inputs, a):
    """(batch, time, ...) -> (batch * time, ...): each step becomes a batch item (Keras' TimeDistributed)."""
    x = inputs[0]
    if len(x.shape) < 3:
        raise ValueError("expected at least (batch, time, features)")
    b, t = x.shape[:2]
    return [(None if b is None or t is None else b * t, *x.shape[2:])]


@op("UnfoldTime", keeps_dtype=True, inputs=(2, 2))
def unfold_time(inputs, a):
    """The inverse of FoldTime: x (batch * time, ...) -> (batch, time, ...), batch and time read from input 1,
    the tensor that was folded."""
    x, ref = inputs
    if len(ref.shape) < 2:
        raise ValueError("the reference tensor must be at least (batch, time)")
    return [(*ref.shape[:2], *x.shape[1:])]


# -- recurrent layers ------------------------------------------------------------------

def _rnn_attrs(gates: bool) -> dict[str, Attr]:
    attrs = {
        "units": Attr("int", 1),
        "activation": Attr("str", "tanh", ACTIVATIONS),
        "use_bias": Attr("bool", True),
        "return_sequences": _BOOL,
        "return_state": _BOOL,
        "go_backwards": _BOOL,
        "has_mask": _BOOL,
        "zero_output_for_mask": _BOOL,
    }
    if gates:
        attrs["recurrent_activation"] = Attr("str", "sigmoid", ACTIVATIONS)
    return attrs


_RNN_DOC = """Inputs: x (batch, time, features); then, with has_mask, a (batch, time) mask (nonzero = keep the step);
    then either no initial state or all of them. Outputs: (batch, time, units) with return_sequences, else
    (batch, units); then, with return_state, the final states. go_backwards processes the steps last to first
    and returns the sequence in that processing order (as Keras does). A masked step keeps the previous states
    and outputs the previous output (zeros before the first kept step), or zeros with zero_output_for_mask."""


def _rnn(n_gates: int, n_states: int, doc: str):
    """The shape, weight and output-count rules of an RNN op with ``n_gates`` gate blocks and ``n_states``
    states; ``doc`` (with the shared contract appended) documents the op."""

    def shape(inputs: list[TensorSpec], a: dict[str, Any]) -> list[Shape]:
        x = inputs[0]
        _rank(x, 3, "(batch, time, features) input")
        if a["has_mask"]:
            if len(inputs) < 2:
                raise ValueError("has_mask is set but the mask input is missing")
            _mask_check(inputs[1], x)
        states = inputs[1 + a["has_mask"]:]
        if len(states) not in (0, n_states):
            raise ValueError(f"expected no initial state or {n_states}, got {len(states)}")
        u = a["units"]
        for s in states:
            if len(s.shape) != 2 or s.shape[-1] not in (None, u):
                raise ValueError(f"initial state {s.name} must be (batch, {u}), it has shape {list(s.shape)}")
        out = (x.shape[0], x.shape[1], u) if a["return_sequences"] else (x.shape[0], u)
        return [out] + ([(x.shape[0], u)] * n_states if a["return_state"] else [])

    def weights(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
        u = a["units"]
        bias = (2, n_gates * u) if a.get("reset_after") else (n_gates * u,)
        return {"kernel": (inputs[0].shape[-1], n_gates * u), "recurrent_kernel": (u, n_gates * u), "bias": bias}

    def outputs(a: dict[str, Any]) -> int:
        return 1 + (n_states if a["return_state"] else 0)

    shape.__doc__ = f"{doc}\n\n{_RNN_DOC}"
    return shape, weights, outputs



_shape, _weights, _outputs = _rnn(1, 1, "h = activation(x @ kernel + h @ recurrent_kernel + bias). Weights: kernel "
                                   "(features, units), recurrent_kernel (units, units), bias (units,). One state h.")
op("SimpleRNN", attrs=_rnn_attrs(False), weights=("kernel", "recurrent_kernel"), optional_weights=("bias",),
   weight_shapes=_weights, inputs=(1, 3), outputs=_outputs)(_shape)
_shape, _weights, _outputs = _rnn(4, 2, "Keras' LSTM with gates i, f, c, o in that order: kernel (features, 4u), "
                                   "recurrent_kernel (u, 4u), bias (4u,). States h then c; the output is h.")
op("LSTM", attrs=_rnn_attrs(True), weights=("kernel", "recurrent_kernel"), optional_weights=("bias",),
   weight_shapes=_weights, inputs=(1, 4), outputs=_outputs)(_shape)
_shape, _weights, _outputs = _rnn(3, 1, "Keras' GRU with gates z, r, h in that order: kernel (features, 3u), "
                                   "recurrent_kernel (u, 3u); bias (3u,) with reset_after false, (2, 3u) with "
                                   "reset_after true (row 0 input bias, row 1 recurrent bias; the reset gate is "
                                   "applied after the recurrent product). One state h.")
op("GRU", attrs={**_rnn_attrs(True), "reset_after": Attr("bool", True)}, weights=("kernel", "recurrent_kernel"),
   optional_weights=("bias",), weight_shapes=_weights, inputs=(1, 3), outputs=_outputs)(_shape)


# -- attention -------------------------------------------------------------------------

def _mha_weights(inputs: list[TensorSpec], a: dict[str, Any]) -> dict[str, Shape]:
    h, k, v = a["num_heads"], a["key_dim"], a["value_dim"]
    q_dim, v_dim, k_dim = (inputs[i].shape[-1] for i in range(3))
    return {"query_kernel": (q_dim, h, k), "query_bias": (h, k), "key_kernel": (k_dim, h, k), "key_bias": (h, k),
            "value_kernel": (v_dim, h, v), "value_bias": (h, v), "output_kernel": (h, v, a["output_dim"]),
            "output_bias": (a["output_dim"],)}


def _attention_inputs(inputs: list[TensorSpec], flags: list[bool]) -> tuple[TensorSpec, TensorSpec, TensorSpec,
                                                                            list[TensorSpec]]:
    if len(inputs) != 3 + sum(flags):
        raise ValueError(f"expected query, value, key and {sum(flags)} mask inputs, got {len(inputs)} inputs")
    q, v, k = inputs[:3]
    for t in (q, v, k):
        _rank(t, 3, "(batch, time, features) input")
    if k.shape[1] is not None and v.shape[1] is not None and k.shape[1] != v.shape[1]:
        raise ValueError(f"key has {k.shape[1]} steps, value has {v.shape[1]}")
    return q, v, k, inputs[3:]


@op("MultiHeadAttention",
    attrs={"num_heads": Attr("int", 1), "key_dim": Attr("int", 1), "value_dim": Attr("int", 1),
           "output_dim": Attr("int", 1), "use_bias": Attr("bool", True), "use_causal_mask": _BOOL,
           "has_attention_mask": _BOOL, "has_query_mask": _BOOL, "has_value_mask": _BOOL, "has_key_mask": _BOOL},
    weights=("query_kernel", "key_kernel", "value_kernel", "output_kernel"),
    optional_weights=("query_bias", "key_bias", "value_bias", "output_bias"),
    weight_shapes=_mha_weights, inputs=(3, 7))
def multi_head_attention(inputs, a):
    """Keras' MultiHeadAttention over one attention axis (time). Inputs: query (batch, T, dq), value (batch, S,
    dv), key (batch, S, dk) (the importer passes value again when there is no key), then, in this order and
    each only when its flag is set: attention_mask (batch, T, S), query_mask (batch, T), value_mask (batch, S),
    key_mask (batch, S). Weights in Keras' EinsumDense layout: query_kernel (dq, heads, key_dim), query_bias
    (heads, key_dim), key_kernel (dk, heads, key_dim), key_bias, value_kernel (dv, heads, value_dim),
    value_bias (heads, value_dim), output_kernel (heads, value_dim, output_dim), output_bias (output_dim,).
    scores = (q / sqrt(key_dim)) . k per head; the allowed positions are attention_mask AND query_mask[:, :, None]
    AND value_mask[:, None, :] AND key_mask[:, None, :] AND (with use_causal_mask) j <= i; disallowed scores are
    replaced by -1e9 before the softmax over S. Output (batch, T, output_dim)."""
    flags = [a["has_attention_mask"], a["has_query_mask"], a["has_value_mask"], a["has_key_mask"]]
    q, v, _, masks = _attention_inputs(inputs, flags)
    given = [m for m, f in zip(("attention", "query", "value", "key"), flags) if f]
    for name, m in zip(given, masks):
        if name == "attention":
            _rank(m, 3, "(batch, T, S) attention mask")
        else:
            _mask_check(m, q if name == "query" else v)
    return [(q.shape[0], q.shape[1], a["output_dim"])]


@op("Attention",
    attrs={"score_mode": Attr("str", "dot", ("dot", "concat")), "use_causal_mask": _BOOL,
           "has_query_mask": _BOOL, "has_value_mask": _BOOL},
    optional_weights=("scale", "concat_score_weight"),
    weight_shapes=lambda i, a: {"scale": (), "concat_score_weight": ()}, inputs=(3, 5))
def attention(inputs, a):
    """Keras' Attention (Luong dot-product, or Bahdanau-style "concat" scores). Inputs: query (batch, T, d),
    value (batch, S, dv), key (batch, S, d) (value again when there is no key), then query_mask (batch, T) and
    value_mask (batch, S) when their flags are set. Scores: "dot" q . k (times the scalar weight ``scale`` when
    present); "concat" concat_score_weight * sum(tanh(scale * (q_i + k_j))). Positions masked by value_mask or
    (with use_causal_mask) j > i get score - 1e9; softmax over S; weights @ value; rows of masked queries are
    set to zero. Output (batch, T, dv)."""
    flags = [a["has_query_mask"], a["has_value_mask"]]
    q, v, _, masks = _attention_inputs(inputs, flags)
    for which, m in zip([n for n, f in zip(("query", "value"), flags) if f], masks):
        _mask_check(m, q if which == "query" else v)
    return [(q.shape[0], q.shape[1], v.shape[-1])]
