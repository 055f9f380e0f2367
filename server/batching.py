"""Running inference off the event loop, alone or merged into dynamic batches.

``DirectRunner`` runs each request in the inference thread pool.
``Batcher`` queues requests per (model, version, signature, row shape) and
runs what has queued as one call, TF Serving style: a batch starts as soon
as an inference thread is free (at the end of the event loop turn that
queued its first request), waiting at most ``batch_timeout_micros``
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

from server.errors import QueueFull, Unavailable
from server.pool import run_in_thread
from server.settings import BatchingParameters

logger = logging.getLogger("server")

Outputs = dict[str, np.ndarray]
Function = Callable[..., Outputs]


class RunObserver(Protocol):
    def batch_done(self, model: str, requests: int, rows: int, padded_rows: int, waits: list[float]) -> None: ...

    def runtime_done(self, model: str, seconds: float) -> None: ...


def timed(fn: Function, model: str, observer: RunObserver | None) -> Function:
    """``fn`` telling ``observer.runtime_done`` how long each of its successful calls took."""
    if observer is None:
        return fn

    def call(**inputs: np.ndarray) -> Outputs:
        start = time.perf_counter()
        outputs = fn(**inputs)
        observer.runtime_done(model, time.perf_counter() - start)
        return outputs

    return call


class DirectRunner:
    """Runs each request by itself in the inference thread pool."""

    def __init__(self, executor: Executor, observer: RunObserver | None = None) -> None:
        self._executor = executor
        self._observer = observer

    def submit(self, model: str, key: Hashable, fn: Function, inputs: dict[str, np.ndarray],
               rows: int) -> asyncio.Future[Outputs]:
        """Start ``fn(**inputs)`` in the pool; the future has its outputs."""
        return run_in_thread(self._executor, functools.partial(timed(fn, model, self._observer), **inputs))


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
    timer: asyncio.TimerHandle | None = None  # set while waiting for a fuller batch


class Batcher:
    """Merges concurrent requests for the same signature into one run; see the module docstring.

    Everything but the model call happens on the event loop, without
    locks: ``submit`` queues a request and dispatches what can start; a
    finished batch frees its thread and dispatches again; a timer does so
    when a partial batch has waited ``batch_timeout_micros``.
    """

    def __init__(self, params: BatchingParameters, executor: Executor, observer: RunObserver | None = None) -> None:
        self.params = params
        self._executor = executor
        self._observer = observer
        self._queues: dict[Hashable, _Queue] = {}
        self._free = params.num_batch_threads
        self._timeout = params.batch_timeout_micros / 1e6
        self._limit = params.max_enqueued_batches * params.max_batch_size
        self._draining = False
        self._dispatch_due = False  # a dispatch is scheduled for the end of this event loop turn

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
        if not self._dispatch_due:
            self._dispatch_due = True
            asyncio.get_running_loop().call_soon(self._dispatch_queued)
        return future

    def _dispatch_queued(self) -> None:
        """Dispatch what was queued during this event loop turn.

        The requests whose bytes arrived together are parsed in one turn of
        the loop; dispatching after it, not at each submit, lets them join one
        batch instead of the first one starting alone on a free thread. With 8
        clients (bench_server.py, the CNN), one-request batches fell from about
        65% of the batches to about 20%; a lone request waits one loop turn.
        """
        self._dispatch_due = False
        self._dispatch_all()

    def _dispatch(self, qkey: Hashable, queue: _Queue) -> None:
        """Start batches from ``queue`` while threads are free and a batch is due."""
        while self._free and queue.tasks:
            if self._timeout and queue.rows < self.params.max_batch_size and not self._draining:
                wait = queue.tasks[0].enqueued + self._timeout - time.perf_counter()
                if wait > 0:
                    if queue.timer is None:
                        queue.timer = asyncio.get_running_loop().call_later(wait, self._on_timer, qkey, queue)
                    return
            batch = self._take(queue)
            if batch:
                self._start(queue, batch)
        if not queue.tasks and queue.timer is None and self._queues.get(qkey) is queue:
            del self._queues[qkey]

    @property
    def busy(self) -> bool:
        """Whether a request is queued or a batch is running."""
        return self._free < self.params.num_batch_threads or any(q.tasks for q in self._queues.values())

    async def drain(self, timeout: float) -> bool:
        """Run everything queued at once, without waiting for fuller batches, and wait until all batches finish.

        Called at shutdown, so that requests accepted before it get their
        answers. Returns False if work was still left after ``timeout`` seconds.
        """
        self._draining = True
        self._dispatch_all()
        deadline = time.monotonic() + timeout
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if self.busy:
            logger.error("batches still queued or running after %.1f s of shutdown; they are dropped", timeout)
        return not self.busy

    def _on_timer(self, qkey: Hashable, queue: _Queue) -> None:
        queue.timer = None
        self._dispatch(qkey, queue)

    def _dispatch_all(self) -> None:
        """A thread became free: serve the queue whose oldest request has waited longest first."""
        waiting = sorted((q.tasks[0].enqueued, i, k, q) for i, (k, q) in enumerate(self._queues.items()) if q.tasks)
        for _, _, qkey, queue in waiting:
            if not self._free:
                return
            self._dispatch(qkey, queue)

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

    def _start(self, queue: _Queue, batch: list[_Task]) -> None:
        self._free -= 1
        started = time.perf_counter()
        run = functools.partial(run_batch, timed(queue.fn, queue.model, self._observer), [t.inputs for t in batch],
                                self.params.allowed_batch_sizes)
        done = run_in_thread(self._executor, run)
        done.add_done_callback(functools.partial(self._finish, queue, batch, started))

    def _finish(self, queue: _Queue, batch: list[_Task], started: float, done: asyncio.Future[Any]) -> None:
        self._free += 1
        try:
            results, padded = done.result()
        except asyncio.CancelledError:  # the pool was shut down under the batch
            results, padded = [Unavailable("The server is shutting down")] * len(batch), 0
        except Exception as e:  # the executor itself failed: fail the whole batch
            results, padded = [e] * len(batch), 0
        for task, result in zip(batch, results, strict=True):
            if task.future.done():
                continue
            if isinstance(result, BaseException):
                task.future.set_exception(result)
            else:
                task.future.set_result(result)
        if self._observer is not None and padded:
            rows = sum(t.rows for t in batch)
            self._observer.batch_done(queue.model, len(batch), rows, padded, [started - t.enqueued for t in batch])
        self._dispatch_all()


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
