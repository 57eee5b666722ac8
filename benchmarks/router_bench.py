"""Routed against direct, side by side in one run: what the canary router costs clients, REST and gRPC.

A model server (``tfx-canary serve``, no batching) serves the fixture model ``m`` (y = 0.5x + 2) with a
``stable`` label; a router (``tfx-canary route``) runs in its own process in front of it. Each row sends
the same fixed number of requests twice, alternating, at concurrency 1, 16 and 64:

- direct: to the model server, pinned to ``labels/stable`` (what the router rewrites a bare call to);
- routed: the bare call (``/v1/models/m:predict``, or a gRPC ``model_spec`` with only the name) to the
  router, which picks the label and forwards on a pooled keep-alive connection.

REST rows are driven by ``wrk`` (``benchmarks/wrk_fixed_count.lua``), gRPC rows by ``h2load`` (HTTP/2,
one body file holding a length-prefixed PredictRequest; latencies from its per-request log). gRPC errors
travel in trailers, which h2load does not read, so errors are counted from the servers' own Prometheus
counters. ``make install`` installs both tools (``tools/system_packages.py``). Medians of ``--repeats``.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/router_bench.py --requests 4000 --repeats 3
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from serving_bench import HttpTarget, wrk_run  # noqa: E402 - the same wrk driver as the serving benchmark

MODEL = "m"
PREDICT = "/tensorflow.serving.PredictionService/Predict"


def _env() -> dict:
    import os

    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def _ports(process: subprocess.Popen, patterns: dict[str, str]) -> dict[str, int]:
    found: dict[str, int] = {}
    deadline = time.monotonic() + 120
    while len(found) < len(patterns) and time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("a server exited during start-up")
        for name, pattern in patterns.items():
            if match := re.search(pattern, line):
                found[name] = int(match.group(1))
    return found


def start(workdir: Path) -> tuple[list[subprocess.Popen], dict[str, int]]:
    from fixtures.contract import write_model_config
    from fixtures.models import write_fixture_model

    write_fixture_model(workdir / MODEL, 1, offset=2.0)
    config = write_model_config(
        workdir / "models.config",
        {MODEL: {"base_path": workdir / MODEL, "versions": [1], "labels": {"stable": 1}}},
    )
    monitoring = workdir / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    server = subprocess.Popen(
        [sys.executable, "-m", "tfx_canary.cli", "serve", f"--model_config_file={config}", "--port=-1",
         "--rest_api_port=-1", "--allow_version_labels_for_unavailable_models=true",
         f"--monitoring_config_file={monitoring}"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    ports = _ports(server, {"grpc": r"gRPC ModelServer at [\d.]+:(\d+)", "rest": r"REST API at:[\d.]+:(\d+)"})
    router = subprocess.Popen(
        [sys.executable, "-m", "tfx_canary.cli", "route", f"--server=127.0.0.1:{ports['rest']}",
         f"--grpc-server=127.0.0.1:{ports['grpc']}", "--port=0", "--grpc-port=0",
         f"--serving-root={workdir}"],
        stdout=subprocess.PIPE, text=True, env=_env(),
    )  # fmt: skip
    ports |= {
        f"router_{k}": v
        for k, v in _ports(
            router, {"rest": r"router on http://[\d.]+:(\d+)", "grpc": r"gRPC on [\d.]+:(\d+)"}
        ).items()
    }
    return [server, router], ports


def grpc_body(workdir: Path, label: str | None) -> Path:
    """One gRPC message (flag byte, big-endian length, PredictRequest) for h2load's -d."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    if label:
        request.model_spec.version_label = label
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([1.5], dtype=tf.float32))
    payload = request.SerializeToString()
    path = workdir / f"grpc-{label or 'bare'}.bin"
    path.write_bytes(struct.pack(">BI", 0, len(payload)) + payload)
    return path


