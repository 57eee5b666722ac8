"""The router on loopback in front of the real embedded model server."""

import http.client
import json
import socket
import time
import urllib.request

import grpc
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from fixtures.served_root import ServedRoot
from release import operations
from rollout.router import Router
from rollout.router_metrics import json_numbers
from rollout.routing import key_bucket


def test_key_buckets_are_sticky_and_spread():
    assert key_bucket("user-1") == key_bucket("user-1")
    positions = [key_bucket(f"user-{i}") for i in range(2000)]
    assert all(0 <= p < 1 for p in positions)
    assert 0.45 < sum(p < 0.5 for p in positions) / len(positions) < 0.55


def test_numbers_reads_every_answer_shape():
    assert json_numbers(b'{"predictions": [3.0, [4.5]]}') == [3.0, 4.5]
    assert json_numbers(b'{"outputs": {"y": [1.0]}}') == [1.0]
    assert json_numbers(b'{"results": [[["", 0.25]]]}') == [0.25]
    assert json_numbers(b"not json") == []


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """v1 (y = 0.5x + 2) stable and v2 (y = 0.5x + 3) canary, behind a router."""
    from fixtures.models import write_fixture_model

    root = tmp_path_factory.mktemp("serving")
    write_fixture_model(root / "m", 1, offset=2.0)
    write_fixture_model(root / "m", 2, offset=3.0)
    with ServedRoot(root) as served:
        target = served.target()
        operations.publish(target, 1)
        operations.publish(target, 2)
        with Router(served.address, served.root, refresh_s=0.05, grpc_upstream=served.grpc_address) as router:
            yield served, target, router


def call(port, path="/v1/models/m:predict", key=None, x=2.0):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", **({"X-Request-Key": key} if key else {})}
    connection.request("POST", path, json.dumps({"instances": [x]}), headers)
    response = connection.getresponse()
    body = json.loads(response.read())
    connection.close()
    return response.status, response.getheader("X-Served-Label"), body


def set_split(target, weight, shadow=0.0):
    operations.set_traffic(target, weight, shadow, f"{weight:.0%}", "test")
    time.sleep(0.15)  # the router re-reads the record every 0.05 s


def test_bare_url_goes_to_stable_not_the_highest_version(served):
    server, target, router = served
    set_split(target, 0.0)
    status, label, body = call(router.port)
    assert (status, label, body) == (200, "stable", {"predictions": [3.0]})
    # the server itself would answer a bare request from the canary, the highest loaded version
    assert call(server.server.rest_port)[2] == {"predictions": [4.0]}


def test_weighted_split_is_sticky_by_key(served):
    _, target, router = served
    set_split(target, 0.5)
    first = {key: call(router.port, key=key)[1] for key in (f"k{i}" for i in range(60))}
    again = {key: call(router.port, key=key)[1] for key in first}
    assert first == again
    share = sum(label == "canary" for label in first.values()) / len(first)
    assert 0.25 < share < 0.75
    for key, label in list(first.items())[:10]:
        expected = 4.0 if label == "canary" else 3.0
        assert call(router.port, key=key)[2] == {"predictions": [expected]}
    set_split(target, 1.0)
    assert {call(router.port, key=f"k{i}")[1] for i in range(10)} == {"canary"}


def test_shadow_mirrors_and_discards_the_canary_answer(served):
    _, target, router = served
    set_split(target, 0.0, shadow=1.0)
    before = router.metrics.requests.labels("m", "canary", "shadow")._value.get()
    answers = [call(router.port, key=f"s{i}") for i in range(20)]
    assert all(a == (200, "stable", {"predictions": [3.0]}) for a in answers)
    deadline = time.monotonic() + 5
    while router.metrics.requests.labels("m", "canary", "shadow")._value.get() < before + 20:
        assert time.monotonic() < deadline, "shadow requests did not arrive"
        time.sleep(0.02)


def test_explicit_versions_and_labels_pass_through(served):
    _, _, router = served
    assert call(router.port, "/v1/models/m/versions/2:predict")[2] == {"predictions": [4.0]}
    assert call(router.port, "/v1/models/m/labels/stable:predict")[1:] == ("stable", {"predictions": [3.0]})
    status, _, body = call(router.port, "/v1/models/m/labels/nope:predict")
    assert status == 400 and "nope" in body["error"]
    with urllib.request.urlopen(f"http://127.0.0.1:{router.port}/v1/models/m") as response:
        versions = {s["version"] for s in json.loads(response.read())["model_version_status"]}
    assert versions == {"1", "2"}


