"""Keras sequence models (embeddings, masks, RNNs, wrappers, attention) -> Graph -> runtime, against Keras.

Every model is compared with Keras ``predict`` (rtol 1e-5) at two batch sizes,
imported live and from its saved ``.keras`` file; a few go through a bundle.
Token inputs end in zeros so the masks of ``Embedding(mask_zero=True)`` and
``Masking`` matter.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
keras = pytest.importorskip("keras")

from keras import layers as L  # noqa: E402

import runtime  # noqa: E402
import savedmodel  # noqa: E402
from runtime.errors import InputError  # noqa: E402
from savedmodel.errors import UnsupportedError  # noqa: E402
from savedmodel.importers.keras import import_keras_file, import_keras_model  # noqa: E402
from savedmodel.importers.keras.sequence import SEQUENCE_LAYERS  # noqa: E402
from tests.savedmodel.test_keras_import import check, randomize  # noqa: E402

pytestmark = pytest.mark.keras

VOCAB, STEPS = 12, 6
BATCHES = (1, 4)


def tokens(batch: int, seed: int = 0, steps: int = STEPS) -> np.ndarray:
    """Token ids with a random number of trailing zeros (padding) per row; one row fully kept."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(batch, steps)).astype("int32")
    for row in range(1, batch):
        ids[row, rng.integers(1, steps):] = 0
    return ids


def frames(batch: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Float sequences whose trailing steps are all zero in some rows (for Masking)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, *shape)).astype("float32")
    for row in range(1, batch):
        x[row, rng.integers(1, shape[0]):] = 0.0
    return x


def text_model(*body: L.Layer, head: L.Layer | None = None) -> keras.Model:
    """tokens -> Embedding(mask_zero) -> body... (-> head)."""
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    for layer in body:
        x = layer(x)
    if head is not None:
        x = head(x)
    return randomize(keras.Model(inp, x))


# -- model zoo: name -> (factory, inputs(batch)) -------------------------------------------

def classifier() -> keras.Model:
    return text_model(L.Bidirectional(L.LSTM(5)), head=L.Dense(3, activation="softmax"))


def stacked() -> keras.Model:
    return text_model(L.LSTM(4, return_sequences=True), L.GRU(3, return_sequences=True),
                      L.SimpleRNN(2, activation="relu"))


def return_states() -> keras.Model:
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    seq, h, c = L.LSTM(3, return_sequences=True, return_state=True)(x)
    out, gh = L.GRU(3, return_state=True)(seq, initial_state=[h])
    decoded = L.LSTM(3, go_backwards=True)(seq, initial_state=[h, c])
    return randomize(keras.Model(inp, [out, gh, c, decoded]))


def bidirectional_states() -> keras.Model:
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    outs = L.Bidirectional(L.GRU(3, return_sequences=True, return_state=True), merge_mode="sum")(x)
    return randomize(keras.Model(inp, list(outs)))


def bidirectional_none() -> keras.Model:
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    x = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
    fwd, bwd = L.Bidirectional(L.SimpleRNN(3, return_sequences=True), merge_mode=None)(x)
    return randomize(keras.Model(inp, [fwd, bwd]))


def masking() -> keras.Model:
    inp = keras.Input((STEPS, 3), name="frames")
    x = L.Masking(0.0)(inp)
    seq = L.LSTM(4, return_sequences=True)(x)
    pooled = L.GlobalAveragePooling1D()(L.Dense(2)(seq))
    return randomize(keras.Model(inp, [x, seq, pooled]))


def time_distributed() -> keras.Model:
    inp = keras.Input((3, 6, 6, 2), name="video")
    x = L.TimeDistributed(L.Conv2D(3, 3, activation="relu"))(inp)
    x = L.TimeDistributed(L.MaxPooling2D(2))(x)
    x = L.TimeDistributed(L.Flatten())(x)
    x = L.TimeDistributed(L.Dense(4))(x)
    return randomize(keras.Model(inp, L.LSTM(2)(x)))


