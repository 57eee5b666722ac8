"""Read TF Serving's three config files with protobuf text format, strictly.

``ModelServerConfig`` comes from ``tensorflow-serving-api``. ``BatchingParameters`` and
``MonitoringConfig`` are not shipped there, so the same messages (same package, names, field numbers and
types as TF Serving's ``session_bundle_config.proto`` and ``monitoring_config.proto``) are declared here in
a private descriptor pool. ``text_format`` then rejects unknown fields with a message naming them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from serving.paths import DEFAULT_PROMETHEUS_PATH
from tfx_canary.errors import ConfigError


def _build_messages():
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(
        descriptor_pb2.FileDescriptorProto.FromString(
            wrappers_pb2.DESCRIPTOR.serialized_pb
        ).SerializeToString()
    )
    proto = descriptor_pb2.FileDescriptorProto(
        name="tfx_canary/serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    F = descriptor_pb2.FieldDescriptorProto
    optional, repeated = F.LABEL_OPTIONAL, F.LABEL_REPEATED

    def add(message, name, number, kind, label=optional, type_name=""):
        field = message.field.add(name=name, number=number, type=kind, label=label)
        if type_name:
            field.type_name = type_name

    batching = proto.message_type.add(name="BatchingParameters")
    for name, number in (
        ("max_batch_size", 1),
        ("batch_timeout_micros", 2),
        ("max_enqueued_batches", 3),
        ("num_batch_threads", 4),
    ):
        add(batching, name, number, F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")
    add(batching, "thread_pool_name", 5, F.TYPE_MESSAGE, type_name=".google.protobuf.StringValue")
    add(batching, "allowed_batch_sizes", 6, F.TYPE_INT64, label=repeated)
    add(batching, "pad_variable_length_inputs", 7, F.TYPE_BOOL)
    add(batching, "enable_large_batch_splitting", 8, F.TYPE_MESSAGE, type_name=".google.protobuf.BoolValue")
    add(batching, "max_execution_batch_size", 9, F.TYPE_MESSAGE, type_name=".google.protobuf.Int64Value")

    prometheus = proto.message_type.add(name="PrometheusConfig")
    add(prometheus, "enable", 1, F.TYPE_BOOL)
    add(prometheus, "path", 2, F.TYPE_STRING)
    monitoring = proto.message_type.add(name="MonitoringConfig")
    add(monitoring, "prometheus_config", 1, F.TYPE_MESSAGE, type_name=".tensorflow.serving.PrometheusConfig")

    pool.Add(proto)
    get = lambda name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name))  # noqa: E731
    return get("tensorflow.serving.BatchingParameters"), get("tensorflow.serving.MonitoringConfig")


BatchingParameters, MonitoringConfig = _build_messages()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise ConfigError(f"Failed to read config file {path}: {error.strerror or error}") from error


def read_session_config(path: str | None):
    """``--tensorflow_session_config_file``: a text ``tensorflow.ConfigProto`` (an empty one without)."""
    from tensorflow.core.protobuf import config_pb2

    config = config_pb2.ConfigProto()
    if path:
        try:
            text_format.Parse(_read(path), config)
        except text_format.ParseError as error:
            raise ConfigError(
                f"Error parsing text-format tensorflow.ConfigProto in {path}: {error}"
            ) from error
    return config


def parse_model_server_config(
    text: str, source: str = "<string>"
) -> model_server_config_pb2.ModelServerConfig:
    try:
        return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as error:
        raise ConfigError(
            f"Error parsing text-format tensorflow.serving.ModelServerConfig in {source}: {error}"
        ) from error


def read_model_server_config(path: str) -> model_server_config_pb2.ModelServerConfig:
    return parse_model_server_config(_read(path), path)


def single_model_config(name: str, base_path: str) -> model_server_config_pb2.ModelServerConfig:
    """What ``--model_name``/``--model_base_path`` mean: one model, platform tensorflow, latest version."""
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = name
    model.base_path = base_path
    model.model_platform = "tensorflow"
    return config


@dataclass(frozen=True)
class BatchingOptions:
    """Batching parameters with TF's SharedBatchScheduler defaults filled in."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 2
    thread_pool_name: str = "model_server_batch_threads"
    allowed_batch_sizes: tuple[int, ...] = field(default_factory=tuple)
    pad_variable_length_inputs: bool = False


def read_batching_parameters(path: str | None, default_threads: int) -> BatchingOptions:
    """Parse a ``--batching_parameters_file`` (or take the defaults when there is none) and check it."""
    if not path:
        return BatchingOptions(num_batch_threads=default_threads)
    try:
        message = text_format.Parse(_read(path), BatchingParameters())
    except text_format.ParseError as error:
        raise ConfigError(
            f"Error parsing text-format tensorflow.serving.BatchingParameters in {path}: {error}"
        ) from error

    def value(name, default):
        return getattr(message, name).value if message.HasField(name) else default

    options = BatchingOptions(
        max_batch_size=value("max_batch_size", 1000),
        batch_timeout_micros=value("batch_timeout_micros", 0),
        max_enqueued_batches=value("max_enqueued_batches", 10),
        num_batch_threads=value("num_batch_threads", default_threads),
        thread_pool_name=value("thread_pool_name", "model_server_batch_threads"),
        allowed_batch_sizes=tuple(message.allowed_batch_sizes),
        pad_variable_length_inputs=message.pad_variable_length_inputs,
    )
    problems = []
    if options.max_batch_size <= 0:
        problems.append("max_batch_size must be positive")
    if options.batch_timeout_micros < 0:
        problems.append("batch_timeout_micros must be non-negative")
    if options.max_enqueued_batches <= 0:
        problems.append("max_enqueued_batches must be positive")
    if options.num_batch_threads <= 0:
        problems.append("num_batch_threads must be positive")
    sizes = options.allowed_batch_sizes
    if sizes:
        if any(b <= a for a, b in itertools.pairwise(sizes)) or sizes[0] <= 0:
            problems.append("allowed_batch_sizes entries must increase monotonically")
        elif sizes[-1] != options.max_batch_size:
            problems.append("final entry in allowed_batch_sizes must equal max_batch_size")
    if message.HasField("enable_large_batch_splitting") and message.enable_large_batch_splitting.value:
        problems.append("enable_large_batch_splitting is not supported by this server")
    if problems:
        raise ConfigError(f"Invalid batching parameters in {path}: " + "; ".join(problems))
    return options


@dataclass(frozen=True)
class MonitoringOptions:
    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


def read_monitoring_config(path: str | None) -> MonitoringOptions:
    if not path:
        return MonitoringOptions()
    try:
        message = text_format.Parse(_read(path), MonitoringConfig())
    except text_format.ParseError as error:
        raise ConfigError(
            f"Error parsing text-format tensorflow.serving.MonitoringConfig in {path}: {error}"
        ) from error
    prometheus = message.prometheus_config
    return MonitoringOptions(prometheus.enable, prometheus.path or DEFAULT_PROMETHEUS_PATH)
