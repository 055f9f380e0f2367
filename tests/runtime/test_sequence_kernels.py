"""The sequence kernels against PyTorch, built as graphs and run by the runtime; and their error paths.

PyTorch's LSTM, GRU and RNN use the gate orders of Keras' LSTM (i, f, g, o)
and of GRU with reset_after (z and r swapped), with the weights transposed,
so each Keras-layout weight set maps onto a torch module exactly. Masks with
trailing padding are compared with torch's packed sequences, which stop each
sequence at its last kept step and pad outputs with zeros (Keras'
``zero_output_for_mask``). End-to-end comparisons with Keras itself are in
tests/savedmodel/test_keras_sequence.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import runtime
from runtime.errors import InputError
from runtime.kernels import KERNELS
from savedmodel.builder import GraphBuilder
from savedmodel.errors import GraphError

torch = pytest.importorskip("torch")

RTOL, ATOL = 1e-5, 1e-5
BATCH, STEPS, FEATURES, UNITS = 3, 5, 4, 6
LENGTHS = [5, 2, 4]  # kept steps per sequence (the rest is padding)


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def normal(*shape: int, seed: int = 0, scale: float = 0.5) -> np.ndarray:
    return (rng(seed).standard_normal(shape) * scale).astype(np.float32)


def trailing_mask() -> np.ndarray:
    return np.arange(STEPS)[None, :] < np.array(LENGTHS)[:, None]


def run(op: str, inputs: dict[str, np.ndarray], **kwargs) -> list[np.ndarray]:
    """Build a one-node graph of ``op`` over ``inputs`` (name -> array) and run it with the runtime."""
    b = GraphBuilder()
    names = [b.input(k, (None, *v.shape[1:]), str(v.dtype)) for k, v in inputs.items()]
    out = b.op(op, *names, **kwargs)
    outs = list(out) if isinstance(out, tuple) else [out]
    result = runtime.from_graph(b.build(*outs)).predict(inputs)
    return [result[o] for o in outs] if isinstance(result, dict) else [result]


def close(got: np.ndarray, want) -> None:
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    assert got.shape == want.shape
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


# -- recurrent kernels vs torch ----------------------------------------------------------

def keras_weights(gates: int, seed: int = 1) -> dict[str, np.ndarray]:
    return {"kernel": normal(FEATURES, gates * UNITS, seed=seed),
            "recurrent_kernel": normal(UNITS, gates * UNITS, seed=seed + 1),
            "bias": normal(gates * UNITS, seed=seed + 2)}


def _swap_first_blocks(w: np.ndarray) -> np.ndarray:
    """Keras' GRU gate order z, r, h -> torch's r, z, n along the last axis."""
    z, r, h = np.split(w, 3, axis=-1)
    return np.concatenate([r, z, h], axis=-1)


def torch_rnn(op: str, w: dict[str, np.ndarray]):
    """The torch module computing Keras' ``op`` with the Keras-layout weights ``w``."""
    cls = {"LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU, "SimpleRNN": torch.nn.RNN}[op]
    module = cls(FEATURES, UNITS, batch_first=True)
    kernel, recurrent = w["kernel"], w["recurrent_kernel"]
    input_bias = w["bias"][0] if w["bias"].ndim == 2 else w["bias"]
    recurrent_bias = w["bias"][1] if w["bias"].ndim == 2 else np.zeros_like(input_bias)
    if op == "GRU":
        kernel, recurrent, input_bias, recurrent_bias = map(_swap_first_blocks,
                                                            (kernel, recurrent, input_bias, recurrent_bias))
    with torch.no_grad():
        module.weight_ih_l0.copy_(torch.from_numpy(np.ascontiguousarray(kernel.T)))
        module.weight_hh_l0.copy_(torch.from_numpy(np.ascontiguousarray(recurrent.T)))
        module.bias_ih_l0.copy_(torch.from_numpy(input_bias))
        module.bias_hh_l0.copy_(torch.from_numpy(recurrent_bias))
    return module


RNN_CASES = [("LSTM", 4, {}), ("GRU", 3, {"reset_after": True}), ("SimpleRNN", 1, {})]


def _weights_for(op: str, gates: int) -> dict[str, np.ndarray]:
    w = keras_weights(gates)
    if op == "GRU":
        w["bias"] = normal(2, gates * UNITS, seed=9)
    return w


@pytest.mark.parametrize("op,gates,extra", RNN_CASES, ids=[c[0] for c in RNN_CASES])
def test_rnn_matches_torch(op, gates, extra):
    w = _weights_for(op, gates)
    x = normal(BATCH, STEPS, FEATURES, seed=5, scale=1.0)
    n_states = 2 if op == "LSTM" else 1
    seq, *states = run(op, {"x": x}, units=UNITS, return_sequences=True, return_state=True, **extra, **w)
    want_seq, want_states = torch_rnn(op, w)(torch.from_numpy(x))
    close(seq, want_seq)
    want_states = want_states if isinstance(want_states, tuple) else (want_states,)
    assert len(states) == n_states
    for got, want in zip(states, want_states, strict=True):
        close(got, want[0])


@pytest.mark.parametrize("op,gates,extra", RNN_CASES, ids=[c[0] for c in RNN_CASES])
def test_masked_rnn_matches_torch_packed_sequences(op, gates, extra):
    w = _weights_for(op, gates)
    x = normal(BATCH, STEPS, FEATURES, seed=6, scale=1.0)
    seq, *states = run(op, {"x": x, "mask": trailing_mask()}, units=UNITS, return_sequences=True,
                       return_state=True, has_mask=True, zero_output_for_mask=True, **extra, **w)
    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.from_numpy(x), LENGTHS, batch_first=True,
                                                     enforce_sorted=False)
    out, want_states = torch_rnn(op, w)(packed)
    want_seq, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=STEPS)
    close(seq, want_seq)
    for got, want in zip(states, want_states if isinstance(want_states, tuple) else (want_states,), strict=True):
        close(got, want[0])