def encoder_block(x, heads: int = 2, dim: int = 8, **mha_kwargs):
    """A Transformer encoder block: self-attention + residual + LayerNorm, Dense FFN + residual + LayerNorm."""
    attended = L.MultiHeadAttention(heads, key_dim=4)(x, x, **mha_kwargs)
    x = L.LayerNormalization(epsilon=1e-6)(L.Add()([x, attended]))
    ffn = L.Dense(dim)(L.Dense(16, activation="gelu")(x))
    return L.LayerNormalization(epsilon=1e-6)(L.Add()([x, ffn]))


def transformer_masked() -> keras.Model:
    """Query and value masks from Embedding(mask_zero) reach the attention and the pooling."""
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    x = encoder_block(L.Embedding(VOCAB, 8, mask_zero=True)(inp))
    return randomize(keras.Model(inp, L.Dense(2)(L.GlobalAveragePooling1D()(x))))


def transformer_causal() -> keras.Model:
    """A positional embedding (a constant of keras.ops.arange), an attention_mask input and a causal mask."""
    inp = keras.Input((STEPS,), dtype="int32", name="tokens")
    allowed = keras.Input((STEPS, STEPS), dtype="bool", name="allowed")
    positions = L.Embedding(STEPS, 8)(keras.ops.arange(STEPS))
    x = L.Embedding(VOCAB, 8)(inp) + positions
    x = encoder_block(x, attention_mask=allowed, use_causal_mask=True)
    return randomize(keras.Model([inp, allowed], L.GlobalMaxPooling1D()(x)))


def merged_masks() -> keras.Model:
    """Add ANDs its inputs' masks, Concatenate (last axis) ORs them; keras.ops.not_equal is a mask op too."""
    first = keras.Input((STEPS,), dtype="int32", name="first")
    second = keras.Input((STEPS,), dtype="int32", name="second")
    a, b = L.Embedding(VOCAB, 3, mask_zero=True)(first), L.Embedding(VOCAB, 3, mask_zero=True)(second)
    both = L.LSTM(2, return_sequences=True)(L.Add()([a, b]))
    either = L.GRU(2, return_sequences=True)(L.Concatenate()([a, b]))
    return randomize(keras.Model([first, second], [both, either, keras.ops.not_equal(first, 0)]))


def attention(**kwargs):
    def build() -> keras.Model:
        inp = keras.Input((STEPS,), dtype="int32", name="tokens")
        q = L.Embedding(VOCAB, 4, mask_zero=True)(inp)
        v = L.Dense(4)(q)
        layer = L.Attention(use_scale=kwargs.pop("use_scale", False), score_mode=kwargs.pop("score_mode", "dot"))
        return randomize(keras.Model(inp, layer([q, v], **kwargs)))

    return build


def causal_mask(batch: int) -> np.ndarray:
    rng = np.random.default_rng(batch)
    allowed = rng.uniform(size=(batch, STEPS, STEPS)) > 0.3
    allowed[:, :, 0] = True  # every query sees at least one key
    return allowed


def token_inputs(batch: int) -> np.ndarray:
    return tokens(batch)


