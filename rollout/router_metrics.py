"""The router's Prometheus metrics: per model, label and mode (live or shadow), the same series for REST
and gRPC, plus the split each router is applying right now.

- ``router_requests_total``, ``router_errors_total`` (non-2xx / non-OK answers);
- ``router_latency_seconds`` (upstream latency histogram) and ``router_prediction`` (predicted values);
- ``router_canary_weight``, ``router_shadow_fraction`` and ``router_release_generation`` (gauges per
  model): what this replica applies, so the controller can wait until every replica took a new step.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from rollout import grpc_messages
from rollout.routing import RouteTable

LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0,
)  # fmt: skip
PREDICTION_BUCKETS = (
    -100.0, -10.0, -1.0, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
    1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0, 1000.0,
)  # fmt: skip
MAX_PREDICTIONS_RECORDED = 64
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _SplitCollector:
    """Gauges read from the route table at scrape time: the split this router applies."""

    def __init__(self, table: RouteTable) -> None:
        self.table = table

    def collect(self):
        families = {
            "weight": GaugeMetricFamily(
                "router_canary_weight", "Share of routed traffic sent to canary", labels=["model"]
            ),
            "shadow": GaugeMetricFamily(
                "router_shadow_fraction", "Share of stable traffic mirrored to canary", labels=["model"]
            ),
            "generation": GaugeMetricFamily(
                "router_release_generation",
                "Release record generation the split comes from",
                labels=["model"],
            ),
        }
        for model, route in sorted(self.table.all().items()):
            families["weight"].add_metric([model], route.canary_weight)
            families["shadow"].add_metric([model], route.shadow_fraction)
            families["generation"].add_metric([model], route.generation)
        yield from families.values()


class RouterMetrics:
    def __init__(self, table: RouteTable | None = None) -> None:
        self.registry = CollectorRegistry()
        names = ("model", "label", "mode")
        self.requests = Counter("router_requests", "Routed inference requests", names, registry=self.registry)
        self.errors = Counter(
            "router_errors", "Routed requests that failed (non-2xx, non-OK)", names, registry=self.registry
        )
        self.latency = Histogram(
            "router_latency_seconds",
            "Upstream latency",
            names,
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predictions = Histogram(
            "router_prediction", "Predicted values", names, buckets=PREDICTION_BUCKETS, registry=self.registry
        )
        if table is not None:
            self.registry.register(_SplitCollector(table))

    def observe(
        self, model: str, label: str, mode: str, ok: bool, seconds: float, predictions: Iterable[float]
    ) -> None:
        self.requests.labels(model, label, mode).inc()
        self.latency.labels(model, label, mode).observe(seconds)
        if not ok:
            self.errors.labels(model, label, mode).inc()
            return
        histogram = self.predictions.labels(model, label, mode)
        for value in predictions:
            histogram.observe(value)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def json_numbers(body: bytes) -> list[float]:
    """The first predicted numbers of a REST predict/classify/regress answer."""
    try:
        answer = json.loads(body)
    except ValueError:
        return []
    if not isinstance(answer, dict):
        return []
    found: list[float] = []
    stack = [answer.get("predictions", answer.get("outputs", answer.get("results", [])))]
    while stack and len(found) < MAX_PREDICTIONS_RECORDED:
        item = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, (int, float)):
            found.append(float(item))
        elif isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(item.values())
    return found


_FLOAT_DTYPES = {1: np.float32, 2: np.float64}  # DT_FLOAT, DT_DOUBLE


def grpc_numbers(method: str, response: bytes) -> list[float]:
    """The first predicted numbers of a serialized gRPC Predict/Classify/Regress/MultiInference answer."""
    found: list[float] = []
    if method == "Predict":  # float tensors, in output-name order
        for entry in sorted(grpc_messages.PredictResponse.FromString(response).outputs, key=lambda e: e.key):
            tensor = entry.value
            values = list(tensor.float_val) or list(tensor.double_val)
            if not values and tensor.tensor_content and tensor.dtype in _FLOAT_DTYPES:
                values = np.frombuffer(tensor.tensor_content, dtype=_FLOAT_DTYPES[tensor.dtype]).tolist()
            found.extend(float(v) for v in values[: MAX_PREDICTIONS_RECORDED - len(found)])
    elif method == "Classify":
        found = _result_numbers(grpc_messages.ClassificationResponse.FromString(response).result)
    elif method == "Regress":
        found = _result_numbers(grpc_messages.RegressionResponse.FromString(response).result)
    elif method == "MultiInference":  # one result per task
        for inference in grpc_messages.MultiInferenceResponse.FromString(response).results:
            found.extend(_result_numbers(inference.classification_result))
            found.extend(_result_numbers(inference.regression_result))
    return found[:MAX_PREDICTIONS_RECORDED]


def _result_numbers(result) -> list[float]:
    """Scores of a ClassificationResult, values of a RegressionResult."""
    found = [
        c.score for classification in getattr(result, "classifications", ()) for c in classification.classes
    ]
    return found + [r.value for r in getattr(result, "regressions", ())]
