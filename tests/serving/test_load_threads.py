"""Issue 15, deviation 6 and the start-up rule: loads like TF Serving's aspired-versions manager.

A broken version retrying (TF Serving's default: 5 retries, 60 s apart) holds up no other model or
version; its retries stop as soon as it leaves the config (``CancelLoadServableRetry``) and its status
then shows END with the error, over REST and gRPC. At start-up the ports open once every model has a
version AVAILABLE or has failed; a failed one fails the start with TF Serving's message.
"""

from __future__ import annotations

import shutil
import time

import grpc
import pytest
from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_service_pb2_grpc

from serving.configs import parse_model_server_config
from serving.monitoring import LOAD_ATTEMPT_COUNT
from serving.server import StartupError
from tests.serving.broken_model import write_broken_model
from tests.serving.conftest import http_request, start_server
from tests.serving.test_manager import add_version, config_text, predict, specific, states, wait_for

# TF Serving's defaults: the broken version would block a single-threaded manager for 5 minutes.
DEFAULT_RETRIES = dict(max_num_load_retries=5, load_retry_interval_micros=60_000_000)
BROKEN = "DecodeError: Error parsing message"
# A manager that loads on its only thread would block these for minutes: fail instead of hanging.
pytestmark = pytest.mark.timeout(90)


def grpc_status(server, model: str = "m") -> dict[int, tuple[int, str]]:
    stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    response = stub.GetModelStatus(request, 10)
    return {e.version: (e.state, e.status.error_message) for e in response.model_version_status}


def rest_entry(server, version: int, model: str = "m") -> dict:
    _s, _h, body = http_request(server.rest_port, "GET", f"/v1/models/{model}/versions/{version}")
    return body["model_version_status"][0]


def test_a_retrying_version_blocks_neither_the_next_version_nor_the_config_and_stops_when_removed(
    tmp_path, half_plus_versions
):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    write_broken_model(base, 2)
    config_file = tmp_path / "models.config"
    config_file.write_text(config_text(base, specific(1, 2)))
    started = time.monotonic()
    with start_server(
        model_config_file=str(config_file), model_config_file_poll_wait_seconds=1, **DEFAULT_RETRIES
    ) as server:
        # Version 1 is served within seconds although version 2 (loaded first: highest) waits 60 s to retry.
        assert time.monotonic() - started < 20
        assert predict(server, 2.0) == (200, {"predictions": [3.0]})
        assert states(server) == {1: "AVAILABLE", 2: "LOADING"}
        broken_path = str(base / "2")
        assert server.metrics.value(LOAD_ATTEMPT_COUNT, (broken_path, "fail")) == 1
        # The version leaves the config (and the disk): its retries stop and it ends, with its error.
        config_file.write_text(config_text(base, specific(1)))
        shutil.rmtree(base / "2")
        wait_for(lambda: states(server).get(2) == "END", timeout=15)
        entry = rest_entry(server, 2)
        assert entry["status"]["error_code"] != "OK" and BROKEN in entry["status"]["error_message"]
        state, message = grpc_status(server)[2]
        assert state == get_model_status_pb2.ModelVersionStatus.END and BROKEN in message
        assert server.metrics.value(LOAD_ATTEMPT_COUNT, (broken_path, "fail")) == 1
        assert states(server)[1] == "AVAILABLE"


def test_a_newer_version_is_tried_while_a_broken_one_waits_to_retry(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    with start_server(model_name="m", model_base_path=str(base), **DEFAULT_RETRIES) as server:
        write_broken_model(base, 2)
        wait_for(lambda: server.metrics.value(LOAD_ATTEMPT_COUNT, (str(base / "2"), "fail")) == 1, timeout=15)
        add_version(half_plus_versions, base, 3)  # single-model mode: latest wins
        wait_for(lambda: states(server).get(3) == "AVAILABLE", timeout=15)
        assert predict(server, 2.0) == (200, {"predictions": [5.0]})
        wait_for(lambda: states(server).get(2) == "END" and states(server).get(1) == "END", timeout=15)
        assert BROKEN in rest_entry(server, 2)["status"]["error_message"]
        assert BROKEN in grpc_status(server)[2][1]


def test_a_reload_that_adds_a_broken_model_answers_tf_servings_message(tmp_path, half_plus_versions):
    good, bad = tmp_path / "good", tmp_path / "bad"
    add_version(half_plus_versions, good, 1)
    write_broken_model(bad, 1)
    with start_server(
        model_config_file=str(_two_models(tmp_path, good, bad, "model_config_list {}"))
    ) as server:
        # A reload that adds a broken model answers with TF Serving's "model(s)" message; the good one serves.
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))
        config = parse_model_server_config(_two_models_text(good, bad))
        with pytest.raises(grpc.RpcError) as raised:
            stub.HandleReloadConfigRequest(model_management_pb2.ReloadConfigRequest(config=config), 30)
        assert raised.value.code() == grpc.StatusCode.UNKNOWN
        assert raised.value.details().startswith(
            "1 model(s) did not become available: {{{name: bad version: 1} due to error: UNKNOWN: " + BROKEN
        )
        assert raised.value.details().endswith("}, }")
        assert predict(server, 2.0, "/v1/models/good") == (200, {"predictions": [3.0]})
        assert states(server, "bad") == {1: "END"}


def test_a_model_that_cannot_load_at_start_up_fails_the_start_like_tf_serving(tmp_path, half_plus_versions):
    good, bad = tmp_path / "good", tmp_path / "bad"
    add_version(half_plus_versions, good, 1)
    write_broken_model(bad, 7)
    config = _two_models(tmp_path, good, bad, _two_models_text(good, bad))
    with pytest.raises(StartupError) as raised:
        start_server(model_config_file=str(config), num_load_threads=2)
    message = str(raised.value)
    assert message.startswith(
        "Failed to start server. Error: UNKNOWN: 1 servable(s) did not become available: "
        "{{{name: bad version: 7} due to error: UNKNOWN: " + BROKEN
    )
    assert message.endswith("}, }")


def _two_models_text(good, bad) -> str:
    return (
        f'model_config_list {{ config {{ name: "good" base_path: "{good}" model_platform: "tensorflow" }} '
        f'config {{ name: "bad" base_path: "{bad}" model_platform: "tensorflow" }} }}'
    )


def _two_models(tmp_path, good, bad, text: str):
    path = tmp_path / "models.config"
    path.write_text(text)
    return path
