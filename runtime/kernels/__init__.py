"""Kernel registry: one small numpy function per catalogue op.

A kernel maps input arrays to output arrays. It is called as
``fn(*inputs, **attrs, **weights)``: inputs positionally, every attr of the
op (defaults filled in by validation) and every weight by its role as keyword
arguments. It returns one array, or a tuple for multi-output ops. Arity,
dtype and shape checks happen once, in the planner, not here.
"""

from __future__ import annotations

from collections.abc import Callable

from savedmodel.ops import OPS

Kernel = Callable[..., object]
KERNELS: dict[str, Kernel] = {}


def kernel(name: str) -> Callable[[Kernel], Kernel]:
    """Register the decorated function as the kernel of catalogue op ``name``."""
    if name not in OPS:
        raise ValueError(f"no op {name!r} in the catalogue; declare it in savedmodel.ops first")

    def register(fn: Kernel) -> Kernel:
        if name in KERNELS:
            raise ValueError(f"kernel {name!r} is registered twice")
        KERNELS[name] = fn
        return fn

    return register


def get_kernel(name: str) -> Kernel:
    from runtime.errors import UnsupportedOpError

    try:
        return KERNELS[name]
    except KeyError:
        raise UnsupportedOpError(name, sorted(KERNELS)) from None


# Importing the kernel modules fills KERNELS.
from runtime.kernels import activations, conv, dense, merge, norm, numeric, pooling, sequence, shape  # noqa: E402,F401
