"""Canary analysis: canary against stable over the same window, from the router's Prometheus metrics.

The statistics and the verdict, with no I/O but the metrics scrape: counter and histogram deltas between
two scrapes, tail quantiles from cumulative buckets, the Jensen-Shannon divergence of the prediction
histograms, and ``analyse``, which turns one window into ``pass``, ``fail`` or ``inconclusive`` with the
reasons (the CanaryAnalysis recorded in MLMD).
"""

from __future__ import annotations

import math
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Criteria:
    min_requests: int = 100  # per side in the window; fewer is inconclusive
    max_error_rate_increase: float = 0.01  # canary error rate may exceed stable's by this much
    max_p99_ratio: float = 1.5  # canary p99 may be this many times stable's ...
    p99_slack_s: float = 0.005  # ... or this much slower, whichever is more lenient
    max_divergence: float = 0.2  # Jensen-Shannon divergence (base 2, 0..1) of prediction histograms


Sample = dict  # (metric, model, label, mode) -> {"count": n} or {"buckets": {le: cumulative}}


def scrape(metrics_url: str, timeout_s: float = 5.0) -> Sample:
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
        text = response.read().decode()
    sample: Sample = defaultdict(lambda: {"count": 0.0, "buckets": {}})
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = s.labels
            if "model" not in labels:
                continue
            key = (family.name, labels["model"], labels["label"], labels["mode"])
            if s.name.endswith("_bucket"):
                sample[key]["buckets"][float(labels["le"])] = s.value
            elif s.name.endswith("_total") or s.name.endswith("_count"):
                sample[key]["count"] = s.value
    return dict(sample)


@dataclass
class Side:
    requests: float
    errors: float
    p99_s: float | None  # the tail latency: p99, or a lower quantile when the window is small
    predictions: dict[float, float] = field(repr=False)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _delta(before: Sample, after: Sample, key: tuple) -> dict:
    a, b = after.get(key, {"count": 0.0, "buckets": {}}), before.get(key, {"count": 0.0, "buckets": {}})
    buckets = {le: v - b["buckets"].get(le, 0.0) for le, v in a["buckets"].items()}
    return {"count": a["count"] - b["count"], "buckets": buckets}


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (cumulative Prometheus buckets)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return None


def side(before: Sample, after: Sample, model: str, label: str, mode: str) -> Side:
    requests = _delta(before, after, ("router_requests", model, label, mode))["count"]
    errors = _delta(before, after, ("router_errors", model, label, mode))["count"]
    latency = _delta(before, after, ("router_latency_seconds", model, label, mode))["buckets"]
    cumulative = _delta(before, after, ("router_prediction", model, label, mode))["buckets"]
    predictions, below = {}, 0.0
    for le in sorted(cumulative):
        predictions[le] = cumulative[le] - below
        below = cumulative[le]
    return Side(requests, errors, _quantile(latency, tail_quantile(requests)), predictions)


def tail_quantile(requests: float) -> float:
    """p99, but never a quantile with fewer than 5 samples above it: on a small window p99 is just the
    maximum, and one cold first call would decide the verdict."""
    return min(0.99, max(0.5, 1 - 5 / requests)) if requests else 0.99


def js_divergence(p: dict[float, float], q: dict[float, float]) -> float | None:
    keys = sorted(set(p) | set(q))
    p_total, q_total = sum(p.values()), sum(q.values())
    if p_total <= 0 or q_total <= 0:
        return None
    result = 0.0
    for k in keys:
        pi, qi = p.get(k, 0.0) / p_total, q.get(k, 0.0) / q_total
        mi = (pi + qi) / 2
        if pi > 0:
            result += 0.5 * pi * math.log2(pi / mi)
        if qi > 0:
            result += 0.5 * qi * math.log2(qi / mi)
    return result


def analyse(stable: Side, canary: Side, criteria: Criteria) -> dict:
    """Compare one window; the result is what gets recorded in MLMD as the CanaryAnalysis."""
    divergence = js_divergence(stable.predictions, canary.predictions)
    metrics = {
        "tail_quantile": tail_quantile(min(stable.requests, canary.requests)),
        "stable": {"requests": stable.requests, "errors": stable.errors, "p99_s": stable.p99_s},
        "canary": {"requests": canary.requests, "errors": canary.errors, "p99_s": canary.p99_s},
        "error_rate": {"stable": stable.error_rate, "canary": canary.error_rate},
        "divergence": divergence,
    }
    reasons = []
    if min(stable.requests, canary.requests) < criteria.min_requests:
        reasons.append(
            f"too few samples: stable {stable.requests:.0f}, canary {canary.requests:.0f} "
            f"(need {criteria.min_requests} each)"
        )
        return {"verdict": "inconclusive", "reasons": reasons, **metrics}
    if canary.error_rate > stable.error_rate + criteria.max_error_rate_increase:
        reasons.append(f"error rate {canary.error_rate:.2%} vs stable {stable.error_rate:.2%}")
    if canary.p99_s is not None and stable.p99_s is not None:
        allowed = max(stable.p99_s * criteria.max_p99_ratio, stable.p99_s + criteria.p99_slack_s)
        if canary.p99_s > allowed:
            reasons.append(f"p99 latency {canary.p99_s * 1000:.1f} ms vs stable {stable.p99_s * 1000:.1f} ms")
    if divergence is not None and divergence > criteria.max_divergence:
        reasons.append(f"prediction distribution diverges (JS {divergence:.3f} > {criteria.max_divergence})")
    return {"verdict": "fail" if reasons else "pass", "reasons": reasons, **metrics}
