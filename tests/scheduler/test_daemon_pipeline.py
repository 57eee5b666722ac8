"""`tfx-canary schedule --local` driving the real pipeline and releasing to the embedded model server.

One project home receives data over time while the daemon runs as a real process: the first span
makes version 1 `stable`; a span with anomalies is refused without stopping the daemon; the daemon
is killed (SIGKILL) while the next good span trains, which leaves no half-state, and the restarted
daemon recovers and makes version 2 the `canary`; newer data then waits while that canary is on
trial. (Pipeline runs dominate the time, so a third trained version is left out.)
Everything is real: TFX, Beam, MLMD, SavedModels, the model server on loopback, signals and files.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline import data
from release.config_store import parse_config, read_release
from release.server_client import ServerClient
from scheduler.daemon import RunLock, served_versions
from tests.pipeline_configs import write_config

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
MODEL = "taxi_tips"
ROWS_PER_SPAN = 150
RUN_TIMEOUT = 420.0  # one pipeline run on 2 shared cores, with room for a busy machine


@pytest.fixture
def home(tmp_path: Path) -> Path:
    data.init_spans(tmp_path / "data" / "taxi", spans=1, rows_per_span=ROWS_PER_SPAN)
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "models.config").write_text("model_config_list {}\n")
    return tmp_path


@pytest.fixture
def server_address(home: Path):
    """The embedded model server on the home's models.config, polled every second; its REST address."""
    from serving.options import AUTO_PORT, ServerOptions
    from serving.server import ModelServer

    options = ServerOptions(
        port=AUTO_PORT,
        rest_api_port=AUTO_PORT,
        model_config_file=str(home / "serving" / "models.config"),
        model_config_file_poll_wait_seconds=1,
        file_system_poll_wait_seconds=1,
    )
    with ModelServer(options).start() as running:
        yield f"127.0.0.1:{running.rest_port}"


@pytest.fixture
def config_file(home: Path, server_address: str) -> Path:
    path = home / "pipeline.yaml"
    return write_config(
        path,
        model=MODEL,
        span_window=3,
        train_steps=30,
        eval_steps=5,
        warmup_examples=2,
        # The gates are tested in tests/pipeline; here every model is blessed.
        metrics=[{"name": "AUC", "min": 0.0, "max_drop": 1.0}, {"name": "BinaryAccuracy", "min": 0.0}],
        server_address=server_address,
    )


class Daemon:
    """The daemon as a real process, its log in a file that the test reads from a moving offset."""

    def __init__(self, home: Path, config_file: Path) -> None:
        self.log_path = home / f"daemon-{time.monotonic_ns()}.log"
        command = [
            sys.executable, "-m", "tfx_canary.cli", "schedule", "--local", "--home", str(home),
            "--config", str(config_file), "--poll-seconds", "1",
        ]  # fmt: skip
        env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        self.offset = 0

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, seconds: float = RUN_TIMEOUT) -> re.Match:
        """The first match of ``pattern`` after the previous match; fails if the daemon exits first."""
        deadline = time.monotonic() + seconds
        while True:
            match = re.compile(pattern).search(self.text(), self.offset)
            if match:
                self.offset = match.end()
                return match
            assert self.process.poll() is None, f"the daemon exited:\n{self.text()[-3000:]}"
            assert time.monotonic() < deadline, f"no {pattern!r} in {seconds} s:\n{self.text()[-3000:]}"
            time.sleep(0.5)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def labels(home: Path) -> dict[str, int]:
    return read_release(str(home / "serving"), MODEL).state.label_map


def wait_for_labels(server: ServerClient, expected: dict[str, int], seconds: float = 30.0) -> None:
    """The server resolves every label as expected (it polls models.config each second)."""
    deadline = time.monotonic() + seconds
    while True:
        resolved = {label: server.label_version(MODEL, label) for label in expected}
        if resolved == expected:
            return
        assert time.monotonic() < deadline, f"server labels {resolved}, expected {expected}"
        time.sleep(0.2)


def complete_versions(model_dir: Path) -> set[int]:
    return {v for v in served_versions(model_dir) if (model_dir / str(v) / "saved_model.pb").is_file()}


