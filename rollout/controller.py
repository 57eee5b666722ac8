"""The rollout controller: moves a canary through steps given as data, judging each one by comparing
canary against stable over the same window (``rollout.analysis``), then promotes or rolls back on its
own.

Each step sets the router's split (``canary_weight``) or mirror (``shadow_fraction``), waits until
every router applies it, and reads the routers' metrics over the window (``rollout.metrics_source``:
one router's endpoint, or Prometheus summed over every replica). Verdicts:

- ``fail``: canary error rate, p99 latency or prediction distribution is worse than stable by more
  than the criteria allow -> roll back (the label flips, the canary unloads);
- ``inconclusive``: either side has fewer than ``min_requests`` in the window -> extend the window,
  and after ``max_extensions`` hold the step (never a pass);
- ``pass``: go to the next step; after the last one, promote.

If the metrics cannot be read (after retries) the step is held with the reason in the release record:
never a pass, never a crash, never a weight left behind silently.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from release import operations
from release.state import ReleaseError
from rollout.analysis import Criteria, Side, analyse
from rollout.metrics_source import AnalysisUnavailable, Mark, PrometheusQuery, RouterScrape
from tfx_canary.errors import EXIT_HELD, EXIT_OK, EXIT_REFUSED, UsageError

log = logging.getLogger(__name__)


class PlanError(UsageError, ValueError):
    """A rollout plan that does not parse; the message names the step and the expected form."""


@dataclass(frozen=True)
class Step:
    name: str
    canary_weight: float = 0.0
    shadow_fraction: float = 0.0
    duration_s: float = 60.0


def parse_plan(text: str) -> list[Step]:
    """``shadow=30s,5%=60s,25%,100%`` -> steps; ``shadow`` mirrors all stable traffic to the canary."""
    steps = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, duration = item.partition("=")
        seconds = _seconds(duration) if duration else 60.0
        if name == "shadow" or name.startswith("shadow:"):
            fraction = float(name.split(":")[1].rstrip("%")) / 100 if ":" in name else 1.0
            steps.append(Step(name, 0.0, fraction, seconds))
        elif re.fullmatch(r"\d+(\.\d+)?%", name):
            steps.append(Step(name, float(name[:-1]) / 100, 0.0, seconds))
        else:
            raise PlanError(
                f"rollout step {item!r}: expected 'shadow', 'shadow:N%' or 'N%' with optional '=30s'"
            )
    if not steps:
        raise PlanError("the rollout plan has no steps")
    for step in steps:
        if not 0 <= step.canary_weight <= 1 or not 0 <= step.shadow_fraction <= 1:
            raise PlanError(f"rollout step {step.name!r}: percentages must be within 0-100%")
    return steps


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", text.strip())
    if not match:
        raise PlanError(f"duration {text!r}: expected e.g. 500ms, 30s, 5m or 1h")
    return float(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[match[2]]


@dataclass
class Outcome:
    verdict: str  # promoted, rolled back, inconclusive (held), interrupted
    steps: list[dict]


OUTCOME_EXIT_CODES = {
    "promoted": EXIT_OK,
    "rolled back": EXIT_REFUSED,
    "inconclusive": EXIT_HELD,
    "interrupted": EXIT_HELD,
}


class Interrupted(Exception):
    """The controller was asked to stop (SIGTERM); the step in force stays and a restart resumes it."""


class RolloutController:
    """Runs one canary through the plan, resuming at the step in force after a restart.

    ``source`` is a ``rollout.metrics_source`` source, or a router metrics URL (scraped directly). A
    step's window opens once every router reports the step's release generation (no blind wait); at
    100% no stable traffic is left, so stable's side is the window before the step (Prometheus) or the
    last stable window seen (a scrape). ``stop`` (an Event) ends the run between waits, changing nothing.
    """

    def __init__(
        self,
        target: operations.Target,
        source: RouterScrape | PrometheusQuery | str,
        plan: list[Step],
        criteria: Criteria | None = None,
        max_extensions: int = 3,
        retain_seconds: float = 3600.0,
        apply_timeout_s: float = 60.0,
        stop: threading.Event | None = None,
        on_window: Callable[[Step, int, dict], None] | None = None,
    ):
        self.target = target
        self.source = RouterScrape(source) if isinstance(source, str) else source
        self.plan = plan
        self.criteria = criteria or Criteria()
        self.max_extensions = max_extensions
        self.retain_seconds = retain_seconds
        self.apply_timeout_s = apply_timeout_s
        self.stop = stop or threading.Event()
        self.on_window = on_window
        self._baseline: Side | None = None

    def run(self) -> Outcome:
        target = self.target
        state = target.read().state
        if state.candidate is not None:
            log.info("%s: finishing phase 2 for version %s", target.model, state.candidate)
            operations.finish_phase2(target, state.candidate, "phase 2 finished by the rollout controller")
            state = target.read().state
        if state.in_flight is None:
            raise ReleaseError(f"model {target.model!r}: no canary on trial to roll out")
        names = [step.name for step in self.plan]
        first = names.index(state.step) if state.step in names else 0
        if first:
            log.info(
                "%s: resuming the rollout of version %s at step %s", target.model, state.in_flight, state.step
            )
        else:
            log.info("%s: rolling out version %s over stable %s", target.model, state.in_flight, state.stable)
        results = []
        try:
            for index, step in enumerate(self.plan[first:], start=first):
                outcome = self._step(
                    step, resumed=index == first and state.step == step.name, results=results
                )
                if outcome is not None:
                    return outcome
        except Interrupted:
            log.info("%s: stopped; the step in force stays, a restart resumes it", target.model)
            return Outcome("interrupted", results)
        operations.promote(
            target, f"all {len(self.plan)} steps passed", self.retain_seconds, analysis=results[-1]
        )
        return Outcome("promoted", results)

    def _step(self, step: Step, resumed: bool, results: list[dict]) -> Outcome | None:
        """Run one step; an Outcome if the rollout ends here (rolled back or held)."""
        target = self.target
        try:
            analysis = self._run_step(step, resumed, previous=results[-1] if results else None)
        except AnalysisUnavailable as error:
            log.warning("%s: step %s held: %s", target.model, step.name, error)
            analysis = {"verdict": "inconclusive", "reasons": [f"analysis unavailable: {error}"]}
            results.append({"step": asdict(step), **analysis})
            operations.set_traffic(
                target, step.canary_weight, step.shadow_fraction, step.name, "analysis unavailable, holding",
                verdict="inconclusive", hold_reason=f"analysis unavailable: {error}",
            )  # fmt: skip
            return Outcome("inconclusive", results)
        results.append({"step": asdict(step), **analysis})
        verdict = analysis["verdict"]
        if verdict == "fail":
            log.warning("%s: step %s failed: %s; rolling back", target.model, step.name, analysis["reasons"])
            operations.rollback(
                target, f"step {step.name} failed: " + "; ".join(analysis["reasons"]), analysis=analysis
            )
            return Outcome("rolled back", results)
        if verdict == "inconclusive":
            log.warning("%s: step %s still inconclusive; holding it", target.model, step.name)
            operations.set_traffic(
                target, step.canary_weight, step.shadow_fraction, step.name, "inconclusive, holding",
                verdict="inconclusive", analysis=analysis, hold_reason="; ".join(analysis["reasons"]),
            )  # fmt: skip
            return Outcome("inconclusive", results)
        log.info("%s: step %s passed", target.model, step.name)
        return None

    def _sleep(self, seconds: float) -> None:
        if self.stop.wait(max(0.0, seconds)):
            raise Interrupted

    def _wait_applied(self, generation: int) -> None:
        """Until every router applies ``generation`` (the new split), or AnalysisUnavailable."""
        deadline = time.monotonic() + self.apply_timeout_s
        while not self.source.applied(self.target.model, generation):
            if time.monotonic() > deadline:
                raise AnalysisUnavailable(
                    f"the routers did not report release generation {generation} within "
                    f"{self.apply_timeout_s:.0f} s (is every router reading this serving root?)"
                )
            self._sleep(0.2)

    def _run_step(self, step: Step, resumed: bool, previous: dict | None = None) -> dict:
        target = self.target
        if resumed:  # the step is in force already: take it up again without a second record of it
            generation = target.read().state.generation
        else:  # the passed analysis of the step before is recorded with the move it allowed
            update = operations.set_traffic(
                target, step.canary_weight, step.shadow_fraction, step.name, f"step {step.name}",
                analysis=previous,
            )  # fmt: skip
            generation = update.after.state.generation
        self._wait_applied(generation)
        canary_mode = "shadow" if step.canary_weight == 0 else "live"
        since = self.source.mark()
        baseline = self._baseline
        if step.canary_weight >= 1.0 and self.source.supports_history:
            # no stable traffic is left at 100%: compare with stable in the window before this step
            baseline = self.source.side(
                target.model, "stable", "live", Mark(since.at - step.duration_s), since
            )
        analysis: dict = {}
        for extension in range(self.max_extensions + 1):
            self._sleep(step.duration_s)
            until = self.source.mark()
            stable = self.source.side(target.model, "stable", "live", since, until)
            canary = self.source.side(target.model, "canary", canary_mode, since, until)
            if step.canary_weight >= 1.0 and baseline is not None:
                stable = baseline
            analysis = analyse(stable, canary, self.criteria)
            if stable.requests >= self.criteria.min_requests:
                self._baseline = stable
            log.info(
                "%s: step %s window %d: %s (stable %d req, canary %d req)",
                target.model, step.name, extension + 1, analysis["verdict"], stable.requests, canary.requests,
            )  # fmt: skip
            if self.on_window is not None:
                self.on_window(step, extension, analysis)
            if analysis["verdict"] != "inconclusive":
                break
        return analysis
