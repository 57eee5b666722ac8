"""The REST API on aiohttp: one event-loop thread owns every connection, a fixed pool runs the requests.

The default carrier for ``serving.rest.RestApi`` (same routes, limits, answers as the stdlib
``--rest_api_server=threading`` one). HTTP parsing and keep-alive bookkeeping happen in aiohttp's C parser
on one loop thread instead of a Python thread per connection. Measured (``benchmarks/serving_bench.py``):
with 64 keep-alive clients the thread-per-connection server's p99 was 13x its p50 (GIL contention among
64 threads); this one stays under 2x, and its overhead at concurrency 1 is lower.

With batching on, an inference request with a small body never leaves the loop thread except for the
model call: the loop parses and checks it, queues it with the batch scheduler, and gets the whole batch's
results back in one wake-up from the batch thread. Measured with 64 wrk clients on the taxi model: the
old path (a pool thread per request, blocked on its batch) handed the GIL among 128 threads, batches
averaged 7 rows and each model call took 20 ms (2.5 ms alone), 570 QPS; this path averages 21 rows per
batch at 6.6 ms per call, 1690 QPS, and a third of the CPU per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from concurrent import futures

import numpy as np
from aiohttp import web

from serving.batching import BatchScheduler, LoopWaiter
from serving.rest import Inference, Response, RestApi, RestCall, body_length, decode_body, log_dropped

# Bodies up to this size are parsed on the loop thread when batching is on (well under a millisecond);
# bigger ones go to the pool, so one large request cannot stall every connection.
LOOP_PARSE_MAX_BYTES = 64 * 1024


class AioRestServer:
    """Same interface as ``serving.rest.RestServer``: ``port``, ``start()``, ``stop(grace_seconds)``."""

    def __init__(self, api: RestApi, host: str, port: int, max_body_bytes: int, threads: int) -> None:
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self._in_flight = 0
        self._pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rest")
        self._socket = socket.create_server((host, max(port, 0)), backlog=1024, reuse_port=False)
        self.port = self._socket.getsockname()[1]
        self._loop = asyncio.new_event_loop()
        self._waiter = LoopWaiter(self._loop)
        self._idle: asyncio.Event | None = None
        self._runner: web.ServerRunner | None = None
        self._site: web.SockSite | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="rest-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()

    async def _open(self) -> None:
        self._idle = asyncio.Event()
        self._idle.set()
        # auto_decompress off: gzip is inflated by decode_body, which enforces the size limit.
        server = web.Server(self._handle, auto_decompress=False, keepalive_timeout=120, access_log=None)
        # _close has waited the drain already: then aiohttp cancels what is left at once (its default
        # waits 60 s more for handlers, whose inferences may be a backlog)
        self._runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=0.1)
        await self._runner.setup()
        self._site = web.SockSite(self._runner, self._socket)
        await self._site.start()

    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        self._in_flight += 1
        self._idle.clear()
        try:
            close = False
            body = b""
            if request.method in ("POST", "PUT", "PATCH"):
                body = await self._read_body(request)
            scheduler = self.api.scheduler
            preflight = self.api.preflight(request.method, request.headers)
            if preflight is not None:
                response = preflight
            elif isinstance(body, Response):
                response, close = body, True  # the unread body makes the connection unusable
            elif (
                scheduler is not None
                and len(body) <= LOOP_PARSE_MAX_BYTES
                and (target := self.api.inference_target(request.method, request.raw_path)) is not None
            ):
                response = await self._infer_batched(scheduler, target, body)
            else:
                response = await self._loop.run_in_executor(
                    self._pool, self.api.handle, request.method, request.raw_path, body
                )
            answer = web.Response(
                status=response.status,
                body=response.body,
                headers={"Content-Type": response.content_type, **dict(self.api.extra_headers())},
            )
            if close or self.draining:
                answer.force_close()
            return answer
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _infer_batched(self, scheduler: BatchScheduler, target: RestCall, body: bytes) -> Response:
        """An inference through the batch scheduler, answered on the loop: no thread waits for the batch."""
        call = self.api.start_inference(target, body)
        if isinstance(call, Response):
            return call
        try:
            outputs = await self._run_batched(scheduler, call)
        except Exception as error:
            return self.api.finish_inference(call, error=error)
        return self.api.finish_inference(call, outputs)

    async def _run_batched(self, scheduler: BatchScheduler, call: Inference) -> dict[str, np.ndarray]:
        remaining = call.deadline - time.perf_counter()
        return await self._waiter.run(scheduler, call.signature, call.inputs, remaining)

    async def _read_body(self, request: web.BaseRequest) -> bytes | Response:
        length = body_length(request.headers, self.max_body_bytes)
        if isinstance(length, Response):
            return length
        body = await request.content.readexactly(length) if length else b""
        return decode_body(body, request.headers, self.max_body_bytes)

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace_seconds``), then close."""
        if not self._thread.is_alive():
            self._socket.close()
            self._pool.shutdown(wait=False)
            return
        self.draining = True
        try:
            asyncio.run_coroutine_threadsafe(self._close(grace_seconds), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._pool.shutdown(wait=False, cancel_futures=True)  # queued inferences are not run

    async def _close(self, grace_seconds: float) -> None:
        if self._site is not None:
            await self._site.stop()  # no new connections
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace_seconds)
        log_dropped(self._in_flight, grace_seconds)
        if self._runner is not None:
            await self._runner.cleanup()