def assert_no_half_state(home: Path, server: ServerClient) -> None:
    model_dir = home / "serving" / MODEL
    assert served_versions(model_dir) == complete_versions(model_dir), "a version folder is incomplete"
    leftovers = [p.name for p in model_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == [], f"staging left in {model_dir}: {leftovers}"
    config = parse_config((home / "serving" / "models.config").read_text(), "models.config")
    [entry] = [m for m in config.model_config_list.config if m.name == MODEL]
    available = server.available(MODEL)
    assert set(entry.version_labels.values()) <= available, (dict(entry.version_labels), available)


def trainer_runs(home: Path) -> set[str]:
    """Trainer executions started so far: TFX creates the output folder before the executor runs."""
    model_outputs = home / "pipelines" / "taxi-tips" / "Trainer" / "model"
    return {p.name for p in model_outputs.iterdir()} if model_outputs.is_dir() else set()


def test_the_daemon_retrains_refuses_and_recovers_from_a_kill(
    home: Path, server_address: str, config_file: Path
) -> None:
    server = ServerClient(server_address)
    model_dir = home / "serving" / MODEL
    daemon = Daemon(home, config_file)
    try:
        # Span 1: the first version becomes stable.
        v1 = int(daemon.wait_for(r"The run pushed version (\d+)").group(1))
        assert labels(home) == {"stable": v1, "canary": v1}
        wait_for_labels(server, {"stable": v1})
        daemon.wait_for(r"Nothing changed since the last run")

        # Span 2 has anomalies: refused, the log says why, and the daemon carries on.
        header, spans = data.split_into_spans()
        rows = [list(r) for r in spans[2][:ROWS_PER_SPAN]]
        for row in rows:
            row[header.index("payment_type")] = "Bitcoin"  # outside the payment_type domain
        data.write_span(home / "data" / "taxi", 2, header, rows)
        refused = daemon.wait_for(r"without a new version \(refused or not blessed\):\n(?s:.*?)took")
        assert "anomalies" in refused.group(0) and "payment_type" in refused.group(0), refused.group(0)
        daemon.wait_for(r"Nothing changed since the last run")
        assert daemon.process.poll() is None
        assert served_versions(model_dir) == {v1}

        # Span 3 is good; the daemon is killed (SIGKILL) while the Trainer runs.
        before = trainer_runs(home)
        assert data.add_span(home / "data" / "taxi", rows_per_span=ROWS_PER_SPAN) == 3
        daemon.wait_for(r"New data \(latest span-3")
        deadline = time.monotonic() + RUN_TIMEOUT
        while trainer_runs(home) == before:
            ended = re.search(
                r"The run pushed|The run finished|The pipeline run failed", daemon.text()[daemon.offset :]
            )
            assert not ended and daemon.process.poll() is None, daemon.text()[-3000:]
            assert time.monotonic() < deadline, f"the Trainer did not start in {RUN_TIMEOUT} s"
            time.sleep(0.2)
        daemon.kill()
    finally:
        daemon.kill()

    # The run died with the daemon: the lock is free, nothing half-written is visible.
    lock = RunLock(home / "scheduler" / "run.lock")
    deadline = time.monotonic() + 30
    while not lock.acquire():
        assert time.monotonic() < deadline, f"the lock is still held: {lock.holder()}"
        time.sleep(0.2)
    lock.release()
    assert served_versions(model_dir) == {v1}
    assert_no_half_state(home, server)
    assert (home / "scheduler" / "running.json").exists()  # the interrupted run is known

    restarted = Daemon(home, config_file)
    try:
        # The restarted daemon retries span 3: version 2 is pushed and becomes the canary.
        restarted.wait_for(r"The previous run \(pid \d+, started [^)]*\) did not finish")
        v2 = int(restarted.wait_for(r"The run pushed version (\d+)").group(1))
        assert v2 > v1
        assert labels(home) == {"stable": v1, "canary": v2}
        wait_for_labels(server, {"stable": v1, "canary": v2})
        assert server.available(MODEL) == {v1, v2}
        assert_no_half_state(home, server)
        assert not (home / "scheduler" / "running.json").exists()

        # New data while version 2 is on trial waits for the rollout instead of failing a release.
        assert data.add_span(home / "data" / "taxi", rows_per_span=ROWS_PER_SPAN) == 4
        restarted.wait_for(rf"New data, but version {v2} is still the canary", seconds=30)
        assert served_versions(model_dir) == {v1, v2}

        restarted.process.send_signal(signal.SIGTERM)
        assert restarted.process.wait(timeout=30) == 0
        assert "Local scheduler stopped" in restarted.text()
    finally:
        restarted.kill()
