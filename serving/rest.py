"""TF Serving's REST API (``http_rest_api_handler.cc``) and the HTTP server that carries it.

Routes: ``GET /v1/models/{m}[/versions/{v}|/labels/{l}][/metadata]`` and
``POST /v1/models/{m}[/versions/{v}|/labels/{l}]:(predict|classify|regress)``, plus Prometheus text on
the monitoring path. Model names in URLs are only ever looked up among the configured models, never used as
paths. Bodies over the size limit get 413 before they are read.
"""

from __future__ import annotations

import gzip
import logging
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import grpc
import numpy as np
from google.protobuf import json_format

from serving import inference, rest_json
from serving.errors import ServingError, invalid_argument, status_code_of
from serving.manager import Resolved
from serving.servable import DEFAULT_SIGNATURE, Signature

log = logging.getLogger(__name__)

_MODEL_PATH = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
    r"(?:(?P<metadata>/metadata)|:(?P<method>predict|classify|regress))?$",
    re.IGNORECASE,
)
_MAX_INT64 = 2**63 - 1
_JSON = "application/json"


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = _JSON


@dataclass(frozen=True)
class RestCall:
    """What a ``/v1/models/...`` URL names: the API (None for status/metadata), model, version, label."""

    api: str | None
    name: str
    version: int | None
    label: str | None


@dataclass
class Inference:
    """One inference request, parsed and checked, waiting for its signature to run."""

    target: RestCall
    started: float
    deadline: float
    resolved: Resolved | None = None
    signature: Signature | None = None
    inputs: dict[str, np.ndarray] | None = None
    examples: int = 0
    answer: Callable[[dict[str, np.ndarray]], dict] | None = None  # the outputs as the response document


def _classify_document(outputs: dict[str, np.ndarray], count: int) -> dict:
    return {
        "results": [
            [[label, score] for label, score in row] for row in inference.classification(outputs, count)
        ]
    }


def _error(error: ServingError) -> Response:
    return Response(error.http_status, rest_json.dumps({"error": error.message}))


def _to_dict(message) -> dict:
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def body_length(headers, limit: int) -> int | Response:
    """The body's declared length, or the error answer: chunked (411), bad length (400), too big (413).

    Checked before any of the body is read, so an oversized request costs nothing.
    """
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return Response(
            411, rest_json.dumps({"error": "Chunked request bodies are not supported; send Content-Length"})
        )
    try:
        length = int(headers.get("Content-Length") or 0)
    except ValueError:
        return Response(400, rest_json.dumps({"error": "Invalid Content-Length header"}))
    if length < 0:
        return Response(400, rest_json.dumps({"error": "Invalid Content-Length header"}))
    if length > limit:
        message = f"Request body of {length} bytes exceeds the limit of {limit} bytes"
        message += " (--rest_api_max_request_bytes)"
        return Response(413, rest_json.dumps({"error": message}))
    return length


def decode_body(body: bytes, headers, limit: int) -> bytes | Response:
    """Inflate a gzip body, stopping at ``limit`` bytes (a zip bomb gets 413, not our memory)."""
    if headers.get("Content-Encoding", "").lower() != "gzip":
        return body
    try:
        decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
        body = decompressor.decompress(body, limit + 1)
        if len(body) > limit or decompressor.unconsumed_tail:
            message = f"Decompressed request body exceeds the limit of {limit} bytes"
            return Response(413, rest_json.dumps({"error": message}))
    except (zlib.error, gzip.BadGzipFile) as error:
        return Response(400, rest_json.dumps({"error": f"Failed to decompress gzip body: {error}"}))
    return body


# --rest_api_enable_cors_support: the headers TF Serving adds to every REST answer.
CORS_HEADERS = (
    ("Access-Control-Allow-Origin", "*"),
    ("Access-Control-Allow-Methods", "POST, GET"),
    ("Access-Control-Allow-Headers", "Content-Type"),
)


