"""The Grafana dashboard of a canary release, built with grafanalib rather than typed as JSON.

One row per model (a repeated row over the ``model`` variable): request rate, error rate and p50/p99
latency with stable and canary side by side, the split the routers apply over time, the model server's
requests by version and label, and the prediction distribution of each side. Every change of release
generation (a step, a promotion, a rollback) is an annotation.

``python -m observe.dashboard`` writes the JSON Grafana provisions (compose) and the ConfigMap that
holds it unchanged (Kubernetes); a test checks both committed files are what this module builds and
that every query names a metric the router or the model server really exports.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from release.serving_dir import write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD_FILE = ROOT / "serving_configs" / "grafana" / "dashboards" / "tfx-canary.json"
CONFIG_MAP_FILE = ROOT / "serving_configs" / "k8s" / "grafana-dashboards.yaml"
UID = "tfx-canary-release"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SIDES = 'model="$model", label=~"stable|canary"'


def _target(expr: str, legend: str, ref: str, **kw) -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, datasource=DATASOURCE, **kw)


def _series(
    title: str, targets: list[g.Target], pos: tuple[int, int, int, int], unit: str, **kw
) -> g.TimeSeries:
    w, h, x, y = pos
    return g.TimeSeries(
        title=title,
        dataSource=DATASOURCE,
        targets=targets,
        gridPos=g.GridPos(w=w, h=h, x=x, y=y),
        unit=unit,
        legendDisplayMode="table",
        legendCalcs=["lastNotNull", "max"],
        tooltipMode="multi",
        **kw,
    )


def _rate(metric: str, by: str = "label, mode") -> str:
    return f"sum by ({by}) (rate({metric}{{{SIDES}}}[$__rate_interval]))"


def _prediction_heatmap(label: str, x: int) -> g.Heatmap:
    selector = f'router_prediction_bucket{{model="$model", label="{label}"}}'
    expr = f"sum by (le) (increase({selector}[$__rate_interval]))"
    return g.Heatmap(
        title=f"Predictions: {label}",
        description=f"Distribution of the values {label} answered (router_prediction, live and shadow).",
        dataSource=DATASOURCE,
        targets=[_target(expr, "{{le}}", "A", format="heatmap")],
        gridPos=g.GridPos(w=12, h=8, x=x, y=17),
        dataFormat="tsbuckets",
        yBucketBound="upper",
        hideZeroBuckets=True,
    )


def model_panels() -> list[g.Panel]:
    """The panels of one model's row, at grid rows 1-24 (the row header sits at 0)."""
    error_ratio = (
        f"({_rate('router_errors_total')} or {_rate('router_requests_total')} * 0)"
        f" / ({_rate('router_requests_total')} > 0)"
    )  # a side that never failed has no error series: 0%, not a gap
    latency = [
        _target(
            f"histogram_quantile({q}, {_rate('router_latency_seconds_bucket', 'label, mode, le')})",
            f"p{round(q * 100)} {{{{label}}}} ({{{{mode}}}})",
            ref,
        )
        for q, ref in ((0.5, "A"), (0.99, "B"))
    ]
    split = [
        _target('max by (model) (router_canary_weight{model="$model"})', "canary weight", "A"),
        _target('max by (model) (router_shadow_fraction{model="$model"})', "shadow fraction", "B"),
        _target(
            'min by (model) (router_canary_weight{model="$model"})', "canary weight (lowest replica)", "C"
        ),
    ]
    server = [
        _target(
            'sum by (version, label, status) (rate(:tfx_canary:serving:request_count{model_name="$model"}'
            "[$__rate_interval]))",
            "v{{version}} {{label}} {{status}}",
            "A",
        ),
        _target(
            'sum by (status) (rate(:tensorflow:serving:request_count{model_name="$model"}'
            "[$__rate_interval]))",
            "all versions {{status}} (TF Serving)",
            "B",
        ),
    ]
    return [
        _series(
            "Request rate",
            [_target(_rate("router_requests_total"), "{{label}} ({{mode}})", "A")],
            (8, 8, 0, 1),
            "reqps",
            description="Requests the routers sent to each label; shadow requests are copies of stable's.",
        ),
        _series(
            "Error rate",
            [_target(error_ratio, "{{label}} ({{mode}})", "A")],
            (8, 8, 8, 1),
            "percentunit",
            description="Share of routed requests that failed (non-2xx REST, non-OK gRPC).",
        ),
        _series(
            "Traffic split",
            split,
            (8, 8, 16, 1),
            "percentunit",
            valueMin=0,
            valueMax=1,
            lineInterpolation="stepAfter",
            description="What the routers apply: the canary's share of live traffic, of stable's mirrored.",
        ),
        _series(
            "Latency p50 / p99",
            latency,
            (12, 8, 0, 9),
            "s",
            description="Upstream latency through the router, per label and mode.",
        ),
        _series(
            "Model server: requests by version and label",
            server,
            (12, 8, 12, 9),
            "reqps",
            description="From the model server: the version that answered and the label asked for "
            "(the :tfx_canary:serving series are the embedded server's; TF Serving has the totals).",
        ),
        _prediction_heatmap("stable", 0),
        _prediction_heatmap("canary", 12),
    ]


