"""Plain tensor ops that graphs imported from ONNX need: matrix products,
transposes, gathers, reductions and elementwise math.

Unlike the Keras-level ops, axes here count the batch axis (axis 0), as in
ONNX and numpy.
"""

from __future__ import annotations
