"""Every file name, JSON key and number of the TF.js model format, in one place.

The writer, the reader and the validator use these constants, never literals.
Facts were measured against @tensorflow/tfjs 4.22 (see docs/WEB.md).

>>> MODEL_JSON, shard_name(1, 3)
('model.json', 'group1-shard1of3.bin')
"""

from __future__ import annotations

import re

# -- files -----------------------------------------------------------------------------
MODEL_JSON = "model.json"
SHARD_TEMPLATE = "group{group}-shard{index}of{count}.bin"
SHARD_RE = re.compile(r"^group(\d+)-shard(\d+)of(\d+)\.bin$")
DEFAULT_SHARD_SIZE = 4 * 1024 * 1024  # tensorflowjs_converter's default: what browsers cache well

# -- model.json top level --------------------------------------------------------------
KEY_FORMAT = "format"
KEY_GENERATED_BY = "generatedBy"
KEY_CONVERTED_BY = "convertedBy"
KEY_TOPOLOGY = "modelTopology"
KEY_MANIFEST = "weightsManifest"
KEY_USER_METADATA = "userDefinedMetadata"
KEY_SIGNATURE = "signature"
FORMAT_LAYERS = "layers-model"
FORMAT_GRAPH = "graph-model"

# -- weights manifest ------------------------------------------------------------------
KEY_PATHS = "paths"
KEY_WEIGHTS = "weights"
KEY_NAME = "name"
KEY_SHAPE = "shape"
KEY_DTYPE = "dtype"
KEY_QUANTIZATION = "quantization"
KEY_SCALE = "scale"
KEY_MIN = "min"
# Logical weight dtypes TF.js accepts, with their byte layout.
WEIGHT_DTYPES = {"float32": "<f4", "int32": "<i4", "bool": "|b1"}
# Stored dtypes of quantized weights.
QUANT_DTYPES = {"uint8": "|u1", "uint16": "<u2", "float16": "<f2"}
AFFINE_QUANT_DTYPES = ("uint8", "uint16")

# -- layers model (Keras-2 style topology) ---------------------------------------------
KERAS_VERSION = "2.13.1"  # the Keras-2 config dialect TF.js reads; Keras 3 configs fail to load
BACKEND = "tensorflow"
CLASS_SEQUENTIAL = "Sequential"
CLASS_FUNCTIONAL = "Functional"
FUNCTIONAL_CLASSES = ("Functional", "Model")
CLASS_INPUT = "InputLayer"
KEY_CLASS = "class_name"
KEY_CONFIG = "config"
KEY_LAYERS = "layers"
KEY_INBOUND = "inbound_nodes"
KEY_INPUT_LAYERS = "input_layers"
KEY_OUTPUT_LAYERS = "output_layers"
KEY_MODEL_CONFIG = "model_config"  # legacy wrapper {"model_config": {...}}
KEY_BATCH_INPUT_SHAPE = "batch_input_shape"
# A layer (and so a weight-name prefix) TF.js accepts; others fail "Not a valid tensor name".
NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._]*$")  # '/' excluded: it separates the weight name
TFJS_NAME_RE = re.compile(r"^[A-Za-z0-9][-A-Za-z0-9._/]*$")  # what TF.js itself checks

# -- graph model (GraphDef as proto3 JSON) ----------------------------------------------
KEY_NODE = "node"
KEY_OP = "op"
KEY_INPUT = "input"
KEY_ATTR = "attr"
KEY_VERSIONS = "versions"
OP_PLACEHOLDER = "Placeholder"
OP_CONST = "Const"

# -- our own metadata (userDefinedMetadata; TF.js ignores it) ----------------------------
META_KEY = "savedmodel"
META_INPUTS = "inputs"  # [[IR input name, layer/node name], ...]
META_OUTPUTS = "outputs"  # [[IR output name, layer/node name], ...]
META_GRAPH = "graph"  # graph models only: the IR graph (no weight values)
META_WEIGHTS = "weight_nodes"  # graph models only: {IR weight key: Const node name}

PRODUCER = "savedmodel-toolkit web converter"


def shard_name(index: int, count: int, group: int = 1) -> str:
    """The file name of shard ``index`` (1-based) of ``count``, as tensorflowjs_converter names them."""
    return SHARD_TEMPLATE.format(group=group, index=index, count=count)
