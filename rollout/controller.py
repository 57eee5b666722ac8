"""The rollout controller: moves a canary through steps given as data, judging each one by comparing
canary against stable over the same window (``rollout.analysis``), then promotes or rolls back on its
own.

Each step sets the router's split (``canary_weight``) or mirror (``shadow_fraction``), lets it take
effect, and reads the router's Prometheus metrics at the start and end of the window. Verdicts:

- ``fail``: canary error rate, p99 latency or prediction distribution is worse than stable by more
  than the criteria allow -> roll back (the label flips, the canary unloads);
- ``inconclusive``: either side has fewer than ``min_requests`` in the window -> extend the window,
  and after ``max_extensions`` hold the step (never a pass);
- ``pass``: go to the next step; after the last one, promote.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import asdict, dataclass

from release import operations
from release.state import ReleaseError
from rollout.analysis import Criteria, Side, analyse, scrape, side
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
    verdict: str  # promoted, rolled back, inconclusive
    steps: list[dict]


OUTCOME_EXIT_CODES = {"promoted": EXIT_OK, "rolled back": EXIT_REFUSED, "inconclusive": EXIT_HELD}


class RolloutController:
    def __init__(
        self,
        target: operations.Target,
        metrics_url: str,
        plan: list[Step],
        criteria: Criteria | None = None,
        max_extensions: int = 3,
        settle_s: float = 0.5,
        retain_seconds: float = 3600.0,
    ):
        self.target = target
        self.metrics_url = metrics_url
        self.plan = plan
        self.criteria = criteria or Criteria()
        self.max_extensions = max_extensions
        self.settle_s = settle_s
        self.retain_seconds = retain_seconds
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
        log.info("%s: rolling out version %s over stable %s", target.model, state.in_flight, state.stable)
        results = []
        for step in self.plan:
            analysis = self._run_step(step)
            results.append({"step": asdict(step), **analysis})
            verdict = analysis["verdict"]
            if verdict == "fail":
                log.warning(
                    "%s: step %s failed: %s; rolling back", target.model, step.name, analysis["reasons"]
                )
                operations.rollback(
                    target, f"step {step.name} failed: " + "; ".join(analysis["reasons"]), analysis=analysis
                )
                return Outcome("rolled back", results)
            if verdict == "inconclusive":
                log.warning("%s: step %s still inconclusive; holding it", target.model, step.name)
                operations.set_traffic(
                    target, step.canary_weight, step.shadow_fraction, step.name, "inconclusive, holding",
                    verdict="inconclusive", analysis=analysis,
                )  # fmt: skip
                return Outcome("inconclusive", results)
            log.info("%s: step %s passed", target.model, step.name)
        operations.promote(
            target, f"all {len(self.plan)} steps passed", self.retain_seconds, analysis=results[-1]
        )
        return Outcome("promoted", results)

    def _run_step(self, step: Step) -> dict:
        target = self.target
        operations.set_traffic(
            target, step.canary_weight, step.shadow_fraction, step.name, f"step {step.name}"
        )
        time.sleep(self.settle_s)  # let the router pick the new split up before the window opens
        canary_mode = "shadow" if step.canary_weight == 0 else "live"
        before = scrape(self.metrics_url)
        analysis: dict = {}
        for extension in range(self.max_extensions + 1):
            time.sleep(step.duration_s)
            after = scrape(self.metrics_url)
            stable = side(before, after, target.model, "stable", "live")
            canary = side(before, after, target.model, "canary", canary_mode)
            if step.canary_weight >= 1.0 and self._baseline is not None:
                stable = (
                    self._baseline
                )  # at 100% no stable traffic is left: compare with the last stable window
            analysis = analyse(stable, canary, self.criteria)
            if stable.requests >= self.criteria.min_requests:
                self._baseline = stable
            log.info(
                "%s: step %s window %d: %s (stable %d req, canary %d req)",
                target.model, step.name, extension + 1, analysis["verdict"], stable.requests, canary.requests,
            )  # fmt: skip
            if analysis["verdict"] != "inconclusive":
                break
        return analysis
