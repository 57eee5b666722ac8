"""Where a rollout step's numbers come from: one router's metrics endpoint, or Prometheus.

- ``RouterScrape``: scrape one router's ``/monitoring/prometheus/metrics`` at the start and the end of
  the window and take the deltas (one router on one machine: ``tfx-canary rollout --router-metrics``);
- ``PrometheusQuery``: ask a Prometheus HTTP API with PromQL, summed over every router replica it
  scrapes: ``increase()`` of the request and error counters and of the prediction histogram buckets,
  ``histogram_quantile()`` of the latency buckets, over the step's window. ``increase()`` also counts
  a replica that appears or disappears during the window.

Both tell whether every router applies a release generation yet (``router_release_generation``), so a
step's window opens only once the new split is in force everywhere. A failed read is retried with
backoff; if it keeps failing, ``AnalysisUnavailable`` says why and the controller holds the step.
"""

from __future__ import annotations

import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client.parser import text_string_to_metric_families

from rollout.analysis import Side, side_from, tail_quantile
from tfx_canary.errors import CanaryError

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_DELAYS_S = (0.5, 1.0, 2.0, 4.0)  # then give up: about 7.5 s of trying


class AnalysisUnavailable(CanaryError):
    """The metrics could not be read, even after retries; the step is held, never passed."""


