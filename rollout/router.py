"""A traffic router in front of a model server: weighted, sticky canary split; shadow; per-label metrics.

TF Serving sends requests without a version or label to the *highest loaded* version, which is the
canary as soon as it loads. The router rewrites every bare inference call
(``POST /v1/models/{m}:predict|classify|regress``) to ``/labels/stable`` or ``/labels/canary``:

- the split follows the ``canary_weight`` in the model's release record (written by the rollout
  controller or ``tfx-canary``), re-read when it changes;
- it is sticky: the ``X-Request-Key`` header (a user or session id) is hashed into [0, 1), so one
  key always sees the same version; requests without a key are split at random;
- ``shadow_fraction`` of stable traffic is also sent to ``canary`` in the background; the answer is
  measured and discarded;
- explicit ``/versions/N`` or ``/labels/L`` calls are forwarded unchanged (pinning, smoke tests).

Prometheus metrics per model and label (requests, errors, latency histogram, prediction histogram)
are served on ``/monitoring/prometheus/metrics``. Model names from requests are only looked up in
the parsed config, never used to build a file path.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import re
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import quote, unquote, urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from release import config_store
from release.serving_dir import CONFIG_NAME, METRICS_PATH, RECORD_DIR, read_text
from release.state import CANARY, PREVIOUS, STABLE
from tfx_canary.errors import ConfigError

log = logging.getLogger(__name__)

KEY_HEADER = "X-Request-Key"
LABEL_HEADER = "X-Served-Label"
KNOWN_LABELS = (STABLE, CANARY, PREVIOUS)
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
PREDICTION_BUCKETS = (
    -100.0, -10.0, -1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1000.0,
)  # fmt: skip
MAX_PREDICTIONS_RECORDED = 64

_PATH = re.compile(
    r"^/v1/models/(?P<model>[^/:]+)(?:/(?P<kind>versions|labels)/(?P<which>[^/:]+))?"
    r"(?::(?P<verb>predict|classify|regress)|(?P<metadata>/metadata))?$",
    re.IGNORECASE,
)


def key_bucket(key: str) -> float:
    """A stable position in [0, 1) for a request key."""
    digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass(frozen=True)
class Route:
    stable: bool  # a `stable` label exists
    canary_weight: float  # 0 unless a canary is on trial
    shadow_fraction: float


class RouteTable:
    """The routes of every model in ``models.config``, re-read when the config or records change."""

    def __init__(self, serving_root: str, refresh_s: float = 0.2):
        self.serving_root = serving_root
        self.refresh_s = refresh_s
        self._routes: dict[str, Route] = {}
        self._stamp: tuple = ()
        self._checked = 0.0
        self._lock = threading.Lock()

    def _fingerprint(self) -> tuple:
        paths = [os.path.join(self.serving_root, CONFIG_NAME)]
        records = os.path.join(self.serving_root, RECORD_DIR)
        if os.path.isdir(records):
            paths += sorted(os.path.join(records, n) for n in os.listdir(records) if n.endswith(".json"))
        stamp = []
        for path in paths:
            try:
                stat = os.stat(path)
                stamp.append((path, stat.st_mtime_ns, stat.st_size))
            except FileNotFoundError:
                stamp.append((path, 0, 0))
        return tuple(stamp)

    def _load(self) -> dict[str, Route]:
        path = os.path.join(self.serving_root, CONFIG_NAME)
        config = config_store.parse_config(read_text(path) or "", path)
        routes = {}
        for entry in config.model_config_list.config:
            state = config_store.read_release(self.serving_root, entry.name).state
            on_trial = state.in_flight is not None
            routes[entry.name] = Route(
                stable=state.stable is not None,
                canary_weight=state.canary_weight if on_trial else 0.0,
                shadow_fraction=state.shadow_fraction if on_trial else 0.0,
            )
        return routes

    def get(self, model: str) -> Route | None:
        now = time.monotonic()
        if now - self._checked >= self.refresh_s:
            with self._lock:  # others wait here rather than read routes that are not loaded yet
                if now - self._checked >= self.refresh_s:
                    stamp = self._fingerprint()
                    if stamp != self._stamp:
                        try:
                            self._routes = self._load()
                            self._stamp = stamp
                        except (ConfigError, OSError) as e:
                            log.error("keeping the previous routes: %s", e)  # like TF Serving's poller
                    self._checked = now
        return self._routes.get(model)


class RouterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        names = ("model", "label", "mode")
        self.requests = Counter("router_requests", "Routed inference requests", names, registry=self.registry)
        self.errors = Counter(
            "router_errors", "Routed requests that failed (non-2xx)", names, registry=self.registry
        )
        self.latency = Histogram(
            "router_latency_seconds",
            "Upstream latency",
            names,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Histogram(
            "router_prediction", "Predicted values", names, buckets=PREDICTION_BUCKETS, registry=self.registry
        )

    def observe(self, model: str, label: str, mode: str, status: int, seconds: float, body: bytes) -> None:
        self.requests.labels(model, label, mode).inc()
        self.latency.labels(model, label, mode).observe(seconds)
        if not 200 <= status < 300:
            self.errors.labels(model, label, mode).inc()
            return
        histogram = self.predictions.labels(model, label, mode)
        for value in _numbers(body):
            histogram.observe(value)


def _numbers(body: bytes) -> list[float]:
    """The first predicted numbers of a predict/classify/regress answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return []
    found: list[float] = []
    stack = [answer.get("predictions", answer.get("outputs", answer.get("results", [])))]
    while stack and len(found) < MAX_PREDICTIONS_RECORDED:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, (int, float)):
            found.append(float(item))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


