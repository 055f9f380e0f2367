"""The Dense kernel: one GEMM over every row of the input."""

from __future__ import annotations

import math

from runtime.kernels import kernel
from runtime.kernels.activations import apply_activation


@kernel("Dense")
def dense(x, *, units, activation, use_bias, kernel, bias=None):
    """activation(x @ kernel + bias) over the last axis of x (any rank)."""
    lead = x.shape[:-1]
    y = x.reshape(math.prod(lead), x.shape[-1]) @ kernel
    if bias is not None:
        y += bias
    return apply_activation(y, activation, inplace=True).reshape(*lead, kernel.shape[1])
