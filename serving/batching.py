"""Server-side batching in the manner of TF's SharedBatchScheduler.

Concurrent calls of the same signature (of the same model version) whose inputs agree on dtype and
non-batch shape are merged into one call of up to ``max_batch_size`` rows. A batch closes when full or
``batch_timeout_micros`` after it opened; ``num_batch_threads`` workers run closed batches, padded up to the
next ``allowed_batch_sizes`` entry. A queue holding ``max_enqueued_batches`` batches rejects new work with
UNAVAILABLE (HTTP 503). Each caller gets exactly its own rows back, so results match unbatched calls.

``run`` blocks its thread until the result is in (the threading REST carrier, large requests);
``submit`` only queues and calls back from the batch thread, so an event loop (the aiohttp REST carrier,
the grpc.aio server) waits for many calls without a thread each: ``LoopWaiter.run`` is that wait.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from serving.configs import BatchingOptions
from serving.errors import deadline_exceeded, invalid_argument, unavailable
from serving.monitoring import QUEUING_LATENCY, ServingMetrics
from serving.servable import Signature

log = logging.getLogger(__name__)

DEADLINE_MESSAGE = "Deadline exceeded while waiting for the batch to run"


class Task:
    """One queued call; ``result()`` is its share of the batch's outputs (or raises the batch's error)."""

    __slots__ = ("enqueued_at", "error", "inputs", "notify", "outputs", "size")

    def __init__(self, inputs: dict[str, np.ndarray], size: int, notify: Callable[[Task], None]) -> None:
        self.inputs = inputs
        self.size = size
        self.notify = notify
        self.enqueued_at = time.perf_counter()
        self.outputs: dict[str, np.ndarray] | None = None
        self.error: BaseException | None = None

    def result(self) -> dict[str, np.ndarray]:
        if self.error is not None:
            raise self.error
        return self.outputs


class _Batch:
    __slots__ = ("closes_at", "queue", "size", "tasks")

    def __init__(self, queue: _Queue, closes_at: float) -> None:
        self.queue = queue
        self.closes_at = closes_at
        self.tasks: list[Task] = []
        self.size = 0


class _Queue:
    __slots__ = ("enqueued", "key", "open", "signature")

    def __init__(self, key, signature: Signature) -> None:
        self.key = key
        self.signature = signature
        self.open: _Batch | None = None
        self.enqueued = 0  # batches waiting (the open one included)


class BatchScheduler:
    """Merges concurrent signature calls into batches run by a fixed pool of threads."""

    def __init__(self, options: BatchingOptions, metrics: ServingMetrics | None = None) -> None:
        self.options = options
        self._metrics = metrics
        self._cond = threading.Condition()
        self._queues: dict[object, _Queue] = {}
        self._ready: deque[_Batch] = deque()
        self._open: list[_Batch] = []
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._work, name=f"{options.thread_pool_name}-{i}", daemon=True)
            for i in range(options.num_batch_threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, signature: Signature, inputs: dict[str, np.ndarray], timeout: float | None) -> dict:
        """Queue one call and wait for its share of the batch result (at most ``timeout`` seconds)."""
        done = threading.Event()
        task = self.submit(signature, inputs, lambda _task: done.set())
        if not done.wait(None if timeout is None else min(timeout, threading.TIMEOUT_MAX)):
            raise deadline_exceeded(DEADLINE_MESSAGE)
        return task.result()

    def submit(
        self, signature: Signature, inputs: dict[str, np.ndarray], notify: Callable[[Task], None]
    ) -> Task:
        """Queue one call; ``notify(task)`` runs on a batch thread once ``task.result()`` is ready.

        Bad sizes (400) and a full queue (503) raise here, before anything is queued.
        """
        sizes = {value.shape[0] if value.ndim else None for value in inputs.values()}
        if len(sizes) != 1 or None in sizes:
            raise invalid_argument("Batching session Run() input tensors must have equal 0th-dimension size")
        size = sizes.pop()
        if size > self.options.max_batch_size:
            raise invalid_argument(
                f"Task size {size} is larger than maximum input batch size {self.options.max_batch_size}"
            )
        task = Task(inputs, size, notify)
        # Calls merge only when every input agrees on dtype and non-batch shape. Unsorted: callers build
        # their inputs in one order per signature, and this runs on every request.
        key = (id(signature), tuple([(a, v.dtype, v.shape[1:]) for a, v in inputs.items()]))
        with self._cond:
            if self._stopping:
                raise unavailable("The batch scheduler is shutting down")
            self._enqueue(key, signature, task)
            self._cond.notify()
        return task

    def _enqueue(self, key, signature: Signature, task: Task) -> None:
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(key, signature)
        batch = queue.open
        if batch is None or batch.size + task.size > self.options.max_batch_size:
            if queue.enqueued >= self.options.max_enqueued_batches:
                raise unavailable("The batch scheduling queue to which this task was submitted is full")
            if batch is not None:
                self._close(batch)
            batch = _Batch(queue, time.perf_counter() + self.options.batch_timeout_micros / 1e6)
            queue.open = batch
            queue.enqueued += 1
            self._open.append(batch)
        batch.tasks.append(task)
        batch.size += task.size
        if batch.size >= self.options.max_batch_size:
            self._close(batch)

    def _close(self, batch: _Batch) -> None:
        self._open.remove(batch)
        batch.queue.open = None
        self._ready.append(batch)

    def _next_batch(self) -> _Batch | None:
        with self._cond:
            while True:
                if self._ready:
                    batch = self._ready.popleft()
                    break
                wait = None
                if self._open:
                    oldest = min(self._open, key=lambda b: b.closes_at)
                    wait = oldest.closes_at - time.perf_counter()
                    if wait <= 0:
                        self._close(oldest)
                        continue
                elif self._stopping:
                    return None
                self._cond.wait(wait)
            queue = batch.queue
            queue.enqueued -= 1
            if queue.enqueued == 0 and self._queues.get(queue.key) is queue:
                del self._queues[queue.key]
            return batch

    def _work(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._execute(batch)

    def _execute(self, batch: _Batch) -> None:
        started = time.perf_counter()
        if self._metrics is not None:
            for task in batch.tasks:
                self._metrics.observe(
                    QUEUING_LATENCY, (self.options.thread_pool_name,), (started - task.enqueued_at) * 1e6
                )
        try:
            outputs = batch.queue.signature(self._merge(batch))
            offset = 0
            for task in batch.tasks:
                task.outputs = {}
                for alias, value in outputs.items():
                    if value.ndim == 0 or value.shape[0] < batch.size:
                        raise invalid_argument(f"Batched output tensor {alias} has no batch dimension")
                    task.outputs[alias] = value[offset : offset + task.size]
                offset += task.size
        except BaseException as error:  # every waiting caller must hear about it
            for task in batch.tasks:
                task.error = error
        for task in batch.tasks:
            try:
                task.notify(task)
            except Exception:  # one caller gone wrong must not keep the others waiting
                log.exception("Could not hand a batch result to its caller")

    def _merge(self, batch: _Batch) -> dict[str, np.ndarray]:
        if len(batch.tasks) == 1 and not self.options.allowed_batch_sizes:
            return batch.tasks[0].inputs
        merged = {
            alias: np.concatenate([task.inputs[alias] for task in batch.tasks])
            for alias in batch.tasks[0].inputs
        }
        sizes = self.options.allowed_batch_sizes
        if sizes:
            target = sizes[bisect.bisect_left(sizes, batch.size)]
            if target > batch.size:
                merged = {
                    alias: np.concatenate([value, np.repeat(value[:1], target - batch.size, axis=0)])
                    for alias, value in merged.items()
                }
        return merged

    def stop(self) -> None:
        """Run what is queued, then end the worker threads."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)


