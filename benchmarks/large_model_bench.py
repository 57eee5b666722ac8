"""A SavedModel with >= 1 GB of variables: publish, load, warm up and answer, peak memory and time each.

The seed's reason for TF Serving includes models up to 2 GB; this checks that such a model goes the
whole way here, and measures what it costs, side by side in one run:

- ``build``: write the SavedModel (an embedding table of ``--gigabytes`` GiB, float32, a predict
  signature that looks rows up and sums them) plus a warmup request file;
- ``publish``: ``components.safe_pusher.publish.publish_model`` (what SafePusher runs): staged copy,
  verify, rename into ``<base>/<version>``;
- ``tf.saved_model.load``: the bare TF2 load in a fresh process (the floor);
- ``serve``: ``tfx-canary serve`` on the published version, from start to its REST port open (load +
  warmup), then one REST and one gRPC predict checked against the expected sums.

Each step runs in a process of its own, so its peak resident memory (``VmHWM`` / ``ru_maxrss``) is its
own. Prints a table: seconds, peak RSS, and peak RSS as a multiple of the variables' size.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/large_model_bench.py --gigabytes 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WIDTH = 256  # floats per embedding row
IDS = [0, 7, 1_000]

BUILD = """
import sys, numpy as np, tensorflow as tf
sys.path.insert(0, {root!r})
from fixtures.models import predict_warmup_log, write_warmup_requests
rows, width, path = {rows}, {width}, {path!r}
class Big(tf.Module):
    def __init__(self):
        super().__init__()
        # row i holds i / rows in every column: cheap to make, and the answers are easy to check
        self.table = tf.Variable(
            tf.tile(tf.reshape(tf.range(rows, dtype=tf.float32) / rows, [rows, 1]), [1, width]), name="table"
        )
    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids")])
    def predict(self, ids):
        return {{"sums": tf.reduce_sum(tf.gather(self.table, ids), axis=1)}}
big = Big()
tf.saved_model.save(big, path, signatures={{"serving_default": big.predict}})
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
request = predict_pb2.PredictRequest()
request.inputs["ids"].CopyFrom(tf.make_tensor_proto([1, 2, 3], dtype=tf.int64))
log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
write_warmup_requests(path, [log])
"""

PUBLISH = """
import sys
sys.path.insert(0, {root!r})
from components.safe_pusher.publish import publish_model
print("VERSION", publish_model({source!r}, {base!r}))
"""

LOAD = """
import tensorflow as tf
loaded = tf.saved_model.load({path!r})
print(loaded.signatures["serving_default"](ids=tf.constant([0], tf.int64))["sums"].numpy())
"""

PEAK = "import resource; print('PEAK_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def _env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def run_python(code: str) -> tuple[float, float, str]:
    """Run ``code`` in a fresh interpreter: (seconds, peak RSS in GiB, stdout)."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", code + "\n" + PEAK], capture_output=True, text=True, env=_env(), check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"step failed: {done.stderr[-2000:]}")
    peak_kb = int(re.search(r"PEAK_KB (\d+)", done.stdout)[1])
    return seconds, peak_kb / 2**20, done.stdout


def directory_gib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**30


def expected_sum(row: int, rows: int) -> float:
    return float(WIDTH * (row / rows))


def serve(base: Path, rows: int) -> tuple[float, float, dict]:
    """``tfx-canary serve`` on ``base``: seconds to the REST port, peak RSS (VmHWM), the two answers."""
    command = [
        sys.executable, "-m", "tfx_canary.cli", "serve", "--model_name=big",
        f"--model_base_path={base}", "--port=-1", "--rest_api_port=-1",
    ]  # fmt: skip
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        ports = {}
        while len(ports) < 2:
            line = process.stdout.readline()
            if not line:
                raise RuntimeError(f"serve exited: {process.stderr.read()[-2000:]}")
            for kind, pattern in (
                ("grpc", r"gRPC ModelServer at [\d.]+:(\d+)"),
                ("rest", r"REST API at:[\d.]+:(\d+)"),
            ):
                if match := re.search(pattern, line):
                    ports[kind] = int(match[1])
        seconds = time.perf_counter() - started
        request = urllib.request.Request(
            f"http://127.0.0.1:{ports['rest']}/v1/models/big:predict",
            data=json.dumps({"instances": IDS}).encode(),
            headers={"Content-Type": "application/json"},
        )
        rest = json.loads(urllib.request.urlopen(request, timeout=60).read())["predictions"]
        grpc_answer = _grpc_predict(ports["grpc"])
        status = Path(f"/proc/{process.pid}/status").read_text()
        peak_gib = int(re.search(r"VmHWM:\s+(\d+) kB", status)[1]) / 2**20
    finally:
        process.terminate()
        process.wait(timeout=120)
    expected = [expected_sum(i, rows) for i in IDS]
    answers = {
        "rest_ok": all(abs(a - b) < 1e-3 * max(1, b) for a, b in zip(rest, expected, strict=True)),
        "grpc_ok": all(abs(a - b) < 1e-3 * max(1, b) for a, b in zip(grpc_answer, expected, strict=True)),
    }
    return seconds, peak_gib, answers


def _grpc_predict(port: int) -> list[float]:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "big"
    request.inputs["ids"].CopyFrom(tf.make_tensor_proto(IDS, dtype=tf.int64))
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(f"127.0.0.1:{port}"))
    return tf.make_ndarray(stub.Predict(request, 120).outputs["sums"]).tolist()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gigabytes", type=float, default=1.0, help="size of the variables (GiB)")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary directory)")
    args = parser.parse_args()
    rows = int(args.gigabytes * 2**30 / (WIDTH * 4))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="large-model-bench-"))
    source, base = workdir / "export", workdir / "serving" / "big"
    results = []
    try:
        print(
            f"Building a {args.gigabytes:g} GiB model ({rows} x {WIDTH} float32) under {workdir} ...",
            flush=True,
        )
        seconds, peak, _ = run_python(BUILD.format(root=str(ROOT), rows=rows, width=WIDTH, path=str(source)))
        size = directory_gib(source / "variables")
        results.append(("build (tf.saved_model.save)", seconds, peak))
        print("Publishing (components.safe_pusher.publish.publish_model) ...", flush=True)
        seconds, peak, out = run_python(PUBLISH.format(root=str(ROOT), source=str(source), base=str(base)))
        version = int(re.search(r"VERSION (\d+)", out)[1])
        results.append(("publish (stage, verify, rename)", seconds, peak))
        print("Loading with tf.saved_model.load ...", flush=True)
        seconds, peak, _ = run_python(LOAD.format(path=str(base / str(version))))
        results.append(("tf.saved_model.load (floor)", seconds, peak))
        print("Serving (tfx-canary serve: load + warmup, then REST and gRPC predict) ...", flush=True)
        seconds, peak, answers = serve(base, rows)
        results.append(("serve: start to REST port open", seconds, peak))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"variables on disk: {size:.2f} GiB; published version {version}")
    print(f"{'step':<34} {'seconds':>8} {'peak RSS GiB':>13} {'x variables':>12}")
    for step, seconds, peak in results:
        print(f"{step:<34} {seconds:>8.1f} {peak:>13.2f} {peak / size:>12.2f}")
    verdict = {True: "ok", False: "WRONG"}
    print(f"answers: REST {verdict[answers['rest_ok']]}, gRPC {verdict[answers['grpc_ok']]}")
    return 0 if answers["rest_ok"] and answers["grpc_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
