"""``tfx-canary status --watch`` as a real process: in place on a pseudo-terminal, plain lines in a pipe,
following the progress a rollout records (written here with the same writer the live view uses)."""

from __future__ import annotations

import contextlib
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from release import progress as record
from release import watch as watch_module
from tests.release.test_cli import main, seed

ROOT = Path(__file__).resolve().parents[2]


def running(step: str, canary_requests: float, window: int = 1) -> record.Progress:
    return record.Progress(
        "taxi", stable=1, canary=2, plan=["shadow", "25%", "100%"], step=step, canary_weight=0.25,
        phase="window", window=window, windows=4, window_s=60.0, window_started_at=time.time(),
        stable_requests=140, canary_requests=canary_requests, min_requests=100, verdict="inconclusive",
        reasons=[f"too few samples: stable 140, canary {canary_requests:.0f} (need 100 each)"],
        done=[{"step": "shadow", "verdict": "pass", "reasons": []}],
    )  # fmt: skip


def watch(home: Path, stdout) -> subprocess.Popen:
    command = [sys.executable, "-m", "tfx_canary.cli", "status", "--watch", "--interval", "0.2"]
    env = {**os.environ, "COLUMNS": "140", "LINES": "40", "TERM": "xterm-256color"}
    return subprocess.Popen(
        [*command, "--home", str(home)], stdout=stdout, stderr=subprocess.PIPE, cwd=ROOT, env=env
    )


def read_until(fd: int, pattern: str, seen: bytearray, timeout_s: float = 30.0) -> str:
    """Read ``fd`` until the text so far (escape sequences removed) matches ``pattern``."""
    deadline = time.monotonic() + timeout_s
    while True:
        plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))
        if re.search(pattern, plain):
            return plain
        if time.monotonic() > deadline:
            raise AssertionError(f"no {pattern!r} within {timeout_s} s in:\n{plain[-2000:]}")
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the pty closes when the process exits
                chunk = b""
            seen.extend(chunk)


def stop(process: subprocess.Popen, fd: int) -> int:
    """SIGTERM, reading ``fd`` meanwhile: a terminal that keeps reading, as a user's does."""
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                with contextlib.suppress(OSError):  # the pty closes when the process exits
                    os.read(fd, 65536)
        return process.wait(timeout=1)
    finally:
        process.stderr.close()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    seed(tmp_path)  # taxi: stable 1, canary 2 at 25%, step 25%
    record.write(str(tmp_path / "releases"), running("25%", 12))
    return tmp_path


def test_in_place_on_a_terminal_following_the_rollout(home: Path) -> None:
    master, slave = pty.openpty()
    process = watch(home, slave)
    os.close(slave)
    seen = bytearray()
    try:
        read_until(master, r"canary 12/100", seen)
        assert "taxi generation 5: labels canary=2, stable=1" in read_until(master, "generation 5", seen)
        record.write(str(home / "releases"), running("25%", 87, window=2))  # the rollout moves on
        plain = read_until(master, r"canary 87/100", seen)
        assert re.search(r"2 of 4, \d+ s left of 60 s", plain)
        assert "shadow pass" in plain and "[25%]" in plain
        assert re.search(rb"\x1b\[\d*A", seen) and seen.count(b"\x1b[2K") > 3  # redrawn, not appended
    finally:
        code = stop(process, master)
        os.close(master)
    assert code == 0  # SIGTERM ends the watch cleanly


def test_plain_lines_in_a_pipe_with_a_stale_rollout_said_so(home: Path) -> None:
    process = watch(home, subprocess.PIPE)
    seen = bytearray()
    try:
        first = read_until(process.stdout.fileno(), r"canary 12/100", seen)
        stale = running("25%", 12)
        record.write(str(home / "releases"), stale)
        saved = (home / "releases" / "taxi" / "rollout.json").read_text()
        # a rollout that died: its last progress, 20 s old
        text = saved.replace(f'"updated_at": {stale.updated_at}', f'"updated_at": {stale.updated_at - 20}')
        (home / "releases" / "taxi" / "rollout.json").write_text(text)
        later = read_until(process.stdout.fileno(), r"is the rollout still running\?", seen)
    finally:
        code = stop(process, process.stdout.fileno())
        process.stdout.close()
    assert code == 0
    assert "\x1b[" not in seen.decode()
    lines = later.splitlines()
    assert lines[0].startswith("taxi generation 5: labels canary=2, stable=1; traffic canary 25%")
    assert lines[1].startswith("  taxi v2 vs v1 | step 2/3 25% | window 1 of 4,") and first in later
    assert len(lines) < 12  # a line when something changes, not one per redraw


def fill(fd: int) -> int:
    """Write to the non-blocking ``fd`` until the terminal has no room left; the bytes written."""
    written = 0
    for size in (4096, 1):  # room is counted in chunks: fill it to the last byte
        with contextlib.suppress(BlockingIOError):
            while True:
                written += os.write(fd, b"x" * size)
    return written


def test_a_terminal_that_stopped_reading_does_not_keep_it_from_stopping(home: Path) -> None:
    """A paused pager or a stalled ssh: the redraw blocks in write(), and SIGTERM still ends the
    process, STOP_GRACE_S later, with the signal's exit status."""
    master, slave = pty.openpty()
    process = watch(home, slave)
    seen = bytearray()
    try:
        read_until(master, r"canary 12/100", seen)
        # fill the terminal's buffer through a second descriptor of our own (non-blocking), so the
        # watch's next redraw blocks; the master side is not read from here on
        filler = os.open(os.ttyname(slave), os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        while fill(filler):  # the kernel moves a part on to the reading side a moment later
            time.sleep(0.2)
        time.sleep(0.6)  # three redraw intervals: the watch is in a write that cannot finish
        assert process.poll() is None
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=watch_module.STOP_GRACE_S + 10)
        assert time.monotonic() - started >= watch_module.STOP_GRACE_S - 0.5  # the grace, then the exit
        assert code == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        process.stderr.close()
        os.close(filler)
        os.close(slave)
        os.close(master)


def test_watch_and_json_together_are_a_usage_error(home: Path, capsys) -> None:
    assert main("status", "--home", str(home), "--watch", "--json") == 2
    assert "error: --watch redraws the status" in capsys.readouterr().err
