"""The live view of a rollout: the step in force, time left in its window, samples per side against
the minimum and the verdict so far, refreshed about once a second while the controller runs.

The controller is left as it is: the view wraps its metrics source, so it sees each window open (the
first ``mark()`` after the routers applied a step) and close, and takes the verdict of each window from
``on_window``. In between it reads the running counts itself, from the same source over the same open
window, and judges them with the controller's criteria. Each refresh is written to the progress record
(``release.progress``, for ``status --watch``) and drawn by ``tfx_canary.live``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace

from release import progress as record
from rollout.analysis import Side, analyse
from rollout.controller import Outcome, RolloutController, Step
from rollout.metrics_source import Mark
from tfx_canary.live import LiveOutput

log = logging.getLogger(__name__)


class _WatchedSource:
    """The controller's metrics source, unchanged, telling the view when a window opens or closes."""

    def __init__(self, inner, view: RolloutView) -> None:
        self.inner, self.view = inner, view

    @property
    def supports_history(self) -> bool:
        return self.inner.supports_history

    def mark(self) -> Mark:
        mark = self.inner.mark()
        self.view._marked(mark)
        return mark

    def side(self, *args, **kwargs) -> Side:
        return self.inner.side(*args, **kwargs)

    def applied(self, model: str, generation: int) -> bool:
        self.view._applying()
        return self.inner.applied(model, generation)


class RolloutView:
    """Attaches to a controller (its source and ``on_window``); run the controller inside ``with view:``
    and call ``finish(outcome)`` at the end."""

    def __init__(
        self, controller: RolloutController, releases_dir: str, output: LiveOutput, refresh_s: float = 1.0
    ) -> None:
        self.target, self.plan, self.criteria = controller.target, controller.plan, controller.criteria
        self.inner = controller.source
        controller.source = _WatchedSource(self.inner, self)
        self._chained = controller.on_window
        controller.on_window = self.on_window
        self.releases_dir, self.output, self.refresh_s = releases_dir, output, refresh_s
        self.progress = record.Progress(
            self.target.model,
            plan=[s.name for s in self.plan],
            windows=controller.max_extensions + 1,
            min_requests=self.criteria.min_requests,
        )
        self._since: Mark | None = None
        self._baseline: Side | None = None  # stable's side at 100%, as the controller takes it
        self._baseline_since: Mark | None = None
        self._lock = threading.Lock()
        self._draw_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rollout-view", daemon=True)

    # -- what the controller tells (its own thread) --

    def _applying(self) -> None:
        with self._lock:
            if self.progress.phase != "applying":
                self.progress = replace(self.progress, phase="applying", window=0, verdict="", reasons=[])
                self._since = None

    def _marked(self, mark: Mark) -> None:
        with self._lock:
            if self._since is None:  # the first mark after the split is in force opens the window
                self._since = mark
                self.progress = replace(self.progress, phase="window", window=1, window_started_at=mark.at)
            else:  # a window closes; on_window says whether another one follows
                self.progress = replace(self.progress, phase="judging")

    def on_window(self, step: Step, extension: int, analysis: dict) -> None:
        with self._lock:
            verdict, reasons = analysis["verdict"], list(analysis.get("reasons", []))
            stable, canary = analysis.get("stable", {}), analysis.get("canary", {})
            changes = {
                "verdict": verdict,
                "reasons": reasons,
                "stable_requests": stable.get("requests", 0.0),
                "canary_requests": canary.get("requests", 0.0),
            }
            if verdict == "inconclusive" and extension + 1 < self.progress.windows:
                changes.update(phase="window", window=extension + 2, window_started_at=time.time())
            else:
                done = [*self.progress.done, {"step": step.name, "verdict": verdict, "reasons": reasons}]
                changes.update(phase="judging", done=done)
            self.progress = replace(self.progress, **changes)
        self._draw()
        if self._chained is not None:
            self._chained(step, extension, analysis)

    # -- the view's own thread --

    def __enter__(self) -> RolloutView:
        self._refresh()  # the versions and the step before the first line
        self._draw()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.output.close()

    def finish(self, outcome: Outcome) -> None:
        """The rollout ended: record and show its outcome (the last block stays on the terminal)."""
        with self._lock:
            self.progress = replace(self.progress, phase="done", outcome=outcome.verdict)
        self._draw()

    def _loop(self) -> None:
        while not self._stop.wait(self.refresh_s):
            try:
                self._refresh()
            except Exception as error:  # never stop the rollout for the view's sake
                log.debug("rollout view: refresh failed", exc_info=True)
                with self._lock:
                    self.progress = replace(self.progress, note=f"samples unavailable: {error}")
            self._draw()

    def _step(self) -> Step | None:
        return next((s for s in self.plan if s.name == self.progress.step), None)

    def _refresh(self) -> None:
        state = self.target.read().state
        with self._lock:
            if self.progress.outcome or state.in_flight is None:  # over: keep what the rollout was
                return
            self.progress = replace(
                self.progress,
                stable=state.stable,
                canary=state.in_flight,
                step=state.step or self.progress.step,
                canary_weight=state.canary_weight,
                shadow_fraction=state.shadow_fraction,
                window_s=next((s.duration_s for s in self.plan if s.name == state.step), 0.0),
                note="",
            )
            since, step, phase = self._since, self._step(), self.progress.phase
        if since is None or step is None or phase != "window":
            return
        stable, canary, source = self._running_sides(step, since)
        verdict = analyse(stable, canary, self.criteria)
        with self._lock:
            if self.progress.phase == "window":  # not closed meanwhile by the controller
                self.progress = replace(
                    self.progress,
                    stable_requests=stable.requests,
                    canary_requests=canary.requests,
                    stable_source=source,
                    verdict=verdict["verdict"],
                    reasons=verdict["reasons"],
                )

    def _running_sides(self, step: Step, since: Mark) -> tuple[Side, Side, str]:
        """Both sides over the open window, so far; at 100% stable's is the controller's baseline."""
        model, inner = self.target.model, self.inner
        # a Prometheus source has samples only up to a scrape ago: read up to then, without waiting
        until = Mark(time.time() - getattr(inner, "lag_s", 0.0)) if inner.supports_history else inner.mark()
        canary = inner.side(model, "canary", "shadow" if step.canary_weight == 0 else "live", since, until)
        if step.canary_weight < 1.0:
            stable = inner.side(model, "stable", "live", since, until)
            if stable.requests >= self.criteria.min_requests:
                self._baseline = stable
            return stable, canary, "live"
        if inner.supports_history and self._baseline_since is not since:  # once per window
            self._baseline = inner.side(model, "stable", "live", Mark(since.at - step.duration_s), since)
            self._baseline_since = since
        baseline = self._baseline or Side(0.0, 0.0, None, {})
        return baseline, canary, "baseline"

    def _draw(self) -> None:
        with self._lock:
            progress = replace(self.progress)
        try:
            record.write(self.releases_dir, progress)
        except OSError as error:  # a full disk must not stop the rollout either
            log.warning("could not write the rollout progress: %s", error)
        now = time.time()
        with self._draw_lock:  # the controller's thread and the view's both draw
            self.output.update(record.block(progress, now), record.line(progress, now), progress.headline())


def run_with_view(controller: RolloutController, releases_dir: str, output: LiveOutput) -> Outcome:
    """``controller.run()`` shown live, its outcome recorded in the progress file at the end."""
    with RolloutView(controller, releases_dir, output) as view:
        outcome = controller.run()
        view.finish(outcome)
    return outcome
