"""The router on loopback in front of the real embedded model server."""

import http.client
import json
import time
import urllib.request

import pytest

from fixtures.served_root import ServedRoot
from release import operations
from rollout.router import Router, _numbers, key_bucket


def test_key_buckets_are_sticky_and_spread():
    assert key_bucket("user-1") == key_bucket("user-1")
    positions = [key_bucket(f"user-{i}") for i in range(2000)]
    assert all(0 <= p < 1 for p in positions)
    assert 0.45 < sum(p < 0.5 for p in positions) / len(positions) < 0.55


def test_numbers_reads_every_answer_shape():
    assert _numbers(b'{"predictions": [3.0, [4.5]]}') == [3.0, 4.5]
    assert _numbers(b'{"outputs": {"y": [1.0]}}') == [1.0]
    assert _numbers(b'{"results": [[["", 0.25]]]}') == [0.25]
    assert _numbers(b"not json") == []


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
        with Router(served.address, served.root, refresh_s=0.05) as router:
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
    assert call(router.port, "/v1/models/unknown:predict")[0] == 503


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
