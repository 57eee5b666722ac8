"""tensorflow_model_server's flags: every flag ``model_servers/main.cc`` defines, defaults, start-up checks.

The same ``ServerOptions`` drives ``tfx-canary serve`` and the in-process ``ModelServer``. Flags that
apply here are honoured; the others (GPU, TPU, TF Lite, XLA, TLS/ALTS, the profiler ...) are accepted
and each one given gets one warning naming it and why it has no effect (``INERT_FLAGS``). Three
additions TF Serving does not have: ``--host`` (bind address, default 127.0.0.1),
``--rest_api_max_request_bytes`` (request bodies above it get 413) and ``--rest_api_server`` (which HTTP
server carries the REST API). A port of ``-1`` (``AUTO_PORT``) lets the OS choose; ``0`` keeps TF
Serving's meaning (that server is off).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass, field

from tfx_canary.errors import UsageError

AUTO_PORT = -1
REST_API_SERVERS = ("aiohttp", "threading")
# Flags of ours, not TF Serving's.
OWN_FLAGS = ("host", "rest_api_max_request_bytes", "rest_api_server")

PROFILER_NOTE = (
    "The TF profiler gRPC service (--enable_profiler) is out of scope: it is not served, and "
    "profiler clients get UNIMPLEMENTED."
)


class FlagError(UsageError, ValueError):
    """Flags that cannot start a server; the message is TF Serving's where it has one."""


# Accepted for compatibility, no effect here: why (printed once for each such flag given).
INERT_FLAGS = {
    "enable_per_model_batching_parameters": "per-model batching_params.pbtxt files are not read; "
    "every model batches with --batching_parameters_file",
    "num_unload_threads": "an unload only drops references to the model, at once on the manager thread",
    "flush_filesystem_caches": "TensorFlow's file-system block caches are not flushed from Python",
    "use_alts_credentials": "the embedded server speaks plaintext gRPC on loopback; ALTS needs GCP",
    "ssl_config_file": "the embedded server speaks plaintext gRPC on loopback; terminate TLS in front",
    "platform_config_file": "platforms are not pluggable here; use the individual session flags",
    "per_process_gpu_memory_fraction": "this server runs on CPU; there is no GPU memory to share",
    "remove_unused_fields_from_bundle_metagraph": "only the SignatureDefs are kept after a load, always",
    "prefer_tflite_model": "TF Lite models are not served here; the SavedModel is loaded",
    "num_tflite_pools": "TF Lite models are not served here",
    "num_tflite_interpreters_per_pool": "TF Lite models are not served here",
    "xla_cpu_compilation_enabled": "XLA is left as TensorFlow's Python runtime has it (available)",
    "xla_gpu_compilation_enabled": "this server runs on CPU",
    "enable_profiler": "the TF profiler gRPC service is out of scope and not served",
    "thread_pool_factory_config_file": "TF Serving's custom thread-pool factories do not exist here",
    "mixed_precision": "no mixed-precision graph rewrite is applied; models run as exported",
    "skip_initialize_tpu": "there is no TPU to initialize",
}


