"""Side-by-side load test of the embedded model server (closed loop, fixed request count, loopback only).

Compared in one run, at concurrency 1, 8 and 64:
- ``in-process``: the SavedModel signature called directly in this process (the limit);
- ``rest-aiohttp`` / ``rest-threading`` / ``grpc``: ``tfx-canary serve`` without batching, REST on each
  ``--rest_api_server`` carrier; ``...+batch``: the same with ``--enable_batching``;
- ``flask``: a plain Flask app that loads the same SavedModel and calls it once per request (the
  "traditional way" TF Serving replaces).

The model is the pipeline's real taxi classifier (tf.Transform graph + Keras, built from a few rows by
``fixtures.taxi``), called through ``serving_raw`` with one trip per request (JSON ``instances`` over
REST and Flask, TensorProtos over gRPC). Each server runs in its own process.

Load generators (C, one epoll thread, N connections = concurrency; they cost the servers far less CPU
than Python client threads on the same two cores):

- every HTTP case (REST, REST+batch, Flask) is driven by ``wrk`` through ``benchmarks/wrk_fixed_count.lua``,
  which stops after a fixed request count and reports p50/p99 from wrk's latency histogram;
- the gRPC cases by ``h2load`` (Debian's ``nghttp2-client``): the same serialized PredictRequest in gRPC
  framing, ``-m 1`` (one call in flight per connection, like wrk), latencies from its per-request log.
  h2load sees HTTP 200 for every gRPC answer, so errors are counted from the server's own
  ``:tensorflow:serving:request_count`` (status != OK) before and after each run.

A missing generator is installed with ``apt-get install -y`` (``wrk``, ``nghttp2-client``) when this runs
as root; otherwise those rows fall back to the Python closed loop (one thread per client) and the script
says so; the ``gen`` column says which generator made each row. The in-process limit always uses Python.
Prints QPS, p50 and p99 per mode and concurrency, and the ratios the issues set targets for.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/serving_bench.py --requests 2000
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MODEL = "taxi_tips"
SIGNATURE = "serving_raw"  # named raw features in plain JSON: what a REST client of the pushed model sends
ROWS = 40  # distinct taxi trips cycled through by the clients
WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_fixed_count.lua"
MONITORING = 'prometheus_config { enable: true, path: "/monitoring/prometheus/metrics" }\n'
_OK_COUNT = re.compile(
    r':tensorflow:serving:request_count\{model_name="taxi_tips",status="(\w+)"\} ([\d.e+]+)'
)
_WRK_RESULT = re.compile(r"RESULT requests=(\d+) seconds=([\d.]+) p50_us=(\d+) p99_us=(\d+) errors=(\d+)")


def write_taxi_model(base: Path) -> Path:
    """The pipeline's taxi classifier (tf.Transform + Keras, all serving signatures), from a few rows."""
    from fixtures.taxi import transform_rows
    from fixtures.taxi import write_taxi_model as write

    transform = transform_rows(MODEL, str(base / "transform"), count=ROWS)
    return write(base / MODEL, 1, MODEL, transform)


def taxi_columns() -> dict[str, list]:
    """``serving_raw`` columns for ROWS trips (MISSING sentinels where the CSV has no value)."""
    from fixtures.taxi import raw_rows, serving_raw_inputs

    return serving_raw_inputs(raw_rows(ROWS), MODEL)


def _instance(columns: dict[str, list], i: int) -> dict:
    return {key: values[i % ROWS] for key, values in columns.items()}


FLASK_APP = """
import sys, numpy as np, tensorflow as tf
from flask import Flask, jsonify, request
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_raw"]
dtypes = {k: v.dtype for k, v in signature.structured_input_signature[1].items()}
app = Flask(__name__)
@app.post("/predict")
def predict():
    rows = request.get_json()["instances"]
    inputs = {k: tf.constant([row[k] for row in rows], dtype) for k, dtype in dtypes.items()}
    return jsonify(predictions=signature(**inputs)["scores"].numpy().tolist())
app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def ensure_tool(binary: str, package: str) -> bool:
    """Whether ``binary`` is on PATH, installing Debian's ``package`` first when it is not (as root)."""
    if shutil.which(binary):
        return True
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"{binary} not found: apt-get install -y {package} ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", package], check=False, capture_output=True)
        if not shutil.which(binary):
            subprocess.run(["apt-get", "update", "-q"], check=False, capture_output=True)
            subprocess.run(["apt-get", "install", "-y", "-q", package], check=False, capture_output=True)
    return shutil.which(binary) is not None


