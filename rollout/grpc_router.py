"""The router's gRPC side: a ``grpc.aio`` proxy of TF Serving's PredictionService and ModelService.

Requests and answers travel as bytes; only a request's ``model_spec`` is decoded (``grpc_messages``).
A bare ``model_spec`` (a name, no version or label) of Predict, Classify, Regress, MultiInference and
GetModelMetadata is rewritten to ``version_label`` stable or canary by the same weight and sticky key as
REST (gRPC metadata ``x-request-key``), and shadowing works the same way. Explicit versions and labels,
GetModelStatus (every version's state, as REST's status call) and models without a stable version pass
unchanged. Deadlines propagate to the model server; status codes and messages come back unchanged; the
per-label metrics are the same series as REST's.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from google.protobuf import wrappers_pb2

from release.state import CANARY
from rollout import grpc_messages
from rollout.router_metrics import RouterMetrics, grpc_numbers
from rollout.routing import KEY_METADATA, Routing, is_unknown_label

PREDICTION_SERVICE = "tensorflow.serving.PredictionService"
MODEL_SERVICE = "tensorflow.serving.ModelService"
ROUTED_METHODS = ("Predict", "Classify", "Regress", "MultiInference", "GetModelMetadata")
INFERENCE_METHODS = ("Predict", "Classify", "Regress", "MultiInference")
# gRPC reports "no deadline" as ~1e19 s left; anything beyond a day is treated as none.
_NO_DEADLINE_S = 86400.0
# TF Serving sets unlimited message sizes (main.cc); so does the proxy, on both sides.
CHANNEL_OPTIONS = (("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1))


def _specs(method: str, request: bytes):
    """The parsed envelope and its model specs (MultiInference has one per task)."""
    if method == "MultiInference":
        envelope = grpc_messages.MultiInferenceRequest.FromString(request)
        return envelope, [task.model_spec for task in envelope.tasks]
    envelope = grpc_messages.Request.FromString(request)
    return envelope, [envelope.model_spec]


def _left(context: grpc.aio.ServicerContext) -> float | None:
    """The client's time left, passed on to the model server (None: the client set no deadline)."""
    remaining = context.time_remaining()
    return remaining if remaining is not None and remaining < _NO_DEADLINE_S else None


def _is_bare(spec) -> bool:
    return bool(spec.name) and not spec.HasField("version") and not spec.HasField("version_label")


class GrpcRouter:
    def __init__(self, upstream: str, routing: Routing, metrics: RouterMetrics, shadow_limit: int) -> None:
        self.upstream = upstream
        self.routing, self.metrics = routing, metrics
        self.shadow_limit = shadow_limit
        self._shadows: set[asyncio.Task] = set()
        self._channel: grpc.aio.Channel | None = None
        self._server: grpc.aio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._channel = grpc.aio.insecure_channel(self.upstream, options=CHANNEL_OPTIONS)
        self._server = grpc.aio.server(options=CHANNEL_OPTIONS)
        handlers = {
            PREDICTION_SERVICE: {name: self._handler(PREDICTION_SERVICE, name) for name in ROUTED_METHODS},
            # Not HandleReloadConfigRequest: models.config belongs to the release tooling, not to clients.
            MODEL_SERVICE: {"GetModelStatus": self._handler(MODEL_SERVICE, "GetModelStatus")},
        }
        self._server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler(service, methods) for service, methods in handlers.items()]
        )
        bound = self._server.add_insecure_port(f"{host}:{port}")
        if not bound:
            raise OSError(f"the router cannot listen for gRPC on {host}:{port}")
        await self._server.start()
        return bound

    async def stop(self, grace_seconds: float) -> None:
        if self._server is not None:
            await self._server.stop(grace_seconds)
        for task in list(self._shadows):
            task.cancel()
        if self._channel is not None:
            await self._channel.close()

    def _handler(self, service: str, method: str) -> grpc.RpcMethodHandler:
        call = self._channel.unary_unary(f"/{service}/{method}")  # bytes in, bytes out

        async def handle(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            return await self._route(call, method, request, context)

        return grpc.unary_unary_rpc_method_handler(handle)

    async def _route(self, call, method: str, request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        label, model, shadow, pinned, by_number = "", "", False, False, None
        if method in ROUTED_METHODS:
            try:
                envelope, specs = _specs(method, request)
            except Exception:  # not even the envelope parses: the server says what is wrong with it
                envelope, specs = None, []
            model = specs[0].name if specs else ""
            pinned = any(spec.HasField("version") for spec in specs)
            label = next((spec.version_label for spec in specs if spec.HasField("version_label")), "")
            if specs and all(_is_bare(spec) for spec in specs) and len({s.name for s in specs}) == 1:
                key = dict(context.invocation_metadata() or ()).get(KEY_METADATA)
                decision = self.routing.decide(model, key)
                if decision.label is not None:
                    for spec in specs:
                        spec.version_label = decision.label
                    label, shadow = decision.label, decision.shadow
                    request = envelope.SerializeToString()
                    if decision.version is not None:
                        number = wrappers_pb2.Int64Value(value=decision.version).SerializeToString()
                        for spec in specs:
                            spec.ClearField("version_label")  # one of the two, as in model.proto
                            spec.version = number
                        by_number = envelope.SerializeToString()
        timeout = _left(context)
        if shadow and method in INFERENCE_METHODS:
            self._mirror(call, method, model, envelope, specs, timeout)
        started = time.perf_counter()
        try:
            try:
                answer = await call(request, timeout=timeout)
            except grpc.aio.AioRpcError as error:
                # the server has not read the label from models.config yet: ask for its version
                unknown = error.code() == grpc.StatusCode.INVALID_ARGUMENT and is_unknown_label(
                    error.details() or "", label
                )
                if by_number is None or not unknown:
                    raise
                answer = await call(by_number, timeout=_left(context))
        except grpc.aio.AioRpcError as error:
            self._observe(method, model, label, pinned, False, started, b"")
            await context.abort(error.code(), error.details() or "")
        self._observe(method, model, label, pinned, True, started, answer)
        return answer

    def _observe(self, method, model, label, pinned, ok, started, answer: bytes) -> None:
        if method not in INFERENCE_METHODS or not model:
            return
        metric_model, metric_label = self.routing.metric_names(model, label, pinned)
        numbers = grpc_numbers(method, answer) if ok else ()
        self.metrics.observe(metric_model, metric_label, "live", ok, time.perf_counter() - started, numbers)

    def _mirror(self, call, method, model, envelope, specs, timeout) -> None:
        """Send a copy to the canary in the background; dropped when too many are out."""
        if len(self._shadows) >= self.shadow_limit:
            return
        for spec in specs:
            spec.ClearField("version")  # one of the two, as in model.proto
            spec.version_label = CANARY
        mirrored = envelope.SerializeToString()

        async def run() -> None:
            started = time.perf_counter()
            try:
                answer, ok = await call(mirrored, timeout=timeout), True
            except grpc.aio.AioRpcError:
                answer, ok = b"", False
            numbers = grpc_numbers(method, answer) if ok else ()
            self.metrics.observe(model, CANARY, "shadow", ok, time.perf_counter() - started, numbers)

        task = asyncio.get_running_loop().create_task(run())
        self._shadows.add(task)
        task.add_done_callback(self._shadows.discard)
