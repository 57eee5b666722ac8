"""The canary router: what clients call instead of the model server, over REST and gRPC.

Both carriers share one data plane (``rollout.routing``: the weighted, sticky stable/canary decision)
and one set of Prometheus metrics (``rollout.router_metrics``). REST is an HTTP/1.1 server on asyncio
protocols with httptools' C parser (on uvloop) and a pooled keep-alive client to the model server
(``rollout.upstream``); gRPC (``rollout.grpc_router``) is a ``grpc.aio`` proxy of TF Serving's services
on a loop of its own. Measured against a trivial upstream, this REST carrier adds ~0.1 ms a request at
concurrency 1 and handles ~3.5x the requests of an aiohttp server doing the same forwarding
(``benchmarks/router_bench.py`` has the figures against the real model server).

REST: every bare inference call (``POST /v1/models/{m}:predict|classify|regress``) and bare metadata
call (``GET .../metadata``) is rewritten to ``/labels/stable`` or ``/labels/canary``; everything else
(explicit versions and labels, status, other methods and paths, models without a stable version) goes
to the model server unchanged, and a request the router cannot even parse is relayed as the bytes the
client sent: the client gets exactly what the model server answers. The router answers only its own
metrics (``/monitoring/prometheus/metrics``) and, when the model server cannot be reached, a 503 in TF
Serving's ``{"error": ...}`` form.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
import logging
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

import httptools
import uvloop

from release.serving_dir import METRICS_PATH
from release.state import CANARY
from rollout.router_metrics import CONTENT_TYPE, RouterMetrics, json_numbers
from rollout.routing import KEY_HEADER, LABEL_HEADER, RouteTable, Routing, is_unknown_label
from rollout.upstream import Answer, UpstreamError, UpstreamPool

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # as the embedded model server's default
# Shadow copies in flight per protocol; more are not sent. Stable and canary share the model server, so
# a slow canary's shadows queue ahead of stable's own calls there: with 64 allowed, a canary answering
# in 800 ms cut stable gRPC clients from 369 to 21 answers in 20 s (and timed one out in CI); with 4 the
# shadow step still gathers hundreds of samples a second from a healthy canary.
SHADOW_LIMIT = 4
# Hop-by-hop headers (RFC 9110 7.6.1) and the ones the router sets itself are not passed on.
_NOT_FORWARDED = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "te", "upgrade"}
_ANSWER_HEADERS = ("Content-Type", "Content-Encoding")

_PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/(?P<kind>versions|labels)/(?P<which>[^/:]+))?"
    r"(?::(?P<verb>predict|classify|regress)|(?P<metadata>/metadata))?$",
    re.IGNORECASE,
)


def _error(status: int, message: str) -> Answer:
    return Answer(status, json.dumps({"error": message}).encode(), {"Content-Type": "application/json"})


@dataclass
class Request:
    method: str = ""
    url: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: list[bytes] = field(default_factory=list)
    keep_alive: bool = True

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)


class RestRouter:
    """The REST data plane: parse the path, decide, forward on a pooled keep-alive connection."""

    def __init__(
        self,
        upstream: str,
        routing: Routing,
        metrics: RouterMetrics,
        timeout_s: float,
        shadow_limit: int,
        max_request_bytes: int = MAX_REQUEST_BYTES,
    ) -> None:
        parts = urlsplit(upstream if "://" in upstream else f"http://{upstream}")
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.pool = UpstreamPool(self.host, self.port, timeout_s)
        self.routing, self.metrics = routing, metrics
        self.timeout_s, self.shadow_limit, self.max_request_bytes = timeout_s, shadow_limit, max_request_bytes
        self._shadows: set[asyncio.Task] = set()

    async def answer(self, request: Request) -> tuple[Answer, str]:
        """(the answer, the label it was served from) for one parsed request."""
        raw_path = request.url.decode("latin-1")
        path = raw_path.split("?", 1)[0]
        if path == METRICS_PATH and request.method == "GET":
            return Answer(200, self.metrics.exposition(), {"Content-Type": CONTENT_TYPE}), ""
        body = b"".join(request.body)
        headers = {k: v for k, v in request.headers if k.lower() not in _NOT_FORWARDED}
        match = _PATH.match(path)
        routable = (
            match is not None
            and not match["kind"]
            and (
                (match["verb"] and request.method == "POST")
                or (match["metadata"] and request.method == "GET")
            )
        )
        if not routable:
            label = unquote(match["which"]) if match and match["kind"] == "labels" else ""
            return await self._forward(request.method, raw_path, body, headers, match, label), label
        model = unquote(match["model"])
        decision = self.routing.decide(model, request.header(KEY_HEADER))
        if decision.label is None:  # not in the config or no stable yet: the server answers as it would
            return await self._forward(request.method, raw_path, body, headers, match, ""), ""
        suffix = f":{match['verb']}" if match["verb"] else "/metadata"
        if decision.shadow and match["verb"]:
            self._mirror(model, f"/v1/models/{quote(model, safe='')}/labels/{CANARY}{suffix}", body, headers)
        routed = f"/v1/models/{quote(model, safe='')}/labels/{decision.label}{suffix}"
        by_number = None
        if decision.version is not None:
            by_number = f"/v1/models/{quote(model, safe='')}/versions/{decision.version}{suffix}"
        return await self._forward(
            request.method, routed, body, headers, match, decision.label, by_number
        ), decision.label

    async def _forward(self, method, path, body, headers, match, label, by_number=None) -> Answer:
        """Forward and record the answer; ``by_number`` is asked when the server does not know ``label``
        yet (see ``routing.Decision``)."""
        started = time.perf_counter()
        try:
            answer = await self.pool.request(method, path, body, headers)
            if by_number is not None and answer.status == 400 and _names_unknown_label(answer.body, label):
                answer = await self.pool.request(method, by_number, body, headers)
        except (UpstreamError, OSError) as e:
            answer = _error(503, f"The model server at {self.host}:{self.port} is unavailable: {e}")
        if match is not None and match["verb"]:
            model, metric_label = self.routing.metric_names(
                unquote(match["model"]), label, match["kind"] == "versions"
            )
            ok = 200 <= answer.status < 300
            numbers = json_numbers(answer.body) if ok else ()
            self.metrics.observe(model, metric_label, "live", ok, time.perf_counter() - started, numbers)
        return answer

    def _mirror(self, model: str, path: str, body: bytes, headers: dict) -> None:
        """Send a copy to the canary in the background; dropped (never queued) when too many are out."""
        if len(self._shadows) >= self.shadow_limit:
            return

        async def run() -> None:
            started = time.perf_counter()
            try:
                answer = await self.pool.request("POST", path, body, headers)
                ok = 200 <= answer.status < 300
            except (UpstreamError, OSError):
                answer, ok = Answer(599, b""), False
            numbers = json_numbers(answer.body) if ok else ()
            self.metrics.observe(model, CANARY, "shadow", ok, time.perf_counter() - started, numbers)

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)

    async def relay_raw(self, data: bytes) -> bytes:
        """A request the router cannot parse: the model server's own answer to exactly these bytes."""
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.timeout_s
            )
        except (OSError, TimeoutError) as e:
            return _encode(
                _error(503, f"The model server at {self.host}:{self.port} is unavailable: {e}"), "", False
            )
        try:
            writer.write(data)
            await writer.drain()
            return await asyncio.wait_for(reader.read(), self.timeout_s)
        except (OSError, TimeoutError):
            return b""
        finally:
            writer.close()

    def close(self) -> None:
        for task in list(self._shadows):
            task.cancel()
        self.pool.close()


