"""Prometheus on the REST port with TF Serving's names, per-version/label series, and model warmup."""

from __future__ import annotations

import shutil

import pytest

from fixtures import models as fixture_models
from serving.configs import ConfigError, read_monitoring_config
from serving.errors import ServingError
from serving.monitoring import WARMUP_LATENCY
from tests.serving.conftest import http_request, start_server

METRICS = "/monitoring/prometheus/metrics"


def _monitoring_file(
    tmp_path, body='prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }'
):
    path = tmp_path / "monitoring.config"
    path.write_text(body)
    return str(path)


def test_prometheus_text_has_tf_serving_names_and_canary_series(tmp_path, contract_root):
    with start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
        monitoring_config_file=_monitoring_file(tmp_path),
    ) as server:
        port = server.rest_port
        for _ in range(3):
            http_request(port, "POST", "/v1/models/half_plus/labels/canary:predict", {"instances": [1.0]})
        http_request(port, "POST", "/v1/models/half_plus/labels/stable:predict", {"instances": [1.0, 2.0]})
        http_request(port, "POST", "/v1/models/half_plus/versions/9:predict", {"instances": [1.0]})
        http_request(port, "POST", "/v1/models/some-scanner-name:predict", {"instances": [1.0]})
        status, headers, text = http_request(port, "GET", METRICS)
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    lines = text.decode().splitlines()
    assert "# TYPE :tensorflow:serving:request_count counter" in lines
    assert ':tensorflow:serving:request_count{model_name="half_plus",status="OK"} 4.0' in lines
    assert ':tensorflow:serving:request_count{model_name="half_plus",status="NOT_FOUND"} 1.0' in lines
    assert "# TYPE :tensorflow:serving:request_latency histogram" in lines
    latency_count = (
        ':tensorflow:serving:request_latency_count{API="predict",entrypoint="REST",model_name="half_plus"}'
    )
    assert f"{latency_count} 4.0" in lines
    canary = (
        ':tfx_canary:serving:request_count{label="canary",model_name="half_plus",status="OK",version="2"} 3.0'
    )
    stable = (
        ':tfx_canary:serving:request_count{label="stable",model_name="half_plus",status="OK",version="1"} 1.0'
    )
    assert canary in lines and stable in lines
    assert ':tensorflow:serving:request_example_count_total{model_name="half_plus"} 5.0' in lines
    assert any(
        line.startswith(":tensorflow:cc:saved_model:load_attempt_count{") and 'status="success"' in line
        for line in lines
    )
    assert ':tfx_canary:serving:model_version_available{model_name="half_plus",version="2"} 1.0' in lines
    assert "some-scanner-name" not in text.decode()  # names not configured never become label values


def test_no_monitoring_config_means_no_metrics_endpoint(contract_root):
    with start_server(
        model_config_file=str(contract_root / "models.config"),
        allow_version_labels_for_unavailable_models=True,
    ) as server:
        assert http_request(server.rest_port, "GET", METRICS)[0] == 404


def test_monitoring_config_is_strict(tmp_path):
    assert (
        read_monitoring_config(
            _monitoring_file(tmp_path, "prometheus_config { enable: true }")
        ).prometheus_path
        == METRICS
    )
    with pytest.raises(ConfigError, match='no field named "enabled"'):
        read_monitoring_config(_monitoring_file(tmp_path, "prometheus_config { enabled: true }"))


def test_warmup_requests_are_replayed_at_load(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    shutil.copytree(half_plus_versions / "1", base / ".1")
    fixture_models.write_warmup_requests(
        base / ".1", [fixture_models.predict_warmup_log([1.0, 2.0]) for _ in range(3)]
    )
    (base / ".1").rename(base / "1")
    with start_server(model_name="m", model_base_path=str(base)) as server:
        assert server.metrics.value(WARMUP_LATENCY, (str(base / "1"),)) == 1
        assert (
            http_request(server.rest_port, "GET", "/v1/models/m")[2]["model_version_status"][0]["state"]
            == "AVAILABLE"
        )
    with start_server(model_name="m", model_base_path=str(base), enable_model_warmup=False) as server:
        assert server.metrics.value(WARMUP_LATENCY, (str(base / "1"),)) == 0


def test_a_failing_warmup_request_fails_the_load(tmp_path, half_plus_versions):
    base = tmp_path / "m"
    shutil.copytree(half_plus_versions / "1", base / ".1")
    fixture_models.write_warmup_requests(
        base / ".1", [fixture_models.predict_warmup_log([1.0], signature_name="nope")]
    )
    # The version arrives after start-up: a model that fails at start-up fails the start (TF Serving's
    # "servable(s) did not become available", tests/serving/test_load_threads.py).
    with start_server(model_name="m", model_base_path=str(base)) as server:
        (base / ".1").rename(base / "1")
        assert server.manager.wait_until(lambda: _ended(server, "m"), timeout=30)
        (entry,) = http_request(server.rest_port, "GET", "/v1/models/m")[2]["model_version_status"]
    assert entry["state"] == "END"
    assert 'Serving signature key "nope" not found' in entry["status"]["error_message"]


def _ended(server, model: str) -> bool:
    try:
        return server.manager.status(model).model_version_status[0].state == 50  # END
    except ServingError:  # no version seen yet
        return False
