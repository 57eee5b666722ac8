"""The production topology on one machine, every piece a real process on loopback.

pipeline run without a model server address (how it runs on Vertex) -> ``tfx-canary serve`` polling
``models.config`` -> two router replicas (REST and gRPC) -> a real Prometheus scraping both ->
``tfx-canary controller`` reading Prometheus -> promotion. Clients call both routers over REST and
gRPC all along. The controller is SIGKILLed mid-step and restarted (it resumes at the step in force),
one router is stopped (the other's clients see no error), and a canary that errors and one that is
slow are rolled back on Prometheus data.
"""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fixtures.models import predict_requests, write_fixture_model
from fixtures.taxi import serving_raw_bodies, serving_raw_predict_requests
from pipeline import data
from release import operations
from release.config_store import read_release
from release.serving_dir import CONFIG_NAME, write_text_atomic
from rollout.load import SteadyLoad
from tests.pipeline_configs import write_config
from tests.prometheus import Prometheus
from tests.rollout.bad_models import write_failing_model, write_slow_model
from tfx_canary.process import stop

pytestmark = pytest.mark.e2e

TAXI = "taxi_tips"
FIXTURE = "m"
PLAN = "shadow=3s,50%=3s,100%=3s"


def _env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", GRPC_ENABLE_FORK_SUPPORT="false", PYTHONUNBUFFERED="1")


class Process:
    """A ``tfx-canary`` command in the background; its output in a log; ``wait_for`` reads it."""

    def __init__(self, name: str, args: list[str], logs: Path) -> None:
        self.log_path = logs / f"{name}.log"
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tfx_canary.cli", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )

    def wait_for(self, pattern: str, timeout_s: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while True:
            match = re.search(pattern, self.log_path.read_text(errors="replace"))
            if match:
                return match
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"{pattern!r} not seen in {self.log_path}:\n{self.log_path.read_text()[-2000:]}"
                )
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        code = stop(self.process, sig=sig)
        self.log.close()
        return code


