"""The sequence layers of the layer table: embeddings, masking, recurrent layers, wrappers and attention.

These layers make, consume or hand on Keras masks, so their converters read
``call.mask(i)`` and name their outputs (and the outputs' masks) with
:class:`Outputs`. Several emit a DAG rather than a chain (a Bidirectional
layer's two RNNs and their merge).
"""

from __future__ import annotations

from typing import Any

from savedmodel.importers.keras import activations
from savedmodel.importers.keras.convert import Emit, LayerCall, Outputs, Source
from savedmodel.importers.keras.layers import LAYERS, layer
from savedmodel.ir import TensorSpec
from savedmodel.ops import ACTIVATIONS

RNNS = {"SimpleRNN": 1, "LSTM": 2, "GRU": 1}  # class -> number of states

# The layer classes this module converts (tests/savedmodel/test_keras_sequence.py has a case for each).
SEQUENCE_LAYERS = ("Embedding", "Masking", "GlobalAveragePooling1D", *RNNS, "Bidirectional", "TimeDistributed",
                   "MultiHeadAttention", "Attention")


# -- embedding and masking -------------------------------------------------------------

@layer("Embedding", roles=lambda c: ["embeddings"])
def embedding(call: LayerCall) -> list[Any]:
    c = call.config
    lookup = Emit("Embedding", {"input_dim": int(c["input_dim"]), "output_dim": int(c["output_dim"])},
                  call.weights, suffix="lookup", inputs=[0])
    if not c.get("mask_zero", False):
        return [lookup]
    mask = Emit("SequenceMask", {"mask_value": 0.0, "reduce_last_axis": False}, suffix="mask", inputs=[0])
    return [mask, lookup, Outputs(["lookup"], masks=["mask"])]


@layer("Masking")
def masking(call: LayerCall) -> list[Any]:
    value = float(call.config.get("mask_value", 0.0))
    return [Emit("SequenceMask", {"mask_value": value, "reduce_last_axis": True}, suffix="mask", inputs=[0]),
            Emit("Masking", {"mask_value": value}, suffix="masked", inputs=[0]),
            Outputs(["masked"], masks=["mask"])]


@layer("GlobalAveragePooling1D")
def global_average_pooling1d(call: LayerCall) -> list[Any]:
    fmt = call.config.get("data_format") or "channels_last"
    if fmt != "channels_last":
        raise call.unsupported(f"uses data_format={fmt!r}; the IR is channels-last", ["data_format='channels_last'"])
    keepdims = bool(call.config.get("keepdims", False))
    mask = call.mask(0)
    if mask is None:
        return [Emit("GlobalAveragePooling1D", {"keepdims": keepdims})]
    return [Emit("MaskedGlobalAveragePooling1D", {"keepdims": keepdims}, inputs=[0, mask])]


# -- recurrent layers ------------------------------------------------------------------

def _rnn_roles(config: dict[str, Any]) -> list[str]:
    return ["kernel", "recurrent_kernel"] + (["bias"] if config.get("use_bias", True) else [])


def _activation(call: LayerCall, config: dict[str, Any], key: str, default: str) -> str:
    act = activations.resolve(config.get(key, default), what=call.name, kind=call.class_name,
                              keras_version=call.keras_version)
    if not isinstance(act, str) or act not in ACTIVATIONS:
        raise call.unsupported(f"has {key}={config.get(key)!r}, which the recurrent ops cannot fuse",
                               [f"{key} one of {list(ACTIVATIONS)}"])
    return act