def test_masked_step_repeats_the_previous_output_without_zero_output_for_mask():
    """Keras' default: a masked step outputs the last kept step's output (zeros before any)."""
    w = keras_weights(4)
    x = normal(BATCH, STEPS, FEATURES, seed=7, scale=1.0)
    mask = trailing_mask()
    (seq,) = run("LSTM", {"x": x, "mask": mask}, units=UNITS, return_sequences=True, has_mask=True, **w)
    (zeros,) = run("LSTM", {"x": x, "mask": mask}, units=UNITS, return_sequences=True, has_mask=True,
                   zero_output_for_mask=True, **w)
    for row, length in enumerate(LENGTHS):
        np.testing.assert_array_equal(seq[row, :length], zeros[row, :length])
        np.testing.assert_array_equal(seq[row, length:], np.broadcast_to(seq[row, length - 1],
                                                                         seq[row, length:].shape))


def test_go_backwards_is_the_reversed_sequence_in_processing_order():
    w = keras_weights(3)
    w["bias"] = normal(2, 3 * UNITS, seed=3)
    x = normal(BATCH, STEPS, FEATURES, seed=8, scale=1.0)
    (backwards,) = run("GRU", {"x": x}, units=UNITS, return_sequences=True, go_backwards=True, **w)
    (forwards,) = run("GRU", {"x": np.ascontiguousarray(x[:, ::-1])}, units=UNITS, return_sequences=True, **w)
    np.testing.assert_array_equal(backwards, forwards)


def test_initial_states_are_used():
    w = keras_weights(4)
    x = normal(BATCH, STEPS, FEATURES, seed=9, scale=1.0)
    h0, c0 = normal(BATCH, UNITS, seed=10), normal(BATCH, UNITS, seed=11)
    (seq,) = run("LSTM", {"x": x, "h": h0, "c": c0}, units=UNITS, return_sequences=True, **w)
    want, _ = torch_rnn("LSTM", w)(torch.from_numpy(x), (torch.from_numpy(h0)[None], torch.from_numpy(c0)[None]))
    close(seq, want)


def test_gru_reset_before_matches_its_formula():
    """GRU with reset_after=False (no torch equivalent): h_hat uses (r * h) @ U_h, written out step by step."""
    w = keras_weights(3)
    x = normal(BATCH, STEPS, FEATURES, seed=12, scale=1.0)
    (got,) = run("GRU", {"x": x}, units=UNITS, reset_after=False, return_sequences=True, **w)
    u, k, rk = UNITS, w["kernel"].astype(np.float64), w["recurrent_kernel"].astype(np.float64)
    h = np.zeros((BATCH, u))
    for t in range(STEPS):
        xp = x[:, t] @ k + w["bias"]
        z = 1 / (1 + np.exp(-(xp[:, :u] + h @ rk[:, :u])))
        r = 1 / (1 + np.exp(-(xp[:, u:2 * u] + h @ rk[:, u:2 * u])))
        h = z * h + (1 - z) * np.tanh(xp[:, 2 * u:] + (r * h) @ rk[:, 2 * u:])
        np.testing.assert_allclose(got[:, t], h, rtol=RTOL, atol=ATOL)


# -- embedding, masks, attention -------------------------------------------------------

