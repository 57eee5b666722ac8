"""What tensorflow_model_server accepts, for checking the command lines in serving_configs/.

The flag names come from TF Serving's ``model_servers/main.cc`` (see the contract notes, §1.1);
the batching and monitoring messages mirror ``session_bundle_config.proto: BatchingParameters``
and ``monitoring_config.proto``, which ``tensorflow-serving-api`` does not ship.
"""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2

TF_SERVING_FLAGS = frozenset(
    {
        "port",
        "grpc_socket_path",
        "rest_api_port",
        "rest_api_num_threads",
        "rest_api_timeout_in_ms",
        "rest_api_enable_cors_support",
        "model_name",
        "model_base_path",
        "model_config_file",
        "model_config_file_poll_wait_seconds",
        "file_system_poll_wait_seconds",
        "allow_version_labels_for_unavailable_models",
        "max_num_load_retries",
        "load_retry_interval_micros",
        "num_load_threads",
        "num_unload_threads",
        "flush_filesystem_caches",
        "enable_batching",
        "batching_parameters_file",
        "enable_per_model_batching_parameters",
        "monitoring_config_file",
        "platform_config_file",
        "enable_model_warmup",
        "saved_model_tags",
        "tensorflow_intra_op_parallelism",
        "tensorflow_inter_op_parallelism",
        "tensorflow_session_parallelism",
        "enable_grpc_healthcheck_service",
        "grpc_channel_arguments",
        "enable_signature_method_name_check",
        "enable_profiler",
        "enable_serialization_as_tensor_content",
    }
)

# What every deployment of this project sets: a polled config file (labels move without restarts),
# labels allowed at startup (a restarted pod would otherwise refuse the config), batching, metrics.
REQUIRED_FLAGS = {
    "rest_api_port": "8501",
    "model_config_file_poll_wait_seconds": "5",
    "file_system_poll_wait_seconds": "1",
    "allow_version_labels_for_unavailable_models": "true",
    "enable_batching": "true",
}


def parse_flags(args: Sequence[str]) -> dict[str, str]:
    """``--name=value`` arguments as a dict; anything else is an error (TF Serving takes no positionals)."""
    flags: dict[str, str] = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ValueError(f"not a --flag=value argument: {arg!r}")
        name, value = arg[2:].split("=", 1)
        if name in flags:
            raise ValueError(f"flag --{name} given twice")
        flags[name] = value
    return flags


def check_tf_serving_args(args: Sequence[str]) -> dict[str, str]:
    """Check a tensorflow_model_server command line against the rules in main.cc; return its flags."""
    flags = parse_flags(args)
    unknown = sorted(set(flags) - TF_SERVING_FLAGS)
    assert not unknown, f"not tensorflow_model_server flags: {unknown}"
    for name, value in REQUIRED_FLAGS.items():
        assert flags.get(name) == value, f"--{name} should be {value}, is {flags.get(name)}"
    assert flags["port"] != flags["rest_api_port"], "REST is silently skipped when it shares the gRPC port"
    # main.cc refuses to start with a batching file but batching off; monitoring needs the REST port.
    assert "batching_parameters_file" not in flags or flags["enable_batching"] == "true"
    assert flags["monitoring_config_file"]
    assert "model_name" not in flags and "model_base_path" not in flags, "ignored when a config file is set"
    return flags


def _config_messages() -> dict[str, type]:
    """BatchingParameters and MonitoringConfig classes, built from their field lists."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(
        descriptor_pb2.FileDescriptorProto.FromString(_wrappers_file()).SerializeToString()
    )
    file_proto = descriptor_pb2.FileDescriptorProto(
        name="tfx_canary_test/serving_configs.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    batching = file_proto.message_type.add(name="BatchingParameters")
    fields = descriptor_pb2.FieldDescriptorProto
    for number, (name, wrapper) in enumerate(
        [
            ("max_batch_size", "Int64Value"),
            ("batch_timeout_micros", "Int64Value"),
            ("max_enqueued_batches", "Int64Value"),
            ("num_batch_threads", "Int64Value"),
            ("thread_pool_name", "StringValue"),
        ],
        start=1,
    ):
        batching.field.add(
            name=name, number=number, type=fields.TYPE_MESSAGE, type_name=f".google.protobuf.{wrapper}"
        )
    batching.field.add(
        name="allowed_batch_sizes", number=6, type=fields.TYPE_INT64, label=fields.LABEL_REPEATED
    )
    batching.field.add(name="pad_variable_length_inputs", number=7, type=fields.TYPE_BOOL)
    prometheus = file_proto.message_type.add(name="PrometheusConfig")
    prometheus.field.add(name="enable", number=1, type=fields.TYPE_BOOL)
    prometheus.field.add(name="path", number=2, type=fields.TYPE_STRING)
    monitoring = file_proto.message_type.add(name="MonitoringConfig")
    monitoring.field.add(
        name="prometheus_config",
        number=1,
        type=fields.TYPE_MESSAGE,
        type_name=".tensorflow.serving.PrometheusConfig",
    )
    pool.Add(file_proto)
    return {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"tensorflow.serving.{name}"))
        for name in ("BatchingParameters", "MonitoringConfig")
    }


def _wrappers_file() -> bytes:
    proto = descriptor_pb2.FileDescriptorProto()
    wrappers_pb2.DESCRIPTOR.CopyToProto(proto)
    return proto.SerializeToString()


def parse_text_config(text: str, message_name: str):
    """Parse a BatchingParameters / MonitoringConfig text proto strictly (unknown fields raise)."""
    return text_format.Parse(text, _config_messages()[message_name]())