def _names_unknown_label(body: bytes, label: str) -> bool:
    try:
        message = json.loads(body).get("error", "")
    except (ValueError, AttributeError):
        return False
    return isinstance(message, str) and is_unknown_label(message, label)


def _encode(answer: Answer, label: str, keep_alive: bool) -> bytes:
    try:
        reason = http.HTTPStatus(answer.status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {answer.status} {reason}"]
    lines += [f"{name}: {answer.headers[name]}" for name in _ANSWER_HEADERS if name in answer.headers]
    if label:
        lines.append(f"{LABEL_HEADER}: {label}")
    lines.append(f"Content-Length: {len(answer.body)}")
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + answer.body


class _ClientConnection(asyncio.Protocol):
    """One client connection: parse requests as they arrive, answer them in order."""

    def __init__(self, router: RestRouter, connections: set) -> None:
        self.router, self.connections = router, connections
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.request = Request()
        self.raw = bytearray()  # the bytes of the message being parsed, for a relay if it does not parse
        self.previous: asyncio.Task | None = None
        self.broken = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc) -> None:
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        self.raw += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._relay()
        except httptools.HttpParserError:
            self._relay()

    # httptools callbacks
    def on_message_begin(self) -> None:
        self.request = Request()

    def on_url(self, url: bytes) -> None:
        self.request.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.request.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.request.method = self.parser.get_method().decode("latin-1")
        self.request.keep_alive = self.parser.should_keep_alive()
        length = self.request.header("Content-Length")
        if length and length.isdigit() and int(length) > self.router.max_request_bytes:
            limit = self.router.max_request_bytes
            self._answer_now(
                _error(413, f"Request body of {length} bytes exceeds the router's limit of {limit}")
            )
        elif (self.request.header("Expect") or "").lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self.request.body.append(body)

    def on_message_complete(self) -> None:
        request, previous = self.request, self.previous
        self.raw = bytearray()
        self.previous = asyncio.get_running_loop().create_task(self._respond(request, previous))

    async def _respond(self, request: Request, previous: asyncio.Task | None) -> None:
        answer, label = await self.router.answer(request)
        if previous is not None:
            await previous  # HTTP/1.1: answers go out in the order the requests came
        if not self.transport.is_closing():
            self.transport.write(_encode(answer, label, request.keep_alive))
            if not request.keep_alive:
                self.transport.close()

    def _answer_now(self, answer: Answer) -> None:
        self.broken = True
        self.transport.write(_encode(answer, "", False))
        self.transport.close()

    def _relay(self) -> None:
        self.broken = True
        data, previous = bytes(self.raw), self.previous

        async def relay() -> None:
            answer = await self.router.relay_raw(data)
            if previous is not None:
                await previous
            if not self.transport.is_closing():
                self.transport.write(answer)
                self.transport.close()

        asyncio.get_running_loop().create_task(relay())


