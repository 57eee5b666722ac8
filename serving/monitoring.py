"""Prometheus metrics under TF Serving's names, plus per-version/label series a canary needs.

TF Serving exports counters without prometheus_client's ``_total`` suffix (``:tensorflow:serving:
request_count``), so the series are kept here and handed to ``prometheus_client`` as metric families from
a custom collector. Every server owns its own ``CollectorRegistry``, so tests can run several servers in
one process.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import HistogramMetricFamily, Metric

# TF Serving's request latency buckets: exponential, 10 us * 1.8^i, 33 buckets (in microseconds).
LATENCY_BUCKETS_US = tuple(10.0 * 1.8**i for i in range(33))


@dataclass(frozen=True)
class _Spec:
    name: str
    doc: str
    kind: str  # "counter" | "gauge" | "histogram"
    labels: tuple[str, ...]


REQUEST_COUNT = _Spec(
    ":tensorflow:serving:request_count", "The total number of requests.", "counter", ("model_name", "status")
)
REQUEST_LATENCY = _Spec(
    ":tensorflow:serving:request_latency",
    "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
    "histogram",
    ("model_name", "API", "entrypoint"),
)
EXAMPLE_COUNT = _Spec(
    ":tensorflow:serving:request_example_count_total",
    "The number of tensorflow.Examples (or rows) received.",
    "counter",
    ("model_name",),
)
LOAD_ATTEMPT_COUNT = _Spec(
    ":tensorflow:cc:saved_model:load_attempt_count",
    "The number of times a SavedModel was successfully loaded.",
    "counter",
    ("model_path", "status"),
)
LOAD_LATENCY = _Spec(
    ":tensorflow:cc:saved_model:load_latency",
    "Latency in microseconds for SavedModels that were successfully loaded.",
    "counter",
    ("model_path",),
)
WARMUP_LATENCY = _Spec(
    ":tensorflow:serving:model_warmup_latency",
    "Distribution of wall time (in microseconds) for warming up the model.",
    "histogram",
    ("model_path",),
)
# Beyond TF Serving: warmup requests replayed (records x --num_request_iterations_for_warmup).
WARMUP_REQUESTS = _Spec(
    ":tfx_canary:serving:warmup_requests",
    "Warmup requests replayed at load (each record as many times as the warmup iterations).",
    "counter",
    ("model_path",),
)
QUEUING_LATENCY = _Spec(
    ":tensorflow:serving:batching_session:queuing_latency",
    "Distribution of wall time spent (in microseconds) in queues.",
    "histogram",
    ("thread_pool_name",),
)
# Beyond TF Serving: the same request series split by the version that answered and the label asked for.
VERSION_REQUEST_COUNT = _Spec(
    ":tfx_canary:serving:request_count",
    "Requests by model, version that answered, label asked for (empty if none) and status.",
    "counter",
    ("model_name", "version", "label", "status"),
)
VERSION_REQUEST_LATENCY = _Spec(
    ":tfx_canary:serving:request_latency",
    "Wall time (in microseconds) of successful requests by model, version and label.",
    "histogram",
    ("model_name", "version", "label", "API", "entrypoint"),
)
VERSION_STATE = _Spec(
    ":tfx_canary:serving:model_version_available",
    "1 while a model version is AVAILABLE, 0 once it was seen but is not.",
    "gauge",
    ("model_name", "version"),
)

_ALL = (
    REQUEST_COUNT,
    REQUEST_LATENCY,
    EXAMPLE_COUNT,
    LOAD_ATTEMPT_COUNT,
    LOAD_LATENCY,
    WARMUP_LATENCY,
    WARMUP_REQUESTS,
    QUEUING_LATENCY,
    VERSION_REQUEST_COUNT,
    VERSION_REQUEST_LATENCY,
    VERSION_STATE,
)


class _Histogram:
    __slots__ = ("buckets", "count", "total")

    def __init__(self) -> None:
        self.buckets = [0] * (len(LATENCY_BUCKETS_US) + 1)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.buckets[bisect.bisect_left(LATENCY_BUCKETS_US, value)] += 1
        self.count += 1
        self.total += value


class ServingMetrics:
    """Thread-safe metric store, exposed through a private prometheus_client registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[_Spec, dict[tuple[str, ...], object]] = {spec: {} for spec in _ALL}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self)

    def add(self, spec: _Spec, labels: tuple[str, ...], amount: float = 1.0) -> None:
        with self._lock:
            self._add(spec, labels, amount)

    def _add(self, spec: _Spec, labels: tuple[str, ...], amount: float) -> None:
        series = self._values[spec]
        series[labels] = series.get(labels, 0.0) + amount

    def set(self, spec: _Spec, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._values[spec][labels] = value

    def observe(self, spec: _Spec, labels: tuple[str, ...], value: float) -> None:
        with self._lock:
            self._observe(spec, labels, value)

    def _observe(self, spec: _Spec, labels: tuple[str, ...], value: float) -> None:
        series = self._values[spec]
        histogram = series.get(labels)
        if histogram is None:
            histogram = series[labels] = _Histogram()
        histogram.observe(value)

    def record_request(
        self,
        *,
        model: str,
        version: int | None,
        label: str,
        status: str,
        api: str,
        entrypoint: str,
        latency_us: float,
        examples: int = 0,
    ) -> None:
        version_text = "" if version is None else str(version)
        with self._lock:  # one lock round per request: this runs on every request
            self._add(REQUEST_COUNT, (model, status), 1.0)
            self._add(VERSION_REQUEST_COUNT, (model, version_text, label, status), 1.0)
            if status == "OK":
                self._observe(REQUEST_LATENCY, (model, api, entrypoint), latency_us)
                labels = (model, version_text, label, api, entrypoint)
                self._observe(VERSION_REQUEST_LATENCY, labels, latency_us)
                if examples:
                    self._add(EXAMPLE_COUNT, (model,), examples)

    def value(self, spec: _Spec, labels: tuple[str, ...]) -> float:
        """A counter's or gauge's current value (a histogram's count), for tests and tools."""
        with self._lock:
            item = self._values[spec].get(labels, 0.0)
        return float(item.count if isinstance(item, _Histogram) else item)

    def collect(self):
        with self._lock:
            snapshot = {
                spec: {
                    k: (v if not isinstance(v, _Histogram) else (list(v.buckets), v.count, v.total))
                    for k, v in series.items()
                }
                for spec, series in self._values.items()
            }
        for spec, series in snapshot.items():
            if spec.kind == "histogram":
                family = HistogramMetricFamily(spec.name, spec.doc, labels=spec.labels)
                for labels, (buckets, _count, total) in series.items():
                    cumulative, running = [], 0
                    for bound, count in zip((*LATENCY_BUCKETS_US, float("inf")), buckets, strict=False):
                        running += count
                        cumulative.append((_bound_text(bound), running))
                    family.add_metric(list(labels), cumulative, total)
            else:
                # Metric() directly: the sample keeps TF Serving's exact name (no "_total" appended).
                family = Metric(spec.name, spec.doc, spec.kind)
                for labels, value in series.items():
                    family.add_sample(spec.name, dict(zip(spec.labels, labels, strict=False)), value)
            yield family

    def exposition(self) -> bytes:
        """Prometheus text; counters' HELP/TYPE lines name the series as TF Serving does (no ``_total``)."""
        text = generate_latest(self.registry)
        for spec in _ALL:
            if spec.kind == "counter":
                name = spec.name.encode()
                text = text.replace(b" " + name + b"_total ", b" " + name + b" ")
        return text


def _bound_text(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(round(bound, 3))
