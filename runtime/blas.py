"""BLAS thread control shared by the kernels and the server.

OpenBLAS (numpy's BLAS) has a slow start on one thread: until it has run one
product of a few hundred rows on one thread, its small products take about
twice as long (measured: a 32x64 by 64x256 float32 product, 76 us before and
35 us after, for the rest of the process and in every thread). So whoever
limits BLAS to one thread also runs that one product, once per process.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import numpy as np


@functools.cache
def _controller():
    """threadpoolctl's view of the BLAS libraries numpy loaded, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController().select(user_api="blas")


@functools.cache
def warm_single_thread() -> None:
    """Run one 256x256 float32 product on one BLAS thread (about 2 ms, once per process)."""
    square = np.ones((256, 256), np.float32)
    controller = _controller()
    with contextlib.nullcontext() if controller is None else controller.limit(limits=1):
        np.matmul(square, square)


def limit_threads(n: int) -> None:
    """Cap BLAS at ``n`` threads for the rest of the process (warming the one-thread path when n is 1)."""
    controller = _controller()
    if controller is None:
        raise ImportError("limiting BLAS threads needs threadpoolctl (pip install threadpoolctl)")
    controller.limit(limits=n)
    if n == 1:
        warm_single_thread()


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """A context running BLAS on one thread (a few microseconds to enter), or a no-op without threadpoolctl.

    For loops of small products, where waking a BLAS thread pool for each
    product costs more than it saves. Sets each library's thread count
    directly: threadpoolctl's ``limit`` re-reads every library's state, which
    costs about 30 microseconds.
    """
    warm_single_thread()
    controller = _controller()
    changed = [] if controller is None else [
        (lib, n) for lib in controller.lib_controllers if (n := lib.num_threads) != 1]
    for lib, _ in changed:
        lib.set_num_threads(1)
    try:
        yield
    finally:
        for lib, n in changed:
            lib.set_num_threads(n)
