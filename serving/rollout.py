"""The rollout controller: moves a canary through steps given as data, judging each one by comparing
canary against stable over the same window, then promotes or rolls back on its own.

Each step sets the router's split (``canary_weight``) or mirror (``shadow_fraction``), lets it take
effect, and reads the router's Prometheus metrics at the start and end of the window. Verdicts:

- ``fail``: canary error rate, p99 latency or prediction distribution is worse than stable by more
  than the criteria allow -> roll back (the label flips, the canary unloads);
- ``inconclusive``: either side has fewer than ``min_requests`` in the window -> extend the window,
  and after ``max_extensions`` hold the step (never a pass);
- ``pass``: go to the next step; after the last one, promote.
"""

from __future__ import annotations

import logging
import math
import re
import time
import urllib.request
from collections import defaultdict
from dataclasses import asdict, dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from components.release import operations
from components.release.state import ReleaseError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    name: str
    canary_weight: float = 0.0
    shadow_fraction: float = 0.0
    duration_s: float = 60.0


def parse_plan(text: str) -> list[Step]:
    """``shadow=30s,5%=60s,25%,100%`` -> steps; ``shadow`` mirrors all stable traffic to the canary."""
    steps = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, duration = item.partition("=")
        seconds = _seconds(duration) if duration else 60.0
        if name == "shadow" or name.startswith("shadow:"):
            fraction = float(name.split(":")[1].rstrip("%")) / 100 if ":" in name else 1.0
            steps.append(Step(name, 0.0, fraction, seconds))
        elif re.fullmatch(r"\d+(\.\d+)?%", name):
            steps.append(Step(name, float(name[:-1]) / 100, 0.0, seconds))
        else:
            raise ValueError(
                f"rollout step {item!r}: expected 'shadow', 'shadow:N%' or 'N%' with optional '=30s'"
            )
    if not steps:
        raise ValueError("the rollout plan has no steps")
    for step in steps:
        if not 0 <= step.canary_weight <= 1 or not 0 <= step.shadow_fraction <= 1:
            raise ValueError(f"rollout step {step.name!r}: percentages must be within 0-100%")
    return steps


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise ValueError(f"duration {text!r}: expected e.g. 500ms, 30s, 5m or 1h")
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


@dataclass(frozen=True)
class Criteria:
    min_requests: int = 100  # per side in the window; fewer is inconclusive
    max_error_rate_increase: float = 0.01  # canary error rate may exceed stable's by this much
    max_p99_ratio: float = 1.5  # canary p99 may be this many times stable's ...
    p99_slack_s: float = 0.005  # ... or this much slower, whichever is more lenient
    max_divergence: float = 0.2  # Jensen-Shannon divergence (base 2, 0..1) of prediction histograms


# ---- reading the router's metrics ----

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


# ---- the controller ----


@dataclass
class Outcome:
    verdict: str  # promoted, rolled back, inconclusive
    steps: list[dict]


class RolloutController:
    def __init__(
        self,
        target: operations.Target,
        metrics_url: str,
        plan: list[Step],
        criteria: Criteria | None = None,
        max_extensions: int = 3,
        settle_s: float = 0.5,
        retain_seconds: float = 3600.0,
    ):
        self.target = target
        self.metrics_url = metrics_url
        self.plan = plan
        self.criteria = criteria or Criteria()
        self.max_extensions = max_extensions
        self.settle_s = settle_s
        self.retain_seconds = retain_seconds
        self._baseline: Side | None = None

    def run(self) -> Outcome:
        target = self.target
        state = target.read().state
        if state.candidate is not None:
            log.info("%s: finishing phase 2 for version %s", target.model, state.candidate)
            operations.finish_phase2(target, state.candidate, "phase 2 finished by the rollout controller")
            state = target.read().state
        if state.in_flight is None:
            raise ReleaseError(f"model {target.model!r}: no canary on trial to roll out")
        log.info("%s: rolling out version %s over stable %s", target.model, state.in_flight, state.stable)
        results = []
        for step in self.plan:
            analysis = self._run_step(step)
            results.append({"step": asdict(step), **analysis})
            verdict = analysis["verdict"]
            if verdict == "fail":
                log.warning(
                    "%s: step %s failed: %s; rolling back", target.model, step.name, analysis["reasons"]
                )
                operations.rollback(
                    target, f"step {step.name} failed: " + "; ".join(analysis["reasons"]), analysis=analysis
                )
                return Outcome("rolled back", results)
            if verdict == "inconclusive":
                log.warning("%s: step %s still inconclusive; holding it", target.model, step.name)
                operations.set_traffic(
                    target, step.canary_weight, step.shadow_fraction, step.name, "inconclusive, holding",
                    verdict="inconclusive", analysis=analysis,
                )  # fmt: skip
                return Outcome("inconclusive", results)
            log.info("%s: step %s passed", target.model, step.name)
        operations.promote(
            target, f"all {len(self.plan)} steps passed", self.retain_seconds, analysis=results[-1]
        )
        return Outcome("promoted", results)

    def _run_step(self, step: Step) -> dict:
        target = self.target
        operations.set_traffic(
            target, step.canary_weight, step.shadow_fraction, step.name, f"step {step.name}"
        )
        time.sleep(self.settle_s)  # let the router pick the new split up before the window opens
        canary_mode = "shadow" if step.canary_weight == 0 else "live"
        before = scrape(self.metrics_url)
        analysis: dict = {}
        for extension in range(self.max_extensions + 1):
            time.sleep(step.duration_s)
            after = scrape(self.metrics_url)
            stable = side(before, after, target.model, "stable", "live")
            canary = side(before, after, target.model, "canary", canary_mode)
            if step.canary_weight >= 1.0 and self._baseline is not None:
                stable = (
                    self._baseline
                )  # at 100% no stable traffic is left: compare with the last stable window
            analysis = analyse(stable, canary, self.criteria)
            if stable.requests >= self.criteria.min_requests:
                self._baseline = stable
            log.info(
                "%s: step %s window %d: %s (stable %d req, canary %d req)",
                target.model, step.name, extension + 1, analysis["verdict"], stable.requests, canary.requests,
            )  # fmt: skip
            if analysis["verdict"] != "inconclusive":
                break
        return analysis
