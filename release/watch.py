"""``tfx-canary status --watch``: every model's release state and, while a rollout runs, how its step
is going (the progress the rollout process records, ``release.progress``), redrawn until Ctrl-C.

On a terminal the block is redrawn in place; in a pipe a line per model is printed when something
changes (``tfx_canary.live``). The rollout may run in another process on the same home: this reads
only files, plus the model server's version states when ``--server`` is given.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

from rich.console import Group
from rich.text import Text

from release import progress as record
from tfx_canary.live import LiveOutput
from tfx_canary.signals import stop_on_signals

STALE_S = 15.0  # a running rollout rewrites its progress every second
RECENT_S = 600.0  # a finished rollout stays on show this long, even once its canary is gone
# A terminal that stopped reading (a paused pager, a stalled ssh) blocks the redraw in write(), and
# Python retries that write after the signal handler: past this grace the process exits without it.
STOP_GRACE_S = 2.0


def _summary(row: dict) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(row["labels"].items())) or "none"
    text = (
        f"{row['model']} generation {row['generation']}: labels {labels}; traffic canary "
        f"{row['canary_weight']:.0%}, shadow {row['shadow_fraction']:.0%}; step {row['step'] or '-'}; "
        f"verdict {row['verdict'] or '-'}"
    )
    if row["hold_reason"]:
        text += f"; held: {row['hold_reason']}"
    if "error" in row["server"]:
        text += f"; server: {row['server']['error']}"
    return text


def _progress_of(row: dict, releases_dir: str, now: float) -> record.Progress | None:
    """The rollout progress that belongs to this row's release, marked when it stopped updating."""
    progress = record.read(releases_dir, row["model"])
    if progress is None:
        return None
    current = progress.canary in (row["labels"].get("canary"), row["labels"].get("stable"))
    if not current and not (progress.outcome and now - progress.updated_at < RECENT_S):
        return None  # about an earlier release (a rollback just now is still worth showing)
    if not progress.outcome and now - progress.updated_at > STALE_S:
        progress.note = f"no update for {now - progress.updated_at:.0f} s: is the rollout still running?"
    return progress


def watch_status(
    rows: Callable[[], list[dict]],
    releases_dir: str,
    interval_s: float,
    output: LiveOutput,
    stop: threading.Event | None = None,
) -> int:
    """Redraw until ``stop`` is set (SIGINT/SIGTERM set it when called from the main thread; the
    process exits ``STOP_GRACE_S`` later if a write to a terminal that stopped reading holds it)."""
    stop = stop or threading.Event()
    if threading.current_thread() is not threading.main_thread():
        return _redraw(rows, releases_dir, interval_s, output, stop)
    timers: list[threading.Timer] = []

    def exit_later(signum: int) -> None:
        # a redraw blocked on a stalled terminal never returns: exit without it (and without a
        # message, since stderr may be that same terminal)
        timers.append(threading.Timer(STOP_GRACE_S, os._exit, args=(128 + signum,)))
        timers[-1].daemon = True
        timers[-1].start()

    previous = stop_on_signals(stop, also=exit_later)
    try:
        return _redraw(rows, releases_dir, interval_s, output, stop)
    finally:
        for timer in timers:
            timer.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _redraw(
    rows: Callable[[], list[dict]],
    releases_dir: str,
    interval_s: float,
    output: LiveOutput,
    stop: threading.Event,
) -> int:
    """One redraw per ``interval_s`` until ``stop`` is set; 0 then."""
    with output:
        while True:
            now = time.time()
            blocks, lines, headline = [], [], []
            for row in rows():
                summary = _summary(row)
                progress = _progress_of(row, releases_dir, now)
                blocks.append(Text(summary, style="bold"))
                lines.append(summary)
                headline.append((row["generation"], row["step"], row["verdict"]))
                if progress is not None:
                    blocks.append(record.block(progress, now))
                    lines.append("  " + record.line(progress, now))
                    headline.append((progress.headline(), progress.note))
            if not lines:
                lines.append("no models in the serving config yet")
                blocks.append(Text(lines[0]))
            output.update(Group(*blocks), "\n".join(lines), tuple(headline))
            if stop.wait(interval_s):
                return 0
