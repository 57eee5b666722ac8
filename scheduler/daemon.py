"""`tfx-canary schedule --local`: retrain on this machine when a new span lands, one run at a time.

Every wake-up (each ``--poll-seconds``, or each ``--cron`` tick) the daemon fingerprints the data
spans and compares them with the last run it recorded. If nothing changed it logs that and sleeps.
If something did, it takes the run lock and runs the pipeline as a child process (`tfx-canary run`),
so a crash of the pipeline never takes the daemon down. When the run pushes a new version it runs
the after-push command (e.g. `tfx-canary rollout ...`) to carry on the canary. The outcome and the
fingerprint are recorded atomically only when a run finishes, so a daemon killed mid-run retries
the same data after a restart; the pipeline's safe publish guarantees no half-written version.

The run lock is an ``fcntl`` lock on ``<home>/scheduler/run.lock``: the kernel drops it when its
holder dies, so it survives crashes. The file also names the holder's pid, which is how a leftover
file from a dead holder is recognised (and logged) as stale. The pipeline child shares the lock
(it inherits the locked file), so a run that outlives a killed daemon still blocks a second run;
on Linux the child is also killed with the daemon, so a killed daemon leaves no run behind.

A marker file (``<home>/scheduler/running.json``) exists exactly while a run is in progress. Finding
it at the next run means the previous run was killed: its leftover staging folders (``.<version>.tmp``,
never loaded by TF Serving) are removed before the data is retried.

While a version is still being released (labelled ``canary`` but not ``stable``, or listed but not
yet labelled), a new push would be refused by the release rules, so the daemon waits for the rollout
to finish (promote or roll back) before retraining.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from release.serving_dir import CONFIG_NAME, is_staging, list_versions, write_text_atomic
from scheduler.cron import CronSchedule, parse_vertex_cron
from tfx_canary.errors import EXIT_OK, EXIT_REFUSED
from tfx_canary.home import Home
from tfx_canary.process import die_with_parent
from tfx_canary.signals import stop_on_signals

logger = logging.getLogger("tfx_canary.scheduler")

STOP_GRACE_SECONDS = 60.0


class RunLock:
    """An exclusive, crash-proof lock on a file that also records who holds it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle = None

    def holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except FileNotFoundError:
            return ""

    def acquire(self) -> bool:
        """Take the lock without waiting; False if a live process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lock is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        previous = self.holder()
        if previous:
            logger.warning("Found a stale run lock (%s): its holder is gone; taking it over", previous)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid={os.getpid()} since={dt.datetime.now().isoformat(timespec='seconds')}\n")
        handle.flush()
        self._handle = handle
        return True

    def fileno(self) -> int | None:
        """The locked file's descriptor while held (children inherit it to share the lock)."""
        return self._handle.fileno() if self._handle is not None else None

    def release(self) -> None:
        if self._handle is None:
            return
        self._handle.seek(0)
        self._handle.truncate()
        self._handle.flush()
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


def data_fingerprint(data_root: Path) -> tuple[str, list[str]]:
    """A hash of every file under the span folders (name, size, mtime) and the span names seen."""
    digest = hashlib.sha256()
    spans = []
    if data_root.is_dir():
        for span_dir in sorted(
            p for p in data_root.iterdir() if p.is_dir() and re.fullmatch(r"span-\d+", p.name)
        ):
            spans.append(span_dir.name)
            for path in sorted(span_dir.rglob("*")):
                if path.is_file():
                    stat = path.stat()
                    digest.update(
                        f"{path.relative_to(data_root)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
                    )
    return digest.hexdigest(), spans


def served_versions(model_dir: Path) -> set[int]:
    """Integer version folders TF Serving would load."""
    return set(list_versions(str(model_dir)))


