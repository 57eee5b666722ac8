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
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

import grpc
from google.protobuf import json_format

from serving import inference, rest_json
from serving.errors import ServingError, invalid_argument, status_code_of
from serving.servable import DEFAULT_SIGNATURE

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


class RestApi:
    """Turns one HTTP request into one response; knows nothing about sockets."""

    def __init__(self, server) -> None:
        self._server = server  # serving.server.ModelServer: manager, runner, metrics, options

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
        name = unquote(match["name"])
        label = unquote(match["label"]) if match["label"] else None
        version = None
        if match["version"]:
            version = int(match["version"])
            if version > _MAX_INT64:
                raise invalid_argument(f"Failed to convert version: {match['version']} to numeric.")
        if is_get:
            if match["metadata"]:
                return self._metadata(name, version, label)
            return Response(200, rest_json.dumps(_to_dict(self._server.manager.status(name, version))))
        return self._infer(match["method"].lower(), name, version, label, body)

    def _metadata(self, name: str, version: int | None, label: str | None) -> Response:
        servable = self._server.manager.resolve(name, version, label).servable
        spec = {"name": servable.name, "signature_name": "", "version": str(servable.version)}
        signature_defs = _to_dict(inference.signature_def_map(servable))
        return Response(
            200, rest_json.dumps({"model_spec": spec, "metadata": {"signature_def": signature_defs}})
        )

    def _infer(self, api: str, name: str, version: int | None, label: str | None, body: bytes) -> Response:
        server = self._server
        started = time.perf_counter()
        resolved = None
        examples = 0
        try:
            request = rest_json.parse_body(body)  # parsed before the lookup, as TF Serving does
            signature_name = rest_json.signature_name_of(request)
            resolved = server.manager.resolve(name, version, label)
            servable = resolved.servable
            run = server.runner(deadline=started + server.options.rest_api_timeout_in_ms / 1000)
            if api == "predict":
                signature = servable.signatures.get(signature_name or DEFAULT_SIGNATURE)
                if signature is None:
                    wanted = signature_name or DEFAULT_SIGNATURE
                    raise invalid_argument(f'Serving signature name: "{wanted}" not found in signature def')
                inputs, row_format = rest_json.predict_inputs(request, signature)
                examples = next(iter(inputs.values())).shape[0] if inputs else 0
                _signature, outputs = inference.predict(servable, signature.name, inputs, run)
                document = rest_json.predict_response(outputs, row_format)
            else:
                serialized = rest_json.examples_of(request, api)
                examples = len(serialized)
                if api == "classify":
                    results = inference.classify(servable, signature_name, serialized, run)
                    document = {"results": [[[label_, score] for label_, score in row] for row in results]}
                else:
                    document = {"results": inference.regress(servable, signature_name, serialized, run)}
            response = Response(200, rest_json.dumps(document))
            code = grpc.StatusCode.OK
        except Exception as error:
            code = status_code_of(error)
            if not isinstance(error, ServingError):
                log.exception("REST %s on model %s failed", api, name)
                error = ServingError(code, str(error))
            response = _error(error)
        server.record_request(
            name=name,
            resolved=resolved,
            label=label,
            code=code,
            api=api,
            entrypoint="REST",
            started=started,
            examples=examples,
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
        self._httpd.server_close()
