"""The Grafana dashboard: the committed files are what observe/dashboard.py builds, the JSON is a
well-formed dashboard, and every query (and every rule) reads metrics a live router and model server
on loopback really export."""

from __future__ import annotations

import itertools
import json
import re
import urllib.request
from pathlib import Path

import pytest
import yaml

from fixtures.served_root import ServedRoot
from observe import dashboard
from release import operations
from release.serving_dir import METRICS_PATH
from rollout.router import Router
from tests.observe.promql_names import metric_names, scraped_names

ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "serving_configs" / "prometheus" / "rules").glob("*.yml"))
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__all"}


def test_the_committed_dashboard_and_configmap_are_what_the_generator_builds() -> None:
    text = dashboard.dashboard_json()
    fix = "run `.venv/bin/python -m observe.dashboard` and commit the result"
    assert dashboard.DASHBOARD_FILE.read_text() == text, fix
    assert dashboard.CONFIG_MAP_FILE.read_text() == dashboard.config_map_yaml(text), fix
    (config_map,) = yaml.safe_load_all(dashboard.CONFIG_MAP_FILE.read_text())
    assert config_map["data"]["tfx-canary.json"] == text


def panels(board: dict) -> list[dict]:
    return [p for p in board["panels"] if p["type"] != "row"]


def queries(board: dict) -> list[str]:
    found = [t["expr"] for p in panels(board) for t in p["targets"]]
    found += [a["expr"] for a in board["annotations"]["list"]]
    found += [v["query"] for v in board["templating"]["list"] if v["type"] == "query"]
    return found


def test_the_dashboard_is_well_formed() -> None:
    board = json.loads(dashboard.DASHBOARD_FILE.read_text())
    assert board["uid"] == dashboard.UID and board["title"] and board["schemaVersion"] >= 36
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    assert variables["model"]["datasource"]["uid"] == "${datasource}"
    (row,) = [p for p in board["panels"] if p["type"] == "row"]
    assert row["repeat"] == "model" and row["gridPos"] == {"h": 1, "w": 24, "x": 0, "y": 0}
    ids = [p["id"] for p in board["panels"]]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == len(ids)
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        assert panel["type"] in {"timeseries", "heatmap"}, panel["type"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24 and pos["y"] >= 1 and pos["h"] > 0, panel["title"]
        for cell in itertools.product(
            range(pos["x"], pos["x"] + pos["w"]), range(pos["y"], pos["y"] + pos["h"])
        ):
            assert cell not in cells, f"{panel['title']!r} overlaps {cells[cell]!r}"
            cells[cell] = panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert target["expr"] and target["legendFormat"], panel["title"]
    titles = [p["title"] for p in panels(board)]
    for wanted in ("Request rate", "Error rate", "Latency p50 / p99", "Traffic split"):
        assert wanted in titles
    assert {"Predictions: stable", "Predictions: canary"} <= set(titles)
    (transitions,) = board["annotations"]["list"]
    assert "router_release_generation" in transitions["expr"] and transitions["enable"]
    for query in queries(board):
        used = set(re.findall(r"\$\{?(\w+)", query))
        assert used <= set(variables) | GRAFANA_BUILTINS, (
            f"{query}: undefined variables {used - set(variables)}"
        )


def test_metric_names_come_from_the_promql_syntax_tree() -> None:
    query = (
        'histogram_quantile(0.99, sum by (le) (rate(router_latency_seconds_bucket{model="$model"}'
        "[$__rate_interval]))) / on (model) group_left ()"
        ' (x or {__name__=":tfx_canary:serving:request_count"})'
    )
    assert metric_names(query) == {"router_latency_seconds_bucket", "x", ":tfx_canary:serving:request_count"}
    assert metric_names("label_values(router_requests_total, model)") == {"router_requests_total"}
    assert metric_names('sum by (model) (rate(router_requests_total{model="by"}[1m]))') == {
        "router_requests_total"
    }  # label names and values are not metrics


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> set[str]:
    """Sample names a router and an embedded model server expose after real traffic (an error too)."""
    from fixtures.models import write_fixture_model

    root = tmp_path_factory.mktemp("dashboard") / "serving"
    write_fixture_model(root / "m", 1, offset=2.0)
    monitoring = ROOT / "serving_configs" / "tf_serving" / "monitoring.config"
    with ServedRoot(root, monitoring_config_file=str(monitoring)) as served:
        target = served.target()
        operations.publish(target, 1)
        write_fixture_model(served.base_path, 2, offset=2.5)
        operations.publish(target, 2)
        operations.set_traffic(target, 0.5, 0.0, "50%", "dashboard test")
        with Router(served.address, served.root, refresh_s=0.05) as router:
            base = f"http://127.0.0.1:{router.port}"
            for key, body in [*((str(i), b'{"instances": [1.0, 2.0]}') for i in range(20)), ("bad", b"{")]:
                request = urllib.request.Request(
                    f"{base}/v1/models/m:predict", data=body, headers={"X-Request-Key": key}
                )
                try:
                    urllib.request.urlopen(request, timeout=10).close()
                except urllib.error.HTTPError as error:
                    assert key == "bad" and error.code == 400
            names = scraped_names(base + METRICS_PATH)
            server_names = scraped_names(f"http://{served.address}{METRICS_PATH}")
    assert "router_errors_total" in names and ":tfx_canary:serving:request_count" in server_names
    return names | server_names


def recorded_names() -> dict[str, str]:
    return {
        rule["record"]: rule["expr"]
        for path in RULES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "record" in rule
    }


def test_every_dashboard_query_reads_a_metric_the_servers_export(exported: set[str]) -> None:
    board = json.loads(dashboard.DASHBOARD_FILE.read_text())
    read = {name: query for query in queries(board) for name in metric_names(query)}
    missing = {name: query for name, query in read.items() if name not in exported}
    assert not missing, f"queries name metrics no router or model server exports: {missing}"
    assert any(n.startswith("router_") for n in read) and any(n.startswith(":tfx_canary:") for n in read)
    assert metric_names("rate(router_request_total[1m])") - exported == {"router_request_total"}


def test_every_rule_reads_exported_or_recorded_metrics(exported: set[str]) -> None:
    recorded = recorded_names()
    known = exported | set(recorded)
    for path in RULES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                names = metric_names(rule["expr"])
                assert names and names <= known, (
                    f"{path.name} {rule.get('record') or rule['alert']}: {names - known}"
                )
    # recording rules bottom out in exported metrics, never only in each other
    for record, expr in recorded.items():
        leaves = metric_names(expr)
        while leaves & set(recorded):
            leaves = (leaves - set(recorded)) | set().union(
                *(metric_names(recorded[n]) for n in leaves & set(recorded))
            )
        assert leaves and leaves <= exported, record
