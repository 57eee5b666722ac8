"""Side-by-side load test of the embedded model server (closed loop, fixed request count, loopback only).

Compared in one run, at concurrency 1, 8 and 64:
- ``in-process``: the SavedModel signature called directly in this process (the limit);
- ``rest`` / ``grpc``: ``tfx-canary serve`` without batching; ``rest+batch`` / ``grpc+batch``: with it;
- ``flask``: a plain Flask app that loads the same SavedModel and calls it once per request (the
  "traditional way" TF Serving replaces).

Each server runs in its own process; the load generator keeps one connection per client thread.
Prints QPS, p50 and p99 per mode and concurrency, and the ratios the issue sets targets for.

    .venv/bin/python benchmarks/serving_bench.py --requests 400
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FEATURES = 16  # about the width of the taxi model's dense input after preprocessing
MODEL = "bench"


def write_bench_model(base: Path) -> Path:
    """A taxi-sized DNN (16 features -> 128 -> 64 -> 1) with a predict signature ``features`` -> ``score``."""
    import tensorflow as tf

    model = tf.keras.Sequential(
        [
            tf.keras.Input((FEATURES,)),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(64, activation="relu"),
            tf.keras.layers.Dense(1, activation="sigmoid"),
        ]
    )

    @tf.function(input_signature=[tf.TensorSpec([None, FEATURES], tf.float32, name="features")])
    def serve(features):
        return {"score": model(features)}

    target = base / MODEL / "1"
    tf.saved_model.save(model, str(target), signatures={"serving_default": serve})
    return target


FLASK_APP = """
import sys, numpy as np, tensorflow as tf
from flask import Flask, jsonify, request
signature = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
app = Flask(__name__)
@app.post("/predict")
def predict():
    x = np.asarray(request.get_json()["instances"], dtype=np.float32)
    return jsonify(predictions=signature(features=tf.constant(x))["score"].numpy().tolist())
app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def start_model_server(config: Path, batching_file: Path | None) -> tuple[subprocess.Popen, int, int]:
    flags = [
        f"--model_config_file={config}",
        "--port=-1",
        "--rest_api_port=-1",
        "--enable_model_warmup=false",
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


def _payload(i: int) -> list[float]:
    return [((i * 7 + j) % 13) / 13.0 for j in range(FEATURES)]


def rest_client(port: int, path: str):
    local = threading.local()

    def call(i: int) -> None:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        body = json.dumps({"instances": [_payload(i)]})
        local.connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = local.connection.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:200]!r}")

    return call


def grpc_client(port: int):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))

    def call(i: int) -> None:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["features"].CopyFrom(tf.make_tensor_proto([_payload(i)], dtype=tf.float32))
        stub.Predict(request, 60)

    return call


def in_process_client(model_dir: Path):
    import numpy as np
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]

    def call(i: int) -> None:
        signature(features=tf.constant(np.asarray([_payload(i)], dtype=np.float32)))["score"].numpy()

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
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    workdir = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    print(f"Writing the benchmark model under {workdir} ...", flush=True)
    model_dir = write_bench_model(workdir)
    from serving.testing import write_model_config

    config = write_model_config(workdir / "models.config", {MODEL: {"base_path": workdir / MODEL}})
    batching = workdir / "batching.txt"
    batching.write_text(
        "max_batch_size { value: 64 }\nbatch_timeout_micros { value: 0 }\n"
        "max_enqueued_batches { value: 100 }\nnum_batch_threads { value: 2 }\n"
    )
    processes = []
    try:
        print("Starting servers (plain, batching, flask) ...", flush=True)
        plain, plain_rest, plain_grpc = start_model_server(config, None)
        batched, batch_rest, batch_grpc = start_model_server(config, batching)
        flask, flask_port = start_flask(model_dir)
        processes = [plain, batched, flask]
        path = f"/v1/models/{MODEL}:predict"
        modes = {
            "in-process": in_process_client(model_dir),
            "rest": rest_client(plain_rest, path),
            "rest+batch": rest_client(batch_rest, path),
            "grpc": grpc_client(plain_grpc),
            "grpc+batch": grpc_client(batch_grpc),
            "flask": rest_client(flask_port, "/predict"),
        }
        results: dict[tuple[str, int], dict] = {}
        for concurrency in levels:
            for mode, call in modes.items():
                print(f"  {mode:<11} concurrency {concurrency:>2}: {args.requests} requests ...", flush=True)
                results[mode, concurrency] = closed_loop(call, concurrency, args.requests)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=60)

    print()
    print(f"{'mode':<11} {'conc':>4} {'QPS':>8} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>7} {'errors':>6}")
    for (mode, concurrency), r in results.items():
        print(
            f"{mode:<11} {concurrency:>4} {r['qps']:>8.0f} {r['p50']:>8.2f} {r['p99']:>8.2f} "
            f"{r['p99'] / r['p50']:>7.1f} {r['errors']:>6}"
        )
    top = max(levels)
    print()
    for mode in ("rest+batch", "grpc+batch"):
        ratio = results[mode, top]["qps"] / results["flask", top]["qps"]
        print(f"{mode} / flask throughput at concurrency {top}: {ratio:.1f}x (target >= 10x)")
    if 1 in levels:
        overhead = results["rest", 1]["p50"] - results["in-process", 1]["p50"]
        print(f"REST overhead over in-process at concurrency 1, p50: {overhead:.2f} ms (target < 1 ms)")
    for mode in ("rest", "rest+batch", "grpc", "grpc+batch"):
        r = results[mode, top]
        print(f"{mode} p99/p50 at concurrency {top}: {r['p99'] / r['p50']:.1f} (target < 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
