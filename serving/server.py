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

from serving import configs, inference
from serving.batching import BatchScheduler
from serving.errors import ServingError, StartupError, deadline_exceeded, invalid_argument
from serving.grpc_service import serialized_examples, tensors_of
from serving.manager import ModelManager, Resolved
from serving.monitoring import WARMUP_LATENCY, WARMUP_REQUESTS, ServingMetrics
from serving.options import AUTO_PORT, ServerOptions
from serving.paths import MAX_WARMUP_RECORDS, WARMUP_FILE
from serving.rest import RestApi, RestServer
from serving.servable import Servable
from tfx_canary.errors import ConfigError

log = logging.getLogger(__name__)

# Requests in flight at once on the aiohttp carrier: enough that a full batch (64) can wait together.
REST_POOL_THREADS = 128

__all__ = ["ModelServer", "StartupError"]


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
            self.session_config = self._session_config()
        except ConfigError as error:
            raise StartupError(str(error)) from error
        self.manager: ModelManager | None = None
        self.scheduler: BatchScheduler | None = None
        self.rest_port: int | None = None
        self.grpc_port: int | None = None
        self._rest = None  # RestServer or AioRestServer
        self._grpc = None  # serving.grpc_server.AioGrpcServer
        self._poller: threading.Thread | None = None
        self._stopping = threading.Event()
        self._started = False

    def _read_model_config(self):
        if self.options.model_config_file:
            return configs.read_model_server_config(self.options.model_config_file)
        return configs.single_model_config(self.options.model_name, self.options.model_base_path)

    def _session_config(self):
        """The TensorFlow ConfigProto of --tensorflow_session_config_file, threads from the flags."""
        options = self.options
        config = configs.read_session_config(options.tensorflow_session_config_file)
        intra, inter = options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism
        if intra or inter:
            config.intra_op_parallelism_threads, config.inter_op_parallelism_threads = intra, inter
        elif options.tensorflow_session_parallelism:
            config.intra_op_parallelism_threads = options.tensorflow_session_parallelism
            config.inter_op_parallelism_threads = options.tensorflow_session_parallelism
        return config

    def _apply_threads(self) -> None:
        """The same thread counts for TF2 (eager) models; TensorFlow fixes them once it has run ops."""
        import tensorflow as tf

        config, threading_config = self.session_config, tf.config.threading
        for wanted, get, set_ in (
            (
                config.intra_op_parallelism_threads,
                threading_config.get_intra_op_parallelism_threads,
                threading_config.set_intra_op_parallelism_threads,
            ),
            (
                config.inter_op_parallelism_threads,
                threading_config.get_inter_op_parallelism_threads,
                threading_config.set_inter_op_parallelism_threads,
            ),
        ):
            if wanted and get() != wanted:
                try:
                    set_(wanted)
                except RuntimeError:  # TensorFlow already ran ops in this process (in-process servers)
                    log.warning(
                        "TensorFlow thread pools are already set up in this process; %d threads apply to "
                        "TF1 (session) models only",
                        wanted,
                    )
        log.info(
            "TensorFlow runs ops with %d intra-op and %d inter-op threads (0 = one per core)",
            threading_config.get_intra_op_parallelism_threads(),
            threading_config.get_inter_op_parallelism_threads(),
        )

    # ---- lifecycle ----------------------------------------------------------------------------------

    def start(self) -> ModelServer:
        """Load the initial config (waiting for its models), then open the gRPC and REST ports.

        As in TF Serving, the ports open only once every model of the initial config has a version
        AVAILABLE or has failed; a model that failed (after its load retries) fails the start-up with
        "N servable(s) did not become available".
        """
        options = self.options
        for warning in options.inert_flag_warnings():
            log.warning(warning)
        self._apply_threads()
        self.manager = ModelManager(
            file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            allow_version_labels_for_unavailable_models=options.allow_version_labels_for_unavailable_models,
            max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_micros=options.load_retry_interval_micros,
            num_load_threads=options.num_load_threads,
            saved_model_tags=tuple(t.strip() for t in options.saved_model_tags.split(",") if t.strip()),
            session_config=self.session_config,
            method_name_check=options.enable_signature_method_name_check,
            metrics=self.metrics,
            warmup=self._warm_up if options.enable_model_warmup else None,
        )
        if self.batching is not None:
            self.scheduler = BatchScheduler(self.batching, self.metrics)
        try:
            self.manager.reload(self.initial_config, initial=True)
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
        from serving.grpc_server import AioGrpcServer

        options = self.options
        if options.port == 0 and not options.grpc_socket_path:
            return
        self._grpc = AioGrpcServer(self)
        self.grpc_port = self._grpc.start()
        log.info("Running gRPC ModelServer at %s:%s ...", options.host, self.grpc_port)
        if options.grpc_socket_path:
            log.info("Running gRPC ModelServer at UNIX socket %s ...", options.grpc_socket_path)

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
            self._grpc.stop(grace_seconds)
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
        """Replay ``assets.extra/tf_serving_warmup_requests`` (PredictionLogs); a failure fails the load.

        Each record is replayed ``--num_request_iterations_for_warmup`` times (once when 0).
        """
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2

        path = os.path.join(servable.path, WARMUP_FILE)
        if not tf.io.gfile.exists(path):
            return
        iterations = max(1, self.options.num_request_iterations_for_warmup)
        started = time.perf_counter()
        count = 0
        for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS + 1):
            count += 1
            if count > MAX_WARMUP_RECORDS:
                raise invalid_argument(
                    f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}"
                )
            log_record = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            for _ in range(iterations):
                _replay(servable, log_record)
        self.metrics.observe(WARMUP_LATENCY, (servable.path,), (time.perf_counter() - started) * 1e6)
        self.metrics.add(WARMUP_REQUESTS, (servable.path,), count * iterations)
        log.info(
            "Finished reading warmup data for model at %s. Number of warmup records read: %d.",
            servable.path,
            count,
        )


def _replay(servable: Servable, log_record) -> None:
    """One warmup request, run directly on the servable (never batched), as TF Serving's warmup does."""
    run = inference.direct_run
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
