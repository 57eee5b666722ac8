"""The embedded model server: model manager, REST, gRPC, batching, monitoring and config polling.

In-process use (ports chosen by the OS, read back after start)::

    options = ServerOptions(port=AUTO_PORT, rest_api_port=AUTO_PORT, model_config_file=path)
    with ModelServer(options) as server:
        requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/m:predict", ...)

``tfx-canary serve`` runs the same object in the foreground until SIGTERM/SIGINT, then drains.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent import futures

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import configs, inference
from serving.batching import BatchScheduler
from serving.errors import ServingError, deadline_exceeded, invalid_argument
from serving.grpc_service import ModelService, PredictionService, serialized_examples, tensors_of
from serving.manager import ModelManager, Resolved
from serving.monitoring import WARMUP_LATENCY, ServingMetrics
from serving.options import AUTO_PORT, ServerOptions
from serving.paths import MAX_WARMUP_RECORDS, WARMUP_FILE
from serving.rest import RestApi, RestServer
from serving.servable import Servable
from tfx_canary.errors import CanaryError, ConfigError

log = logging.getLogger(__name__)

# Requests in flight at once on the aiohttp carrier: enough that a full batch (64) can wait together.
REST_POOL_THREADS = 128


class StartupError(CanaryError, RuntimeError):
    """The server could not start; the message says why (TF Serving's wording where it has one)."""


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        options.validate()
        self.options = options
        self.metrics = ServingMetrics()
        try:
            self.monitoring = configs.read_monitoring_config(
                options.monitoring_config_file if options.rest_api_port != 0 else None
            )
            self.batching = (
                configs.read_batching_parameters(
                    options.batching_parameters_file, default_threads=os.cpu_count() or 1
                )
                if options.enable_batching
                else None
            )
            self.initial_config = self._read_model_config()
        except ConfigError as error:
            raise StartupError(str(error)) from error
        self.manager: ModelManager | None = None
        self.scheduler: BatchScheduler | None = None
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._rest = None  # RestServer or AioRestServer
        self._grpc: grpc.Server | None = None
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = False

    def _read_model_config(self):
        if self.options.model_config_file:
            return configs.read_model_server_config(self.options.model_config_file)
        return configs.single_model_config(self.options.model_name, self.options.model_base_path)

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> ModelServer:
        """Load the initial config (waiting for its models), then open the gRPC and REST ports."""
        options = self.options
        self.manager = ModelManager(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            saved_model_tags=tuple(t.strip() for t in options.saved_model_tags.split(",") if t.strip()),
            metrics=self.metrics,
            warmup=self._warm_up if options.enable_model_warmup else None,
        )
        if self.batching is not None:
            self.scheduler = BatchScheduler(self.batching, self.metrics)
        try:
            self.manager.reload(self.initial_config)
            self._start_grpc()
            self._start_rest()
        except ServingError as error:
            self.stop(grace_seconds=0)
            raise StartupError(f"Failed to start server. Error: {error}") from error
        except Exception:
            self.stop(grace_seconds=0)
            raise
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._poller = threading.Thread(target=self._poll_config, name="config-poller", daemon=True)
            self._poller.start()
        self._started = True
        return self

    def _start_grpc(self) -> None:
        options = self.options
        if options.port == 0 and not options.grpc_socket_path:
            return
        self._grpc = grpc.server(
            futures.ThreadPoolExecutor(
                max_workers=max(16, 4 * (os.cpu_count() or 1)), thread_name_prefix="grpc"
            ),
            options=[
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.max_receive_message_length", 2**31 - 1),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            PredictionService(self), self._grpc
        )
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(self), self._grpc)
        if options.port != 0:
            self.grpc_port = self._grpc.add_insecure_port(f"{options.host}:{max(options.port, 0)}")
            if self.grpc_port == 0:
                raise StartupError(f"Failed to bind gRPC to {options.host}:{options.port}")
        if options.grpc_socket_path:
            self._grpc.add_insecure_port(f"unix:{options.grpc_socket_path}")
        self._grpc.start()
        log.info("Running gRPC ModelServer at %s:%s ...", options.host, self.grpc_port)

    def _start_rest(self) -> None:
        options = self.options
        if options.rest_api_port == 0:
            return
        port = 0 if options.rest_api_port == AUTO_PORT else options.rest_api_port
        if options.rest_api_server == "aiohttp":  # the default; see serving/rest_aio.py for why
            from serving.rest_aio import AioRestServer

            threads = options.rest_api_num_threads or REST_POOL_THREADS
            self._rest = AioRestServer(
                RestApi(self), options.host, port, options.rest_api_max_request_bytes, threads
            )
        else:
            self._rest = RestServer(RestApi(self), options.host, port, options.rest_api_max_request_bytes)
        self.rest_port = self._rest.port
        self._rest.start()
        log.info("Exporting HTTP/REST API at:%s:%d ...", options.host, self.rest_port)

    def stop(self, grace_seconds: float = 10.0) -> None:
        """Stop accepting requests, let in-flight ones finish, then unload everything."""
        self._stopping.set()
        rest_done = threading.Thread(
            target=lambda: self._rest and self._rest.stop(grace_seconds), daemon=True
        )
        rest_done.start()
        if self._grpc is not None:
            self._grpc.stop(grace_seconds).wait()
        rest_done.join()
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.manager is not None:
            self.manager.stop()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self._started = False

    def __enter__(self) -> ModelServer:
        return self if self._started else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ---- config reload ------------------------------------------------------------------------------

    def reload_config(self, config) -> None:
        """Apply a whole new ModelServerConfig (from HandleReloadConfigRequest or the file poll)."""
        self.manager.reload(config)

    def _poll_config(self) -> None:
        period = self.options.model_config_file_poll_wait_seconds
        while not self._stopping.wait(period):
            try:
                config = configs.read_model_server_config(self.options.model_config_file)
            except ConfigError as error:
                log.error("Failed to read ModelServerConfig file: %s", error)
                continue
            try:
                self.manager.reload(config)
            except ServingError as error:
                log.error("PollFilesystemAndReloadConfig failed to ReloadConfig: %s", error)

    # ---- request plumbing shared by REST and gRPC ---------------------------------------------------

    def runner(self, deadline: float | None):
        """How a request calls a signature: through the batch scheduler when batching is on."""
        scheduler = self.scheduler

        def run(signature, inputs):
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                raise deadline_exceeded("Deadline exceeded")
            if scheduler is not None:
                return scheduler.run(signature, inputs, remaining)
            outputs = signature(inputs)
            if deadline is not None and time.perf_counter() > deadline:
                raise deadline_exceeded("Deadline exceeded while running the model")
            return outputs

        return run

    def record_request(
        self,
        *,
        name: str,
        resolved: Resolved | None,
        label: str | None,
        code,
        api: str,
        entrypoint: str,
        started: float,
        examples: int,
    ) -> None:
        known = self.manager.is_configured(name)
        # Names that are not configured are not echoed into metric labels (unbounded cardinality).
        self.metrics.record_request(
            model=name if known else "",
            version=resolved.servable.version if resolved else None,
            label=(label or "") if known else "",
            status=code.name,
            api=api,
            entrypoint=entrypoint,
            latency_us=(time.perf_counter() - started) * 1e6,
            examples=examples,
        )

    # ---- warmup -------------------------------------------------------------------------------------

    def _warm_up(self, servable: Servable) -> None:
        """Replay ``assets.extra/tf_serving_warmup_requests`` (PredictionLogs); a failure fails the load."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(servable.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return
        started = time.perf_counter()
        run = inference.direct_run
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log_record = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log_record.WhichOneof("log_type")
            if kind == "predict_log":
                request = log_record.predict_log.request
                inference.predict(servable, request.model_spec.signature_name, tensors_of(request), run)
            elif kind == "classify_log":
                request = log_record.classify_log.request
                inference.classify(
                    servable, request.model_spec.signature_name, serialized_examples(request.input), run
                )
            elif kind == "regress_log":
                request = log_record.regress_log.request
                inference.regress(
                    servable, request.model_spec.signature_name, serialized_examples(request.input), run
                )
            else:
                raise invalid_argument(f"Unsupported log_type for warmup: {kind}")
        self.metrics.observe(WARMUP_LATENCY, (servable.path,), (time.perf_counter() - started) * 1e6)
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: %d.",
            servable.path,
            count,
        )
