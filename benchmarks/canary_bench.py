"""Canary release figures on loopback (not a test): push -> canary traffic, rollback, router overhead.

    .venv/bin/python benchmarks/canary_bench.py [--requests 2000]

Runs the embedded model server polling models.config every second (TF Serving's smallest poll
period), times the release steps, then calls the same model directly and through the router
side by side (interleaved, one keep-alive connection each) and prints medians and ratios.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _timed_calls(port: int, n: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    body = json.dumps({"instances": [1.0]})
    times = []
    for _ in range(n):
        start = time.perf_counter()
        connection.request("POST", "/v1/models/m:predict", body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
        assert response.status == 200
    connection.close()
    return times


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from fixtures.models import predict_warmup_log, write_fixture_model, write_warmup_requests
    from fixtures.served_root import ServedRoot
    from release import operations
    from rollout.router import Router

    root = tempfile.mkdtemp(prefix="canary-bench-")
    write_fixture_model(os.path.join(root, "m"), 1, offset=2.0)
    rows = []
    with ServedRoot(root) as served:
        target = served.target()
        operations.publish(target, 1)
        push_to_canary, rollback = [], []
        for i in range(args.repeats):
            version = 2 + i
            directory = write_fixture_model(served.base_path, version, offset=2.0)
            write_warmup_requests(directory, [predict_warmup_log([1.0])])
            start = time.perf_counter()
            operations.publish(target, version)  # phase 1, wait AVAILABLE, phase 2, wait label applied
            push_to_canary.append(time.perf_counter() - start)
            start = time.perf_counter()
            operations.rollback(target, "benchmark")  # label flip applied (unload follows)
            rollback.append(time.perf_counter() - start)
        rows.append(
            ("push -> canary labelled and serving (s)", statistics.median(push_to_canary), "1 poll + load")
        )
        rows.append(
            ("rollback: label flip applied (s)", statistics.median(rollback), "1 poll; unload written next")
        )
        with Router(served.address, served.root) as router:
            _timed_calls(router.port, 200)  # warm both paths
            _timed_calls(served.server.rest_port, 200)
            direct, routed = [], []
            for _ in range(10):  # interleave in slices so both see the same machine load
                direct += _timed_calls(served.server.rest_port, args.requests // 10)
                routed += _timed_calls(router.port, args.requests // 10)
        for q, name in ((0.5, "p50"), (0.99, "p99")):
            d, r = _pct(direct, q) * 1000, _pct(routed, q) * 1000
            rows.append((f"direct {name} (ms)", d, ""))
            rows.append((f"via router {name} (ms)", r, f"+{r - d:.2f} ms, x{r / d:.2f}"))
    print(f"\n{'measure':<42} {'median':>9}  note")
    for name, value, note in rows:
        print(f"{name:<42} {value:>9.3f}  {note}")


if __name__ == "__main__":
    main()