@dataclass
class ServerOptions:
    # gRPC
    port: int = 8500
    grpc_socket_path: str = ""
    grpc_channel_arguments: str = ""
    grpc_max_threads: int = 0  # 0: auto (max(16, 4 x CPUs))
    enable_grpc_healthcheck_service: bool = False
    use_alts_credentials: bool = False
    ssl_config_file: str = ""
    # REST
    rest_api_port: int = 0
    rest_api_num_threads: int = 0  # 0: auto
    rest_api_timeout_in_ms: int = 30000
    rest_api_enable_cors_support: bool = False
    # models
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    num_load_threads: int = 0
    num_unload_threads: int = 0
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    flush_filesystem_caches: bool = True
    saved_model_tags: str = "serve"
    platform_config_file: str = ""
    remove_unused_fields_from_bundle_metagraph: bool = True
    enable_signature_method_name_check: bool = False
    enable_serialization_as_tensor_content: bool = False
    # batching
    enable_batching: bool = False
    batching_parameters_file: str = ""
    enable_per_model_batching_parameters: bool = False
    # TensorFlow runtime
    tensorflow_session_parallelism: int = 0
    tensorflow_session_config_file: str = ""
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    per_process_gpu_memory_fraction: float = 0.0
    xla_cpu_compilation_enabled: bool = False
    xla_gpu_compilation_enabled: bool = False
    mixed_precision: str = ""
    skip_initialize_tpu: bool = False
    thread_pool_factory_config_file: str = ""
    # warmup, monitoring, TF Lite, profiler, version
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    monitoring_config_file: str = ""
    prefer_tflite_model: bool = False
    num_tflite_pools: int = 0
    num_tflite_interpreters_per_pool: int = 1
    enable_profiler: bool = True
    version: bool = False
    # ours
    host: str = "127.0.0.1"
    rest_api_max_request_bytes: int = 64 * 1024 * 1024
    rest_api_server: str = "aiohttp"
    # Flags given on the command line (None: in-process, so every value that differs from the default).
    given: frozenset[str] | None = field(default=None, metadata={"flag": False}, repr=False)

    def validate(self) -> None:
        """Reject contradictory flags before anything starts, with TF Serving's wording."""
        if not self.model_config_file and not self.model_base_path:
            raise FlagError(
                "Both server_options.model_base_path and server_options.model_config_file are empty!"
            )
        if self.batching_parameters_file and not self.enable_batching:
            raise FlagError(
                "server_options.batching_parameters_file is set without setting "
                "server_options.enable_batching to true."
            )
        if self.port == 0 and not self.grpc_socket_path:
            raise FlagError("server_options.grpc_port is 0 and server_options.grpc_socket_path is empty.")
        if self.port > 0 and self.port == self.rest_api_port:
            raise FlagError(f"--rest_api_port cannot be the same as the gRPC --port ({self.port}).")
        for name in ("port", "rest_api_port"):
            value = getattr(self, name)
            if value < AUTO_PORT or value > 65535:
                raise FlagError(
                    f"--{name}={value} is not a port number (0-65535, or -1 to let the OS choose)."
                )
        if (
            self.tensorflow_intra_op_parallelism > 0
            and self.tensorflow_inter_op_parallelism > 0
            and self.tensorflow_session_parallelism > 0
        ):
            raise FlagError(
                "Either configure server_options.tensorflow_session_parallelism or "
                "(server_options.tensorflow_intra_op_parallelism, "
                "server_options.tensorflow_inter_op_parallelism) separately. You cannot configure all."
            )
        for name in (
            "rest_api_timeout_in_ms",
            "rest_api_max_request_bytes",
            "num_tflite_interpreters_per_pool",
        ):
            if getattr(self, name) <= 0:
                raise FlagError(f"--{name} must be positive.")
        for name in (
            "max_num_load_retries",
            "num_load_threads",
            "num_unload_threads",
            "grpc_max_threads",
            "rest_api_num_threads",
            "num_request_iterations_for_warmup",
            "tensorflow_session_parallelism",
            "tensorflow_intra_op_parallelism",
            "tensorflow_inter_op_parallelism",
        ):
            if getattr(self, name) < 0:
                raise FlagError(f"--{name} must be non-negative.")
        if self.rest_api_server not in REST_API_SERVERS:
            raise FlagError(
                f"--rest_api_server={self.rest_api_server}: choose one of {', '.join(REST_API_SERVERS)}."
            )
        channel_arguments(self.grpc_channel_arguments)
        for name in (
            "model_config_file",
            "batching_parameters_file",
            "monitoring_config_file",
            "tensorflow_session_config_file",
        ):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                # TF Serving reads the file at start-up: Env's NOT_FOUND status, printed by main.cc.
                raise FlagError(
                    f"Failed to start server. Error: NOT_FOUND: {path}; No such file or directory"
                )

    def given_flags(self) -> frozenset[str]:
        """The flags set by the user: as given on the command line, else those off their default."""
        if self.given is not None:
            return self.given
        return frozenset(
            f.name
            for f in dataclasses.fields(self)
            if f.metadata.get("flag", True) and getattr(self, f.name) != f.default
        )

    def inert_flag_warnings(self) -> list[str]:
        """One line for each given flag that has no effect here, naming it and saying why."""
        given = self.given_flags()
        return [
            f"--{name} is accepted for compatibility with tensorflow_model_server but has no effect "
            f"here: {why}."
            for name, why in INERT_FLAGS.items()
            if name in given
        ]


def channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """``--grpc_channel_arguments``: ``key=value`` pairs split on commas; integer values pass as ints.

    As in TF Serving's ``parseGrpcChannelArgs``; gRPC ignores (and logs) keys it does not know.
    """
    result: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise FlagError(
                f"--grpc_channel_arguments: {item!r} is not key=value (e.g. grpc.max_connection_age_ms=2000)"
            )
        try:
            result.append((key, int(value)))
        except ValueError:
            result.append((key, value))
    return result


_BOOL_WORDS = {"true": True, "1": True, "false": False, "0": False}


def _flag_type(name: str, kind: type):
    def parse(text: str):
        try:
            if kind is bool:
                return _BOOL_WORDS[text.strip().lower()]
            return kind(text)
        except (KeyError, ValueError):
            raise argparse.ArgumentTypeError(f"Couldn't interpret value {text} for flag {name}.") from None

    parse.__name__ = kind.__name__
    return parse