def build() -> g.Dashboard:
    model = g.Template(
        name="model",
        label="Model",
        query="label_values(router_requests_total, model)",
        dataSource=DATASOURCE,
        includeAll=True,
        multi=True,
        default="$__all",
        refresh=g.REFRESH_ON_TIME_RANGE_CHANGE,
    )
    datasource = g.Template(
        name="datasource", label="Prometheus", query="prometheus", type="datasource", default="Prometheus"
    )
    transitions = {
        "name": "Release transitions",
        "datasource": DATASOURCE,
        "enable": True,
        "iconColor": "orange",
        "expr": 'max by (model) (changes(router_release_generation{model=~"$model"}[1m])) > 0',
        "step": "30s",
        "titleFormat": "release generation changed",
        "textFormat": "{{model}}: a step, a promotion or a rollback",
        "tagKeys": "model",
    }
    row = g.RowPanel(title="$model", gridPos=g.GridPos(w=24, h=1, x=0, y=0), repeat=g.Repeat("v", "model"))
    return g.Dashboard(
        title="tfx-canary: canary release",
        uid=UID,
        description="Per model, stable vs canary through the router, the split over time, the model server.",
        tags=["tfx-canary"],
        timezone="browser",
        refresh="10s",
        time=g.Time("now-1h", "now"),
        schemaVersion=39,
        graphTooltip=g.GRAPH_TOOLTIP_MODE_SHARED_CROSSHAIR,
        templating=g.Templating(list=[datasource, model]),
        annotations=g.Annotations(list=[transitions]),
        panels=[row, *model_panels()],
    ).auto_panel_ids()


def dashboard_json() -> str:
    return json.dumps(build().to_json_data(), sort_keys=True, indent=2, cls=DashboardEncoder) + "\n"


def config_map_yaml(text: str) -> str:
    """The Kubernetes ConfigMap that holds the dashboard JSON unchanged (a literal block)."""
    body = "".join(f"    {line}\n" if line else "\n" for line in text.splitlines())
    return (
        "# Generated by `python -m observe.dashboard` from observe/dashboard.py: do not edit by hand.\n"
        "# The Grafana dashboard, the same text as serving_configs/grafana/dashboards/tfx-canary.json\n"
        "# (k8s/grafana.yaml mounts it where the dashboard provider looks).\n"
        "apiVersion: v1\n"
        "kind: ConfigMap\n"
        "metadata:\n"
        "  name: grafana-dashboards\n"
        "  labels:\n"
        "    app.kubernetes.io/name: grafana\n"
        "    app.kubernetes.io/part-of: tfx-canary\n"
        "data:\n"
        "  tfx-canary.json: |\n" + body
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write the Grafana dashboard JSON and its ConfigMap.")
    parser.parse_args(argv)
    text = dashboard_json()
    write_text_atomic(str(DASHBOARD_FILE), text)
    write_text_atomic(str(CONFIG_MAP_FILE), config_map_yaml(text))
    print(f"wrote {DASHBOARD_FILE.relative_to(ROOT)} and {CONFIG_MAP_FILE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
