"""The gRPC carrier: a grpc.aio server on an event-loop thread of its own, like the REST carrier.

It binds the ports (``--port``, ``--grpc_socket_path``), passes ``--grpc_channel_arguments`` to gRPC as
TF Serving's ``ServerBuilder`` does (integer values as integers), registers PredictionService,
ModelService and, with ``--enable_grpc_healthcheck_service``, ``grpc.health.v1.Health``, and drains
in-flight calls on stop. Unbatched requests run on a pool of ``--grpc_max_threads`` threads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving.errors import StartupError
from serving.grpc_service import ModelService, PredictionService
from serving.health import HealthService
from serving.options import channel_arguments

log = logging.getLogger(__name__)

# TF Serving: builder.SetMaxMessageSize(kint32max).
_MAX_MESSAGE = [("grpc.max_send_message_length", 2**31 - 1), ("grpc.max_receive_message_length", 2**31 - 1)]


class AioGrpcServer:
    """``start()`` returns the bound TCP port (None when only the UNIX socket is served)."""

    def __init__(self, model_server) -> None:
        options = model_server.options
        self._model_server = model_server
        self._options = options
        threads = options.grpc_max_threads or max(16, 4 * (os.cpu_count() or 1))
        self._pool = futures.ThreadPoolExecutor(max_workers=threads, thread_name_prefix="grpc")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="grpc-server", daemon=True)
        self._server: grpc.aio.Server | None = None
        self._health = HealthService() if options.enable_grpc_healthcheck_service else None

    def start(self) -> int | None:
        self._thread.start()
        try:
            return asyncio.run_coroutine_threadsafe(self._open(), self._loop).result()
        except BaseException:
            self.stop(0)
            raise

    def _server_options(self) -> list[tuple[str, int | str]]:
        given = channel_arguments(self._options.grpc_channel_arguments)
        keys = {key for key, _value in given}
        return [item for item in _MAX_MESSAGE if item[0] not in keys] + given

    async def _open(self) -> int | None:
        options = self._options
        server = grpc.aio.server(options=self._server_options())
        self._server = server
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self._model_server, self._pool), server
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            ModelService(self._model_server, self._pool), server
        )
        if self._health is not None:
            server.add_generic_rpc_handlers((self._health.handler(),))
        port = None
        if options.port != 0:
            address = f"{options.host}:{max(options.port, 0)}"
            try:
                port = server.add_insecure_port(address)
            except RuntimeError:
                port = 0
            if not port:
                raise StartupError(f"Failed to bind gRPC to {address}")
        if options.grpc_socket_path:
            server.add_insecure_port(f"unix:{options.grpc_socket_path}")
        await server.start()
        return port

    def stop(self, grace_seconds: float) -> None:
        """Stop accepting calls, let in-flight ones finish (up to ``grace_seconds``), then close."""
        if self._thread.is_alive():
            try:
                future = asyncio.run_coroutine_threadsafe(self._close(grace_seconds), self._loop)
                future.result(timeout=grace_seconds + 30)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=5)
        # calls still queued after the drain were cancelled with their RPCs: they are not run
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _close(self, grace_seconds: float) -> None:
        if self._health is not None:
            self._health.shut_down()
        if self._server is not None:
            await self._server.stop(grace_seconds)