_HELP = {
    "port": "gRPC port (0 = off, needs --grpc_socket_path; -1 = let the OS choose)",
    "grpc_socket_path": "also serve gRPC on this UNIX socket",
    "grpc_channel_arguments": "comma-separated gRPC server arguments, e.g. grpc.max_connection_age_ms=2000",
    "grpc_max_threads": "threads that run unbatched gRPC requests (0 = max(16, 4 x CPUs))",
    "enable_grpc_healthcheck_service": "serve grpc.health.v1.Health (ModelService, PredictionService)",
    "rest_api_port": "HTTP/REST port (0 = off; -1 = let the OS choose)",
    "rest_api_num_threads": "REST worker threads with --rest_api_server=aiohttp (0 = 128)",
    "rest_api_timeout_in_ms": "REST request timeout; expiry answers 504",
    "rest_api_enable_cors_support": "add CORS headers to REST answers and answer OPTIONS preflights",
    "model_name": "model name in single-model mode",
    "model_base_path": "model directory holding integer-named versions (single-model mode)",
    "model_config_file": "text ModelServerConfig; overrides --model_name/--model_base_path",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file every N s (0 = once)",
    "file_system_poll_wait_seconds": "scan base paths for versions every N s (0 = only on config change)",
    "allow_version_labels_for_unavailable_models": "let a new label point at a version not loaded yet",
    "num_load_threads": "versions loaded at once (0 = one, on a load thread of its own)",
    "max_num_load_retries": "retries after a failed load",
    "load_retry_interval_micros": "wait between load retries (negative = no wait)",
    "saved_model_tags": "comma-separated MetaGraph tags to load",
    "enable_signature_method_name_check": "check SignatureDef method_name for predict/classify/regress",
    "enable_serialization_as_tensor_content": "gRPC Predict answers with tensor_content, not *_val fields",
    "enable_batching": "merge concurrent requests into batches",
    "batching_parameters_file": "text BatchingParameters (needs --enable_batching)",
    "tensorflow_session_parallelism": "threads for both TensorFlow thread pools (0 = auto)",
    "tensorflow_session_config_file": "text ConfigProto for the TensorFlow runtime (threads apply)",
    "tensorflow_intra_op_parallelism": "threads within one op (0 = auto)",
    "tensorflow_inter_op_parallelism": "ops run at once (0 = auto)",
    "enable_model_warmup": "replay assets.extra/tf_serving_warmup_requests at load",
    "num_request_iterations_for_warmup": "times each warmup request is replayed (used if > 0)",
    "monitoring_config_file": "text MonitoringConfig (Prometheus on the REST port)",
    "version": "print the versions and exit",
    "host": "address to bind (default 127.0.0.1; TF Serving binds all interfaces)",
    "rest_api_max_request_bytes": "largest accepted REST body; bigger gets 413",
    "rest_api_server": "HTTP server for REST: aiohttp (default; one event loop + worker pool) or threading",
}


def _help(name: str) -> str:
    if name in INERT_FLAGS:
        return f"accepted, no effect here: {INERT_FLAGS[name]}"
    return _HELP[name]


def flag_fields() -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(ServerOptions) if f.metadata.get("flag", True)]


def add_flags(parser: argparse.ArgumentParser, suppress_defaults: bool = False) -> None:
    """Declare every flag with TF Serving's name; ``--flag=value`` and ``--flag value`` both work.

    ``suppress_defaults`` leaves flags that were not given out of the namespace, so the caller can tell
    which ones the user set (for the inert-flag warnings).
    """
    for option in flag_fields():
        kind = {"int": int, "str": str, "bool": bool, "float": float}[str(option.type)]
        flag = f"--{option.name}"
        default = argparse.SUPPRESS if suppress_defaults else option.default
        common = {"dest": option.name, "default": default, "help": _help(option.name)}
        if kind is bool:
            parser.add_argument(
                flag,
                nargs="?",
                const=True,
                type=_flag_type(option.name, bool),
                metavar="true|false",
                **common,
            )
        else:
            parser.add_argument(
                flag, type=_flag_type(option.name, kind), metavar=kind.__name__.upper(), **common
            )


def options_from_args(args: argparse.Namespace, validate: bool = True) -> ServerOptions:
    values = {f.name: getattr(args, f.name) for f in flag_fields() if hasattr(args, f.name)}
    options = ServerOptions(**values, given=frozenset(values))
    if validate:
        options.validate()
    return options


class _StrictParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise FlagError(message)


def unknown_argument(extra: list[str]) -> FlagError:
    """TF Serving's wording for a flag it does not define (``main.cc``)."""
    return FlagError(f"unknown argument: {extra[0]}")


def parse_flags(argv: list[str]) -> ServerOptions:
    """Parse tensorflow_model_server-style flags (used by tests and tools that start servers)."""
    parser = _StrictParser(prog="tfx-canary serve", add_help=False)
    add_flags(parser, suppress_defaults=True)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise unknown_argument(unknown)
    return options_from_args(args)
