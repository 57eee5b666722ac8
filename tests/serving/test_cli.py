"""``tfx-canary serve``: TF Serving's flags and start-up errors, and SIGTERM draining in-flight requests."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from serving.options import AUTO_PORT, FlagError, parse_flags
from tests.serving.conftest import http_request


def test_flags_use_tf_serving_names_forms_and_defaults():
    options = parse_flags(
        [
            "--model_base_path=/models/m",
            "--rest_api_port",
            "8501",
            "--enable_batching",
            "--enable_model_warmup=false",
        ]
    )
    assert (options.port, options.rest_api_port, options.model_name) == (8500, 8501, "default")
    assert options.enable_batching is True and options.enable_model_warmup is False
    assert options.file_system_poll_wait_seconds == 1 and options.max_num_load_retries == 5
    assert options.host == "127.0.0.1"
    assert parse_flags(
        ["--model_base_path=/m", "--allow_version_labels_for_unavailable_models=1"]
    ).allow_version_labels_for_unavailable_models


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model_base_path=/m", "--no_such_flag=1"], "unknown argument: --no_such_flag=1"),
        ([], "Both server_options.model_base_path and server_options.model_config_file are empty!"),
        (
            ["--model_base_path=/m", "--batching_parameters_file=/etc/hostname"],
            "batching_parameters_file is set without setting server_options.enable_batching to true.",
        ),
        (
            ["--model_base_path=/m", "--enable_batching=maybe"],
            "Couldn't interpret value maybe for flag enable_batching.",
        ),
        (["--model_base_path=/m", "--port=abc"], "Couldn't interpret value abc for flag port."),
        (["--model_base_path=/m", "--port=0"], "grpc_socket_path is empty"),
        (["--model_base_path=/m", "--port=8500", "--rest_api_port=8500"], "cannot be the same"),
        # TF Serving's exact start-up failure for a missing config file (issue 14, fault 7).
        (
            ["--model_config_file=/no/such/models.config"],
            "Failed to start server. Error: NOT_FOUND: /no/such/models.config; No such file or directory",
        ),
    ],
)
def test_bad_flags_fail_with_a_clear_message(argv, message):
    with pytest.raises(FlagError, match=re.escape(message)):
        parse_flags(argv)


def _serve(*flags: str) -> subprocess.Popen:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    command = [sys.executable, "-m", "tfx_canary.cli", "serve", *flags]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


# TF Serving's start-up lines, gRPC first; the REST one comes last.
_PORT_LINES = (
    ("grpc", r"Running gRPC ModelServer at 127\.0\.0\.1:(\d+)"),
    ("rest", r"REST API at:127\.0\.0\.1:(\d+)"),
)


def _ports(process: subprocess.Popen, timeout_s: float = 120) -> dict[str, int]:
    """The ports a ``serve`` process printed ({"grpc": ..., "rest": ...}), read from its stdout."""
    ports: dict[str, int] = {}
    deadline = time.monotonic() + timeout_s
    while "rest" not in ports:
        assert time.monotonic() < deadline, f"no REST start-up line in {timeout_s} s"
        line = process.stdout.readline()
        assert line, f"server exited early: {process.stderr.read()}"
        for name, pattern in _PORT_LINES:
            if match := re.search(pattern, line):
                ports[name] = int(match.group(1))
    return ports


def test_bad_model_config_fails_start_with_tf_serving_message(tmp_path):
    bad = tmp_path / "models.config"
    bad.write_text("improperly formatted file")
    process = _serve(f"--model_config_file={bad}", f"--port={AUTO_PORT}")
    _out, err = process.communicate(timeout=120)
    assert process.returncode == 1
    assert "Error parsing text-format tensorflow.serving.ModelServerConfig" in err


@pytest.mark.e2e
def test_serve_subprocess_answers_then_drains_on_sigterm(tmp_path, contract_root):
    batching = tmp_path / "batching.txt"
    batching.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1500000 }\n")
    process = _serve(
        f"--model_config_file={contract_root / 'models.config'}",
        "--allow_version_labels_for_unavailable_models=true",
        f"--port={AUTO_PORT}",
        f"--rest_api_port={AUTO_PORT}",
        "--enable_batching=true",
        f"--batching_parameters_file={batching}",
    )
    try:
        rest_port = _ports(process)["rest"]
        # This request waits ~1.5 s in an open batch; SIGTERM arrives meanwhile and must not cut it off.
        answers: list = []
        client = threading.Thread(
            target=lambda: answers.append(
                http_request(
                    rest_port, "POST", "/v1/models/half_plus/labels/stable:predict", {"instances": [2.0]}
                )
            )
        )
        client.start()
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        client.join(timeout=30)
        assert answers and answers[0][0] == 200 and answers[0][2] == {"predictions": [3.0]}
        assert process.wait(timeout=60) == 0
        # The serve process (only it) hands the GIL over less often: see serving/cli.py.
        assert "GIL switch interval: 20 ms" in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert json.dumps(answers[0][2])


@pytest.mark.e2e
def test_requests_still_queued_after_the_drain_do_not_keep_the_server_up(tmp_path):
    """--drain_seconds is the longest wait: a backlog of slow inferences, over REST and gRPC, is
    dropped after it, not served to the end (in Kubernetes, the kubelet's SIGKILL would come first)."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from fixtures.contract import write_model_config
    from fixtures.models import predict_requests
    from tests.rollout.bad_models import write_slow_model

    write_slow_model(tmp_path / "slow", 1, delay_ms=2000)
    config = write_model_config(tmp_path / "models.config", {"slow": {"base_path": tmp_path / "slow"}})
    process = _serve(
        f"--model_config_file={config}", f"--port={AUTO_PORT}", f"--rest_api_port={AUTO_PORT}",
        "--drain_seconds=1",
    )  # fmt: skip
    try:
        ports = _ports(process)
        channel = grpc.insecure_channel(f"127.0.0.1:{ports['grpc']}")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest.FromString(predict_requests("slow", [1.0])[0])
        answers: list = []

        def call_rest() -> None:
            try:
                answers.append(
                    http_request(ports["rest"], "POST", "/v1/models/slow:predict", {"instances": [1.0]})[0]
                )
            except OSError:  # the server closed the connection of a dropped request
                answers.append("rest dropped")

        def call_grpc() -> None:
            try:
                stub.Predict(request, 30)
                answers.append("grpc ok")
            except grpc.RpcError as error:
                answers.append(f"grpc {error.code().name}")

        call_rest()  # the model answers, in 2 s
        assert answers == [200], answers
        clients = [threading.Thread(target=f, daemon=True) for f in [call_rest, call_grpc] * 12]  # a backlog
        for client in clients:
            client.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        exited_after = time.monotonic() - signalled
        for client in clients:
            client.join(timeout=10)
        channel.close()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # the drain (1 s) and the server's own stop, not the backlog (24 calls of 2 s on 2 cores)
    assert exited_after < 5, f"exited {exited_after:.1f} s after SIGTERM"
    assert "rest dropped" in answers, answers  # closed, not left hanging
    assert any(a.startswith("grpc ") and a != "grpc ok" for a in answers[1:]), answers
    stderr = process.stderr.read()
    assert re.search(r"REST: dropped \d+ request\(s\) still waiting after the 1 s drain", stderr), stderr
    assert re.search(r"\d+ model call\(s\) still running after the 1 s drain are cut off", stderr), stderr
