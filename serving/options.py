"""tensorflow_model_server's flags: names, defaults and start-up checks (``model_servers/main.cc``).

The same ``ServerOptions`` drives ``tfx-canary serve`` and the in-process ``ModelServer``. Three additions
that TF Serving does not have: ``--host`` (bind address, default 127.0.0.1),
``--rest_api_max_request_bytes`` (request bodies above it get 413) and ``--rest_api_server`` (which HTTP
server carries the REST API; ``benchmarks/serving_bench.py`` measures them). A port of ``-1`` (``AUTO_PORT``)
lets the OS choose; ``0`` keeps TF Serving's meaning (that server is off).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from dataclasses import dataclass

from tfx_canary.errors import UsageError

AUTO_PORT = -1
REST_API_SERVERS = ("aiohttp", "threading")


class FlagError(UsageError, ValueError):
    """Flags that cannot start a server; the message is TF Serving's where it has one."""


@dataclass
class ServerOptions:
    port: int = 8500
    grpc_socket_path: str = ""
    rest_api_port: int = 0
    rest_api_num_threads: int = 0
    rest_api_timeout_in_ms: int = 30000
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config_file_poll_wait_seconds: int = 0
    file_system_poll_wait_seconds: int = 1
    allow_version_labels_for_unavailable_models: bool = False
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60_000_000
    enable_batching: bool = False
    batching_parameters_file: str = ""
    monitoring_config_file: str = ""
    enable_model_warmup: bool = True
    saved_model_tags: str = "serve"
    host: str = "127.0.0.1"
    rest_api_max_request_bytes: int = 64 * 1024 * 1024
    rest_api_server: str = "aiohttp"

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
        if self.rest_api_timeout_in_ms <= 0:
            raise FlagError("--rest_api_timeout_in_ms must be positive.")
        if self.max_num_load_retries < 0 or self.load_retry_interval_micros < 0:
            raise FlagError("--max_num_load_retries and --load_retry_interval_micros must be non-negative.")
        if self.rest_api_max_request_bytes <= 0:
            raise FlagError("--rest_api_max_request_bytes must be positive.")
        if self.rest_api_server not in REST_API_SERVERS:
            raise FlagError(
                f"--rest_api_server={self.rest_api_server}: choose one of {', '.join(REST_API_SERVERS)}."
            )
        for name in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
            path = getattr(self, name)
            if path and not os.path.isfile(path):
                raise FlagError(f"--{name}={path}: no such file.")


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
    "rest_api_port": "HTTP/REST port (0 = off; -1 = let the OS choose)",
    "rest_api_num_threads": "REST worker threads with --rest_api_server=aiohttp (0 = 128)",
    "rest_api_timeout_in_ms": "REST request timeout; expiry answers 504",
    "model_name": "model name in single-model mode",
    "model_base_path": "model directory holding integer-named versions (single-model mode)",
    "model_config_file": "text ModelServerConfig; overrides --model_name/--model_base_path",
    "model_config_file_poll_wait_seconds": "re-read --model_config_file every N s (0 = once)",
    "file_system_poll_wait_seconds": "scan base paths for versions every N s (0 = only on config change)",
    "allow_version_labels_for_unavailable_models": "let a new label point at a version not loaded yet",
    "max_num_load_retries": "retries after a failed load",
    "load_retry_interval_micros": "wait between load retries",
    "enable_batching": "merge concurrent requests into batches",
    "batching_parameters_file": "text BatchingParameters (needs --enable_batching)",
    "monitoring_config_file": "text MonitoringConfig (Prometheus on the REST port)",
    "enable_model_warmup": "replay assets.extra/tf_serving_warmup_requests at load",
    "saved_model_tags": "comma-separated MetaGraph tags to load",
    "host": "address to bind (default 127.0.0.1; TF Serving binds all interfaces)",
    "rest_api_max_request_bytes": "largest accepted REST body; bigger gets 413",
    "rest_api_server": "HTTP server for REST: aiohttp (default; one event loop + worker pool) or threading",
}


def add_flags(parser: argparse.ArgumentParser) -> None:
    """Declare every flag with TF Serving's name; ``--flag=value`` and ``--flag value`` both work."""
    for option in dataclasses.fields(ServerOptions):
        kind = {"int": int, "str": str, "bool": bool}[str(option.type)]
        flag = f"--{option.name}"
        common = {"dest": option.name, "default": option.default, "help": _HELP[option.name]}
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


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)}
    options = ServerOptions(**values)
    options.validate()
    return options


class _StrictParser(argparse.ArgumentParser):
    def error(self, message: str):
        raise FlagError(message)


def parse_flags(argv: list[str]) -> ServerOptions:
    """Parse tensorflow_model_server-style flags (used by tests and tools that start servers)."""
    parser = _StrictParser(prog="tfx-canary serve", add_help=False)
    add_flags(parser)
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        raise FlagError(f"unknown argument: {unknown[0]}")
    return options_from_args(args)
