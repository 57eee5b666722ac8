"""The standard gRPC health service (``grpc.health.v1.Health``) for ``--enable_grpc_healthcheck_service``.

TF Serving turns on gRPC's default health service and reports "ModelService" and "PredictionService"
(and the server as a whole, "") as SERVING. The two messages of ``grpc/health/v1/health.proto`` are
declared here in a private descriptor pool (same package, names and field numbers), so any health
client (``grpc_health_probe``, Kubernetes gRPC probes) talks to it without another dependency.
"""

from __future__ import annotations

import asyncio

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

SERVICE_NAME = "grpc.health.v1.Health"
SERVED = ("", "ModelService", "PredictionService")
UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _build_messages():
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfx_canary/grpc_health_v1.proto", package="grpc.health.v1", syntax="proto3"
    )
    F = descriptor_pb2.FieldDescriptorProto
    request = proto.message_type.add(name="HealthCheckRequest")
    request.field.add(name="service", number=1, type=F.TYPE_STRING, label=F.LABEL_OPTIONAL)
    response = proto.message_type.add(name="HealthCheckResponse")
    status = response.enum_type.add(name="ServingStatus")
    for name, number in (("UNKNOWN", 0), ("SERVING", 1), ("NOT_SERVING", 2), ("SERVICE_UNKNOWN", 3)):
        status.value.add(name=name, number=number)
    response.field.add(
        name="status",
        number=1,
        type=F.TYPE_ENUM,
        label=F.LABEL_OPTIONAL,
        type_name=".grpc.health.v1.HealthCheckResponse.ServingStatus",
    )
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))  # noqa: E731
    return get("grpc.health.v1.HealthCheckRequest"), get("grpc.health.v1.HealthCheckResponse")


HealthCheckRequest, HealthCheckResponse = _build_messages()


class HealthService:
    """Check and Watch for the served names; everything goes NOT_SERVING when the server shuts down."""

    def __init__(self) -> None:
        self._status = dict.fromkeys(SERVED, SERVING)
        self._changed: asyncio.Event | None = None

    def shut_down(self) -> None:
        """Called on the server's event loop when it starts draining."""
        self._status = dict.fromkeys(SERVED, NOT_SERVING)
        if self._changed is not None:
            self._changed.set()

    async def check(self, request, context):
        status = self._status.get(request.service)
        if status is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return HealthCheckResponse(status=status)

    async def watch(self, request, context):
        if self._changed is None:
            self._changed = asyncio.Event()
        last = None
        while True:
            status = self._status.get(request.service, SERVICE_UNKNOWN)
            if status != last:
                yield HealthCheckResponse(status=status)
                last = status
            if status == NOT_SERVING:
                return
            await self._changed.wait()

    def handler(self) -> grpc.GenericRpcHandler:
        decode, encode = HealthCheckRequest.FromString, HealthCheckResponse.SerializeToString
        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "Check": grpc.unary_unary_rpc_method_handler(
                    self.check, request_deserializer=decode, response_serializer=encode
                ),
                "Watch": grpc.unary_stream_rpc_method_handler(
                    self.watch, request_deserializer=decode, response_serializer=encode
                ),
            },
        )
