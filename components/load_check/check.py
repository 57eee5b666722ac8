"""The load check: a candidate model served by a model server in a child process on loopback, called on
every serving signature over REST and gRPC, timed at batch 1 against a budget.

Two kinds of failure are kept apart, as TFX's InfraValidator does:

- the **candidate** fails (it does not load, a signature errors, it is slower than the budget): the
  check returns a ``Report`` with ``blessed=False`` and one line saying why; nothing is pushed;
- the **check itself** cannot run (the child server does not start): ``ServerStartError`` with the
  server's own error text; the run fails, since nothing was learned about the candidate.

The server starts with an empty ``models.config`` (so a start failure is the infrastructure's) and is
then given the candidate with ``HandleReloadConfigRequest``, whose answer carries the load error. It is
always stopped on the way out, and dies with its parent if the parent is killed (``child``).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import grpc

from components.load_check.child import PARENT_PID_ENV
from release.serving_dir import CONFIG_NAME, MAX_WARMUP_RECORDS
from tfx_canary.errors import CanaryError, ConfigError
from tfx_canary.process import stop

MAX_LATENCY_BUDGET_MS = 60_000.0
GRPC_LINE = re.compile(r"Running gRPC ModelServer at [^:\s]+:(\d+)")
REST_LINE = re.compile(r"Exporting HTTP/REST API at:[^:\s]+:(\d+)")
CANDIDATE_VERSION = 1


class ServerStartError(CanaryError):
    """The load check's own model server did not start: the check could not judge the candidate."""


@dataclass(frozen=True)
class Budget:
    """What the candidate must meet: each signature's median latency at batch 1, per protocol."""

    latency_ms: float = 250.0
    timed_requests: int = 10  # per signature and protocol, after one untimed warm-up call
    start_timeout_s: float = 180.0  # the child's start plus the candidate's load

    def __post_init__(self) -> None:
        if not 0 < self.latency_ms <= MAX_LATENCY_BUDGET_MS:
            raise ConfigError(
                f"load check latency budget {self.latency_ms:g} ms is out of range "
                f"(0, {MAX_LATENCY_BUDGET_MS:g}]"
            )
        if not 1 <= self.timed_requests <= MAX_WARMUP_RECORDS:
            raise ConfigError(
                f"load check timed requests {self.timed_requests} is out of range [1, {MAX_WARMUP_RECORDS}]"
            )
        if self.start_timeout_s <= 0:
            raise ConfigError(f"load check start timeout {self.start_timeout_s:g} s must be positive")


@dataclass(frozen=True)
class Measurement:
    signature: str
    protocol: str  # "rest" or "grpc"
    median_ms: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Report:
    blessed: bool
    reason: str
    budget_ms: float
    measurements: list[Measurement] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)


def check_model(
    model_dir: str, model_name: str, requests: list, budget: Budget, server_log: str | None = None
) -> Report:
    """Serve ``model_dir`` in a child model server and call it with ``requests`` (``PredictRequest``s,
    at least one per signature to check); the child's output is kept at ``server_log`` if given."""
    if not requests:
        raise ValueError("the load check needs at least one request to replay")
    with (
        tempfile.TemporaryDirectory(prefix="tfx-canary-load-check-") as workdir,
        child_server(workdir, budget.start_timeout_s, server_log) as server,
    ):
        return check_on(server, model_dir, model_name, requests, budget)


def check_on(server: ChildServer, model_dir: str, model_name: str, requests: list, budget: Budget) -> Report:
    """``check_model`` on a server already running (one server can check candidates one after another)."""
    base_path = os.path.join(tempfile.mkdtemp(prefix="candidate-", dir=server.workdir), model_name)
    _stage_candidate(model_dir, os.path.join(base_path, str(CANDIDATE_VERSION)))
    error = server.load(model_name, base_path, budget.start_timeout_s)
    if error:
        return Report(False, f"the model did not load: {error}", budget.latency_ms)
    return _judge(_measure(server, model_name, requests, budget), budget)


def _stage_candidate(model_dir: str, version_dir: str) -> None:
    """The candidate as version 1 of a serving root: a symlink to a local model, a copy of a remote one."""
    os.makedirs(os.path.dirname(version_dir))
    if "://" not in model_dir:
        os.symlink(os.path.abspath(model_dir), version_dir)
        return
    import tensorflow as tf

    for directory, _subdirs, files in tf.io.gfile.walk(model_dir):
        relative = directory[len(model_dir) :].lstrip("/")
        os.makedirs(os.path.join(version_dir, relative), exist_ok=True)
        for name in files:
            tf.io.gfile.copy(f"{directory.rstrip('/')}/{name}", os.path.join(version_dir, relative, name))