def with_retries(what: str, read: Callable[[], T], delays: tuple[float, ...] = RETRY_DELAYS_S) -> T:
    """``read()``, retried with backoff on network errors, HTTP errors and unreadable answers."""
    for attempt, delay in enumerate((*delays, None)):
        try:
            return read()
        except (OSError, ValueError, KeyError) as error:  # URLError is an OSError; bad JSON a ValueError
            if delay is None:
                raise AnalysisUnavailable(f"{what} failed {attempt + 1} times: {error}") from error
            log.warning("%s failed (%s); retrying in %.1f s", what, error, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class Mark:
    """A point the source can measure a window from (and, for a scrape, what it read then)."""

    at: float
    sample: dict | None = None


class RouterScrape:
    """One router's metrics endpoint, read at each end of the window."""

    supports_history = False  # only windows between two marks it took

    def __init__(self, metrics_url: str, timeout_s: float = 5.0, delays: tuple[float, ...] = RETRY_DELAYS_S):
        self.url, self.timeout_s, self.delays = metrics_url, timeout_s, delays

    def _read(self) -> str:
        with urllib.request.urlopen(self.url, timeout=self.timeout_s) as response:
            return response.read().decode()

    def scrape(self) -> dict:
        """(metric, model, label, mode) -> {"count": n, "buckets": {le: cumulative}}; gauges by model."""
        text = with_retries(f"reading the router metrics at {self.url}", self._read, self.delays)
        sample: dict = defaultdict(lambda: {"count": 0.0, "buckets": {}})
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = s.labels
                if "model" not in labels:
                    continue
                if "label" not in labels:  # a gauge per model
                    sample[(family.name, labels["model"])]["count"] = s.value
                    continue
                key = (family.name, labels["model"], labels["label"], labels["mode"])
                if s.name.endswith("_bucket"):
                    sample[key]["buckets"][float(labels["le"])] = s.value
                elif s.name.endswith("_total") or s.name.endswith("_count"):
                    sample[key]["count"] = s.value
        return dict(sample)

    def mark(self) -> Mark:
        return Mark(time.time(), self.scrape())

    def side(self, model: str, label: str, mode: str, since: Mark, until: Mark) -> Side:
        def delta(metric: str) -> dict:
            empty = {"count": 0.0, "buckets": {}}
            a, b = (
                until.sample.get((metric, model, label, mode), empty),
                since.sample.get((metric, model, label, mode), empty),
            )
            buckets = {le: v - b["buckets"].get(le, 0.0) for le, v in a["buckets"].items()}
            return {"count": a["count"] - b["count"], "buckets": buckets}

        return side_from(
            delta("router_requests")["count"],
            delta("router_errors")["count"],
            delta("router_latency_seconds")["buckets"],
            delta("router_prediction")["buckets"],
        )

    def applied(self, model: str, generation: int) -> bool:
        gauge = self.scrape().get(("router_release_generation", model))
        return gauge is not None and gauge["count"] >= generation


def _matcher(model: str) -> str:
    return '{model="' + model.replace("\\", "\\\\").replace('"', '\\"') + '"}'


class PrometheusQuery:
    """A Prometheus HTTP API (``http://prometheus:9090``) that scrapes every router replica.

    ``lag_s``: how long after a window ends its last samples are in Prometheus (one scrape interval and
    a little); reading earlier would cut the window short.
    """

    supports_history = True  # any past window

    def __init__(
        self,
        url: str,
        lag_s: float = 2.0,
        timeout_s: float = 10.0,
        delays: tuple[float, ...] = RETRY_DELAYS_S,
    ):
        self.url, self.lag_s, self.timeout_s, self.delays = url.rstrip("/"), lag_s, timeout_s, delays

    def query(self, promql: str, at: float | None = None) -> list[dict]:
        """The instant vector ``promql`` evaluates to (at ``at``, default now)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}"

        def read() -> list[dict]:
            try:
                with urllib.request.urlopen(url, timeout=self.timeout_s) as response:
                    answer = json.loads(response.read())
            except urllib.error.HTTPError as error:  # 400/422: a bad query; 503: Prometheus not ready
                detail = error.read()[:300].decode(errors="replace")
                if error.code in (400, 422):
                    raise AnalysisUnavailable(f"Prometheus refused {promql!r}: {detail}") from None
                raise
            if answer.get("status") != "success":
                raise ValueError(f"Prometheus answered {answer.get('status')}: {answer.get('error')}")
            return answer["data"]["result"]

        return with_retries(f"querying Prometheus at {self.url}", read, self.delays)

    def mark(self) -> Mark:
        return Mark(time.time())

    def _wait_for(self, until: Mark) -> None:
        ready = until.at + self.lag_s
        if (wait := ready - time.time()) > 0:
            time.sleep(wait)

    def _by_side(self, promql: str, at: float, by: str = "label, mode") -> dict[tuple, float]:
        return {
            tuple(r["metric"].get(k.strip(), "") for k in by.split(",")): float(r["value"][1])
            for r in self.query(promql, at)
        }

    def side(self, model: str, label: str, mode: str, since: Mark, until: Mark) -> Side:
        self._wait_for(until)
        window = f"{max(1, round((until.at - since.at) * 1000))}ms"
        where = _matcher(model)
        select = (label, mode)
        requests = self._by_side(
            f"sum by (label, mode) (increase(router_requests_total{where}[{window}]))", until.at
        )
        errors = self._by_side(
            f"sum by (label, mode) (increase(router_errors_total{where}[{window}]))", until.at
        )
        count = requests.get(select, 0.0)
        predictions = {
            (float(le),): v
            for (lbl, md, le), v in self._by_side(
                f"sum by (label, mode, le) (increase(router_prediction_bucket{where}[{window}]))",
                until.at,
                by="label, mode, le",
            ).items()
            if (lbl, md) == select
        }
        quantile = tail_quantile(count)
        latency = self._by_side(
            f"histogram_quantile({quantile}, sum by (label, mode, le) "
            f"(increase(router_latency_seconds_bucket{where}[{window}])))",
            until.at,
        )
        p99 = latency.get(select)
        p99 = None if p99 is None or math.isnan(p99) else p99
        return side_from(count, errors.get(select, 0.0), {}, {le: v for (le,), v in predictions.items()}, p99)

    def applied(self, model: str, generation: int) -> bool:
        replicas = [float(r["value"][1]) for r in self.query(f"router_release_generation{_matcher(model)}")]
        return bool(replicas) and min(replicas) >= generation
