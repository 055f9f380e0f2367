"""runtime.blas: the one-thread context sets numpy's BLAS libraries to one thread and restores each one's count."""

from __future__ import annotations

import pytest

from runtime import blas

threadpoolctl = pytest.importorskip("threadpoolctl")


def counts() -> list[int]:
    """The thread counts of the BLAS libraries runtime.blas controls (numpy's, loaded with it)."""
    return [lib.num_threads for lib in blas._controller().lib_controllers]


def test_one_thread_limits_then_restores():
    with threadpoolctl.threadpool_limits(2, "blas"):
        assert counts() and set(counts()) == {2}
        with blas.one_thread():
            assert set(counts()) == {1}
        assert set(counts()) == {2}


def test_one_thread_restores_after_an_error():
    with threadpoolctl.threadpool_limits(2, "blas"):
        with pytest.raises(RuntimeError, match="inside"), blas.one_thread():
            raise RuntimeError("inside")
        assert set(counts()) == {2}

