"""Version discovery, availability-preserving loads, load failures, labels and config reload."""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import grpc
import pytest
from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

from serving.configs import parse_model_server_config, single_model_config
from serving.errors import ServingError
from serving.manager import discover_versions, validate_config
from serving.monitoring import LOAD_ATTEMPT_COUNT
from serving.server import StartupError
from tests.serving.broken_model import write_broken_model
from tests.serving.conftest import http_request, start_server


def add_version(source: Path, base: Path, version: int, as_name: str | None = None) -> Path:
    """Copy a fixture version in under a non-numeric name, then rename (what a safe Pusher does)."""
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".{version}.incoming"
    shutil.copytree(source / str(version), staging)
    final = base / (as_name or str(version))
    os.rename(staging, final)
    return final


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def states(server, model: str = "m") -> dict[int, str]:
    status, _h, body = http_request(server.rest_port, "GET", f"/v1/models/{model}")
    if status != 200:
        return {}
    return {int(e["version"]): e["state"] for e in body["model_version_status"]}


def predict(server, x: float, path: str = "/v1/models/m") -> tuple[int, object]:
    status, _h, body = http_request(server.rest_port, "POST", f"{path}:predict", {"instances": [x]})
    return status, body


def config_text(base: Path, policy: str = "", labels: dict[str, int] | None = None, name: str = "m") -> str:
    label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}' for k, v in (labels or {}).items())
    return (
        f'model_config_list {{ config {{ name: "{name}" base_path: "{base}" model_platform: "tensorflow" '
        f"{policy}{label_text} }} }}"
    )


def specific(*versions: int) -> str:
    return "model_version_policy { specific { " + " ".join(f"versions: {v}" for v in versions) + " } }"


# ---- discovery ------------------------------------------------------------------------------------------


def test_only_integer_named_children_are_versions(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    add_version(half_plus_versions, base, 3, as_name="00000003")
    for ignored in ("abc", "2.tmp", ".4.tmp", "-5"):
        (base / ignored).mkdir()
    everything = parse_model_server_config(config_text(base, "model_version_policy { all {} }"))
    assert sorted(discover_versions(everything.model_config_list.config[0])) == [1, 3]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("", [3]),  # default: latest 1
        ("model_version_policy { latest { num_versions: 2 } }", [2, 3]),
        ("model_version_policy { all {} }", [1, 2, 3]),
        (specific(1, 3, 7), [1, 3]),  # a listed version that is missing is only a warning
    ],
)
def test_version_policies(tmp_path, half_plus_versions, policy, expected):
    base = tmp_path / "m"
    for version in (1, 2, 3):
        add_version(half_plus_versions, base, version)
    config = parse_model_server_config(config_text(base, policy))
    assert sorted(discover_versions(config.model_config_list.config[0])) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'model_config_list { config { name: "m" base_path: "/a" model_platform: "tensorflow" } '
            'config { name: "m" base_path: "/b" model_platform: "tensorflow" } }',
            "multiple times",
        ),
        (
            'model_config_list { config { name: "m" base_path: "rel/path" model_platform: "tensorflow" } }',
            "absolute path or URI",
        ),
        (
            'model_config_list { config { name: "m" base_path: "/a" model_platform: "pytorch" } }',
            "unsupported platform pytorch",
        ),
        (
            'model_config_list { config { name: "m" base_path: "/a" } }',
            "neither model_type nor model_platform",
        ),
        ('custom_model_config { type_url: "x" }', "Only ModelConfigList is currently supported"),
    ],
)
def test_invalid_configs_are_rejected_with_tf_serving_messages(text, message):
    with pytest.raises(ServingError, match=message):
        validate_config(parse_model_server_config(text), None)


# ---- loading and unloading ------------------------------------------------------------------------------


