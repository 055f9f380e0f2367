"""server.pool.InferencePool: model calls off the event loop, as ThreadPoolExecutor runs them."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import CancelledError, ThreadPoolExecutor

import pytest

from server.pool import InferencePool, run_in_thread


def test_run_returns_the_result_from_a_pool_thread() -> None:
    pool = InferencePool(2, "infer")
    loop_thread = threading.current_thread().name

    async def scenario() -> list[str]:
        return await asyncio.gather(*(pool.run(lambda: threading.current_thread().name) for _ in range(8)))

    names = asyncio.run(scenario())
    pool.shutdown()
    assert set(names) <= {"infer_0", "infer_1"} and loop_thread not in names


def test_run_raises_what_the_call_raised() -> None:
    pool = InferencePool(1)

    def fail() -> None:
        raise ValueError("bad input")

    async def scenario() -> None:
        await pool.run(fail)

    with pytest.raises(ValueError, match="^bad input$"):
        asyncio.run(scenario())
    pool.shutdown()


def test_at_most_threads_calls_run_at_once() -> None:
    pool = InferencePool(2)
    running, peak = 0, 0
    lock = threading.Lock()

    def call() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.01)
        with lock:
            running -= 1

    async def scenario() -> None:
        await asyncio.gather(*(pool.run(call) for _ in range(10)))

    asyncio.run(scenario())
    pool.shutdown()
    assert peak == 2


def test_a_call_cancelled_before_it_starts_does_not_run() -> None:
    pool = InferencePool(1)
    started = threading.Event()
    release = threading.Event()
    ran = []

    def block() -> str:
        started.set()
        release.wait(5)
        return "first"

    async def scenario() -> str:
        first = pool.run(block)
        second = pool.run(lambda: ran.append("second"))
        await asyncio.to_thread(started.wait, 5)
        second.cancel()
        release.set()
        return await first

    assert asyncio.run(scenario()) == "first"
    pool.shutdown()
    assert ran == []


def test_shutdown_cancels_queued_calls_and_refuses_new_ones() -> None:
    pool = InferencePool(1)
    started = threading.Event()
    release = threading.Event()

    def block() -> str:
        started.set()
        release.wait(5)
        return "done"

    async def scenario() -> tuple[str, bool]:
        first = pool.run(block)
        queued = pool.run(lambda: "never")
        await asyncio.to_thread(started.wait, 5)
        pool.shutdown(wait=False, cancel_futures=True)
        release.set()
        result = await first
        with pytest.raises(asyncio.CancelledError):
            await queued
        return result, queued.cancelled()

    assert asyncio.run(scenario()) == ("done", True)
    with pytest.raises(RuntimeError, match="^cannot schedule new calls after the inference pool has shut down$"):
        pool.submit(print)


def test_submit_is_a_concurrent_futures_executor() -> None:
    with InferencePool(2) as pool:
        assert pool.submit(pow, 2, 10).result(5) == 1024
        assert list(pool.map(abs, [-1, -2, 3])) == [1, 2, 3]
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result(5)


def test_submit_cancelled_before_it_starts_does_not_run() -> None:
    pool = InferencePool(1)
    release = threading.Event()
    ran = []
    first = pool.submit(release.wait, 5)
    second = pool.submit(ran.append, "second")
    assert second.cancel()
    release.set()
    assert first.result(5) is True
    pool.shutdown()
    assert ran == [] and second.cancelled()
    with pytest.raises(CancelledError):
        second.result()


def test_run_in_thread_takes_any_executor() -> None:
    async def scenario(executor) -> int:
        return await run_in_thread(executor, lambda: 6 * 7)

    with ThreadPoolExecutor(1) as executor:
        assert asyncio.run(scenario(executor)) == 42
    pool = InferencePool(1)
    assert asyncio.run(scenario(pool)) == 42
    pool.shutdown()


def test_a_pool_needs_a_thread() -> None:
    with pytest.raises(ValueError, match="^An inference pool needs at least 1 thread, got 0$"):
        InferencePool(0)


def test_no_thread_starts_before_the_first_call() -> None:
    before = threading.active_count()
    pool = InferencePool(4)
    assert threading.active_count() == before
    pool.shutdown()