def start_model_server(
    config: Path, batching_file: Path | None, rest_server: str, monitoring: Path
) -> tuple[subprocess.Popen, int, int]:
    flags = [
        f"--model_config_file={config}",
        "--port=-1",
        "--rest_api_port=-1",
        "--enable_model_warmup=false",
        f"--rest_api_server={rest_server}",
        f"--monitoring_config_file={monitoring}",
    ]
    if batching_file:
        flags += ["--enable_batching=true", f"--batching_parameters_file={batching_file}"]
    process = subprocess.Popen(
        [sys.executable, "-m", "tfx_canary.cli", "serve", *flags],
        stdout=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    ports = {}
    while len(ports) < 2:
        line = process.stdout.readline()
        if not line:
            raise RuntimeError("model server exited during start-up")
        for kind, pattern in (
            ("grpc", r"gRPC ModelServer at [\d.]+:(\d+)"),
            ("rest", r"REST API at:[\d.]+:(\d+)"),
        ):
            match = re.search(pattern, line)
            if match:
                ports[kind] = int(match.group(1))
    return process, ports["rest"], ports["grpc"]


def start_flask(model_dir: Path) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", FLASK_APP, str(model_dir), str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            http.client.HTTPConnection("127.0.0.1", port, timeout=1).connect()
            return process, port
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("flask app did not start")


def request_bodies(columns: dict[str, list]) -> list[str]:
    """One JSON predict body per taxi trip (one row each); the same bodies go to REST and to Flask."""
    return [
        json.dumps({"signature_name": SIGNATURE, "instances": [_instance(columns, i)]}) for i in range(ROWS)
    ]


class HttpTarget:
    """An HTTP case: wrk drives it when installed, else ``rest_client`` in the Python closed loop."""

    def __init__(self, port: int, path: str, bodies: list[str]) -> None:
        self.port, self.path, self.bodies = port, path, bodies

    def python_call(self):
        return rest_client(self.port, self.path, self.bodies)


def wrk_run(target: HttpTarget, bodies_file: Path, concurrency: int, requests: int) -> dict:
    """One wrk closed-loop run of exactly ``requests`` POSTs over ``concurrency`` keep-alive connections."""
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        "-d300s",  # an upper bound only: the script ends the run at the request count
        "--timeout",
        "60s",
        "-s",
        str(WRK_SCRIPT),
        f"http://127.0.0.1:{target.port}",
        "--",
        str(bodies_file),
        target.path,
        str(requests),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=360, check=False)
    match = _WRK_RESULT.search(done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-400:]} {done.stderr[-400:]}")
    count, seconds, p50_us, p99_us, errors = match.groups()
    return {
        "qps": int(count) / float(seconds),
        "p50": int(p50_us) / 1000,
        "p99": int(p99_us) / 1000,
        "errors": int(errors),
    }


def rest_client(port: int, path: str, bodies: list[str]):
    local = threading.local()

    def call(i: int) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        local.connection.request(
            "POST", path, body=bodies[i % ROWS], headers={"Content-Type": "application/json"}
        )
        response = local.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")

    return call