def test_new_version_is_available_before_the_old_one_unloads(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    with start_server(model_name="m", model_base_path=str(base)) as server:
        assert predict(server, 2.0) == (200, {"predictions": [3.0]})
        failures, answers, stop = [], set(), threading.Event()

        def keep_asking() -> None:  # a client hammering the model across the switch
            while not stop.is_set():
                status, body = predict(server, 2.0)
                if status != 200:
                    failures.append((status, body))
                else:
                    answers.add(body["predictions"][0])

        client = threading.Thread(target=keep_asking)
        client.start()
        add_version(half_plus_versions, base, 2)
        wait_for(lambda: states(server) == {2: "AVAILABLE", 1: "END"})
        time.sleep(0.2)
        stop.set()
        client.join()
        assert failures == []
        assert answers == {3.0, 4.0}
        assert predict(server, 2.0) == (200, {"predictions": [4.0]})
        # Deleting the newest version directory rolls back to the previous one (latest policy).
        shutil.rmtree(base / "2")
        wait_for(lambda: states(server).get(1) == "AVAILABLE" and states(server).get(2) == "END")
        assert predict(server, 2.0) == (200, {"predictions": [3.0]})


def test_a_version_that_fails_to_load_leaves_the_old_one_serving(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    options = dict(
        model_name="m", model_base_path=str(base), max_num_load_retries=2, load_retry_interval_micros=50_000
    )
    with start_server(**options) as server:
        write_broken_model(base, 2)
        wait_for(lambda: states(server).get(2) == "END")
        _s, _h, body = http_request(server.rest_port, "GET", "/v1/models/m/versions/2")
        (entry,) = body["model_version_status"]
        assert entry["status"]["error_code"] != "OK" and entry["status"]["error_message"]
        assert states(server)[1] == "AVAILABLE"
        assert predict(server, 2.0) == (200, {"predictions": [3.0]})
        failed_path = str(base / "2")
        assert server.metrics.value(LOAD_ATTEMPT_COUNT, (failed_path, "fail")) == 3  # first try + 2 retries
        time.sleep(2.5)  # later polls still list version 2 but, as in TF Serving, do not retry it
        assert server.metrics.value(LOAD_ATTEMPT_COUNT, (failed_path, "fail")) == 3


def test_empty_base_path_unloads_every_version(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    add_version(half_plus_versions, base, 1)
    with start_server(model_name="m", model_base_path=str(base)) as server:
        shutil.rmtree(base / "1")
        wait_for(lambda: states(server) == {1: "END"})
        assert predict(server, 1.0)[0] == 404


# ---- labels and reload -----------------------------------------------------------------------------------


def test_labels_must_point_at_available_versions_and_a_bad_reload_changes_nothing(
    tmp_path, half_plus_versions
):
    base = tmp_path / "m"
    for version in (1, 2):
        add_version(half_plus_versions, base, version)
    config_file = tmp_path / "models.config"
    config_file.write_text(config_text(base, specific(1), {"stable": 1}))
    with pytest.raises(
        StartupError, match="Request to assign label to version 1 of model m, which is not currently"
    ):
        start_server(model_config_file=str(config_file))

    config_file.write_text(config_text(base, specific(1)))
    with start_server(model_config_file=str(config_file)) as server:
        stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}"))

        def reload(text: str) -> None:
            request = model_management_pb2.ReloadConfigRequest(config=parse_model_server_config(text))
            stub.HandleReloadConfigRequest(request, 30)

        # Adding version 2 and a label on it in one go: rejected as a whole; version 2 is not even loaded.
        with pytest.raises(grpc.RpcError) as raised:
            reload(config_text(base, specific(1, 2), {"stable": 1, "canary": 2}))
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "which is not currently available for inference" in raised.value.details()
        time.sleep(1.2)
        assert states(server) == {1: "AVAILABLE"}

        # Two phases work: first the version, then the labels.
        reload(config_text(base, specific(1, 2), {"stable": 1}))
        wait_for(lambda: states(server) == {1: "AVAILABLE", 2: "AVAILABLE"})
        reload(config_text(base, specific(1, 2), {"stable": 1, "canary": 2}))
        assert predict(server, 2.0, "/v1/models/m/labels/stable") == (200, {"predictions": [3.0]})
        assert predict(server, 2.0, "/v1/models/m/labels/canary") == (200, {"predictions": [4.0]})
        assert predict(server, 2.0) == (200, {"predictions": [4.0]})  # unlabelled: highest loaded version

        # Retiring version 1 while "stable" still points at it is rejected; the labels stay as they were.
        with pytest.raises(grpc.RpcError):
            reload(config_text(base, specific(2), {"stable": 3}))
        assert predict(server, 2.0, "/v1/models/m/labels/stable") == (200, {"predictions": [3.0]})


def test_allow_flag_admits_new_labels_but_not_moving_one(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    for version in (1, 2, 3):
        add_version(half_plus_versions, base, version)
    config_file = tmp_path / "models.config"
    config_file.write_text(config_text(base, specific(1), {"stable": 1}))
    with start_server(
        model_config_file=str(config_file), allow_version_labels_for_unavailable_models=True
    ) as server:
        assert predict(server, 2.0, "/v1/models/m/labels/stable") == (200, {"predictions": [3.0]})
        # A brand-new label may point at a version that is not loaded yet.
        server.reload_config(
            parse_model_server_config(config_text(base, specific(1, 2), {"stable": 1, "canary": 2}))
        )
        wait_for(lambda: states(server).get(2) == "AVAILABLE")
        assert predict(server, 2.0, "/v1/models/m/labels/canary") == (200, {"predictions": [4.0]})
        # Moving an existing label to an unavailable version is still refused.
        with pytest.raises(ServingError, match="version 3 of model m"):
            server.reload_config(
                parse_model_server_config(config_text(base, specific(1, 2, 3), {"stable": 3}))
            )
        assert 3 not in states(server)


def test_reload_replaces_the_whole_config(tmp_path, half_plus_versions):
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(half_plus_versions, a, 1)
    add_version(half_plus_versions, b, 2)
    both = parse_model_server_config(
        f'model_config_list {{ config {{ name: "a" base_path: "{a}" model_platform: "tensorflow" }} '
        f'config {{ name: "b" base_path: "{b}" model_platform: "tensorflow" }} }}'
    )
    with start_server(model_config_file=str(_write(tmp_path / "c.config", both))) as server:
        assert predict(server, 2.0, "/v1/models/b") == (200, {"predictions": [4.0]})
        assert server.manager.is_configured("a") and server.manager.is_configured("b")
        server.reload_config(parse_model_server_config(config_text(a, name="a")))
        assert server.manager.is_configured("a") and not server.manager.is_configured("b")
        wait_for(lambda: states(server, "b") == {2: "END"})
        assert predict(server, 2.0, "/v1/models/b")[0] == 404
        assert predict(server, 2.0, "/v1/models/a") == (200, {"predictions": [3.0]})


def _write(path: Path, config) -> Path:
    from google.protobuf import text_format

    path.write_text(text_format.MessageToString(config))
    return path


def test_config_file_is_polled_and_a_broken_file_keeps_the_old_config(tmp_path, half_plus_versions):
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(half_plus_versions, a, 1)
    add_version(half_plus_versions, b, 2)
    config_file = _write(tmp_path / "models.config", single_model_config("a", str(a)))
    with start_server(model_config_file=str(config_file), model_config_file_poll_wait_seconds=1) as server:
        _write(config_file, single_model_config("b", str(b)))
        wait_for(lambda: predict(server, 2.0, "/v1/models/b") == (200, {"predictions": [4.0]}))
        wait_for(lambda: states(server, "a") == {1: "END"})
        config_file.write_text("model_config_list { config { name: ")  # a half-written file
        time.sleep(2.5)
        assert predict(server, 2.0, "/v1/models/b") == (200, {"predictions": [4.0]})


def test_without_polling_the_config_file_is_read_once(tmp_path, half_plus_versions):
    a, b = tmp_path / "a", tmp_path / "b"
    add_version(half_plus_versions, a, 1)
    add_version(half_plus_versions, b, 2)
    config_file = _write(tmp_path / "models.config", single_model_config("a", str(a)))
    with start_server(model_config_file=str(config_file)) as server:
        _write(config_file, single_model_config("b", str(b)))
        time.sleep(1.5)
        assert predict(server, 2.0, "/v1/models/a") == (200, {"predictions": [3.0]})
        assert predict(server, 2.0, "/v1/models/b")[0] == 404