def test_embedding_matches_torch():
    table = normal(7, 3, seed=13)
    ids = rng(14).integers(0, 7, size=(BATCH, STEPS)).astype(np.int32)
    (got,) = run("Embedding", {"ids": ids}, input_dim=7, output_dim=3, embeddings=table)
    close(got, torch.nn.functional.embedding(torch.from_numpy(ids).long(), torch.from_numpy(table)))


@pytest.mark.parametrize("bad", [7, -1])
def test_embedding_id_out_of_range(bad):
    ids = np.zeros((2, 3), np.int32)
    ids[1, 2] = bad
    with pytest.raises(InputError, match=rf"op Embedding has input_dim=7: id {bad} is outside \[0, 7\)"):
        run("Embedding", {"ids": ids}, input_dim=7, output_dim=3, embeddings=normal(7, 3))


def test_embedding_non_integer_id():
    ids = np.array([[1.0, 2.5]], np.float32)
    with pytest.raises(InputError, match=r"op Embedding takes integer ids; received the non-integer value 2.5"):
        run("Embedding", {"ids": ids}, input_dim=7, output_dim=3, embeddings=normal(7, 3))


def test_sequence_mask_and_masking_zero_all_equal_steps():
    x = normal(BATCH, STEPS, FEATURES, seed=15)
    x[1, 3:] = 2.0
    x[2, 0, 0] = 2.0  # one feature equal to mask_value does not mask the step
    (mask,) = run("SequenceMask", {"x": x}, mask_value=2.0, reduce_last_axis=True)
    (masked,) = run("Masking", {"x": x}, mask_value=2.0)
    assert mask.dtype == np.bool_
    np.testing.assert_array_equal(mask, (torch.from_numpy(x) != 2.0).any(dim=-1).numpy())
    np.testing.assert_array_equal(masked, torch.from_numpy(x).masked_fill(
        ~torch.from_numpy(mask)[..., None], 0.0).numpy())


def test_masked_average_pooling_matches_torch():
    x = normal(BATCH, STEPS, FEATURES, seed=16)
    mask = trailing_mask()
    (got,) = run("MaskedGlobalAveragePooling1D", {"x": x, "mask": mask}, keepdims=False)
    want = torch.stack([torch.from_numpy(x[i, :n]).mean(dim=0) for i, n in enumerate(LENGTHS)])
    close(got, want)


def _sdpa(q, k, v, allowed):
    return torch.nn.functional.scaled_dot_product_attention(
        torch.from_numpy(q), torch.from_numpy(k), torch.from_numpy(v),
        attn_mask=None if allowed is None else torch.from_numpy(allowed))


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_torch_sdpa(causal):
    q, k, v = (normal(BATCH, STEPS, FEATURES, seed=s, scale=1.0) for s in (17, 18, 19))
    value_mask = trailing_mask()
    allowed = np.broadcast_to(value_mask[:, None, :], (BATCH, STEPS, STEPS)).copy()
    if causal:
        allowed = allowed & np.tril(np.ones((STEPS, STEPS), bool))
    scale = np.array(1.0 / math.sqrt(FEATURES), np.float32)
    (got,) = run("Attention", {"q": q, "v": v, "k": k, "v_mask": value_mask}, has_value_mask=True,
                 use_causal_mask=causal, scale=scale)
    close(got, _sdpa(q, k, v, allowed))


def test_multi_head_attention_matches_torch():
    heads, key_dim = 2, 3
    dim = heads * key_dim
    query, value = normal(BATCH, STEPS, dim, seed=20, scale=1.0), normal(BATCH, STEPS + 1, dim, seed=21, scale=1.0)
    w = {f"{p}_kernel": normal(dim, heads, key_dim, seed=22 + i) for i, p in enumerate(("query", "key", "value"))}
    w |= {f"{p}_bias": normal(heads, key_dim, seed=30 + i) for i, p in enumerate(("query", "key", "value"))}
    w |= {"output_kernel": normal(heads, key_dim, dim, seed=40), "output_bias": normal(dim, seed=41)}
    allowed = rng(42).uniform(size=(BATCH, STEPS, STEPS + 1)) > 0.3
    allowed[:, :, 0] = True
    (got,) = run("MultiHeadAttention", {"q": query, "v": value, "k": value, "allowed": allowed}, num_heads=heads,
                 key_dim=key_dim, value_dim=key_dim, output_dim=dim, has_attention_mask=True, **w)
    mha = torch.nn.MultiheadAttention(dim, heads, batch_first=True)
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.from_numpy(np.concatenate(
            [w[f"{p}_kernel"].reshape(dim, dim).T for p in ("query", "key", "value")])))
        mha.in_proj_bias.copy_(torch.from_numpy(np.concatenate(
            [w[f"{p}_bias"].reshape(-1) for p in ("query", "key", "value")])))
        mha.out_proj.weight.copy_(torch.from_numpy(w["output_kernel"].reshape(dim, dim).T.copy()))
        mha.out_proj.bias.copy_(torch.from_numpy(w["output_bias"]))
    attn_mask = torch.from_numpy(~allowed).repeat_interleave(heads, dim=0)
    want, _ = mha(torch.from_numpy(query), torch.from_numpy(value), torch.from_numpy(value), attn_mask=attn_mask)
    close(got, want)


