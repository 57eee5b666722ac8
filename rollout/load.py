"""A steady, bounded client load through the router: the traffic a rollout step is judged on.

Used by the demo, the rollout tests and the benchmarks; it stops by itself after ``max_seconds``.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Sequence


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
