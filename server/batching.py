"""Running inference off the event loop, alone or merged into dynamic batches.

``DirectRunner`` runs each request in the inference thread pool.
``Batcher`` queues requests per (model, version, signature, row shape) and
runs what has queued as one call, TF Serving style: a batch starts as soon
as an inference thread is free, waiting at most ``batch_timeout_micros``
for more rows when it is not full; it holds at most ``max_batch_size`` rows
(a larger request runs alone), is padded up to the next of
``allowed_batch_sizes``, and its outputs are split back row by row. A queue
holding ``max_enqueued_batches`` full batches refuses more (QueueFull, 503).

Requests are validated before they are queued. If a merged run still fails,
each of its requests is run alone, so an error reaches only the request
that caused it.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from server.errors import QueueFull
from server.settings import BatchingParameters

logger = logging.getLogger("server")

Outputs = dict[str, np.ndarray]
Function = Callable[..., Outputs]


class BatchObserver(Protocol):
    def batch_done(self, model: str, requests: int, rows: int, padded_rows: int, waits: list[float]) -> None: ...


class DirectRunner:
    """Runs each request by itself in the inference thread pool."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    def submit(self, model: str, key: Hashable, fn: Function, inputs: dict[str, np.ndarray],
               rows: int) -> asyncio.Future[Outputs]:
        """Start ``fn(**inputs)`` in the pool; the future has its outputs."""
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, functools.partial(fn, **inputs))


@dataclass
class _Task:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[Outputs]
    enqueued: float


@dataclass
class _Queue:
    model: str
    fn: Function
    tasks: deque[_Task] = field(default_factory=deque)
    rows: int = 0
    draining: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


class Batcher:
    """Merges concurrent requests for the same signature into one run; see the module docstring."""

    def __init__(self, params: BatchingParameters, executor: Executor, observer: BatchObserver | None = None) -> None:
        self.params = params
        self._executor = executor
        self._observer = observer
        self._queues: dict[Hashable, _Queue] = {}
        self._slots: asyncio.Semaphore | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self._limit = params.max_enqueued_batches * params.max_batch_size

    def submit(self, model: str, key: Hashable, fn: Function, inputs: dict[str, np.ndarray],
               rows: int) -> asyncio.Future[Outputs]:
        """Queue one validated request (``rows`` rows in every input); the future has its own outputs.

        Raises QueueFull at once when the queue is full. Cancelling the
        future withdraws the request if its batch has not started.
        """
        shapes = tuple((name, arr.shape[1:], arr.dtype.str) for name, arr in inputs.items())
        qkey = (key, shapes)
        queue = self._queues.get(qkey)
        if queue is None:
            queue = self._queues[qkey] = _Queue(model, fn)
        if queue.tasks and queue.rows + rows > self._limit:
            raise QueueFull()
        future: asyncio.Future[Outputs] = asyncio.get_running_loop().create_future()
        queue.tasks.append(_Task(inputs, rows, future, time.perf_counter()))
        queue.rows += rows
        queue.arrived.set()
        if not queue.draining:
            queue.draining = True
            self._spawn(self._drain(qkey, queue))
        return future

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _drain(self, qkey: Hashable, queue: _Queue) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.params.num_batch_threads)
        slots = self._slots
        try:
            while queue.tasks:
                await slots.acquire()
                try:
                    if self.params.batch_timeout_micros:
                        await self._wait_for_rows(queue)
                    batch = self._take(queue)
                except BaseException:
                    slots.release()
                    raise
                if not batch:
                    slots.release()
                    continue
                self._spawn(self._execute(queue, batch, slots))
        finally:
            queue.draining = False
            if not queue.tasks and self._queues.get(qkey) is queue:
                del self._queues[qkey]

    async def _wait_for_rows(self, queue: _Queue) -> None:
        if not queue.tasks:
            return
        deadline = queue.tasks[0].enqueued + self.params.batch_timeout_micros / 1e6
        while queue.rows < self.params.max_batch_size:
            left = deadline - time.perf_counter()
            if left <= 0:
                return
            queue.arrived.clear()
            try:
                await asyncio.wait_for(queue.arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _take(self, queue: _Queue) -> list[_Task]:
        batch: list[_Task] = []
        rows = 0
        while queue.tasks:
            task = queue.tasks[0]
            if task.future.done():  # cancelled: its caller timed out or went away
                queue.tasks.popleft()
                queue.rows -= task.rows
                continue
            if batch and rows + task.rows > self.params.max_batch_size:
                break
            queue.tasks.popleft()
            queue.rows -= task.rows
            batch.append(task)
            rows += task.rows
            if rows >= self.params.max_batch_size:
                break
        return batch

    async def _execute(self, queue: _Queue, batch: list[_Task], slots: asyncio.Semaphore) -> None:
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            run = functools.partial(run_batch, queue.fn, [t.inputs for t in batch], self.params.allowed_batch_sizes)
            results, padded = await loop.run_in_executor(self._executor, run)
            for task, result in zip(batch, results, strict=True):
                if task.future.done():
                    continue
                if isinstance(result, BaseException):
                    task.future.set_exception(result)
                else:
                    task.future.set_result(result)
            if self._observer is not None:
                rows = sum(t.rows for t in batch)
                self._observer.batch_done(queue.model, len(batch), rows, padded, [started - t.enqueued for t in batch])
        except BaseException as e:
            for task in batch:
                if not task.future.done():
                    task.future.set_exception(e)
            if not isinstance(e, Exception):
                raise
        finally:
            slots.release()


def _padded_size(rows: int, allowed: tuple[int, ...]) -> int:
    i = bisect.bisect_left(allowed, rows)
    return allowed[i] if i < len(allowed) else rows


def run_batch(
    fn: Function, inputs: list[dict[str, np.ndarray]], allowed: tuple[int, ...] = ()
) -> tuple[list[Outputs | Exception], int]:
    """Run requests as one call; returns each request's outputs (or error) and the executed batch size.

    Inputs are concatenated along axis 0 and padded with copies of the first
    row up to the next allowed batch size; every output is split back by
    the same offsets. When the merged call fails, or an output has no batch
    dimension to split on, every request runs alone.
    """
    counts = [len(next(iter(i.values()))) if i else 0 for i in inputs]
    total = sum(counts)
    size = _padded_size(total, allowed)
    if len(inputs) == 1 and size == total:
        return [_alone(fn, inputs[0])], total
    merged = {}
    for name in inputs[0]:
        parts = [i[name] for i in inputs]
        if size > total:
            parts.append(np.repeat(parts[0][:1], size - total, axis=0))
        merged[name] = np.concatenate(parts)
    try:
        outputs = fn(**merged)
        if any(np.ndim(v) == 0 or len(v) != size for v in outputs.values()):
            raise ValueError("an output has no batch dimension to split on")
    except Exception as e:
        logger.debug("merged batch of %d requests failed (%s); running them one by one", len(inputs), e)
        return [_alone(fn, i) for i in inputs], total
    results: list[Outputs | Exception] = []
    start = 0
    for n in counts:
        results.append({k: v[start:start + n] for k, v in outputs.items()})
        start += n
    return results, size


def _alone(fn: Function, inputs: dict[str, np.ndarray]) -> Outputs | Exception:
    try:
        return fn(**inputs)
    except Exception as e:
        return e