def _measure(server: ChildServer, model_name: str, requests: list, budget: Budget) -> list[Measurement]:
    by_signature: dict[str, list] = {}
    for request in requests:
        request.model_spec.name = model_name
        by_signature.setdefault(request.model_spec.signature_name or "serving_default", []).append(request)
    measurements = []
    for signature, group in by_signature.items():
        for protocol, call in (("rest", server.call_rest), ("grpc", server.call_grpc)):
            measurements.append(_time_signature(signature, protocol, call, group, budget.timed_requests))
    return measurements


def _time_signature(signature: str, protocol: str, call, group: list, timed: int) -> Measurement:
    try:
        call(group[0])  # untimed: the first call of a signature pays for its own warm-up
        seconds = []
        for index in range(timed):
            started = time.perf_counter()
            call(group[index % len(group)])
            seconds.append(time.perf_counter() - started)
    except CallFailed as failure:
        return Measurement(signature, protocol, error=str(failure))
    return Measurement(signature, protocol, median_ms=round(statistics.median(seconds) * 1000, 3))


def _judge(measurements: list[Measurement], budget: Budget) -> Report:
    problems = [
        f"signature {m.signature!r} failed over {_PROTOCOL[m.protocol]}: {m.error}"
        for m in measurements
        if m.error
    ] + [
        f"signature {m.signature!r} takes {m.median_ms:.1f} ms at batch 1 over {_PROTOCOL[m.protocol]} "
        f"(median of {budget.timed_requests}), over the {budget.latency_ms:g} ms budget"
        for m in measurements
        if m.median_ms is not None and m.median_ms > budget.latency_ms
    ]
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return Report(False, problems[0] + more, budget.latency_ms, measurements)
    slowest = max(measurements, key=lambda m: m.median_ms or 0.0)
    signatures = sorted({m.signature for m in measurements})
    return Report(
        True,
        f"{len(signatures)} signature(s) answered over REST and gRPC; slowest {slowest.median_ms:.1f} ms "
        f"({slowest.signature!r}, {_PROTOCOL[slowest.protocol]}) within the {budget.latency_ms:g} ms budget",
        budget.latency_ms,
        measurements,
    )


_PROTOCOL = {"rest": "REST", "grpc": "gRPC"}
_CODE_NAMES = {code.value[0]: code.name for code in grpc.StatusCode}


class CallFailed(Exception):
    """One request answered with an error (the text says the protocol's status and the server's message)."""


class ChildServer:
    """A running child model server: its ports, and calls to it."""

    def __init__(self, process: subprocess.Popen, workdir: str, grpc_port: int, rest_port: int) -> None:
        self.process = process
        self.workdir = workdir
        self.channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        self.rest = http.client.HTTPConnection("127.0.0.1", rest_port, timeout=60)
        from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

        self._predict = prediction_service_pb2_grpc.PredictionServiceStub(self.channel).Predict
        self._models = model_service_pb2_grpc.ModelServiceStub(self.channel)

    def load(self, model_name: str, base_path: str, timeout_s: float) -> str | None:
        """Give the server the candidate; None once it is AVAILABLE, else the server's error text."""
        from tensorflow_serving.apis import get_model_status_pb2, model_management_pb2, model_pb2

        request = model_management_pb2.ReloadConfigRequest()
        model = request.config.model_config_list.config.add(name=model_name, base_path=base_path)
        model.model_platform = "tensorflow"
        try:
            response = self._models.HandleReloadConfigRequest(request, timeout=timeout_s)
        except grpc.RpcError as error:
            return f"{error.code().name}: {error.details()}"
        if response.status.error_code:
            return (
                f"{_CODE_NAMES.get(response.status.error_code, 'UNKNOWN')}: {response.status.error_message}"
            )
        status = self._models.GetModelStatus(
            get_model_status_pb2.GetModelStatusRequest(model_spec=model_pb2.ModelSpec(name=model_name)),
            timeout=timeout_s,
        )
        states = {s.version: s for s in status.model_version_status}
        found = states.get(CANDIDATE_VERSION)
        if found is None or found.state != get_model_status_pb2.ModelVersionStatus.AVAILABLE:
            detail = found.status.error_message if found is not None else "no version loaded"
            return f"version {CANDIDATE_VERSION} is not AVAILABLE: {detail or 'no error given'}"
        return None

    def call_grpc(self, request) -> None:
        try:
            response = self._predict(request, timeout=60)
        except grpc.RpcError as error:
            raise CallFailed(f"{error.code().name}: {error.details()}") from None
        if not response.outputs:
            raise CallFailed("the answer has no outputs")

    def call_rest(self, request) -> None:
        from components.load_check.requests import rest_body  # TensorFlow: imported when a check runs

        path = f"/v1/models/{request.model_spec.name}:predict"
        try:
            self.rest.request(
                "POST", path, body=rest_body(request), headers={"Content-Type": "application/json"}
            )
            answer = self.rest.getresponse()
            body = answer.read()
        except (http.client.HTTPException, OSError) as error:
            self.rest.close()  # the next call opens a new connection
            raise CallFailed(f"no answer: {error}") from None
        if answer.status != 200:
            try:
                message = json.loads(body).get("error", "")
            except ValueError:
                message = body.decode("utf-8", "replace")[:200]
            raise CallFailed(f"HTTP {answer.status}: {message}")
        if not body.strip():
            raise CallFailed("the answer is empty")

    def close(self) -> None:
        self.rest.close()
        self.channel.close()


