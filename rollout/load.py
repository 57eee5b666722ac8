"""A steady, bounded client load through the router: the traffic a rollout step is judged on.

REST workers POST bare predict calls (``/v1/models/{m}:predict``), gRPC workers send bare Predict calls
(serialized ``PredictRequest``s, sent as bytes), each with a random sticky key. Every answer is counted
per protocol. Used by the demo, the rollout and topology tests and the benchmarks; it stops by itself
after ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence

import grpc

PREDICT = "/tensorflow.serving.PredictionService/Predict"


class SteadyLoad:
    """``threads`` REST and ``grpc_threads`` gRPC clients, each at most ``rate`` requests/s.

    REST bodies are ``bodies`` (JSON texts) at random; without them, a one-number ``instances`` body
    for the fixture models. gRPC requests are ``grpc_requests`` (serialized PredictRequests naming only
    the model) sent to ``grpc_port``. ``stop()`` (or leaving the ``with``) ends it.
    """

    def __init__(
        self,
        port: int,
        model: str,
        threads: int = 2,
        rate: float = 100.0,
        max_seconds: float = 120.0,
        bodies: Sequence[str] = (),
        grpc_port: int | None = None,
        grpc_threads: int = 0,
        grpc_requests: Sequence[bytes] = (),
    ):
        if grpc_threads and not (grpc_port and grpc_requests):
            raise ValueError("gRPC clients need grpc_port and grpc_requests")
        self.port, self.model = port, model
        self.bodies = list(bodies)
        self.grpc_port, self.grpc_requests = grpc_port, list(grpc_requests)
        self.interval = 1.0 / rate
        self.max_seconds = max_seconds
        self.statuses: Counter = Counter()  # REST status codes, and "grpc <CODE>" for gRPC answers
        self.protocols: dict[str, Counter] = {"rest": Counter(), "grpc": Counter()}  # "ok" / "failed"
        self.failures: list[str] = []
        self.labels: Counter = Counter()  # the X-Served-Label of REST answers
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._rest, args=(i,), daemon=True) for i in range(threads)]
        self._workers += [
            threading.Thread(target=self._grpc, args=(1000 + i,), daemon=True) for i in range(grpc_threads)
        ]

    def _count(self, protocol: str, status, ok: bool, failure: str = "", label: str | None = None) -> None:
        with self._lock:
            self.statuses[status] += 1
            self.protocols[protocol]["ok" if ok else "failed"] += 1
            if label is not None:
                self.labels[label] += 1
            if not ok:
                self.failures.append(f"{protocol}: {failure}")

    def _rest(self, seed: int) -> None:
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
                ok = response.status == 200
                label = response.getheader("X-Served-Label", "")
                self._count("rest", response.status, ok, f"{response.status}: {data[:200]!r}", label)
            except (OSError, http.client.HTTPException) as e:
                self._count("rest", "exception", False, repr(e))
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            time.sleep(self.interval)
        connection.close()

    def _grpc(self, seed: int) -> None:
        rng = random.Random(seed)
        deadline = time.monotonic() + self.max_seconds
        with grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}") as channel:
            predict = channel.unary_unary(PREDICT)
            while not self._stop.is_set() and time.monotonic() < deadline:
                key = f"user-{rng.randrange(10**9)}"
                try:
                    predict(rng.choice(self.grpc_requests), timeout=10, metadata=(("x-request-key", key),))
                    self._count("grpc", "grpc OK", True)
                except grpc.RpcError as e:
                    self._count("grpc", f"grpc {e.code().name}", False, f"{e.code().name}: {e.details()}")
                time.sleep(self.interval)

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