# -- error paths -----------------------------------------------------------------------

def test_wrong_mask_shape_is_an_input_error():
    w = keras_weights(4)
    fn = KERNELS["LSTM"]
    attrs = dict(units=UNITS, activation="tanh", recurrent_activation="sigmoid", use_bias=True,
                 return_sequences=False, return_state=False, go_backwards=False, has_mask=True,
                 zero_output_for_mask=False)
    x = normal(BATCH, STEPS, FEATURES)
    with pytest.raises(InputError, match=r"op LSTM takes a \(batch, time\) mask of shape \[3, 5\]; received shape "
                                         r"\[3, 4\]"):
        fn(x, np.ones((BATCH, STEPS - 1), bool), **attrs, **w)


def test_wrong_initial_state_shape_is_an_input_error():
    w = keras_weights(1)
    x = normal(BATCH, STEPS, FEATURES)
    attrs = dict(units=UNITS, activation="tanh", use_bias=True, return_sequences=False, return_state=False,
                 go_backwards=False, has_mask=False, zero_output_for_mask=False)
    with pytest.raises(InputError, match=r"op SimpleRNN: an initial state must be \(batch, units\) = \[3, 6\]; "
                                         r"received shape \[3, 5\]"):
        KERNELS["SimpleRNN"](x, normal(BATCH, UNITS - 1), **attrs, **w)


def test_wrong_attention_mask_shape_is_an_input_error():
    dim = 4
    w = {f"{p}_kernel": normal(dim, 2, 2) for p in ("query", "key", "value")} | {"output_kernel": normal(2, 2, dim)}
    q = normal(BATCH, STEPS, dim)
    with pytest.raises(InputError, match=r"takes an attention_mask of shape \[3, 5, 5\]; received shape \[3, 5, 4\]"):
        KERNELS["MultiHeadAttention"](q, q, q, np.ones((BATCH, STEPS, STEPS - 1), bool), num_heads=2, key_dim=2,
                                      value_dim=2, output_dim=dim, use_bias=False, use_causal_mask=False,
                                      has_attention_mask=True, has_query_mask=False, has_value_mask=False,
                                      has_key_mask=False, **w)


def test_graph_checks_of_the_rnn_ops():
    w = keras_weights(4)
    b = GraphBuilder()
    x = b.input("x", (None, STEPS, FEATURES))
    with pytest.raises(GraphError, match=r"op LSTM cannot take inputs x\[None, 5, 4\]: has_mask is set but the "
                                         r"mask input is missing"):
        b.build(b.op("LSTM", x, units=UNITS, has_mask=True, **w))
    b = GraphBuilder()
    x, h = b.input("x", (None, STEPS, FEATURES)), b.input("h", (None, UNITS))
    with pytest.raises(GraphError, match=r"expected no initial state or 2, got 1"):
        b.build(b.op("LSTM", x, h, units=UNITS, **w))
    b = GraphBuilder()
    x = b.input("x", (None, STEPS, FEATURES))
    with pytest.raises(GraphError, match=r"weight 'lstm/kernel' \(role kernel\) has shape \[4, 24\], expected "
                                         r"\[4, 20\]"):
        b.build(b.op("LSTM", x, units=UNITS - 1, **w))


def test_rnn_output_count_follows_return_state():
    w = keras_weights(4)
    b = GraphBuilder()
    x = b.input("x", (None, STEPS, FEATURES))
    outs = b.op("LSTM", x, units=UNITS, return_state=True, **w)
    assert len(outs) == 3
    graph = b.build(*outs)
    graph.nodes[0].outputs = graph.nodes[0].outputs[:1]
    graph.outputs = graph.outputs[:1]
    with pytest.raises(GraphError, match=r"op LSTM has 3 outputs, the node lists 1"):
        graph.validate()


def test_mask_of_another_length_is_refused_by_the_graph():
    b = GraphBuilder()
    x, mask = b.input("x", (None, STEPS, FEATURES)), b.input("mask", (None, STEPS + 1), "bool")
    with pytest.raises(GraphError, match=r"mask mask has 6 steps, x has 5"):
        b.build(b.op("MaskedGlobalAveragePooling1D", x, mask))