class _Upstream:
    """Keep-alive HTTP connections to the model server, one per thread."""

    def __init__(self, address: str, timeout_s: float):
        parts = urlsplit(address if "://" in address else f"http://{address}")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s = timeout_s
        self._local = threading.local()

    def request(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes, str]:
        for attempt in (0, 1):
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
                connection.connect()
                connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._local.connection = connection
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    connection.close()
                    self._local.connection = None
                return response.status, data, response.getheader("Content-Type", "application/json")
            except (ConnectionError, http.client.HTTPException, OSError):
                connection.close()
                self._local.connection = None
                if attempt:  # a stale keep-alive connection gets one retry on a fresh one
                    raise
        raise AssertionError("unreachable")


class Router:
    """Start with ``start()`` (or as a context manager); ``port`` is chosen by the OS when 0."""

    def __init__(
        self,
        upstream: str,
        serving_root: str,
        host: str = "127.0.0.1",
        port: int = 0,
        refresh_s: float = 0.2,
        timeout_s: float = 30.0,
        shadow_workers: int = 2,
        shadow_queue: int = 64,
    ):
        self.routes = RouteTable(serving_root, refresh_s)
        self.metrics = RouterMetrics()
        self.upstream = _Upstream(upstream, timeout_s)
        self._shadow_pool = ThreadPoolExecutor(max_workers=shadow_workers, thread_name_prefix="shadow")
        self._shadow_slots = threading.BoundedSemaphore(shadow_queue)
        self._server = ThreadingHTTPServer((host, port), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> Router:
        self._thread = threading.Thread(target=self._server.serve_forever, name="router", daemon=True)
        self._thread.start()
        log.info("router listening on %s:%d", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._shadow_pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Router:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- routing ----

    def choose(self, model: str, key: str | None) -> tuple[str | None, bool]:
        """(label, shadow?) for a bare request; label None when the model has no stable version."""
        route = self.routes.get(model)
        if route is None or not route.stable:
            return None, False
        position = key_bucket(key) if key else random.random()
        if position < route.canary_weight:
            return CANARY, False
        # shadow picks from the far end of the key space, so live canary users are not also mirrored
        return STABLE, (1.0 - position) <= route.shadow_fraction

    def _shadow(self, model: str, path: str, body: bytes, headers: dict) -> None:
        if not self._shadow_slots.acquire(blocking=False):
            return  # the shadow queue is full: drop the mirror, never slow live traffic

        def run() -> None:
            try:
                start = time.perf_counter()
                try:
                    status, data, _ = self.upstream.request("POST", path, body, headers)
                except OSError:
                    status, data = 599, b""
                self.metrics.observe(model, CANARY, "shadow", status, time.perf_counter() - start, data)
            finally:
                self._shadow_slots.release()

        self._shadow_pool.submit(run)

    def handle(
        self, method: str, raw_path: str, body: bytes | None, key: str | None
    ) -> tuple[int, bytes, str, str]:
        """(status, body, content type, served label) for one request."""
        if raw_path.split("?", 1)[0] == METRICS_PATH:
            return 200, generate_latest(self.metrics.registry), CONTENT_TYPE_LATEST, ""
        match = _PATH.match(raw_path.split("?", 1)[0])
        headers = {"Content-Type": "application/json"}
        if match is None or match["kind"] or not (match["verb"] or match["metadata"]):
            label = unquote(match["which"]) if match and match["kind"] == "labels" else ""
            return self._forward(method, raw_path, body, headers, match, label)

        model = unquote(match["model"])
        label, shadow = self.choose(model, key)
        if label is None:
            error = json.dumps({"error": f"Router has no stable version of model {model} to send this to"})
            return 503, error.encode(), "application/json", ""
        suffix = f":{match['verb']}" if match["verb"] else "/metadata"
        path = f"/v1/models/{quote(model, safe='')}/labels/{label}{suffix}"
        if shadow and match["verb"] and method == "POST":
            self._shadow(
                model, f"/v1/models/{quote(model, safe='')}/labels/{CANARY}{suffix}", body or b"", headers
            )
        return self._forward(method, path, body, headers, match, label)

    def _forward(self, method, path, body, headers, match, label) -> tuple[int, bytes, str, str]:
        start = time.perf_counter()
        try:
            status, data, content_type = self.upstream.request(method, path, body, headers)
        except OSError as e:
            status, data, content_type = (
                502,
                json.dumps({"error": f"model server: {e}"}).encode(),
                "application/json",
            )
        if match is not None and match["verb"]:
            # names chosen by clients must not grow the metric set without bound
            model = unquote(match["model"])
            if self.routes.get(model) is None:
                model = "other"
            if label not in KNOWN_LABELS:
                label = "version" if match["kind"] == "versions" else "other"
            self.metrics.observe(model, label, "live", status, time.perf_counter() - start, data)
        return status, data, content_type, label

    def _handler_class(self):
        router = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format, *args) -> None:
                log.debug("%s - %s", self.address_string(), format % args)

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                status, data, content_type, label = router.handle(
                    self.command, self.path, body, self.headers.get(KEY_HEADER)
                )
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                if label:
                    self.send_header(LABEL_HEADER, label)
                self.end_headers()
                self.wfile.write(data)

            do_GET = _serve
            do_POST = _serve

        return Handler