class StartingServer:
    """A child model server launched and not yet waited for, so that its start-up (importing
    TensorFlow, seconds) can overlap other work; ``ready`` waits for its ports, ``stop`` ends it."""

    def __init__(self, workdir: str, keep_log: str | None = None) -> None:
        self.workdir = workdir
        self.keep_log = keep_log
        self.log_path = os.path.join(workdir, "server.log")
        config = os.path.join(workdir, CONFIG_NAME)
        with open(config, "w") as handle:
            handle.write("model_config_list {}\n")
        command = [
            sys.executable,
            "-m",
            "components.load_check.child",
            "-v",  # every line to the log file below, none to a project log under some home
            "serve",
            "--port=-1",
            "--rest_api_port=-1",
            f"--model_config_file={config}",
            "--max_num_load_retries=0",
            "--drain_seconds=1",
        ]
        environment = {**os.environ, PARENT_PID_ENV: str(os.getpid()), "TF_CPP_MIN_LOG_LEVEL": "1"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=workdir,
            )
        self._server: ChildServer | None = None

    def ready(self, timeout_s: float) -> ChildServer:
        """The server once it serves on both ports; ``ServerStartError`` if it exits or times out."""
        if self._server is None:
            grpc_port, rest_port = _wait_for_ports(self.process, self.log_path, timeout_s)
            self._server = ChildServer(self.process, self.workdir, grpc_port, rest_port)
        return self._server

    def stop(self) -> None:
        """End the child at once, with SIGKILL (its output copied to ``keep_log`` after, if given).

        Nothing is in flight when a check is over and nothing the child holds is kept, so there is
        nothing to drain: the graceful SIGTERM stop (serve's drain, then TensorFlow's teardown) took
        about 1.3 s, which every pipeline run waited for at its end.
        """
        if self._server is not None:
            self._server.close()
        stop(self.process, sig=signal.SIGKILL)
        if self.keep_log:
            shutil.copyfile(self.log_path, self.keep_log)


@contextmanager
def child_server(workdir: str, start_timeout_s: float, keep_log: str | None = None) -> Iterator[ChildServer]:
    """A model server child on loopback ports the OS chooses, with an empty config; always stopped
    (its output copied to ``keep_log`` first, if given)."""
    starting = StartingServer(workdir, keep_log)
    try:
        yield starting.ready(start_timeout_s)
    finally:
        starting.stop()


def _wait_for_ports(process: subprocess.Popen, log_path: str, timeout_s: float) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while True:
        text = _read(log_path)
        grpc_port, rest_port = GRPC_LINE.search(text), REST_LINE.search(text)
        if grpc_port and rest_port:
            return int(grpc_port.group(1)), int(rest_port.group(1))
        if process.poll() is not None:
            raise ServerStartError(
                f"the load check's model server exited with code {process.returncode} before serving: "
                f"{server_error(text)}"
            )
        if time.monotonic() > deadline:
            raise ServerStartError(
                f"the load check's model server did not start within {timeout_s:g} s: {server_error(text)}"
            )
        time.sleep(0.1)


def server_error(log_text: str) -> str:
    """The server's own error line from its output (``error: ...``), else its last line."""
    lines = [line.strip() for line in log_text.splitlines() if line.strip()]
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return errors[-1] if errors else (lines[-1] if lines else "no output")


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read().decode("utf-8", "replace")
