"""File names, HDF5 paths and JSON keys of the Keras file formats we read.

``.keras`` (Keras 3): a zip of ``config.json`` (the serialized model),
``metadata.json`` (``keras_version``) and ``model.weights.h5``, where a
layer's variables are datasets ``0..n`` under ``layers/<snake_case class
name>[_k]/vars`` (a nested model's layers one ``layers/`` level deeper), in
the order of the model's ``layers``; the ``vars`` group carries the layer
name as attribute ``name`` since Keras 3.x.

Legacy ``.h5`` (Keras 2, and Keras 3's ``model.save("x.h5")``): root
attributes ``model_config`` (JSON) and ``keras_version``; group
``model_weights/<layer name>`` lists its variables in attribute
``weight_names``, each a dataset at that path under the group.
"""

# .keras zip members
CONFIG_JSON = "config.json"
METADATA_JSON = "metadata.json"
WEIGHTS_H5 = "model.weights.h5"
SHARDED_WEIGHTS_JSON = "model.weights.json"

# model.weights.h5
LAYERS_GROUP = "layers"
VARS_GROUP = "vars"
VARS_NAME_ATTR = "name"

# Layers whose variables live in sublayers' groups (``layers/<layer>/<path>/vars``), in Keras' variable order.
SUBLAYER_VARS = {
    "SimpleRNN": ("cell",),
    "LSTM": ("cell",),
    "GRU": ("cell",),
    "Bidirectional": ("forward_layer/cell", "backward_layer/cell"),
    "TimeDistributed": ("layer",),
    "MultiHeadAttention": ("query_dense", "key_dense", "value_dense", "output_dense"),
}

# legacy .h5
MODEL_CONFIG_ATTR = "model_config"
KERAS_VERSION_ATTR = "keras_version"
MODEL_WEIGHTS_GROUP = "model_weights"
WEIGHT_NAMES_ATTR = "weight_names"

# JSON keys of a serialized model (both formats)
KEY_VERSION = "keras_version"
KEY_CLASS = "class_name"
KEY_MODULE = "module"
KEY_CONFIG = "config"
KEY_NAME = "name"
KEY_LAYERS = "layers"
KEY_INPUT_LAYERS = "input_layers"
KEY_OUTPUT_LAYERS = "output_layers"
KEY_INBOUND_NODES = "inbound_nodes"
KEY_ARGS = "args"
KEY_KWARGS = "kwargs"
KEY_BUILD_INPUT_SHAPE = "build_input_shape"
OPS_MODULES = ("keras.src.ops", "keras.ops")