def rnn_attrs(call: LayerCall, class_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The attrs of the RNN op for a Keras SimpleRNN / LSTM / GRU config (refusing what it cannot express)."""
    if config.get("stateful"):
        raise call.unsupported("is stateful (stateful=True): its state lives across predict calls, which a "
                               "serving graph does not have. Rebuild it with stateful=False and pass the state "
                               "as initial_state if needed", ["stateful=False"])
    if config.get("time_major"):
        raise call.unsupported("is time-major", ["time_major=False"])
    attrs = {"units": int(config["units"]), "activation": _activation(call, config, "activation", "tanh"),
             "use_bias": bool(config.get("use_bias", True)),
             "return_sequences": bool(config.get("return_sequences", False)),
             "return_state": bool(config.get("return_state", False)),
             "go_backwards": bool(config.get("go_backwards", False)),
             "has_mask": False, "zero_output_for_mask": bool(config.get("zero_output_for_mask", False))}
    if class_name != "SimpleRNN":
        attrs["recurrent_activation"] = _activation(call, config, "recurrent_activation", "sigmoid")
    if class_name == "GRU":
        attrs["reset_after"] = bool(config.get("reset_after", True))
    return attrs


def _initial_states(call: LayerCall) -> list[TensorSpec]:
    states = call.kwargs.get("initial_state")
    if states is None:
        return list(call.inputs[1:])
    states = states if isinstance(states, list) else [states]
    if not all(isinstance(s, TensorSpec) for s in states):
        raise call.unsupported("has an initial_state that is not a tensor of the model", ["tensor initial states"])
    return states


def _rnn_emit(call: LayerCall, class_name: str, config: dict[str, Any], weights: dict[str, Any],
              states: list[TensorSpec], suffix: str = "") -> Emit:
    attrs = rnn_attrs(call, class_name, config)
    inputs: list[Source] = [0]
    # Keras hands a layer its input's mask only when the input is its one tensor argument: an RNN given
    # initial states runs unmasked (its output still carries the input's mask).
    mask = None if states else call.mask(0)
    if mask is not None:
        attrs["has_mask"] = True
        inputs.append(mask)
    if states and len(states) != RNNS[class_name]:
        raise call.unsupported(f"is given {len(states)} initial states; {class_name} takes {RNNS[class_name]}",
                               [f"{RNNS[class_name]} initial states"])
    return Emit(class_name, attrs, weights, suffix=suffix or class_name, inputs=inputs + list(states))


def _rnn(class_name: str):
    def convert(call: LayerCall) -> list[Any]:
        emit = _rnn_emit(call, class_name, call.config, call.weights, _initial_states(call))
        n_out = 1 + (RNNS[class_name] if emit.attrs["return_state"] else 0)
        mask = call.mask(0) if emit.attrs["return_sequences"] else None
        return [emit, Outputs([f"{emit.suffix}:{i}" for i in range(n_out)], masks=[mask] + [None] * (n_out - 1))]

    return convert


for _name in RNNS:
    layer(_name, roles=_rnn_roles)(_rnn(_name))


def _wrapped(config: dict[str, Any], key: str) -> tuple[str, dict[str, Any]] | None:
    inner = config.get(key)
    if not isinstance(inner, dict):
        return None
    return str(inner.get("class_name")), dict(inner.get("config") or {})


def _bidirectional_layers(config: dict[str, Any]) -> tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]:
    forward = _wrapped(config, "layer")
    if forward is None:
        raise ValueError("Bidirectional config without 'layer'")
    backward = _wrapped(config, "backward_layer")
    if backward is None:  # Keras builds the backward layer from the forward config, reversed
        backward = (forward[0], {**forward[1], "go_backwards": not forward[1].get("go_backwards", False)})
    return forward, backward


def _bidirectional_roles(config: dict[str, Any]) -> list[str]:
    (_, fwd), (_, bwd) = _bidirectional_layers(config)
    return [f"forward_{r}" for r in _rnn_roles(fwd)] + [f"backward_{r}" for r in _rnn_roles(bwd)]


_MERGES = {"concat": ("Concatenate", {"axis": -1}), "sum": ("Add", {}), "mul": ("Multiply", {}),
           "ave": ("Average", {})}


@layer("Bidirectional", roles=_bidirectional_roles)
def bidirectional(call: LayerCall) -> list[Any]:
    (f_class, f_config), (b_class, b_config) = _bidirectional_layers(call.config)
    for class_name in (f_class, b_class):
        if class_name not in RNNS:
            raise call.unsupported(f"wraps a {class_name}", sorted(RNNS))
    sequences = bool(f_config.get("return_sequences", False))
    # Keras forces zero outputs at masked steps when the wrapped layers return sequences.
    f_config = {**f_config, "zero_output_for_mask": sequences}
    b_config = {**b_config, "zero_output_for_mask": sequences}
    states = _initial_states(call)
    half = len(states) // 2
    weights = {side: {r.split("_", 1)[1]: w for r, w in call.weights.items() if r.startswith(f"{side}_")}
               for side in ("forward", "backward")}
    forward = _rnn_emit(call, f_class, f_config, weights["forward"], states[:half], "forward")
    backward = _rnn_emit(call, b_class, b_config, weights["backward"], states[half:], "backward")
    emits: list[Any] = [forward, backward]
    outputs: list[Source] = ["forward:0", "backward:0"]
    if sequences:
        emits.append(Emit("ReverseTime", {}, suffix="backward_reversed", inputs=["backward:0"]))
        outputs[1] = "backward_reversed"
    merge_mode = call.config.get("merge_mode", "concat")
    if merge_mode is not None:
        if merge_mode not in _MERGES:
            raise call.unsupported(f"has merge_mode={merge_mode!r}", [*_MERGES, "None"])
        op, attrs = _MERGES[merge_mode]
        emits.append(Emit(op, attrs, suffix="merged", inputs=outputs))
        outputs = ["merged"]
    mask = call.mask(0) if sequences else None
    n_states = RNNS[f_class] if forward.attrs["return_state"] else 0
    states_out: list[Source] = ([f"forward:{i + 1}" for i in range(n_states)]
                                + [f"backward:{i + 1}" for i in range(n_states)])
    return [*emits, Outputs(outputs + states_out, masks=[mask] * len(outputs) + [None] * len(states_out))]


# -- TimeDistributed -------------------------------------------------------------------

def _inner(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    inner = _wrapped(config, "layer")
    if inner is None:
        raise ValueError("TimeDistributed config without 'layer'")
    return inner


def _time_distributed_roles(config: dict[str, Any]) -> list[str]:
    """The wrapped layer's roles: TimeDistributed holds only that layer's variables."""
    class_name, inner = _inner(config)
    return LAYERS[class_name].roles(inner) if class_name in LAYERS else []


@layer("TimeDistributed", roles=_time_distributed_roles)
def time_distributed(call: LayerCall) -> list[Any]:
    class_name, config = _inner(call.config)
    if class_name not in LAYERS or class_name in ("TimeDistributed", "Bidirectional", *RNNS):
        raise call.unsupported(f"wraps a {class_name}", ["layers of the table that act on one step"])
    x = call.x
    if len(x.shape) < 3:
        raise call.unsupported(f"is applied to a rank-{len(x.shape)} tensor", ["(batch, time, ...) inputs"])
    step = TensorSpec(f"{call.name}/fold", x.dtype, (None, *x.shape[2:]))
    inner = LayerCall(call.name, class_name, config, call.weights, [step], keras_version=call.keras_version)
    emits = LAYERS[class_name].convert(inner)
    if any(not isinstance(e, Emit) or e.inputs is not None for e in emits):
        raise call.unsupported(f"wraps a {class_name}, whose conversion is not a chain of nodes",
                               ["Dense", "convolutions", "pooling", "activations", "normalization"])
    if class_name == "Dense" or not emits:  # acts on the last axis: no need to fold time into the batch
        return emits
    labels = [e.suffix or e.op for e in emits]
    if "fold" in labels or len(set(labels)) != len(labels):
        raise call.unsupported(f"wraps a {class_name} whose nodes cannot be labelled apart")
    emits[0].inputs = ["fold"]
    return [Emit("FoldTime", {}, suffix="fold", inputs=[0]), *emits,
            Emit("UnfoldTime", {}, suffix="unfold", inputs=[labels[-1], 0])]


# -- attention -------------------------------------------------------------------------

def _mha_roles(config: dict[str, Any]) -> list[str]:
    bias = config.get("use_bias", True)
    return [f"{part}_{w}" for part in ("query", "key", "value", "output") for w in (("kernel", "bias") if bias
                                                                                   else ("kernel",))]


def _argument(call: LayerCall, index: int, key: str) -> Any:
    """Argument ``key`` of the call, passed as positional ``index`` or by keyword."""
    if len(call.args) > index:
        return call.args[index]
    return call.kwargs.get(key)


@layer("MultiHeadAttention", roles=_mha_roles)
def multi_head_attention(call: LayerCall) -> list[Any]:
    c = call.config
    if c.get("use_gate"):
        raise call.unsupported("uses a gate (use_gate=True)", ["use_gate=False"])
    if c.get("sliding_window") is not None:
        raise call.unsupported("uses a sliding window", ["sliding_window=None"])
    if _argument(call, 7, "return_attention_scores"):
        raise call.unsupported("returns its attention scores", ["return_attention_scores=False"])
    query, value, key = (_argument(call, i, k) for i, k in enumerate(("query", "value", "key")))
    if not isinstance(query, TensorSpec) or not isinstance(value, TensorSpec):
        raise call.unsupported("is not called on query and value tensors", ["mha(query, value, key=None)"])
    if len(query.shape) != 3:
        raise call.unsupported(f"has a rank-{len(query.shape)} query", ["(batch, time, features) inputs"])
    axes = c.get("attention_axes")
    if axes not in (None, [1], [-2], 1, -2):
        raise call.unsupported(f"attends over axes {axes}", ["attention_axes=None (the time axis)"])
    output_dim = c.get("output_shape")
    if isinstance(output_dim, list):
        if len(output_dim) != 1:
            raise call.unsupported(f"has output_shape={output_dim}", ["an int output_shape"])
        output_dim = output_dim[0]
    attrs = {"num_heads": int(c["num_heads"]), "key_dim": int(c["key_dim"]),
             "value_dim": int(c.get("value_dim") or c["key_dim"]),
             "output_dim": int(output_dim or query.shape[-1]), "use_bias": bool(c.get("use_bias", True)),
             "use_causal_mask": bool(call.kwargs.get("use_causal_mask", False))}
    inputs: list[Source] = [query, value, key if isinstance(key, TensorSpec) else value]
    extras = [("attention", _argument(call, 6, "attention_mask")), ("query", call.mask_of(query)),
              ("value", call.mask_of(value)), ("key", call.mask_of(key) if isinstance(key, TensorSpec) else None)]
    for which, tensor in extras:
        if tensor is not None and not isinstance(tensor, TensorSpec):
            raise call.unsupported(f"has a {which} mask that is not a tensor of the model", ["tensor masks"])
        attrs[f"has_{which}_mask"] = tensor is not None
        if tensor is not None:
            inputs.append(tensor)
    emit = Emit("MultiHeadAttention", attrs, call.weights, inputs=inputs)
    return [emit, Outputs(["MultiHeadAttention"], masks=[call.mask_of(query)])]


def _attention_roles(config: dict[str, Any]) -> list[str]:
    return ((["scale"] if config.get("use_scale") else [])
            + (["concat_score_weight"] if config.get("score_mode", "dot") == "concat" else []))


@layer("Attention", roles=_attention_roles)
def attention(call: LayerCall) -> list[Any]:
    c = call.config
    score_mode = c.get("score_mode", "dot")
    if score_mode not in ("dot", "concat"):
        raise call.unsupported(f"has score_mode={score_mode!r}", ["dot", "concat"])
    if call.kwargs.get("return_attention_scores"):
        raise call.unsupported("returns its attention scores", ["return_attention_scores=False"])
    if len(call.inputs) not in (2, 3):
        raise call.unsupported(f"is called on {len(call.inputs)} tensors", ["[query, value]", "[query, value, key]"])
    query, value = call.inputs[:2]
    key = call.inputs[2] if len(call.inputs) == 3 else value
    q_mask, v_mask = call.mask(0), call.mask(1)
    attrs = {"score_mode": score_mode, "use_causal_mask": bool(call.kwargs.get("use_causal_mask", False)),
             "has_query_mask": q_mask is not None, "has_value_mask": v_mask is not None}
    inputs: list[Source] = [query, value, key] + [m for m in (q_mask, v_mask) if m is not None]
    weights = {role: w.reshape(()) for role, w in call.weights.items()}
    return [Emit("Attention", attrs, weights, inputs=inputs), Outputs(["Attention"], masks=[q_mask])]