MODELS = {
    "classifier-bilstm": (classifier, token_inputs),
    "gru-reset-after": (lambda: text_model(L.GRU(3, reset_after=True)), token_inputs),
    "gru-reset-before": (lambda: text_model(L.GRU(3, reset_after=False, return_sequences=True)), token_inputs),
    "gru-no-bias": (lambda: text_model(L.GRU(3, use_bias=False)), token_inputs),
    "simple-rnn": (lambda: text_model(L.SimpleRNN(3, return_sequences=True)), token_inputs),
    "lstm-hard-sigmoid": (lambda: text_model(L.LSTM(3, recurrent_activation="hard_sigmoid")), token_inputs),
    "lstm-unmasked": (lambda: randomize(keras.Sequential([keras.Input((STEPS, 3)), L.LSTM(4, return_sequences=True),
                                                          L.LSTM(2)])),
                      lambda b: np.random.default_rng(b).normal(size=(b, STEPS, 3)).astype("float32")),
    "stacked": (stacked, token_inputs),
    "return-state": (return_states, token_inputs),
    "go-backwards": (lambda: text_model(L.LSTM(3, go_backwards=True, return_sequences=True)), token_inputs),
    **{f"bidirectional-{mode}": (lambda mode=mode: text_model(
        L.Bidirectional(L.LSTM(3, return_sequences=True), merge_mode=mode)), token_inputs)
       for mode in ("concat", "sum", "mul", "ave")},
    "bidirectional-last": (lambda: text_model(L.Bidirectional(L.GRU(3), merge_mode="ave")), token_inputs),
    "bidirectional-none": (bidirectional_none, token_inputs),
    "bidirectional-states": (bidirectional_states, token_inputs),
    "time-distributed-dense": (lambda: text_model(L.TimeDistributed(L.Dense(3)), L.LSTM(2)), token_inputs),
    "time-distributed-conv": (time_distributed, lambda b: np.random.default_rng(b).normal(
        size=(b, 3, 6, 6, 2)).astype("float32")),
    "masking": (masking, lambda b: frames(b, (STEPS, 3))),
    "transformer-masked": (transformer_masked, token_inputs),
    "transformer-causal": (transformer_causal, lambda b: {"tokens": tokens(b), "allowed": causal_mask(b)}),
    "merged-masks": (merged_masks, lambda b: {"first": tokens(b, seed=1), "second": tokens(b, seed=2)}),
    "attention-dot": (attention(), token_inputs),
    "attention-scaled-causal": (attention(use_scale=True, use_causal_mask=True), token_inputs),
    "attention-concat": (attention(score_mode="concat", use_scale=True), token_inputs),
}


@pytest.fixture(scope="module")
def built() -> dict[str, keras.Model]:
    """Each model built once (Keras model building dominates the module's time)."""
    return {}


def model_of(built: dict[str, keras.Model], name: str) -> keras.Model:
    if name not in built:
        built[name] = MODELS[name][0]()
    return built[name]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_live_model_predicts_like_keras(built, name):
    model = model_of(built, name)
    graph, _ = import_keras_model(model)
    for batch in BATCHES:
        check(model, MODELS[name][1](batch), graph=graph)


@pytest.mark.parametrize("name", ["classifier-bilstm", "stacked", "return-state", "bidirectional-states",
                                  "time-distributed-conv", "masking", "transformer-masked", "transformer-causal",
                                  "attention-concat"])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_file_predicts_like_keras(built, name, suffix, tmp_path):
    model = model_of(built, name)
    model.save(tmp_path / f"model{suffix}")
    graph, source = import_keras_file(tmp_path / f"model{suffix}")
    assert source["framework"] == "keras"
    for batch in BATCHES:
        check(model, MODELS[name][1](batch), graph=graph)


def test_sequential_file_tracks_masks(tmp_path):
    """A Sequential .keras file records no masks: the importer derives them as Keras does."""
    model = randomize(keras.Sequential([keras.Input((STEPS,), dtype="int32"), L.Embedding(VOCAB, 4, mask_zero=True),
                                        L.Bidirectional(L.GRU(3, return_sequences=True)),
                                        L.GlobalAveragePooling1D(), L.Dense(2)]))
    model.save(tmp_path / "seq.keras")
    graph, _ = import_keras_file(tmp_path / "seq.keras")
    assert "MaskedGlobalAveragePooling1D" in {n.op for n in graph.nodes}
    for batch in BATCHES:
        check(model, tokens(batch), graph=graph)


class Tagger(keras.Model):
    """A subclassed sequence tagger: traced on keras.Input, masks included."""

    def __init__(self):
        super().__init__()
        self.embed = L.Embedding(VOCAB, 4, mask_zero=True)
        self.rnn = L.Bidirectional(L.GRU(3, return_sequences=True), merge_mode="sum")
        self.attend = L.MultiHeadAttention(2, key_dim=2)
        self.tags = L.TimeDistributed(L.Dense(5))

    def call(self, ids):
        x = self.rnn(self.embed(ids))
        return self.tags(keras.ops.relu(self.attend(x, x)))


