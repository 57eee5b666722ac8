"""Issue 15, deviations 3 and 4: every flag of TF Serving's ``main.cc`` is accepted; those that apply
work (checked through REST and gRPC), the rest warn once each; unknown flags, ``--version`` and a
missing config file behave as in ``tensorflow_model_server``."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import subprocess
import sys

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import classification_pb2, predict_pb2, prediction_service_pb2_grpc

from fixtures import models as fixture_models
from fixtures.contract import CONTRACT_MODEL
from serving import health
from serving.monitoring import WARMUP_REQUESTS
from serving.options import INERT_FLAGS, OWN_FLAGS, FlagError, ServerOptions, parse_flags
from tests.serving.conftest import http_request, start_server

# Every flag main.cc defines (tensorflow_serving/model_servers/main.cc), with a value to give it.
MAIN_CC_FLAGS = {
    "port": "8500",
    "grpc_socket_path": "/tmp/tf-serving.sock",
    "rest_api_port": "8501",
    "rest_api_num_threads": "4",
    "rest_api_timeout_in_ms": "5000",
    "rest_api_enable_cors_support": "true",
    "enable_batching": "true",
    "allow_version_labels_for_unavailable_models": "true",
    "batching_parameters_file": "",
    "enable_per_model_batching_parameters": "true",
    "model_config_file": "",
    "model_config_file_poll_wait_seconds": "1",
    "model_name": "m",
    "model_base_path": "/models/m",
    "num_load_threads": "2",
    "num_unload_threads": "2",
    "max_num_load_retries": "1",
    "load_retry_interval_micros": "-1",
    "file_system_poll_wait_seconds": "2",
    "flush_filesystem_caches": "false",
    "tensorflow_session_parallelism": "2",
    "tensorflow_session_config_file": "",
    "tensorflow_intra_op_parallelism": "2",
    "tensorflow_inter_op_parallelism": "0",
    "use_alts_credentials": "false",
    "ssl_config_file": "",
    "platform_config_file": "",
    "per_process_gpu_memory_fraction": "0.5",
    "saved_model_tags": "serve",
    "grpc_channel_arguments": "grpc.so_reuseaddr=1",
    "grpc_max_threads": "8",
    "enable_model_warmup": "true",
    "num_request_iterations_for_warmup": "2",
    "version": "false",
    "monitoring_config_file": "",
    "remove_unused_fields_from_bundle_metagraph": "true",
    "prefer_tflite_model": "false",
    "num_tflite_pools": "2",
    "num_tflite_interpreters_per_pool": "1",
    "enable_signature_method_name_check": "false",
    "xla_cpu_compilation_enabled": "false",
    "xla_gpu_compilation_enabled": "false",
    "enable_profiler": "true",
    "thread_pool_factory_config_file": "",
    "mixed_precision": "bfloat16",
    "skip_initialize_tpu": "false",
    "enable_grpc_healthcheck_service": "true",
    "enable_serialization_as_tensor_content": "false",
}


def test_every_main_cc_flag_is_accepted_and_nothing_else_is_declared():
    declared = {f.name for f in dataclasses.fields(ServerOptions) if f.metadata.get("flag", True)}
    assert declared == set(MAIN_CC_FLAGS) | set(OWN_FLAGS)
    options = parse_flags([f"--{name}={value}" for name, value in MAIN_CC_FLAGS.items()])
    assert options.load_retry_interval_micros == -1 and options.per_process_gpu_memory_fraction == 0.5
    assert options.grpc_channel_arguments == "grpc.so_reuseaddr=1" and options.num_load_threads == 2


def test_each_inert_flag_given_gets_one_warning_naming_it(contract_root, caplog):
    options = parse_flags(
        ["--model_base_path=/m", "--per_process_gpu_memory_fraction=0.5", "--enable_profiler=true"]
    )
    warnings = options.inert_flag_warnings()
    assert len(warnings) == 2
    assert warnings[0].startswith("--per_process_gpu_memory_fraction is accepted for compatibility")
    assert "no GPU memory" in warnings[0] and "profiler gRPC service is out of scope" in warnings[1]
    assert parse_flags(["--model_base_path=/m", "--num_load_threads=2"]).inert_flag_warnings() == []
    with (
        caplog.at_level(logging.WARNING, logger="serving"),
        start_server(
            model_config_file=str(contract_root / "models.config"),
            allow_version_labels_for_unavailable_models=True,
            mixed_precision="bfloat16",
        ),
    ):
        pass
    lines = [r.getMessage() for r in caplog.records if "accepted for compatibility" in r.getMessage()]
    assert lines == [
        f"--mixed_precision is accepted for compatibility with tensorflow_model_server but has "
        f"no effect here: {INERT_FLAGS['mixed_precision']}."
    ]


def test_setting_all_three_parallelism_flags_fails_with_tf_servings_message():
    with pytest.raises(FlagError, match=re.escape("You cannot configure all.")):
        parse_flags(
            [
                "--model_base_path=/m",
                "--tensorflow_session_parallelism=1",
                "--tensorflow_intra_op_parallelism=1",
                "--tensorflow_inter_op_parallelism=1",
            ]
        )


def _cli(*flags: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "tfx_canary.cli", "serve", *flags]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout, check=False)


def test_unknown_flag_version_and_missing_config_file_on_the_command_line(tmp_path):
    unknown = _cli("--model_base_path=/m", "--no_such_flag=1")
    assert (unknown.returncode, unknown.stderr.strip()) == (2, "error: unknown argument: --no_such_flag=1")
    version = _cli("--version")
    assert version.returncode == 0
    lines = version.stdout.splitlines()
    assert re.fullmatch(
        r"TensorFlow ModelServer: \d+\.\d+\.\d+ \(tfx-canary .* embedded model server\)", lines[0]
    )
    assert lines[1] == f"TensorFlow Library: {tf.__version__}"
    missing = tmp_path / "models.config"
    refused = _cli(f"--model_config_file={missing}", "--port=-1")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: Failed to start server. Error: NOT_FOUND: {missing}; No such file or directory"
    )


def _stub(server):
    return prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    )


def _predict(values) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = CONTRACT_MODEL
    request.model_spec.version.value = 1
    request.inputs["x"].CopyFrom(tf.make_tensor_proto(values, dtype=tf.float32))
    return request


def _contract_server(contract_root, **flags):
    return start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
        **flags,
    )


def test_grpc_channel_arguments_reach_the_grpc_server(contract_root):
    # TF Serving's own test base passes grpc.so_reuseaddr=1; a message-size limit shows the args apply.
    args = "grpc.so_reuseaddr=1,grpc.max_receive_message_length=4096"
    with _contract_server(contract_root, grpc_channel_arguments=args) as server:
        stub = _stub(server)
        assert tf.make_ndarray(stub.Predict(_predict([2.0]), 10).outputs["y"]).tolist() == [3.0]
        with pytest.raises(grpc.RpcError) as raised:
            stub.Predict(_predict([1.0] * 2000), 10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "4096" in raised.value.details()
        # REST is not a gRPC channel: the same 2000 values answer there.
        status, _h, body = http_request(
            server.rest_port,
            "POST",
            f"/v1/models/{CONTRACT_MODEL}/versions/1:predict",
            {"instances": [1.0] * 2000},
        )
        assert status == 200 and len(body["predictions"]) == 2000


def _health_check(channel, service: str):
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health.HealthCheckRequest.SerializeToString,
        response_deserializer=health.HealthCheckResponse.FromString,
    )
    return check(health.HealthCheckRequest(service=service), timeout=10).status


def test_grpc_health_service_only_with_the_flag(contract_root):
    with _contract_server(contract_root, enable_grpc_healthcheck_service=True) as server:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        assert [_health_check(channel, s) for s in ("", "ModelService", "PredictionService")] == [
            health.SERVING
        ] * 3
        with pytest.raises(grpc.RpcError) as raised:
            _health_check(channel, "tensorflow.serving.Nope")
        assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    with _contract_server(contract_root) as server:
        with pytest.raises(grpc.RpcError) as raised:
            _health_check(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"), "")
        assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type",
}


@pytest.mark.parametrize("carrier", ["aiohttp", "threading"])
def test_rest_cors_support(contract_root, carrier):
    path = f"/v1/models/{CONTRACT_MODEL}/versions/1:predict"
    with _contract_server(
        contract_root, rest_api_enable_cors_support=True, rest_api_server=carrier
    ) as server:
        status, headers, body = http_request(server.rest_port, "POST", path, {"instances": [2.0]})
        assert (status, body) == (200, {"predictions": [3.0]})
        assert {k: headers.get(k) for k in CORS} == CORS
        status, headers, _body = http_request(
            server.rest_port, "OPTIONS", path, headers={"Origin": "http://dashboard.local"}
        )
        assert status == 200 and {k: headers.get(k) for k in CORS} == CORS
        status, headers, _body = http_request(server.rest_port, "GET", "/v1/models/nope")
        assert status == 404 and headers.get("Access-Control-Allow-Origin") == "*"
    with _contract_server(contract_root, rest_api_server=carrier) as server:
        status, headers, body = http_request(server.rest_port, "POST", path, {"instances": [2.0]})
        assert status == 200 and "Access-Control-Allow-Origin" not in headers
        status, _h, body = http_request(
            server.rest_port, "OPTIONS", path, headers={"Origin": "http://x.local"}
        )
        assert status == 400 and body["error"].startswith("Malformed request: OPTIONS")


def test_warmup_requests_are_replayed_num_request_iterations_times(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    staging = base / ".1"
    import shutil

    shutil.copytree(half_plus_versions / "1", staging)
    fixture_models.write_warmup_requests(
        staging, [fixture_models.predict_warmup_log([1.0]), fixture_models.predict_warmup_log([2.0])]
    )
    staging.rename(base / "1")
    with start_server(
        model_name="m", model_base_path=str(base), num_request_iterations_for_warmup=3
    ) as server:
        assert server.metrics.value(WARMUP_REQUESTS, (str(base / "1"),)) == 6  # 2 records x 3
        assert http_request(server.rest_port, "POST", "/v1/models/m:predict", {"instances": [2.0]})[2] == {
            "predictions": [3.0]
        }


def test_tensor_content_serialization_only_with_the_flag(contract_root):
    with _contract_server(contract_root, enable_serialization_as_tensor_content=True) as server:
        y = _stub(server).Predict(_predict([2.0, 4.0]), 10).outputs["y"]
        assert list(y.float_val) == [] and y.tensor_content
        assert tf.make_ndarray(y).tolist() == [3.0, 4.0]


def test_signature_method_name_check(contract_root):
    classify = classification_pb2.ClassificationRequest()
    classify.model_spec.name = CONTRACT_MODEL
    classify.model_spec.signature_name = "classify_x_to_y"
    classify.input.example_list.examples.add().features.feature["x"].float_list.value.append(2.0)
    body = {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}
    path = f"/v1/models/{CONTRACT_MODEL}/versions/2:classify"
    # TF2 exports every signature with the predict method name, so the check refuses classify.
    message = (
        "Expected classification signature method_name to be tensorflow/serving/classify. "
        "Was: tensorflow/serving/predict"
    )
    with _contract_server(contract_root, enable_signature_method_name_check=True) as server:
        with pytest.raises(grpc.RpcError) as raised:
            _stub(server).Classify(classify, 10)
        assert (raised.value.code(), raised.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
        assert http_request(server.rest_port, "POST", path, body)[::2] == (400, {"error": message})
    with _contract_server(contract_root) as server:
        assert [c.score for c in _stub(server).Classify(classify, 10).result.classifications[0].classes] == [
            4.0
        ]


def test_thread_flags_set_tensorflows_thread_pools(tmp_path, contract_root):
    """In the serve process TensorFlow has not run yet, so both thread pools take the flags' sizes."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    command = [
        sys.executable,
        "-m",
        "tfx_canary.cli",
        "serve",
        f"--model_config_file={contract_root / 'models.config'}",
        "--allow_version_labels_for_unavailable_models=true",
        "--port=-1",
        "--tensorflow_intra_op_parallelism=1",
        "--tensorflow_inter_op_parallelism=2",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        line = process.stdout.readline()
        assert "Running gRPC ModelServer at 127.0.0.1:" in line
    finally:
        process.terminate()
        _out, err = process.communicate(timeout=60)
    assert "TensorFlow runs ops with 1 intra-op and 2 inter-op threads" in err