class LoopWaiter:
    """Awaits batch results on one event loop: one loop wake-up per finished batch, not one per call.

    Shared by the REST (aiohttp) and gRPC (grpc.aio) carriers, so a batched request never needs a thread
    of its own while it waits: the loop parses and checks it, queues it, and gets the whole batch's
    results back from the batch thread at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._lock = threading.Lock()
        self._finished: list[tuple[asyncio.Future, Task]] = []

    def _done(self, future: asyncio.Future, task: Task) -> None:
        """Called on a batch thread for each task of a batch that ran."""
        with self._lock:
            wake = not self._finished
            self._finished.append((future, task))
        if wake:
            self._loop.call_soon_threadsafe(self._deliver)

    def _deliver(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for future, task in finished:
            if not future.done():  # a request past its deadline has stopped waiting
                future.set_result(task)

    async def run(
        self,
        scheduler: BatchScheduler,
        signature: Signature,
        inputs: dict[str, np.ndarray],
        remaining: float | None,
    ) -> dict[str, np.ndarray]:
        """Queue one call and await its share of the batch (at most ``remaining`` seconds, if given)."""
        if remaining is not None and remaining <= 0:
            raise deadline_exceeded("Deadline exceeded")
        future = self._loop.create_future()
        scheduler.submit(signature, inputs, lambda task: self._done(future, task))
        timer = None if remaining is None else self._loop.call_later(remaining, _expire, future)
        try:
            task = await future
        finally:
            if timer is not None:
                timer.cancel()
        return task.result()


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(deadline_exceeded(DEADLINE_MESSAGE))