def test_metrics_per_label(served):
    _, target, router = served
    set_split(target, 0.0)
    call(router.port, key="metrics")
    call(router.port, "/v1/models/m/labels/nope:predict")
    with urllib.request.urlopen(f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics") as response:
        text = response.read().decode()
    assert 'router_requests_total{label="stable",mode="live",model="m"}' in text
    assert 'router_errors_total{label="other",mode="live",model="m"}' in text  # unknown names are pooled
    assert "nope" not in text
    assert 'router_prediction_bucket{label="stable",le="3.0",mode="live",model="m"}' in text
    assert "router_latency_seconds_bucket" in text


def raw_exchange(port: int, request: bytes) -> bytes:
    """Send bytes as they are (no client library to fix them up) and read the answer until the close."""
    head, _, body = request.partition(b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + b"\r\nConnection: close\r\n\r\n" + body)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def status_and_body(answer: bytes) -> tuple[int, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]) if head else 0, body


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/models/unknown:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/models/..%2F..%2Fetc%2Fpasswd:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"GET /v1/models/..%2Fm HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"DELETE /v1/models/m HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PATCH /v1/models/m/labels/stable:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n{}",
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n{}",
        b"POST /v1/models/m:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\nnot json",
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n",
    ],
    ids=["unknown-model", "traversal-predict", "traversal-status", "put", "delete", "patch",
         "length-abc", "length-negative", "bad-json", "unknown-path"],
)  # fmt: skip
def test_client_mistakes_get_the_model_servers_own_answer(served, request_bytes):
    server, _, router = served
    direct = status_and_body(raw_exchange(server.server.rest_port, request_bytes))
    routed = status_and_body(raw_exchange(router.port, request_bytes))
    assert 400 <= direct[0] < 500, direct
    assert routed == direct


def test_the_applied_split_is_exported_per_model(served):
    _, target, router = served
    set_split(target, 0.25)
    with urllib.request.urlopen(f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics") as response:
        text = response.read().decode()
    generation = target.read().state.generation
    assert 'router_canary_weight{model="m"} 0.25' in text
    assert f'router_release_generation{{model="m"}} {generation}.0' in text
    assert 'router_shadow_fraction{model="m"} 0.0' in text


def grpc_predict(port: int, spec: dict, key: str | None = None, x: float = 2.0, timeout: float = 10.0):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", "m")
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([x], dtype=tf.float32))
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        metadata = (("x-request-key", key),) if key else ()
        response = stub.Predict(request, timeout, metadata=metadata)
    return float(tf.make_ndarray(response.outputs["y"])[0]), response.model_spec.version.value


def test_grpc_bare_requests_follow_the_split_and_pinned_ones_pass(served):
    server, target, router = served
    set_split(target, 0.0)
    assert grpc_predict(router.grpc_port, {})[0] == 3.0  # stable, not the highest version
    assert grpc_predict(server.server.grpc_port, {})[0] == 4.0  # what the server alone would answer
    assert grpc_predict(router.grpc_port, {"version": 2})[0] == 4.0
    assert grpc_predict(router.grpc_port, {"label": "canary"})[0] == 4.0
    set_split(target, 0.5)
    first = {key: grpc_predict(router.grpc_port, {}, key=key)[0] for key in (f"g{i}" for i in range(40))}
    assert first == {key: grpc_predict(router.grpc_port, {}, key=key)[0] for key in first}  # sticky
    assert set(first.values()) == {3.0, 4.0}
    # the same key lands on the same side over REST and gRPC
    rest = {key: call(router.port, key=key)[2]["predictions"][0] for key in list(first)[:10]}
    assert rest == {key: first[key] for key in rest}


def test_grpc_errors_come_back_unchanged(served):
    server, _, router = served
    for spec in ({"name": "unknown"}, {"label": "nope"}, {"version": 9}, {"name": ""}):
        with pytest.raises(grpc.RpcError) as direct:
            grpc_predict(server.server.grpc_port, spec)
        with pytest.raises(grpc.RpcError) as routed:
            grpc_predict(router.grpc_port, spec)
        assert (routed.value.code(), routed.value.details()) == (direct.value.code(), direct.value.details())