def _wait(what: str, condition, timeout_s: float = 120):
    deadline = time.monotonic() + timeout_s
    while not (value := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return value


def test_vertex_style_release_through_two_routers_and_prometheus(tmp_path):
    home = tmp_path / "home"
    serving = home / "serving"
    logs = tmp_path / "logs"
    logs.mkdir()
    data.init_spans(home / "data" / "taxi", spans=2, rows_per_span=250)
    write_text_atomic(str(serving / CONFIG_NAME), "model_config_list {}\n")
    monitoring = tmp_path / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    pipeline_config = tmp_path / "pipeline.yaml"
    write_config(
        pipeline_config,
        train_steps=150,
        eval_steps=5,
        warmup_examples=2,
        span_window=3,
        metrics=[{"name": "AUC", "min": 0.7, "max_drop": 0.1}, {"name": "BinaryAccuracy", "min": 0.6}],
    )  # no server_address: the pipeline stops after phase 1, as on Vertex

    started: list[Process] = []
    prometheus = None
    try:
        server = Process(
            "serve",
            ["serve", "--port=-1", "--rest_api_port=-1", f"--model_config_file={serving / CONFIG_NAME}",
             "--model_config_file_poll_wait_seconds=1", "--file_system_poll_wait_seconds=1",
             "--allow_version_labels_for_unavailable_models=true", f"--monitoring_config_file={monitoring}"],
            logs,
        )  # fmt: skip
        started.append(server)
        grpc_port = int(server.wait_for(r"gRPC ModelServer at [\d.]+:(\d+)")[1])
        rest_port = int(server.wait_for(r"REST API at:[\d.]+:(\d+)")[1])
        routers = []
        for i in (1, 2):
            router = Process(
                f"router{i}",
                ["route", f"--server=127.0.0.1:{rest_port}", f"--grpc-server=127.0.0.1:{grpc_port}",
                 "--port=0", "--grpc-port=0", f"--serving-root={serving}"],
                logs,
            )  # fmt: skip
            started.append(router)
            match = router.wait_for(r"router on http://[\d.]+:(\d+) .*gRPC on [\d.]+:(\d+)")
            routers.append((router, int(match[1]), int(match[2])))
        prometheus = Prometheus(
            tmp_path / "prometheus",
            {
                "tfx-canary-router": [f"127.0.0.1:{port}" for _, port, _ in routers],
                "tf-serving": [f"127.0.0.1:{rest_port}"],
            },
        )
        prometheus.wait_for_targets(3)
        controller_args = [
            "controller", f"--server=127.0.0.1:{rest_port}", f"--prometheus={prometheus.url}",
            "--prometheus-lag=2", f"--plan={PLAN}", "--min-requests=15", "--p99-slack-ms=150",
            "--poll-seconds=1", "--hold-retry-seconds=2", "--retain=600", f"--home={home}",
        ]  # fmt: skip

        def state(model: str = TAXI):
            return read_release(str(serving), model).state

        # 1. The first run (Vertex mode): the version is listed, nobody labels it until the controller runs.
        first = subprocess.run(
            [sys.executable, "-m", "tfx_canary.cli", "run", f"--home={home}", f"--config={pipeline_config}"],
            capture_output=True, text=True, env=_env(), timeout=600,
        )  # fmt: skip
        assert first.returncode == 0 and "PUSHED" in first.stdout, first.stdout + first.stderr
        v1 = state().candidate
        assert v1 is not None and state().stable is None
        controller = Process("controller-1", controller_args, logs)
        started.append(controller)
        _wait("v1 labelled stable by the controller", lambda: state().stable == v1)

        bodies = serving_raw_bodies(str(home / "data" / "taxi"), TAXI)
        requests = serving_raw_predict_requests(str(home / "data" / "taxi"), TAXI)
        loads = [
            SteadyLoad(port, TAXI, threads=1, rate=10, max_seconds=900, bodies=bodies, grpc_port=grpc,
                       grpc_threads=1, grpc_requests=requests)
            for _, port, grpc in routers
        ]  # fmt: skip
        for load in loads:
            load.__enter__()

        # 2. New data: the second run lists v2; the controller labels it canary and rolls it out.
        data.add_span(home / "data" / "taxi", rows_per_span=250)
        second = subprocess.run(
            [sys.executable, "-m", "tfx_canary.cli", "run", f"--home={home}", f"--config={pipeline_config}"],
            capture_output=True, text=True, env=_env(), timeout=600,
        )  # fmt: skip
        assert second.returncode == 0 and "PUSHED" in second.stdout, second.stdout + second.stderr
        v2 = _wait("v2 on trial", lambda: state().in_flight)
        assert v2 > v1

        # 3. Killed mid-step, restarted: the rollout continues at the step in force.
        _wait("the 50% step", lambda: state().step == "50%", timeout_s=180)
        controller.stop(signal.SIGKILL)
        assert state().step == "50%" and state().in_flight == v2
        controller = Process("controller-2", controller_args, logs)
        started.append(controller)
        controller.wait_for(r"resuming the rollout of version \d+ at step 50%", timeout_s=60)

        # 4. One router stops during the 100% step; the other's clients see no error.
        _wait("the 100% step", lambda: state().step == "100%", timeout_s=180)
        loads[0].stop()
        routers[0][0].stop()
        _wait("promotion", lambda: state().stable == v2, timeout_s=180)
        time.sleep(1.0)  # clients keep calling after the flip
        loads[1].stop()
        for load in loads:
            assert load.failures == [], load.failures[:5]
            assert load.protocols["rest"]["ok"] > 20 and load.protocols["grpc"]["ok"] > 20, load.protocols
        assert state().label_map == {"stable": v2, "canary": v2, "previous": v1}

        # 5. A canary that errors and one that is slow: rolled back on Prometheus data.
        write_fixture_model(serving / FIXTURE, 1, offset=2.0)
        fixture = operations.Target(str(serving), FIXTURE)
        operations.publish(fixture, 1)  # phase 1 only: no server address, as a Vertex pipeline does
        _wait("the fixture's v1 labelled stable", lambda: state(FIXTURE).stable == 1)
        _, rest2, grpc2 = routers[1]
        with SteadyLoad(rest2, FIXTURE, threads=2, rate=20, max_seconds=300, grpc_port=grpc2, grpc_threads=1,
                        grpc_requests=predict_requests(FIXTURE)) as load:  # fmt: skip
            # Well past the 150 ms slack allowed, and within the clients' 10 s deadline: this model answers
            # one call at a time (0.6 s each, measured), so the 8 shadow copies the router keeps in flight
            # end in under 5 s and the canary fails on latency, not on shadow copies timing out.
            slow = functools.partial(write_slow_model, delay_ms=300)
            for version, plant in ((2, write_failing_model), (3, slow)):
                plant(serving / FIXTURE, version)
                operations.publish(fixture, version)
                _wait(
                    f"v{version} rolled back", lambda v=version: v in state(FIXTURE).rejected, timeout_s=180
                )
                _wait(
                    f"v{version} unloaded", lambda v=version: v not in state(FIXTURE).versions, timeout_s=60
                )
            load.stop()
        assert load.failures == [], load.failures[:5]  # the shadow step caught both: no client saw them
        assert state(FIXTURE).label_map == {"stable": 1, "canary": 1}
        assert controller.stop() == 0  # SIGTERM: it stops between waits and exits cleanly
    finally:
        for process in reversed(started):
            process.stop()
        if prometheus is not None:
            prometheus.stop()

    history = subprocess.run(
        [sys.executable, "-m", "tfx_canary.cli", "history", f"--home={home}", f"--model={TAXI}", "--json"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    entries = json.loads(history.stdout)
    steps = [e["step"] for e in entries if e["kind"] == "traffic"]
    assert steps == ["shadow", "50%", "100%"]  # each step once: the restart did not take 50% again
    assert [(e["kind"], e["actor"].split(":")[0]) for e in entries][:4] == [
        ("phase1", "pipeline"), ("first-stable", "controller"),
        ("phase1", "pipeline"), ("canary-start", "controller"),
    ]  # fmt: skip
    promote = entries[-1]
    assert promote["kind"] == "promote" and promote["analysis"]["verdict"] == "pass"
    fixture_history = subprocess.run(
        [sys.executable, "-m", "tfx_canary.cli", "history", f"--home={home}", f"--model={FIXTURE}", "--json"],
        capture_output=True, text=True, env=_env(), timeout=120,
    )  # fmt: skip
    rollbacks = [e for e in json.loads(fixture_history.stdout) if e["kind"] == "rollback"]
    assert len(rollbacks) == 2
    assert "error rate" in rollbacks[0]["reason"] and "p99" in rollbacks[1]["reason"]
    assert all(r["analysis"]["verdict"] == "fail" for r in rollbacks)
