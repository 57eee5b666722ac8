"""Canary analysis: canary against stable over the same window (the statistics and the verdict, no I/O).

Each side of a window is its request and error counts, a tail latency and a prediction histogram
(``Side``; ``rollout.metrics_source`` reads them from one router or from Prometheus). ``analyse`` turns
one window into ``pass``, ``fail`` or ``inconclusive`` with the reasons: the CanaryAnalysis recorded in
MLMD.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Criteria:
    min_requests: int = 100  # per side in the window; fewer is inconclusive
    max_error_rate_increase: float = 0.01  # canary error rate may exceed stable's by this much
    max_p99_ratio: float = 1.5  # canary p99 may be this many times stable's ...
    p99_slack_s: float = 0.005  # ... or this much slower, whichever is more lenient
    max_divergence: float = 0.2  # Jensen-Shannon divergence (base 2, 0..1) of prediction histograms


@dataclass
class Side:
    requests: float
    errors: float
    p99_s: float | None  # the tail latency: p99, or a lower quantile when the window is small
    predictions: dict[float, float] = field(repr=False)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (cumulative Prometheus buckets)."""
    total = buckets.get(math.inf, 0.0)
    if total <= 0:
        return None
    for le in sorted(buckets):
        if buckets[le] >= q * total:
            return le
    return None


def side_from(
    requests: float,
    errors: float,
    latency: dict[float, float],
    cumulative_predictions: dict[float, float],
    p99_s: float | None = None,
) -> Side:
    """A window's side from counter and cumulative-bucket increases; ``p99_s`` if the source computed it."""
    predictions, below = {}, 0.0
    for le in sorted(cumulative_predictions):
        predictions[le] = cumulative_predictions[le] - below
        below = cumulative_predictions[le]
    if p99_s is None:
        p99_s = _quantile(latency, tail_quantile(requests))
    return Side(requests, errors, p99_s, predictions)


# The fewest samples above a tail quantile (and so the slow answers a small window can fail on).
CLEAR_SAMPLES = 5


def tail_quantile(requests: float) -> float:
    """p99, but never a quantile with fewer than ``CLEAR_SAMPLES`` samples above it once there are
    twice as many: on a small window p99 is just the maximum, and one cold first call would decide the
    verdict."""
    return min(0.99, max(0.5, 1 - CLEAR_SAMPLES / requests)) if requests else 0.99


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


def histogram_json(buckets: dict[float, float]) -> dict[str, float]:
    """Bucket counts keyed by upper bound as Prometheus writes it ("0.5", "+Inf"): JSON keys are text."""
    return {("+Inf" if le == math.inf else repr(float(le))): n for le, n in sorted(buckets.items()) if n}


def analyse(stable: Side, canary: Side, criteria: Criteria) -> dict:
    """Compare one window; the result is what gets recorded in MLMD as the CanaryAnalysis."""
    divergence = js_divergence(stable.predictions, canary.predictions)
    metrics = {
        "tail_quantile": tail_quantile(min(stable.requests, canary.requests)),
        "stable": {"requests": stable.requests, "errors": stable.errors, "p99_s": stable.p99_s},
        "canary": {"requests": canary.requests, "errors": canary.errors, "p99_s": canary.p99_s},
        "error_rate": {"stable": stable.error_rate, "canary": canary.error_rate},
        "divergence": divergence,
        # per-bucket counts by upper bound, so a report can draw both distributions later
        "predictions": {
            "stable": histogram_json(stable.predictions),
            "canary": histogram_json(canary.predictions),
        },
    }
    errors, slow = _errors(stable, canary, criteria), _slow(stable, canary, criteria)
    if min(stable.requests, canary.requests) < criteria.min_requests:
        # Too few samples to pass, but maybe enough to fail: a slow canary's shadow answers come back
        # few (the router keeps only a few in flight), and it would otherwise hold its step forever.
        clear = [reason for reason in _clearly_worse(stable, canary, criteria, errors, slow) if reason]
        if clear:
            few = f"clear on {canary.requests:.0f} canary samples (fewer than {criteria.min_requests})"
            return {"verdict": "fail", "reasons": [*clear, few], **metrics}
        reasons = [
            f"too few samples: stable {stable.requests:.0f}, canary {canary.requests:.0f} "
            f"(need {criteria.min_requests} each)"
        ]
        return {"verdict": "inconclusive", "reasons": reasons, **metrics}
    reasons = [reason for reason in (errors, slow) if reason]
    if divergence is not None and divergence > criteria.max_divergence:
        reasons.append(f"prediction distribution diverges (JS {divergence:.3f} > {criteria.max_divergence})")
    return {"verdict": "fail" if reasons else "pass", "reasons": reasons, **metrics}


# A window with too few samples fails only on what a canary within the criteria would show less often.
CLEAR_CHANCE = 0.001


def _clearly_worse(stable: Side, canary: Side, criteria: Criteria, errors: str, slow: str) -> list[str]:
    """The failures a window too small to pass already shows beyond chance.

    With the stable side at ``min_requests``: the canary's errors, if that many errors among its samples
    would come up less than ``CLEAR_CHANCE`` of the time at the highest error rate the criteria allow;
    its tail latency, once it has ``2 * CLEAR_SAMPLES`` samples (its tail quantile then leaves
    ``CLEAR_SAMPLES`` of them above it, all slower than allowed), if that many answers above a p99 within
    the criteria (1 % of answers) would come up less than ``CLEAR_CHANCE`` of the time.
    """
    if stable.requests < criteria.min_requests:
        return []
    n = round(canary.requests)
    allowed_error_rate = min(1.0, stable.error_rate + criteria.max_error_rate_increase)
    clear_errors = errors and _binomial_tail(round(canary.errors), n, allowed_error_rate) < CLEAR_CHANCE
    clear_slow = slow and n >= 2 * CLEAR_SAMPLES and _binomial_tail(CLEAR_SAMPLES, n, 0.01) < CLEAR_CHANCE
    return [errors if clear_errors else "", slow if clear_slow else ""]


def _binomial_tail(k: int, n: int, p: float) -> float:
    """The chance of ``k`` or more successes in ``n`` trials of chance ``p``."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(max(k, 0), n + 1))


def _errors(stable: Side, canary: Side, criteria: Criteria) -> str:
    """Why the canary's error rate is too high, or ``""``."""
    if canary.error_rate > stable.error_rate + criteria.max_error_rate_increase:
        return f"error rate {canary.error_rate:.2%} vs stable {stable.error_rate:.2%}"
    return ""


def _slow(stable: Side, canary: Side, criteria: Criteria) -> str:
    """Why the canary's tail latency is too high, or ``""``."""
    if canary.p99_s is None or stable.p99_s is None:
        return ""
    allowed = max(stable.p99_s * criteria.max_p99_ratio, stable.p99_s + criteria.p99_slack_s)
    if canary.p99_s > allowed:
        return f"p99 latency {canary.p99_s * 1000:.1f} ms vs stable {stable.p99_s * 1000:.1f} ms"
    return ""