def request_counts(rest_port: int) -> dict[str, float]:
    """The model server's ``:tensorflow:serving:request_count`` for the taxi model, by status."""
    connection = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=30)
    connection.request("GET", "/monitoring/prometheus/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    return {status: float(value) for status, value in _OK_COUNT.findall(text)}


class GrpcTarget:
    """A gRPC case: h2load drives it when installed, else ``grpc_client`` in the Python closed loop."""

    def __init__(self, port: int, rest_port: int, columns: dict[str, list]) -> None:
        self.port, self.rest_port, self.columns = port, rest_port, columns

    def python_call(self):
        return grpc_client(self.port, self.columns)


def grpc_frame(columns: dict[str, list]) -> bytes:
    """One taxi trip's PredictRequest in gRPC's wire framing (uncompressed flag + 4-byte length)."""
    request = predict_requests(columns)[0]
    payload = request.SerializeToString()
    return b"\x00" + len(payload).to_bytes(4, "big") + payload


def h2load_run(target: GrpcTarget, frame_file: Path, concurrency: int, requests: int, workdir: Path) -> dict:
    """One h2load closed-loop run: ``requests`` Predict calls over ``concurrency`` connections, one each."""
    log_file = workdir / "h2load.log"
    log_file.unlink(missing_ok=True)  # h2load appends to an existing log
    before = request_counts(target.rest_port)
    command = [
        "h2load",
        f"-n{requests}",
        f"-c{concurrency}",
        "-m1",
        "-t1",
        "-d",
        str(frame_file),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        f"--log-file={log_file}",
        f"http://127.0.0.1:{target.port}/tensorflow.serving.PredictionService/Predict",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    match = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", done.stdout)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"h2load failed ({done.returncode}): {done.stdout[-400:]} {done.stderr[-400:]}")
    after = request_counts(target.rest_port)
    latencies = sorted(int(line.split("\t")[2]) / 1000 for line in log_file.read_text().splitlines() if line)
    ok = after.get("OK", 0) - before.get("OK", 0)
    failed = sum(after.values()) - sum(before.values()) - ok
    answered = sum(1 for line in log_file.read_text().splitlines() if line.split("\t")[1] == "200")
    return {
        "qps": float(match[3]),
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": int(failed + (requests - answered)),
    }


def predict_requests(columns: dict[str, list]) -> list:
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    from models import features

    requests = []
    for i in range(ROWS):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.model_spec.signature_name = SIGNATURE
        for key, values in columns.items():
            request.inputs[key].CopyFrom(tf.make_tensor_proto([values[i]], dtype=features.raw_dtype(key)))
        requests.append(request)
    return requests


def grpc_client(port: int, columns: dict[str, list]):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    requests = predict_requests(columns)

    def call(i: int) -> None:
        stub.Predict(requests[i % ROWS], 60)

    return call


def in_process_client(model_dir: Path, columns: dict[str, list]):
    import numpy as np
    import tensorflow as tf

    from models import features

    signature = tf.saved_model.load(str(model_dir)).signatures[SIGNATURE]
    arrays = [
        {k: np.asarray([v[i]], dtype=features.raw_dtype(k).as_numpy_dtype) for k, v in columns.items()}
        for i in range(ROWS)
    ]

    def call(i: int) -> None:
        inputs = {k: tf.constant(v) for k, v in arrays[i % ROWS].items()}
        signature(**inputs)["scores"].numpy()

    return call


def closed_loop(call, concurrency: int, requests: int) -> dict:
    """``concurrency`` threads each send their share of ``requests`` back to back; latencies in ms."""
    for i in range(min(20, requests)):  # warm the connections and the model
        call(i)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_thread = requests // concurrency

    def worker(offset: int) -> None:
        mine = []
        for i in range(per_thread):
            started = time.perf_counter()
            try:
                call(offset + i)
            except Exception as error:
                errors.append(str(error))
                continue
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker, args=(t * per_thread,)) for t in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies.sort()

    def quantile(q):
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")

    return {
        "qps": len(latencies) / elapsed,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": quantile(0.99),
        "errors": len(errors),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400, help="requests per mode and concurrency")
    parser.add_argument("--concurrency", default="1,8,64", help="comma-separated client thread counts")
    parser.add_argument(
        "--rest-servers", default="threading,aiohttp", help="REST carriers to compare (--rest_api_server)"
    )
    parser.add_argument(
        "--python-generator", action="store_true", help="drive the HTTP cases with Python threads, not wrk"
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    print(f"Building the taxi model (tf.Transform + Keras) under {workdir} ...", flush=True)
    model_dir = write_taxi_model(workdir)
    columns = taxi_columns()
    from fixtures.contract import write_model_config

    config = write_model_config(workdir / "models.config", {MODEL: {"base_path": workdir / MODEL}})
    monitoring = workdir / "monitoring.config"
    monitoring.write_text(MONITORING)
    batching = workdir / "batching.txt"
    batching.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
    )
    processes = []
    try:
        print("Starting model servers (threading and aiohttp REST, with and without batching) and flask ...")
        servers = {}
        for rest_server in args.rest_servers.split(","):
            for batched in (False, True):
                process, rest, grpc_port = start_model_server(
                    config, batching if batched else None, rest_server, monitoring
                )
                processes.append(process)
                servers[rest_server, batched] = (rest, grpc_port)
        flask, flask_port = start_flask(model_dir)
        processes.append(flask)
        path = f"/v1/models/{MODEL}:predict"
        first = next(iter(servers))[0]
        bodies = request_bodies(columns)
        bodies_file = workdir / "bodies.jsonl"
        bodies_file.write_text("\n".join(bodies) + "\n")
        modes: dict[str, object] = {"in-process": in_process_client(model_dir, columns)}
        for (rest_server, batched), (rest, _grpc) in servers.items():
            name = f"rest-{rest_server}"
            modes[name + ("+batch" if batched else "")] = HttpTarget(rest, path, bodies)
        plain_rest, plain_grpc = servers[first, False]
        batched_rest, batched_grpc = servers[first, True]
        modes["grpc"] = GrpcTarget(plain_grpc, plain_rest, columns)
        modes["grpc+batch"] = GrpcTarget(batched_grpc, batched_rest, columns)
        frame_file = workdir / "predict.grpc"
        frame_file.write_bytes(grpc_frame(columns))
        modes["flask"] = HttpTarget(flask_port, "/predict", bodies)
        use_wrk = not args.python_generator and ensure_tool("wrk", "wrk")
        use_h2load = not args.python_generator and ensure_tool("h2load", "nghttp2-client")
        if not args.python_generator and not (use_wrk and use_h2load):
            print("wrk or h2load missing and not installable: those rows use the Python load generator.")
        results: dict[tuple[str, int], dict] = {}
        for concurrency in levels:
            for mode, case in modes.items():
                print(f"  {mode:<17} concurrency {concurrency:>2}: {args.requests} requests ...", flush=True)
                if isinstance(case, HttpTarget) and use_wrk:
                    wrk_run(case, bodies_file, concurrency, max(20, 2 * concurrency))  # warm-up
                    result = wrk_run(case, bodies_file, concurrency, args.requests)
                    result["generator"] = "wrk"
                elif isinstance(case, GrpcTarget) and use_h2load:
                    h2load_run(case, frame_file, concurrency, max(20, 2 * concurrency), workdir)  # warm-up
                    result = h2load_run(case, frame_file, concurrency, args.requests, workdir)
                    result["generator"] = "h2load"
                else:
                    call = case.python_call() if isinstance(case, (HttpTarget, GrpcTarget)) else case
                    result = closed_loop(call, concurrency, args.requests)
                    result["generator"] = "python"
                results[mode, concurrency] = result
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)
        shutil.rmtree(workdir, ignore_errors=True)

    print()
    header = f"{'mode':<17} {'gen':<6} {'conc':>4} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>7}"
    print(header + f" {'errors':>6}")
    for (mode, concurrency), r in results.items():
        print(
            f"{mode:<17} {r['generator']:<6} {concurrency:>4} {r['qps']:>8.0f} {r['p50']:>8.2f} "
            f"{r['p99']:>8.2f} {r['p99'] / r['p50']:>7.1f} {r['errors']:>6}"
        )
    print(
        "gen: wrk / h2load = C load generators (benchmarks/wrk_fixed_count.lua; h2load -m1); "
        "python = Python client threads."
    )
    top = max(levels)
    print()
    batch_modes = [m for m, c in results if c == top and m.endswith("+batch")]
    for mode in batch_modes:
        ratio = results[mode, top]["qps"] / results["flask", top]["qps"]
        print(f"{mode} / flask throughput at concurrency {top}: {ratio:.1f}x (target >= 10x)")
    if 1 in levels:
        for mode in [m for m, c in results if c == 1 and m.startswith("rest")]:
            overhead = results[mode, 1]["p50"] - results["in-process", 1]["p50"]
            print(f"{mode} overhead over in-process at concurrency 1, p50: {overhead:.2f} ms (target < 1 ms)")
    rest_batch = next((m for m, c in results if c == top and m.startswith("rest-aiohttp+batch")), None)
    if rest_batch and ("grpc+batch", top) in results:
        ratio = results["grpc+batch", top]["qps"] / results[rest_batch, top]["qps"]
        print(f"grpc+batch / {rest_batch} throughput at concurrency {top}: {ratio:.2f}x (target >= 1.0)")
    for mode in [m for m, c in results if c == top and m not in ("in-process", "flask")]:
        r = results[mode, top]
        print(f"{mode} p99/p50 at concurrency {top}: {r['p99'] / r['p50']:.1f} (target < 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