def error_count(port: int, metric: str) -> float:
    """Non-OK answers so far, from a server's Prometheus endpoint."""
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/monitoring/prometheus/metrics", timeout=10
    ) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(metric) and 'status="OK"' not in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def h2load_run(port: int, body: Path, concurrency: int, requests: int, workdir: Path) -> dict:
    log = workdir / "h2load.log"
    command = [
        "h2load", f"-n{requests}", f"-c{min(concurrency, 16)}", f"-m{max(1, concurrency // 16)}",
        "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
        f"--log-file={log}", f"http://127.0.0.1:{port}{PREDICT}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"h2load failed: {done.stdout[-400:]} {done.stderr[-400:]}")
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    latencies = sorted(int(r[2]) / 1000 for r in rows)
    finished = re.search(r"finished in ([\d.]+)(ms|s)", done.stdout)
    elapsed = float(finished[1]) / (1000 if finished[2] == "ms" else 1) if finished else seconds
    return {
        "qps": len(rows) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "http_errors": sum(r[1] != "200" for r in rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=4000, help="requests per row and repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--transports", default="rest,grpc")
    args = parser.parse_args()
    for tool in ("wrk", "h2load"):
        if shutil.which(tool) is None:
            raise SystemExit(
                f"{tool} is not installed: run `make install` (it installs wrk and nghttp2-client)"
            )
    workdir = Path(tempfile.mkdtemp(prefix="router-bench-"))
    processes, ports = start(workdir)
    try:
        bodies = workdir / "bodies.txt"
        bodies.write_text('{"instances": [1.5]}\n')
        cases = {
            "rest": {
                "direct": HttpTarget(ports["rest"], f"/v1/models/{MODEL}/labels/stable:predict", []),
                "routed": HttpTarget(ports["router_rest"], f"/v1/models/{MODEL}:predict", []),
            },
            "grpc": {
                "direct": (ports["grpc"], grpc_body(workdir, "stable")),
                "routed": (ports["router_grpc"], grpc_body(workdir, None)),
            },
        }
        rows = []
        for transport in args.transports.split(","):
            for concurrency in (int(c) for c in args.concurrency.split(",")):
                runs: dict[str, list[dict]] = {"direct": [], "routed": []}
                for _ in range(args.repeats):
                    for side in ("direct", "routed"):  # alternate, so drift hits both sides alike
                        before = error_count(ports["rest"], ":tensorflow:serving:request_count")
                        router_before = error_count(ports["router_rest"], "router_errors_total")
                        if transport == "rest":
                            result = wrk_run(cases["rest"][side], bodies, concurrency, args.requests)
                        else:
                            port, body = cases["grpc"][side]
                            result = h2load_run(port, body, concurrency, args.requests, workdir)
                        server_errors = (
                            error_count(ports["rest"], ":tensorflow:serving:request_count") - before
                        )
                        router_errors = (
                            error_count(ports["router_rest"], "router_errors_total") - router_before
                        )
                        result["errors"] = result.get("errors", 0) + result.get("http_errors", 0)
                        result["errors"] += int(server_errors + router_errors)
                        runs[side].append(result)
                median = {
                    side: {k: statistics.median(r[k] for r in results) for k in ("qps", "p50", "p99")}
                    for side, results in runs.items()
                }
                errors = {side: sum(r["errors"] for r in results) for side, results in runs.items()}
                rows.append((transport, concurrency, median, errors))
                d, r = median["direct"], median["routed"]
                print(
                    f"{transport} c={concurrency}: direct {d['qps']:.0f} req/s, routed {r['qps']:.0f} "
                    f"({r['qps'] / d['qps']:.2f}x)",
                    flush=True,
                )
        print()
        print("| transport | conc. | direct req/s | routed req/s | ratio | p50 direct ms | p50 added ms "
              "| p99 direct ms | p99 routed ms | p99 ratio | errors direct/routed |")  # fmt: skip
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for transport, concurrency, median, errors in rows:
            d, r = median["direct"], median["routed"]
            print(
                f"| {transport} | {concurrency} | {d['qps']:.0f} | {r['qps']:.0f} "
                f"| {r['qps'] / d['qps']:.2f} "
                f"| {d['p50']:.2f} | {r['p50'] - d['p50']:+.2f} | {d['p99']:.2f} | {r['p99']:.2f} "
                f"| {r['p99'] / d['p99']:.2f} | {errors['direct']}/{errors['routed']} |"
            )
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
