"""Where a step's numbers come from: retries, holds, and Prometheus queries summed over replicas."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rollout.metrics_source import AnalysisUnavailable, Mark, PrometheusQuery, RouterScrape, with_retries
from rollout.router_metrics import RouterMetrics


def router_text() -> str:
    """What a real router exports after 10 stable requests and 4 canary ones (1 failed), at generation 7."""
    metrics = RouterMetrics()
    for _ in range(10):
        metrics.observe("m", "stable", "live", True, 0.004, [0.5])
    for ok in (True, True, True, False):
        metrics.observe("m", "canary", "live", ok, 0.004, [0.5] if ok else [])
    gauge = '# TYPE router_release_generation gauge\nrouter_release_generation{model="m"} 7.0\n'
    return metrics.exposition().decode() + gauge


class _Endpoint:
    """A real HTTP server on loopback answering from a list of (status, body) per path."""

    def __init__(self, answers: dict[str, list[tuple[int, bytes]]]):
        self.answers, self.seen = answers, []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                path, _, query = self.path.partition("?")
                endpoint.seen.append((path, urllib.parse.parse_qs(query)))
                queue = endpoint.answers[path]
                status, body = queue.pop(0) if len(queue) > 1 else queue[0]
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint():
    made = []

    def make(answers):
        made.append(_Endpoint(answers))
        return made[-1]

    yield make
    for e in made:
        e.close()


def test_a_metrics_endpoint_that_fails_twice_then_answers_is_read(endpoint):
    router = endpoint({"/metrics": [(503, b"busy"), (500, b"oops"), (200, router_text().encode())]})
    scrape = RouterScrape(f"{router.url}/metrics", delays=(0.01, 0.01, 0.01))
    first = scrape.mark()
    assert first.sample[("router_requests", "m", "stable", "live")]["count"] == 10.0
    assert len(router.seen) == 3
    assert scrape.applied("m", 7) and not scrape.applied("m", 8)
    side = scrape.side("m", "canary", "live", Mark(0, {}), first)
    assert (side.requests, side.errors) == (4.0, 1.0)


def test_an_endpoint_that_never_answers_is_unavailable_not_a_crash():
    scrape = RouterScrape("http://127.0.0.1:9/metrics", timeout_s=0.5, delays=(0.01, 0.01))
    with pytest.raises(
        AnalysisUnavailable, match=r"reading the router metrics at http://127.0.0.1:9/metrics failed 3"
    ):
        scrape.mark()


def test_retries_stop_at_the_first_success():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 2:
            raise OSError("connection refused")
        return "ok"

    assert with_retries("reading", flaky, delays=(0.0, 0.0)) == "ok" and len(calls) == 2


def _vector(metric_values: list[tuple[dict, float]]) -> bytes:
    result = [{"metric": m, "value": [0, str(v)]} for m, v in metric_values]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


class _FakeApi:
    """Answers PromQL by the metric it names, as Prometheus' HTTP API would (records each query)."""

    def __init__(self, endpoint, by_metric: dict[str, bytes]):
        self.by_metric = by_metric
        self.endpoint = endpoint({"/api/v1/query": [(200, b"")]})
        api = self

        def do_GET(handler):
            query = urllib.parse.parse_qs(handler.path.partition("?")[2])["query"][0]
            api.endpoint.seen.append(query)
            body = next((b for metric, b in api.by_metric.items() if metric in query), _vector([]))
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            handler.wfile.write(body)

        self.endpoint.server.RequestHandlerClass.do_GET = do_GET


def test_prometheus_sums_every_replica_over_the_window(endpoint):
    stable, canary = {"label": "stable", "mode": "live"}, {"label": "canary", "mode": "live"}
    api = _FakeApi(
        endpoint,
        {
            "router_requests_total": _vector([(stable, 120.0), (canary, 40.0)]),
            "router_errors_total": _vector([(canary, 2.0)]),
            "router_prediction_bucket": _vector(
                [({**canary, "le": "1.0"}, 30.0), ({**canary, "le": "+Inf"}, 40.0)]
            ),
            "router_latency_seconds_bucket": _vector([(canary, 0.042)]),
            "router_release_generation": _vector([({"model": "m", "instance": "a"}, 9), ({"model": "m"}, 8)]),
        },
    )
    source = PrometheusQuery(api.endpoint.url, lag_s=0.0)
    side = source.side("m", "canary", "live", Mark(100.0), Mark(160.0))
    assert (side.requests, side.errors, side.p99_s) == (40.0, 2.0, 0.042)
    assert side.predictions == {1.0: 30.0, float("inf"): 10.0}
    queries = api.endpoint.seen
    assert 'sum by (label, mode) (increase(router_requests_total{model="m"}[60000ms]))' in queries
    quantile = [q for q in queries if q.startswith("histogram_quantile(")]
    assert quantile == [
        "histogram_quantile(0.875, sum by (label, mode, le) "
        '(increase(router_latency_seconds_bucket{model="m"}[60000ms])))'
    ]  # the tail quantile of 40 requests: never fewer than 5 samples above it
    assert not source.applied("m", 9)  # one replica still reports generation 8
    assert source.applied("m", 8)


def test_no_samples_yet_reads_as_an_empty_window(endpoint):
    api = _FakeApi(endpoint, {})
    source = PrometheusQuery(api.endpoint.url, lag_s=0.0)
    side = source.side("m", "stable", "live", Mark(0.0), Mark(5.0))
    assert (side.requests, side.errors, side.p99_s, side.predictions) == (0.0, 0.0, None, {})
    assert not source.applied("m", 1)  # no router reports anything: the window does not open


def test_a_prometheus_that_does_not_answer_is_unavailable():
    source = PrometheusQuery("http://127.0.0.1:9", lag_s=0.0, timeout_s=0.5, delays=(0.01,))
    with pytest.raises(
        AnalysisUnavailable, match=r"querying Prometheus at http://127\.0\.0\.1:9 failed 2 times"
    ):
        source.applied("m", 1)