def release_in_progress(serving_root: Path, model: str) -> str:
    """Why a new version cannot be released yet ('' when it can): a canary or phase 2 is pending."""
    from release.config_store import read_release

    if not (serving_root / CONFIG_NAME).exists():
        return ""
    state = read_release(str(serving_root), model).state
    if state.in_flight is not None:
        return (
            f"version {state.in_flight} is still the canary (stable is {state.stable}); "
            "it must be promoted or rolled back first (`tfx-canary rollout`, `promote` or `rollback`)"
        )
    if state.candidate is not None:
        return (
            f"version {state.candidate} is listed but not labelled yet; "
            "finish it with `tfx-canary promote --phase2` or roll it back"
        )
    return ""


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the daemon dies, so no run is orphaned."""
    die_with_parent(signal.SIGKILL)


def write_json_atomically(path: Path, value: dict) -> None:
    write_text_atomic(str(path), json.dumps(value, indent=2, sort_keys=True))


@dataclass(frozen=True)
class SchedulerSettings:
    home: Path
    data_root: Path
    model_dir: Path  # <serving_root>/<model>: where a push shows up as a new integer folder
    run_command: tuple[str, ...]
    after_push_command: tuple[str, ...] = ()
    poll_seconds: float = 60.0
    cron: CronSchedule | None = None
    max_runs: int | None = None
    once: bool = False  # one check, then exit (for cron)

    @property
    def state_dir(self) -> Path:
        return Path(Home(str(self.home)).scheduler_dir)

    @property
    def serving_root(self) -> Path:
        return self.model_dir.parent


class LocalScheduler:
    """The daemon loop; `stop()` (or SIGTERM) ends it cleanly, stopping a running pipeline first."""

    def __init__(self, settings: SchedulerSettings) -> None:
        self.settings = settings
        self.lock = RunLock(settings.state_dir / "run.lock")
        self.state_path = settings.state_dir / "state.json"
        self.running_path = settings.state_dir / "running.json"
        self.stop_event = threading.Event()
        self._child: subprocess.Popen | None = None
        self._last_note = ""
        self.runs = 0

    def _note(self, message: str) -> None:
        """Log a decision to do nothing at INFO once; the same decision on later polls at DEBUG only."""
        logger.log(logging.DEBUG if message == self._last_note else logging.INFO, "%s", message)
        self._last_note = message

    def load_state(self) -> dict:
        try:
            return json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except json.JSONDecodeError:
            logger.warning("Scheduler state %s is unreadable; treating the data as new", self.state_path)
            return {}

    def _sleep_until_next_check(self) -> None:
        if self.settings.cron is None:
            self.stop_event.wait(self.settings.poll_seconds)
            return
        now = dt.datetime.now().astimezone()
        wake = self.settings.cron.next_after(now)
        logger.info(
            "Next check at %s (cron %s)", wake.isoformat(timespec="minutes"), self.settings.cron.expression
        )
        self.stop_event.wait(max(0.0, (wake - now).total_seconds()))

    def serve_forever(self) -> int:
        logger.info(
            "Local scheduler started (pid %d): watching %s, runs `%s`",
            os.getpid(),
            self.settings.data_root,
            shlex.join(self.settings.run_command),
        )
        while not self.stop_event.is_set():
            self.check_once()
            if self.settings.once:
                break
            if self.settings.max_runs is not None and self.runs >= self.settings.max_runs:
                logger.info("Reached --max-runs=%d; stopping", self.settings.max_runs)
                break
            if not self.stop_event.is_set():
                self._sleep_until_next_check()
        logger.info("Local scheduler stopped")
        return 0

    def check_once(self) -> str:
        """One decision: 'skipped', 'waiting', 'locked', 'pushed', 'no-push', 'failed' or 'stopped'."""
        fingerprint, spans = data_fingerprint(self.settings.data_root)
        state = self.load_state()
        if not spans:
            self._note(f"No spans under {self.settings.data_root} yet; nothing to train on")
            return "skipped"
        if state.get("fingerprint") == fingerprint:
            self._note(
                f"Nothing changed since the last run ({state.get('finished')}, {state.get('outcome')}); "
                "skipping"
            )
            return "skipped"
        busy = self._release_in_progress()
        if busy:
            self._note(f"New data, but {busy}; retraining after that")
            return "waiting"
        self._last_note = ""
        if not self.lock.acquire():
            logger.info("Another pipeline run holds the lock (%s); skipping this check", self.lock.holder())
            return "locked"
        try:
            self._recover_interrupted_run()
            return self._run(fingerprint, spans)
        finally:
            self.lock.release()

    def _release_in_progress(self) -> str:
        try:
            return release_in_progress(self.settings.serving_root, self.settings.model_dir.name)
        except Exception as error:  # an unreadable config: the pipeline run will report it properly
            logger.warning("Could not read the release state under %s: %s", self.settings.serving_root, error)
            return ""

    def _recover_interrupted_run(self) -> None:
        """With the lock held: if the last run never finished, remove the staging it left behind."""
        try:
            marker = json.loads(self.running_path.read_text())
        except FileNotFoundError:
            return
        except json.JSONDecodeError:
            marker = {}
        logger.warning(
            "The previous run (pid %s, started %s) did not finish; cleaning up after it",
            marker.get("pid", "?"),
            marker.get("started", "?"),
        )
        self._remove_staging(since=float(marker.get("started_epoch", 0.0)))
        self.running_path.unlink(missing_ok=True)

    def _remove_staging(self, since: float) -> None:
        """Remove version staging folders made since ``since`` (unix time): only a killed run's leftovers."""
        model_dir = self.settings.model_dir
        if not model_dir.is_dir():
            return
        for path in sorted(model_dir.iterdir()):
            if is_staging(path.name) and path.stat().st_mtime >= since:
                logger.warning("Removing the half-published version left by that run: %s", path)
                shutil.rmtree(path, ignore_errors=True)

    def _run(self, fingerprint: str, spans: list[str]) -> str:
        before = served_versions(self.settings.model_dir)
        log_path = self.settings.state_dir / "runs" / f"{dt.datetime.now():%Y%m%dT%H%M%S}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        logger.info(
            "New data (latest %s, %d spans): starting a pipeline run, log %s", spans[-1], len(spans), log_path
        )
        started = time.monotonic()
        started_epoch = time.time()
        write_json_atomically(
            self.running_path,
            {
                "pid": os.getpid(),
                "started": dt.datetime.now().isoformat(timespec="seconds"),
                "started_epoch": started_epoch,
                "log": str(log_path),
            },
        )
        exit_code = self._run_child(self.settings.run_command, log_path)
        self.runs += 1
        seconds = time.monotonic() - started
        if exit_code is None:
            self._remove_staging(since=started_epoch)
            self.running_path.unlink(missing_ok=True)
            logger.info(
                "Stopped during the run after %.0f s; the same data will be retried on restart", seconds
            )
            return "stopped"
        new_versions = sorted(served_versions(self.settings.model_dir) - before)
        if exit_code not in (EXIT_OK, EXIT_REFUSED):  # refused: a data gate said no, not a failure
            outcome = "failed"
            logger.error(
                "The pipeline run failed (exit %d) after %.0f s; waiting for new data. Last lines:\n%s",
                exit_code,
                seconds,
                tail(log_path),
            )
        elif new_versions:
            outcome = "pushed"
            logger.info("The run pushed version %s in %.0f s", new_versions[-1], seconds)
        else:
            outcome = "no-push"
            logger.info(
                "The run finished in %.0f s without a new version (refused or not blessed):\n%s",
                seconds,
                tail(log_path),
            )
        write_json_atomically(
            self.state_path,
            {
                "fingerprint": fingerprint,
                "spans": spans,
                "outcome": outcome,
                "exit_code": exit_code,
                "new_versions": new_versions,
                "finished": dt.datetime.now().isoformat(timespec="seconds"),
                "log": str(log_path),
            },
        )
        self.running_path.unlink(missing_ok=True)
        if outcome == "pushed" and self.settings.after_push_command:
            self._continue_rollout(new_versions[-1], log_path)
        return outcome

    def _continue_rollout(self, version: int, log_path: Path) -> None:
        command = tuple(part.replace("{version}", str(version)) for part in self.settings.after_push_command)
        logger.info("Continuing the canary rollout of version %d: `%s`", version, shlex.join(command))
        exit_code = self._run_child(command, log_path)
        if exit_code == 0:
            logger.info("Rollout command finished")
        elif exit_code is not None:
            logger.error(
                "Rollout command failed (exit %d); the version stays where it is. Last lines:\n%s",
                exit_code,
                tail(log_path),
            )

    def _run_child(self, command: Sequence[str], log_path: Path) -> int | None:
        """Run ``command`` in its own process group; None if stopped (the child is terminated).

        The child shares the run lock and (on Linux) dies with the daemon.
        """
        env = {
            **os.environ,
            "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
            "PYTHONUNBUFFERED": "1",  # the run log shows progress as it happens, and survives a kill
        }
        lock_fd = self.lock.fileno()
        with open(log_path, "ab") as log:
            child = subprocess.Popen(
                command,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                pass_fds=(lock_fd,) if lock_fd is not None else (),
                preexec_fn=_die_with_parent,  # safe: the daemon is single-threaded
            )
            self._child = child
            try:
                while True:
                    try:
                        return child.wait(timeout=0.5)
                    except subprocess.TimeoutExpired:
                        if self.stop_event.is_set():
                            self._terminate(child)
                            return None
            finally:
                self._child = None

    def _terminate(self, child: subprocess.Popen) -> None:
        logger.info("Stopping the running pipeline (pid %d)", child.pid)
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            logger.warning("The pipeline ignored SIGTERM for %.0f s; killing it", STOP_GRACE_SECONDS)
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return ""


def settings_from_args(args: argparse.Namespace) -> SchedulerSettings:
    from pipeline.config import load_config

    home = Path(Home.resolve(args.home).root)
    config = load_config(args.config, home=str(home))
    run_command = [sys.executable, "-m", "tfx_canary.cli", "run", "--home", str(home)]
    if args.config:
        run_command += ["--config", args.config]
    return SchedulerSettings(
        home=home,
        data_root=Path(config.paths.data_root),
        model_dir=Path(config.serving_model_dir),
        run_command=tuple(shlex.split(args.run_command)) if args.run_command else tuple(run_command),
        after_push_command=tuple(shlex.split(args.after_push)) if args.after_push else (),
        poll_seconds=args.poll_seconds,
        cron=parse_vertex_cron(args.cron) if args.cron else None,
        max_runs=args.max_runs,
        once=args.once,
    )


def run_daemon_from_args(args: argparse.Namespace) -> int:
    scheduler = LocalScheduler(settings_from_args(args))
    stop_on_signals(scheduler.stop_event)
    return scheduler.serve_forever()