class _LoopThread:
    """An event loop running in a daemon thread; coroutines are handed to it from other threads."""

    def __init__(self, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.thread = threading.Thread(target=loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def run(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


class Router:
    """Start with ``start()`` (or as a context manager); ports chosen by the OS when 0.

    ``upstream`` is the model server's REST address; with ``grpc_upstream`` (its gRPC address) the
    router also serves gRPC on ``grpc_port``. REST runs on a uvloop loop, gRPC on an asyncio loop of its
    own (grpc.aio's), each in a thread; they share the routing decision and the metrics.
    """

    def __init__(
        self,
        upstream: str,
        serving_root: str,
        host: str = "127.0.0.1",
        port: int = 0,
        refresh_s: float = 0.2,
        timeout_s: float = 30.0,
        shadow_limit: int = SHADOW_LIMIT,
        grpc_upstream: str | None = None,
        grpc_port: int = 0,
    ):
        self.routes = RouteTable(serving_root, refresh_s)
        self.routing = Routing(self.routes)
        self.metrics = RouterMetrics(self.routes)
        self.rest = RestRouter(upstream, self.routing, self.metrics, timeout_s, shadow_limit)
        self.host = host
        self._socket = socket.create_server((host, port), backlog=1024)
        self._grpc_upstream, self._grpc_port_wanted = grpc_upstream, grpc_port
        self.grpc_port: int | None = None
        self._grpc = None
        self._rest_loop: _LoopThread | None = None
        self._grpc_loop: _LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._connections: set[_ClientConnection] = set()

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    def start(self) -> Router:
        self._rest_loop = _LoopThread("router-rest", uvloop.new_event_loop())
        self._server = self._rest_loop.run(self._serve_rest())
        if self._grpc_upstream:
            from rollout.grpc_router import GrpcRouter

            self._grpc_loop = _LoopThread("router-grpc", asyncio.new_event_loop())
            self._grpc = GrpcRouter(self._grpc_upstream, self.routing, self.metrics, self.rest.shadow_limit)
            self.grpc_port = self._grpc_loop.run(self._grpc.start(self.host, self._grpc_port_wanted))
        log.info(
            "router listening on %s:%d (REST)%s",
            self.host,
            self.port,
            f" and {self.host}:{self.grpc_port} (gRPC)" if self.grpc_port else "",
        )
        return self

    async def _serve_rest(self) -> asyncio.Server:
        loop = asyncio.get_running_loop()
        return await loop.create_server(
            lambda: _ClientConnection(self.rest, self._connections), sock=self._socket
        )

    def stop(self, grace_seconds: float = 5.0) -> None:
        """Stop accepting, let in-flight calls finish (up to ``grace_seconds``), then close."""
        if self._rest_loop is None:
            self._socket.close()
            return
        if self._grpc is not None:
            with contextlib.suppress(Exception):
                self._grpc_loop.run(self._grpc.stop(grace_seconds), grace_seconds + 10)
            self._grpc_loop.stop()
        with contextlib.suppress(Exception):
            self._rest_loop.run(self._close_rest(grace_seconds), grace_seconds + 10)
        self._rest_loop.stop()

    async def _close_rest(self, grace_seconds: float) -> None:
        self._server.close()
        deadline = time.monotonic() + grace_seconds
        while any(c.previous is not None and not c.previous.done() for c in self._connections):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
        for connection in list(self._connections):
            connection.transport.close()
        self.rest.close()

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = ["RestRouter", "Router"]