def test_subclassed_model_is_traced():
    model = Tagger()
    model(tokens(2))
    randomize(model)
    graph, source = import_keras_model(model)
    assert source["class"] == "Tagger"
    for batch in BATCHES:
        check(model, tokens(batch).astype("float32"), graph=graph)


def test_bundle_round_trip(built, tmp_path):
    model = model_of(built, "classifier-bilstm")
    path = savedmodel.save(model, tmp_path / "sentiment")
    loaded = runtime.load(path)
    x = tokens(4, seed=3)
    got = loaded.predict(x)
    got = next(iter(got.values())) if isinstance(got, dict) else got
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_every_sequence_layer_has_a_case(built):
    used = set()
    for name in MODELS:
        used |= {type(layer).__name__ for layer in model_of(built, name).layers}
        used |= {type(layer.layer).__name__ for layer in model_of(built, name).layers if hasattr(layer, "layer")}
    assert set(SEQUENCE_LAYERS) <= used, sorted(set(SEQUENCE_LAYERS) - used)


# -- errors ----------------------------------------------------------------------------

def test_stateful_rnn_is_refused_naming_the_layer():
    model = keras.Sequential([keras.Input((STEPS, 2), batch_size=2), L.LSTM(3, stateful=True, name="memory")])
    with pytest.raises(UnsupportedError, match=r"Layer 'memory' \(LSTM\) is stateful"):
        import_keras_model(model)


def test_attention_scores_output_is_refused():
    inp = keras.Input((STEPS, 4))
    out, _ = L.MultiHeadAttention(2, 2, name="mha")(inp, inp, return_attention_scores=True)
    with pytest.raises(UnsupportedError, match=r"Layer 'mha' \(MultiHeadAttention\) returns its attention scores"):
        import_keras_model(keras.Model(inp, out))


def test_rnn_with_custom_activation_is_refused():
    model = text_model(L.SimpleRNN(2, activation=L.LeakyReLU(0.1), name="rnn"))
    with pytest.raises(UnsupportedError, match=r"Layer 'rnn' \(SimpleRNN\) has activation="):
        import_keras_model(model)


def test_embedding_id_out_of_range_is_an_input_error(built):
    graph, _ = import_keras_model(model_of(built, "gru-reset-after"))
    ids = tokens(2)
    ids[1, 0] = VOCAB + 3
    with pytest.raises(InputError, match=rf"op Embedding has input_dim={VOCAB}: id {VOCAB + 3} is outside"):
        runtime.from_graph(graph).predict(ids)


def _two_masked(merge: L.Layer) -> keras.Model:
    first = keras.Input((STEPS,), dtype="int32")
    second = keras.Input((STEPS,), dtype="int32")
    a, b = L.Embedding(VOCAB, 3, mask_zero=True)(first), L.Embedding(VOCAB, 3, mask_zero=True)(second)
    return keras.Model([first, second], merge([a, b]))


def test_masked_multiply_is_refused():
    """Keras 3 turns masked entries into ones before multiplying: not reproduced, so refused."""
    with pytest.raises(UnsupportedError, match=r"Layer 'product' \(Multiply\) merges masked tensors"):
        import_keras_model(_two_masked(L.Multiply(name="product")))


def test_masked_concatenation_over_time_is_refused():
    with pytest.raises(UnsupportedError, match=r"Layer 'joined' \(Concatenate\) concatenates masked tensors along "
                                               r"axis 1"):
        import_keras_model(_two_masked(L.Concatenate(axis=1, name="joined")))


def test_masked_softmax_layer_is_refused():
    model = text_model(L.Softmax(name="probs"))
    with pytest.raises(UnsupportedError, match=r"Layer 'probs' \(Softmax\) receives a Keras mask"):
        import_keras_model(model)


def test_explicit_mask_argument_is_refused():
    frames_in = keras.Input((STEPS, 2))
    keep = keras.Input((STEPS,), dtype="bool")
    out = L.LSTM(2, name="rnn")(frames_in, mask=keep)
    with pytest.raises(UnsupportedError, match=r"Layer 'rnn' \(LSTM\) is given mask= explicitly"):
        import_keras_model(keras.Model([frames_in, keep], out))