class RestApi:
    """Turns one HTTP request into one response; knows nothing about sockets."""

    def __init__(self, server) -> None:
        self._server = server  # serving.server.ModelServer: manager, runner, metrics, options
        self.cors = server.options.rest_api_enable_cors_support

    def extra_headers(self) -> tuple[tuple[str, str], ...]:
        """Headers every answer carries besides Content-Type (CORS when enabled)."""
        return CORS_HEADERS if self.cors else ()

    def preflight(self, method: str, headers) -> Response | None:
        """With CORS on, an OPTIONS request from an http(s) origin is a preflight: 200, no body."""
        origin = headers.get("Origin", "")
        if self.cors and method == "OPTIONS" and origin.startswith(("http://", "https://")):
            return Response(200, b"", "text/plain")
        return None

    @property
    def scheduler(self):
        """The server's BatchScheduler when batching is on, else None."""
        return self._server.scheduler

    def handle(self, method: str, path: str, body: bytes) -> Response:
        path = path.split("?", 1)[0]
        monitoring = self._server.monitoring
        if monitoring.prometheus_enabled and path == monitoring.prometheus_path and method == "GET":
            return Response(
                200, self._server.metrics.exposition(), "text/plain; version=0.0.4; charset=utf-8"
            )
        if not path.startswith("/v1/"):
            return Response(404, b"Not Found", "text/plain")
        try:
            return self._route(method, path, body)
        except ServingError as error:
            return _error(error)

    def _route(self, method: str, path: str, body: bytes) -> Response:
        if path.rstrip("/") == "/v1/models" and method in ("GET", "POST"):
            raise invalid_argument("Missing model name in request.")
        match = _MODEL_PATH.match(path)
        is_get = method == "GET" and match and not match["method"]
        is_post = method == "POST" and match and match["method"] and not match["metadata"]
        if not (is_get or is_post):
            raise invalid_argument(f"Malformed request: {method} {path}")
        target = self._target(match)
        if is_get:
            if match["metadata"]:
                return self._metadata(target.name, target.version, target.label)
            status = self._server.manager.status(target.name, target.version)
            return Response(200, rest_json.dumps(_to_dict(status)))
        return self._infer(target, body)

    def _metadata(self, name: str, version: int | None, label: str | None) -> Response:
        servable = self._server.manager.resolve(name, version, label).servable
        spec = {"name": servable.name, "signature_name": "", "version": str(servable.version)}
        signature_defs = _to_dict(inference.signature_def_map(servable))
        return Response(
            200, rest_json.dumps({"model_spec": spec, "metadata": {"signature_def": signature_defs}})
        )

    def inference_target(self, method: str, path: str) -> RestCall | None:
        """The model behind a well-formed ``POST ...:(predict|classify|regress)``; None for anything else."""
        path = path.split("?", 1)[0]
        match = _MODEL_PATH.match(path) if method == "POST" and path.startswith("/v1/") else None
        if not match or not match["method"] or match["metadata"]:
            return None
        try:
            return self._target(match)
        except ServingError:
            return None

    def _target(self, match: re.Match) -> RestCall:
        version = None
        if match["version"]:
            version = int(match["version"])
            if version > _MAX_INT64:
                raise invalid_argument(f"Failed to convert version: {match['version']} to numeric.")
        method = match["method"].lower() if match["method"] else None
        label = unquote(match["label"]) if match["label"] else None
        return RestCall(method, unquote(match["name"]), version, label)

    def _infer(self, target: RestCall, body: bytes) -> Response:
        call = self.start_inference(target, body)
        if isinstance(call, Response):
            return call
        try:
            outputs = self._server.runner(deadline=call.deadline)(call.signature, call.inputs)
        except Exception as error:
            return self.finish_inference(call, error=error)
        return self.finish_inference(call, outputs)

    def start_inference(self, target: RestCall, body: bytes) -> Inference | Response:
        """Parse and check an inference request up to the signature call (or answer its error)."""
        server = self._server
        started = time.perf_counter()
        call = Inference(target, started, started + server.options.rest_api_timeout_in_ms / 1000)
        try:
            request = rest_json.parse_body(body)  # parsed before the lookup, as TF Serving does
            signature_name = rest_json.signature_name_of(request)
            call.resolved = server.manager.resolve(target.name, target.version, target.label)
            servable = call.resolved.servable
            if target.api == "predict":
                signature = servable.signatures.get(signature_name or DEFAULT_SIGNATURE)
                if signature is None:
                    wanted = signature_name or DEFAULT_SIGNATURE
                    raise invalid_argument(f'Serving signature name: "{wanted}" not found in signature def')
                inputs, row_format = rest_json.predict_inputs(request, signature)
                call.examples = next(iter(inputs.values())).shape[0] if inputs else 0
                call.signature = inference.predict_signature(servable, signature.name, inputs)
                call.inputs = inputs
                call.answer = lambda outputs: rest_json.predict_response(outputs, row_format)
            else:
                serialized = rest_json.examples_of(request, target.api)
                count = call.examples = len(serialized)
                method = inference.CLASSIFY_METHOD if target.api == "classify" else inference.REGRESS_METHOD
                call.signature, call.inputs = inference.example_inputs(
                    servable, signature_name, serialized, method
                )
                if target.api == "classify":
                    call.answer = lambda outputs: _classify_document(outputs, count)
                else:
                    call.answer = lambda outputs: {"results": inference.regression(outputs, count)}
        except Exception as error:
            return self.finish_inference(call, error=error)
        return call

    def finish_inference(
        self, call: Inference, outputs: dict[str, np.ndarray] | None = None, error: Exception | None = None
    ) -> Response:
        """The response for the signature's outputs (or for the error on the way), counted in the metrics."""
        if error is None:
            try:
                response = Response(200, rest_json.dumps(call.answer(outputs)))
            except Exception as answer_error:
                error = answer_error
        if error is None:
            code = grpc.StatusCode.OK
        else:
            code = status_code_of(error)
            if not isinstance(error, ServingError):
                log.error("REST %s on model %s failed", call.target.api, call.target.name, exc_info=error)
                error = ServingError(code, str(error))
            response = _error(error)
        self._server.record_request(
            name=call.target.name,
            resolved=call.resolved,
            label=call.target.label,
            code=code,
            api=call.target.api,
            entrypoint="REST",
            started=call.started,
            examples=call.examples,
        )
        return response


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tfx-canary-model-server"
    timeout = 120  # seconds an idle keep-alive connection may hold a thread
    sys_version = ""
    rest_server: RestServer  # set on the subclass made per server

    def log_message(self, format: str, *args) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in one write; without NODELAY, Nagle + delayed ACK adds ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _send(self, response: Response, close: bool = False) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        for name, value in self.rest_server.api.extra_headers():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close or self.rest_server.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._headers_buffer.append(b"\r\n")
        self.wfile.write(b"".join(self._headers_buffer) + response.body)
        self._headers_buffer = []

    def _read_body(self) -> bytes | Response:
        limit = self.rest_server.max_body_bytes
        length = body_length(self.headers, limit)
        if isinstance(length, Response):
            return length
        body = self.rfile.read(length) if length else b""
        return decode_body(body, self.headers, limit)

    def _dispatch(self) -> None:
        self.rest_server.enter()
        try:
            preflight = self.rest_server.api.preflight(self.command, self.headers)
            if preflight is not None:
                self._send(preflight)
                return
            body = self._read_body() if self.command in ("POST", "PUT", "PATCH") else b""
            if isinstance(body, Response):
                self._send(body, close=True)  # the unread body makes the connection unusable
                return
            self._send(self.rest_server.api.handle(self.command, self.path, body))
        finally:
            self.rest_server.leave()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class _HTTPServer(ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    block_on_close = False
    request_queue_size = 1024  # the stdlib's 5 resets connections under a burst of clients


class RestServer:
    """A thread per connection (keep-alive), with in-flight tracking so stop() can drain."""

    def __init__(self, api: RestApi, host: str, port: int, max_body_bytes: int) -> None:
        self.api = api
        self.max_body_bytes = max_body_bytes
        self.draining = False
        self._in_flight = 0
        self._idle = threading.Condition()
        handler = type("Handler", (_Handler,), {"rest_server": self})
        self._httpd = _HTTPServer((host, max(port, 0)), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest-server", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace_seconds``), then close."""
        self.draining = True
        self._httpd.shutdown()
        deadline = time.monotonic() + grace_seconds
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(deadline - time.monotonic())
            log_dropped(self._in_flight, grace_seconds)
        self._httpd.server_close()


def log_dropped(count: int, grace_seconds: float) -> None:
    """Say how many REST requests a stop cut off: ``--drain_seconds`` is the longest a stop waits."""
    if count:
        log.warning("REST: dropped %d request(s) still waiting after the %g s drain", count, grace_seconds)
