"""Where a running rollout is, beside the release record: ``<home>/releases/<model>/rollout.json``.

The release record says which step is in force; this says how that step's window is going (time left,
samples per side against the minimum, the verdict so far), so the process that runs the rollout and
``tfx-canary status --watch`` in another terminal show the same thing. The file is replaced whole
about once a second while a rollout runs, and keeps its outcome when the rollout ends.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

from rich.console import Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from release.serving_dir import join, read_text, write_text_atomic

FILE_NAME = "rollout.json"
VERDICT_STYLE = {"pass": "green", "fail": "red", "inconclusive": "yellow"}
OUTCOME_STYLE = {"promoted": "green", "rolled back": "red", "inconclusive": "yellow", "interrupted": "yellow"}


@dataclass
class Progress:
    model: str
    stable: int | None = None
    canary: int | None = None
    plan: list[str] = field(default_factory=list)
    step: str = ""
    canary_weight: float = 0.0
    shadow_fraction: float = 0.0
    phase: str = "starting"  # starting, applying (routers take the split), window, judging, done
    window: int = 0  # 1-based; > 1 when the window was extended for too few samples
    windows: int = 1  # at most this many before the step is held
    window_s: float = 0.0
    window_started_at: float | None = None
    stable_requests: float = 0.0
    canary_requests: float = 0.0
    stable_source: str = "live"  # "live", or "baseline": at 100% stable's side is a window before
    min_requests: int = 0
    verdict: str = ""  # the running verdict of the open window (or the last one judged)
    reasons: list[str] = field(default_factory=list)
    done: list[dict] = field(default_factory=list)  # {"step", "verdict", "reasons"} per finished step
    outcome: str = ""  # promoted, rolled back, inconclusive, interrupted
    note: str = ""  # e.g. "samples unavailable: ..."
    updated_at: float = 0.0

    def time_left(self, now: float) -> float | None:
        if self.phase != "window" or self.window_started_at is None:
            return None
        return max(0.0, self.window_started_at + self.window_s - now)

    def headline(self) -> tuple:
        """What changes at most a few times a step: a plain view prints a line when it does."""
        return (self.step, self.phase, self.window, self.verdict, self.outcome, len(self.done))


def path_of(releases_dir: str, model: str) -> str:
    return join(releases_dir, model, FILE_NAME)


def write(releases_dir: str, progress: Progress) -> None:
    progress.updated_at = time.time()
    write_text_atomic(path_of(releases_dir, progress.model), json.dumps(asdict(progress), indent=1) + "\n")


def read(releases_dir: str, model: str) -> Progress | None:
    """The last progress written for ``model``, or None (no rollout ran here, or the file is unreadable)."""
    text = read_text(path_of(releases_dir, model))
    if not text:
        return None
    try:
        return Progress(**json.loads(text))
    except (ValueError, TypeError):  # a file from another version of the tool: not worth failing over
        return None


def _step_text(progress: Progress) -> Text:
    text = Text()
    finished = {entry["step"]: entry["verdict"] for entry in progress.done}
    for name in progress.plan:
        if text:
            text.append("  ")
        if name in finished:
            text.append(f"{name} {finished[name]}", style=VERDICT_STYLE.get(finished[name], ""))
        elif name == progress.step and not progress.outcome:
            text.append(f"[{name}]", style="bold cyan")
        else:
            text.append(name, style="dim")
    return text


def _samples(progress: Progress) -> str:
    baseline = " (baseline: the window before this step)" if progress.stable_source == "baseline" else ""
    return (
        f"stable {progress.stable_requests:.0f}/{progress.min_requests}{baseline}, "
        f"canary {progress.canary_requests:.0f}/{progress.min_requests}"
    )


def _window(progress: Progress, now: float) -> str:
    left = progress.time_left(now)
    if progress.phase == "applying":
        return "waiting until every router applies the new split"
    if left is None:
        return {"judging": "closed, being judged", "done": "-", "starting": "not open yet"}.get(
            progress.phase, "-"
        )
    return f"{progress.window} of {progress.windows}, {left:.0f} s left of {progress.window_s:.0f} s"


def block(progress: Progress, now: float | None = None):
    """The rich renderable a terminal shows (in place)."""
    now = time.time() if now is None else now
    title = Text(f"{progress.model}: canary v{progress.canary} against stable v{progress.stable}")
    title.stylize("bold")
    if progress.outcome:
        title.append(f"  {progress.outcome}", style="bold " + OUTCOME_STYLE.get(progress.outcome, ""))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    grid.add_row("steps", _step_text(progress))
    split = f"canary {progress.canary_weight:.0%}, shadow {progress.shadow_fraction:.0%}"
    grid.add_row("step", f"{progress.step or '-'} ({split})")
    grid.add_row("window", _window(progress, now))
    if progress.phase == "window" and progress.window_s:
        elapsed = progress.window_s - (progress.time_left(now) or 0.0)
        grid.add_row("", ProgressBar(total=progress.window_s, completed=elapsed, width=40))
    grid.add_row("samples", _samples(progress))
    verdict = Text(progress.verdict or "-", style=VERDICT_STYLE.get(progress.verdict, ""))
    if progress.reasons:
        verdict.append(": " + "; ".join(progress.reasons))
    grid.add_row("verdict", verdict)
    if progress.note:
        grid.add_row("note", progress.note)
    return Group(title, grid)


def line(progress: Progress, now: float | None = None) -> str:
    """One plain line for a pipe or a log file."""
    now = time.time() if now is None else now
    index = progress.plan.index(progress.step) + 1 if progress.step in progress.plan else "-"
    parts = [
        f"{progress.model} v{progress.canary} vs v{progress.stable}",
        f"step {index}/{len(progress.plan)} {progress.step or '-'}",
        f"window {_window(progress, now)}",
        _samples(progress),
        f"verdict {progress.verdict or '-'}",
    ]
    if progress.reasons:
        parts[-1] += f" ({'; '.join(progress.reasons)})"
    if progress.outcome:
        parts.append(f"outcome {progress.outcome}")
    if progress.note:
        parts.append(progress.note)
    return " | ".join(parts)
