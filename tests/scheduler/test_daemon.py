"""`tfx-canary schedule --local`: new spans retrain, same data skips, bad data is refused, SIGTERM is clean.

The retraining job here is a small real program with the pipeline's observable contract (reads
the span folders, refuses a span with anomalies with a non-zero exit, publishes a version by
staging it under a non-integer name and renaming), so the daemon is tested as a real process
with real locks, signals and files. The real pipeline is exercised by tests/pipeline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from scheduler.daemon import (
    LocalScheduler,
    RunLock,
    SchedulerSettings,
    data_fingerprint,
    served_versions,
)

JOB = textwrap.dedent(
    """
    import os, pathlib, sys, time
    data_root, model_dir = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    sleep_seconds = float(sys.argv[3])
    latest = sorted(data_root.glob("span-*"), key=lambda p: int(p.name.split("-")[1]))[-1]
    if "ANOMALY" in (latest / "data.csv").read_text():
        print(f"ExampleValidator found anomalies in {latest.name}: refusing it")
        sys.exit(1)
    model_dir.mkdir(parents=True, exist_ok=True)
    version = max([int(p.name) for p in model_dir.glob("[0-9]*")] + [int(time.time())]) + 1
    staging = model_dir / f".{version}.tmp"
    staging.mkdir(parents=True)
    (model_dir.parent / "job-started").write_text(str(os.getpid()))
    time.sleep(sleep_seconds)  # a kill here leaves a half-published staging folder
    (staging / "saved_model.pb").write_text(latest.name)
    staging.rename(model_dir / str(version))
    print(f"pushed version {version}")
    """
)

ROLLOUT = "import pathlib, sys; pathlib.Path(sys.argv[1]).open('a').write(sys.argv[2] + '\\n')"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "job.py").write_text(JOB)
    return tmp_path


def add_span(home: Path, number: int, text: str = "trip_miles,tips\n1.0,0.5\n") -> None:
    span = home / "data" / "taxi" / f"span-{number}"
    span.mkdir(parents=True)
    (span / "data.csv").write_text(text)


def settings(home: Path, sleep_seconds: float = 0.0, **changes) -> SchedulerSettings:
    model_dir = home / "serving" / "taxi_tips"
    values = {
        "home": home,
        "data_root": home / "data" / "taxi",
        "model_dir": model_dir,
        "run_command": (
            sys.executable,
            str(home / "job.py"),
            str(home / "data" / "taxi"),
            str(model_dir),
            str(sleep_seconds),
        ),
        "after_push_command": (sys.executable, "-c", ROLLOUT, str(home / "rollouts.txt"), "{version}"),
        "poll_seconds": 0.1,
    }
    return SchedulerSettings(**{**values, **changes})


def test_each_new_span_makes_one_version_and_continues_the_rollout(home: Path) -> None:
    scheduler = LocalScheduler(settings(home))
    assert scheduler.check_once() == "skipped"  # no data yet
    add_span(home, 1)
    assert scheduler.check_once() == "pushed"
    assert scheduler.check_once() == "skipped"  # nothing changed
    add_span(home, 2)
    assert scheduler.check_once() == "pushed"
    versions = sorted(served_versions(home / "serving" / "taxi_tips"))
    assert len(versions) == 2
    assert [(home / "serving" / "taxi_tips" / str(v) / "saved_model.pb").read_text() for v in versions] == [
        "span-1",
        "span-2",
    ]
    assert (home / "rollouts.txt").read_text().split() == [str(v) for v in versions]
    state = json.loads((home / "scheduler" / "state.json").read_text())
    assert state["outcome"] == "pushed" and state["spans"] == ["span-1", "span-2"]
    assert state["fingerprint"] == data_fingerprint(home / "data" / "taxi")[0]


def test_a_span_with_anomalies_is_refused_and_the_daemon_carries_on(home: Path, caplog) -> None:
    scheduler = LocalScheduler(settings(home))
    add_span(home, 1)
    assert scheduler.check_once() == "pushed"
    add_span(home, 2, text="trip_miles,tips\nANOMALY,-1\n")
    with caplog.at_level("INFO", logger="tfx_canary.scheduler"):
        assert scheduler.check_once() == "failed"
        assert scheduler.check_once() == "skipped"  # the refused data is not retried in a loop
    assert "found anomalies in span-2" in caplog.text
    assert len(served_versions(home / "serving" / "taxi_tips")) == 1
    assert (home / "rollouts.txt").read_text().count("\n") == 1  # no rollout for a refused span
    add_span(home, 3)
    assert scheduler.check_once() == "pushed"
    assert len(served_versions(home / "serving" / "taxi_tips")) == 2


def test_a_run_never_starts_while_another_holds_the_lock(home: Path) -> None:
    add_span(home, 1)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; sys.path.insert(0, '.');"
            "from pathlib import Path; from scheduler.daemon import RunLock;"
            f"lock = RunLock(Path({str(home / 'scheduler' / 'run.lock')!r})); assert lock.acquire();"
            "print('held', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        scheduler = LocalScheduler(settings(home))
        assert scheduler.check_once() == "locked"
        assert f"pid={holder.pid}" in scheduler.lock.holder()
    finally:
        holder.kill()
        holder.wait()
    # The holder died without releasing: the kernel dropped the lock, the file still names it.
    assert f"pid={holder.pid}" in RunLock(home / "scheduler" / "run.lock").holder()
    assert LocalScheduler(settings(home)).check_once() == "pushed"


def scheduler_process(home: Path, sleep_seconds: float, *extra: str) -> subprocess.Popen:
    job = settings(home, sleep_seconds).run_command
    command = [
        sys.executable, "-m", "tfx_canary.cli", "schedule", "--local", "--home", str(home),
        "--poll-seconds", "0.2", "--run-command", " ".join(job), *extra,
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(path: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear in {seconds} s"
        time.sleep(0.05)


def test_sigterm_mid_run_stops_cleanly_and_a_restart_finishes_the_work(home: Path) -> None:
    pytest.importorskip(
        "pipeline.config", reason="the daemon reads paths from pipeline/, which has not landed"
    )
    add_span(home, 1)
    daemon = scheduler_process(home, 30.0)
    wait_for(home / "serving" / "job-started")
    daemon.send_signal(signal.SIGTERM)
    output, _ = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, output
    assert "Stopping the running pipeline" in output
    assert "the same data will be retried on restart" in output
    assert "Local scheduler stopped" in output
    model_dir = home / "serving" / "taxi_tips"
    assert served_versions(model_dir) == set()  # the killed run left no version behind
    assert list(model_dir.iterdir()) == []  # nor its staging
    assert not (home / "scheduler" / "state.json").exists()  # and recorded nothing
    assert RunLock(home / "scheduler" / "run.lock").holder() == ""  # released on the way out

    restarted = scheduler_process(home, 0.0, "--max-runs", "1")
    output, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, output
    assert "The run pushed version" in output
    assert len(served_versions(model_dir)) == 1
    assert json.loads((home / "scheduler" / "state.json").read_text())["outcome"] == "pushed"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (dead, not yet reaped by its new parent) counts as gone.
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "State:\tZ" in status.read_text())


def test_sigkill_mid_run_takes_the_run_down_too_and_a_restart_cleans_up(home: Path) -> None:
    pytest.importorskip("pipeline.config")
    add_span(home, 1)
    daemon = scheduler_process(home, 60.0)
    wait_for(home / "serving" / "job-started")
    job_pid = int((home / "serving" / "job-started").read_text())
    daemon.kill()  # SIGKILL: no chance to stop the run or release anything
    daemon.communicate(timeout=30)
    lock = RunLock(home / "scheduler" / "run.lock")
    deadline = time.monotonic() + 30
    while not lock.acquire():  # the job shares the lock: free means the job is gone too
        assert time.monotonic() < deadline, f"the lock is still held: {lock.holder()}"
        time.sleep(0.05)
    lock.release()
    if sys.platform.startswith("linux"):
        assert not process_alive(job_pid), "the run outlived the killed daemon"
    model_dir = home / "serving" / "taxi_tips"
    [staging] = [p.name for p in model_dir.iterdir()]
    assert staging.startswith(".") and staging.endswith(".tmp")  # the half-published version
    assert served_versions(model_dir) == set()

    restarted = scheduler_process(home, 0.0, "--max-runs", "1")
    output, _ = restarted.communicate(timeout=60)
    assert restarted.returncode == 0, output
    assert "did not finish; cleaning up after it" in output
    assert f"Removing the half-published version left by that run: {model_dir / staging}" in output
    assert "The run pushed version" in output
    assert [p.name for p in model_dir.iterdir() if p.name.startswith(".")] == []
    assert len(served_versions(model_dir)) == 1
    assert not (home / "scheduler" / "running.json").exists()


def test_new_data_waits_while_a_canary_is_on_trial(home: Path, caplog) -> None:
    serving_root = home / "serving"
    serving_root.mkdir()
    model_dir = serving_root / "taxi_tips"
    config = textwrap.dedent(
        f"""
        model_config_list {{
          config {{
            name: "taxi_tips"
            base_path: "{model_dir}"
            model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
            version_labels {{ key: "stable" value: 1 }}
            version_labels {{ key: "canary" value: 2 }}
          }}
        }}
        """
    )
    (serving_root / "models.config").write_text(config)
    add_span(home, 1)
    scheduler = LocalScheduler(settings(home))
    with caplog.at_level("INFO", logger="tfx_canary.scheduler"):
        assert scheduler.check_once() == "waiting"
    assert "version 2 is still the canary (stable is 1)" in caplog.text
    assert served_versions(model_dir) == set()  # nothing ran
    (serving_root / "models.config").write_text(
        config.replace("value: 2", "value: 1").replace("versions: 1 versions: 2", "versions: 1")
    )
    assert scheduler.check_once() == "pushed"
