"""Keras mask propagation: which mask each layer's output carries.

Keras attaches a (batch, time) mask to a tensor (``Embedding(mask_zero=True)``,
``Masking``) and hands it on: a layer that supports masking and does not
compute its own passes its first input's mask on, a merge layer ORs its
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

# Merge layers whose output mask is the OR of their inputs' masks when every input has one (else none); the
# values are the plain merge. Concatenate along the last axis gives the same mask.
OR_MERGES = frozenset({"Add", "Subtract", "Average", "Concatenate"})

# Merge layers that, in Keras 3, also change the values under a mask (masked entries become the identity of the
# operation): the importer refuses masked inputs to them rather than compute something else.
VALUE_MASKING_MERGES = frozenset({"Multiply", "Maximum", "Minimum"})


def default_rule(class_name: str, is_op: bool) -> str:
    """How a layer without its own mask logic treats masks: "pass", "or", "refuse" or "drop"."""
    if is_op:
        return "drop"
    if class_name in PASS_THROUGH:
        return "pass"
    if class_name in OR_MERGES:
        return "or"
    if class_name in VALUE_MASKING_MERGES:
        return "refuse"
    return "drop"
