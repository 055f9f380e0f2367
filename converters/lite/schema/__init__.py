"""Generated TFLite schema code (a subset; see ``tflite.fbs``).

``T`` is the flatc-generated module: builder functions (``TensorStart``,
``TensorAddShape`` ...), table readers (``T.Model.GetRootAs``) and the enums
(``T.TensorType``, ``T.BuiltinOperator``, ``T.BuiltinOptions`` ...).
"""

from converters.lite.schema import tflite_generated as T

__all__ = ["T"]
