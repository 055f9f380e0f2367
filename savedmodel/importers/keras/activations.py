"""Keras activations as the catalogue's ``activation`` vocabulary.

Keras serializes an activation as a name (``"relu"``), a module path
(``"keras.activations.relu"``), a function object
(``{"class_name": "function", "config": "relu", ...}``) or a layer object
(``{"class_name": "LeakyReLU", "config": {...}}``). :func:`resolve` maps each
to a catalogue name, or hands back an activation layer for the caller to add
as a node of its own.
"""

from __future__ import annotations

from typing import Any

from savedmodel.errors import UnsupportedError
from savedmodel.importers.keras.records import plain

# Keras 3 name (and alias) -> catalogue name. Keras' gelu is exact
# (approximate=False) and its leaky_relu has negative_slope=0.2, as the
# catalogue's.
KERAS_TO_IR = {
    "linear": "linear",
    "relu": "relu",
    "relu6": "relu6",
    "sigmoid": "sigmoid",
    "hard_sigmoid": "hard_sigmoid",
    "tanh": "tanh",
    "softmax": "softmax",
    "log_softmax": "log_softmax",
    "gelu": "gelu",
    "silu": "silu",
    "swish": "silu",
    "hard_silu": "hard_silu",
    "hard_swish": "hard_silu",
    "elu": "elu",
    "selu": "selu",
    "leaky_relu": "leaky_relu",
    "softplus": "softplus",
    "softsign": "softsign",
    "exponential": "exponential",
    "mish": "mish",
}

# Layers Keras accepts as an ``activation=`` object; the caller adds them as a node.
ACTIVATION_LAYERS = ("Activation", "ELU", "LeakyReLU", "ReLU", "Softmax")

# Keras 2 defined hard_sigmoid as clip(0.2 x + 0.5, 0, 1); Keras 3 as relu6(x + 3) / 6.
_CHANGED_IN_KERAS_3 = ("hard_sigmoid",)


def resolve(value: Any, *, what: str, kind: str, keras_version: str = "") -> str | tuple[str, dict[str, Any]]:
    """The catalogue name of a serialized Keras activation, or ``(class_name, config)``
    of an activation layer.

    Raises UnsupportedError (naming layer ``what`` of class ``kind``) for a
    custom function or an activation the catalogue lacks.

    >>> resolve("swish", what="dense", kind="Dense")
    'silu'
    """
    if value is None:
        return "linear"
    name: Any = value
    if isinstance(value, dict):
        cls, config, module = value.get("class_name"), value.get("config"), value.get("module")
        if cls in ACTIVATION_LAYERS and isinstance(config, dict):
            return cls, plain(config)
        if not (isinstance(config, str) and (module is None or str(module).startswith("keras"))):
            raise _unsupported(f"{cls or value!r} from module {module!r}", what, kind)
        name = config
    if not isinstance(name, str):
        raise _unsupported(repr(name), what, kind)
    short = name.rsplit(".", 1)[-1]
    if short in _CHANGED_IN_KERAS_3 and keras_version.split(".")[0] in ("1", "2"):
        raise UnsupportedError(
            f"Layer {what!r} ({kind}) uses the Keras {keras_version} activation {short!r}, which Keras 3 "
            "redefined; the catalogue has the Keras 3 form only. Re-save the model with Keras 3 or use "
            "another activation.",
            what=what, kind=kind, supported=sorted(set(KERAS_TO_IR) - set(_CHANGED_IN_KERAS_3)),
        )
    if short not in KERAS_TO_IR:
        raise _unsupported(repr(name), what, kind)
    return KERAS_TO_IR[short]


def _unsupported(shown: str, what: str, kind: str) -> UnsupportedError:
    return UnsupportedError(
        f"Layer {what!r} ({kind}) uses the activation {shown}, which has no equivalent in the op catalogue.",
        what=what, kind=kind, supported=sorted(KERAS_TO_IR) + [f"{c} layer" for c in ACTIVATION_LAYERS],
    )
