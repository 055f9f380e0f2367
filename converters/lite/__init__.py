"""converters.lite: .tflite files from bundles, post-training quantized, and back.

>>> from converters import lite
>>> report = lite.convert("models/mnist", "mnist_int8.tflite", representative_data=x_calib)  # doctest: +SKIP
>>> print(report)                                                                           # doctest: +SKIP

``convert`` lowers the graph to TFLite builtin ops, calibrates activation
ranges on representative data with this toolkit's runtime, quantizes to int8
as TF's converter does (or to float16 / dynamic-range weights), validates the
quantization rules LiteRT does not check, and writes a standard TFLite
flatbuffer. ``read`` parses a .tflite file (ours or TF's) into a LiteModel.
"""

from converters.errors import CalibrationDataError, ConversionError
from converters.lite.convert import MODES, convert
from converters.lite.model import LiteModel, Operator, QuantParams, SignatureDef, Tensor
from converters.lite.reader import parse, read
from converters.lite.report import ConversionReport, LayerError, OutputError
from converters.lite.validate import validate
from converters.lite.writer import serialize, write

__all__ = [
    "MODES", "CalibrationDataError", "ConversionError", "ConversionReport", "LayerError", "LiteModel", "Operator",
    "OutputError", "QuantParams", "SignatureDef", "Tensor", "convert", "parse", "read", "serialize", "validate",
    "write",
]