def test_grpc_other_methods_are_routed_too(served):
    _, target, router = served
    set_split(target, 0.0)
    with grpc.insecure_channel(f"127.0.0.1:{router.grpc_port}") as channel:
        prediction = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = "m", "regress_x_to_y"
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(2.0)
        answer = prediction.Regress(request, 10)
        assert answer.result.regressions[0].value == pytest.approx(3.0)  # stable's 0.5x + 2
        assert answer.model_spec.version.value == 1
        metadata = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        metadata.model_spec.name = "m"
        assert prediction.GetModelMetadata(metadata, 10).model_spec.version.value == 1
        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "m"
        states = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, 10)
        assert {s.version for s in states.model_version_status} == {1, 2}  # status: every version


def test_grpc_shares_the_rest_metric_series(served):
    _, target, router = served
    set_split(target, 0.0)
    before = router.metrics.requests.labels("m", "stable", "live")._value.get()
    grpc_predict(router.grpc_port, {}, key="metrics-grpc")
    assert router.metrics.requests.labels("m", "stable", "live")._value.get() == before + 1
    with pytest.raises(grpc.RpcError):
        grpc_predict(router.grpc_port, {"label": "nope"})
    assert router.metrics.errors.labels("m", "other", "live")._value.get() >= 1


def test_grpc_deadline_reaches_the_model_server(tmp_path):
    """A model slower than the client's deadline: the model server itself ends the call at the
    deadline (its own request count says DEADLINE_EXCEEDED), so the router passed the deadline on."""
    from serving.monitoring import REQUEST_COUNT
    from tests.rollout.bad_models import write_slow_model

    write_slow_model(tmp_path / "serving" / "m", 1, delay_ms=1000)
    with ServedRoot(tmp_path / "serving") as served:
        operations.publish(served.target(), 1)
        with Router(served.address, served.root, refresh_s=0.05, grpc_upstream=served.grpc_address) as router:
            with pytest.raises(grpc.RpcError) as error:
                grpc_predict(router.grpc_port, {}, timeout=0.2)
            assert error.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            counted = lambda: served.server.metrics.value(REQUEST_COUNT, ("m", "DEADLINE_EXCEEDED"))  # noqa: E731
            # the model answers at 1 s: a call the server did not end at the deadline is counted OK then
            waited = time.monotonic() + 5.0
            while counted() == 0 and time.monotonic() < waited:
                time.sleep(0.02)
            assert counted() == 1
            assert served.server.metrics.value(REQUEST_COUNT, ("m", "OK")) == 0


def test_a_label_the_server_has_not_read_yet_is_asked_for_by_its_version(tmp_path):
    """The record names v1 stable before the model server's next poll reads the label from
    models.config (the first release; a poll of 60 s in production): bare calls, REST and gRPC, are
    answered by v1 instead of failing with the server's "Unrecognized servable version label"."""
    from fixtures.models import write_fixture_model
    from release import state as sm
    from release.server_client import ServerClient

    root = tmp_path / "serving"
    write_fixture_model(root / "m", 1, offset=2.0)
    operations.publish(operations.Target(str(root), "m"), 1)  # listed, no labels (no server yet)
    with ServedRoot(root, poll_seconds=600) as served:  # reads models.config at start, then not for 600 s
        ServerClient(served.address).wait_available("m", 1, 30)
        label_v1 = lambda state: sm.label_candidate(state, 1, {1})  # noqa: E731
        operations.commit(operations.Target(str(root), "m"), label_v1, "first-stable", "test")
        status, _, body = call(served.server.rest_port, "/v1/models/m/labels/stable:predict")
        assert (status, body) == (400, {"error": "Unrecognized servable version label: stable"})
        with Router(served.address, served.root, refresh_s=0.05, grpc_upstream=served.grpc_address) as router:
            assert call(router.port) == (200, "stable", {"predictions": [3.0]})
            assert grpc_predict(router.grpc_port, {}) == (3.0, 1)
            # a client's own label is not the router's to change: the server's answer comes back
            assert call(router.port, "/v1/models/m/labels/stable:predict")[0] == 400
