"""Real pieces for exercising a release on loopback: a served model root, a steady bounded client
load, and planted bad canaries. Used by the rollout tests and ``benchmarks/canary_bench.py``."""

from __future__ import annotations

import http.client
import json
import os
import random
import shutil
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from components.release import operations
from components.release.server_status import ServerClient


class ServedRoot:
    """A serving root with ``models.config`` polled by an in-process ``ModelServer``."""

    def __init__(self, root: str | os.PathLike, model: str = "m", poll_seconds: int = 1):
        self.root = str(root)
        self.model = model
        self.poll_seconds = poll_seconds
        self.server = None

    def __enter__(self) -> ServedRoot:
        from serving.options import AUTO_PORT, ServerOptions
        from serving.server import ModelServer

        os.makedirs(self.root, exist_ok=True)
        config = os.path.join(self.root, "models.config")
        if not os.path.exists(config):
            with open(config, "w") as f:
                f.write("model_config_list {}\n")
        options = ServerOptions(
            port=AUTO_PORT,
            rest_api_port=AUTO_PORT,
            model_config_file=config,
            model_config_file_poll_wait_seconds=self.poll_seconds,
            file_system_poll_wait_seconds=self.poll_seconds,
            max_num_load_retries=0,
        )
        self.server = ModelServer(options).start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop(grace_seconds=2)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.rest_port}"

    @property
    def base_path(self) -> str:
        return os.path.join(self.root, self.model)

    def target(self, audit=None, **kw) -> operations.Target:
        kw.setdefault("load_timeout_s", 60.0)
        kw.setdefault("label_timeout_s", 20.0)
        return operations.Target(self.root, self.model, server=ServerClient(self.address), audit=audit, **kw)


class SteadyLoad:
    """``threads`` clients calling the bare model URL with random keys, each at most ``rate`` req/s.

    Each request body is one of ``bodies`` (JSON texts) at random; without them, a one-number
    ``instances`` body for the fixture models. Bounded by design: ``stop()`` (or leaving the ``with``)
    ends it; every answer is counted by status.
    """

    def __init__(
        self,
        port: int,
        model: str,
        threads: int = 2,
        rate: float = 100.0,
        max_seconds: float = 120.0,
        bodies: Sequence[str] = (),
    ):
        self.port, self.model = port, model
        self.bodies = list(bodies)
        self.threads, self.interval = threads, 1.0 / rate
        self.max_seconds = max_seconds
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.labels: Counter = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    def _run(self, seed: int) -> None:
        rng = random.Random(seed)
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            body = (
                rng.choice(self.bodies) if self.bodies else json.dumps({"instances": [rng.uniform(0.0, 2.0)]})
            )
            headers = {"Content-Type": "application/json", "X-Request-Key": f"user-{rng.randrange(10**9)}"}
            try:
                connection.request("POST", f"/v1/models/{self.model}:predict", body, headers)
                response = connection.getresponse()
                data = response.read()
                with self._lock:
                    self.statuses[response.status] += 1
                    self.labels[response.getheader("X-Served-Label", "")] += 1
                    if response.status != 200:
                        self.failures.append(f"{response.status}: {data[:200]!r}")
            except (OSError, http.client.HTTPException) as e:
                with self._lock:
                    self.statuses["exception"] += 1
                    self.failures.append(repr(e))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(self.interval)
        connection.close()

    @property
    def total(self) -> int:
        return sum(self.statuses.values())

    def __enter__(self) -> SteadyLoad:
        for worker in self._workers:
            worker.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(15)

    def __exit__(self, *exc) -> None:
        self.stop()


def _save(module, signatures: dict, base_path: str | os.PathLike, version: int) -> Path:
    import tensorflow as tf

    final = Path(base_path) / str(int(version))
    staging = Path(base_path) / f".{int(version)}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    tf.saved_model.save(module, str(staging), signatures=signatures)
    os.rename(staging, final)
    return final


def write_failing_model(base_path: str | os.PathLike, version: int) -> Path:
    """Loads fine, fails every predict: a canary that errors in production."""
    import tensorflow as tf

    class Failing(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            with tf.control_dependencies(
                [tf.debugging.assert_less(x, -1e9, message="planted canary failure")]
            ):
                return {"y": 0.5 * x + 2.0}

    module = Failing()
    return _save(module, {"serving_default": module.predict}, base_path, version)


def write_slow_model(base_path: str | os.PathLike, version: int, delay_ms: int = 80) -> Path:
    """Answers like the stable fixture (0.5x + 2) but waits ``delay_ms`` first, without using CPU
    (a sleeping tf.data op), so it is slow on its own and does not slow its neighbours."""
    import tensorflow as tf
    from tensorflow.python.data.experimental.ops import testing

    class Slow(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
        def predict(self, x):
            wait = tf.data.Dataset.range(1).apply(testing.sleep(delay_ms * 1000))
            waited = wait.reduce(tf.constant(0, tf.int64), lambda total, item: total + item)
            return {"y": 0.5 * x + 2.0 + 0.0 * tf.cast(waited, tf.float32)}

    module = Slow()
    return _save(module, {"serving_default": module.predict}, base_path, version)
