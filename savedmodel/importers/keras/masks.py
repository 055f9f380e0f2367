"""Keras mask propagation: which mask each layer's output carries.

Keras attaches a (batch, time) mask to a tensor (``Embedding(mask_zero=True)``,
``Masking``) and hands it on: a layer that supports masking and does not
compute its own passes its first input's mask on, a merge layer combines its
inputs' masks, every other layer (and every keras.ops operation) drops it.
The graph builder tracks masks with these rules, for live models and files
alike (a Sequential model's file records no mask at all). Layers that make or
consume masks (``sequence.py``) give their output masks themselves.
"""

from __future__ import annotations

# Layers with Keras' default compute_mask (the first input's mask on the output).
PASS_THROUGH = frozenset({
    "Dense", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "LayerNormalization",
    "GroupNormalization", "BatchNormalization", "UnitNormalization", "Rescaling", "Normalization", "Dropout",
    "AlphaDropout", "GaussianDropout", "GaussianNoise", "ActivityRegularization", "Identity", "TimeDistributed",
})

# Merge layers: the output mask is the AND of the inputs' masks (those that have one).
MERGES = frozenset({"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum"})


def default_rule(class_name: str, is_op: bool) -> str:
    """How a layer without its own mask logic treats masks: "pass", "and" or "drop"."""
    if is_op:
        return "drop"
    if class_name in PASS_THROUGH:
        return "pass"
    if class_name in MERGES:
        return "and"
    return "drop"
