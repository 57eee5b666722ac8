"""``tfx-canary controller``: the release loop that runs next to the model server, unattended.

It watches the serving root and, for every model in ``models.config`` (or those named), does the next
thing the release needs, in this order:

1. unlists versions a rollback rejected and no label points at any more (an interrupted rollback);
2. finishes phase 2 of a version a pipeline listed without reaching a server (Vertex), once the server
   reports it AVAILABLE; a version that failed to load (END) is unlisted again, with the server's error;
3. runs the model's plan for a canary on trial (``RolloutController``), resuming at the step in force
   after a restart, and promotes or rolls back;
4. retires the previous stable once its rollback window has passed.

A lease per model (``release.lease``) lets only one controller act on a model. SIGTERM (``stop()``)
ends it between waits, leaving the step in force for the next start.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from release import config_store, operations
from release import state as sm
from release.lease import Lease
from release.server_client import ServerUnreachable
from release.serving_dir import CONFIG_NAME, join, read_text
from rollout.analysis import Criteria
from rollout.controller import Outcome, RolloutController, Step
from rollout.metrics_source import PrometheusQuery, RouterScrape

log = logging.getLogger(__name__)


@dataclass
class ControllerSettings:
    plan: list[Step]
    criteria: Criteria = field(default_factory=Criteria)
    models: tuple[str, ...] = ()  # empty: every model in models.config
    poll_s: float = 5.0
    hold_retry_s: float = 60.0  # how soon a held (inconclusive) step is tried again
    retain_seconds: float = 3600.0
    max_extensions: int = 3


class ControllerService:
    def __init__(
        self,
        make_target,  # model -> operations.Target (with server and audit)
        source: RouterScrape | PrometheusQuery,
        settings: ControllerSettings,
        holder: str,
    ) -> None:
        self.make_target, self.source, self.settings, self.holder = make_target, source, settings, holder
        self.stop_event = threading.Event()
        self._leases: dict[str, Lease] = {}
        self._held_until: dict[str, float] = {}
        self.outcomes: list[tuple[str, Outcome]] = []

    def models(self, serving_root: str) -> list[str]:
        if self.settings.models:
            return list(self.settings.models)
        path = join(serving_root, CONFIG_NAME)
        config = config_store.parse_config(read_text(path) or "", path)
        return [entry.name for entry in config.model_config_list.config]

    def serve_forever(self, serving_root: str) -> int:
        log.info("controller %s watching %s", self.holder, serving_root)
        try:
            while not self.stop_event.is_set():
                for model in self.models(serving_root):
                    if self.stop_event.is_set():
                        break
                    self.tick(model)
                self.stop_event.wait(self.settings.poll_s)
        finally:
            for lease in self._leases.values():
                lease.release()
        log.info("controller %s stopped", self.holder)
        return 0

    def _lease(self, target: operations.Target) -> bool:
        lease = self._leases.get(target.model)
        if lease is None:
            lease = self._leases[target.model] = Lease(target.serving_root, target.model, self.holder)
        if lease.acquire():
            return True
        log.debug("%s: another controller (%s) holds the lease", target.model, lease.current_holder())
        return False

    def tick(self, model: str) -> str:
        """Do the next thing for ``model``; returns what was done (for logs and tests)."""
        target = self.make_target(model)
        if not self._lease(target):
            return "leased elsewhere"
        state = target.read().state
        try:
            if sm.unload_rejected(state) != state:
                operations.wait_applied(
                    target,
                    operations.commit(target, sm.unload_rejected, "unload", "rolled-back version unloads"),
                )
                return "unloaded rejected"
            if state.candidate is not None:
                return self._phase2(target, state.candidate)
            if state.in_flight is not None:
                if time.monotonic() < self._held_until.get(model, 0.0):
                    return "held"
                return self._roll_out(target)
            if sm.retire(state, time.time()) != state:
                operations.retire(target)
                return "retired"
        except ServerUnreachable as error:
            log.warning("%s: %s; trying again in %.0f s", model, error, self.settings.poll_s)
            return "server unreachable"
        return "nothing to do"

    def _phase2(self, target: operations.Target, version: int) -> str:
        status = target.require_server("phase 2").version_status(target.model).get(version)
        if status is None or status["state"] not in ("AVAILABLE", "END"):
            return "waiting for the server to load the candidate"
        if status["state"] == "END":
            reason = f"version {version} failed to load: {status['error_code']}: {status['error_message']}"
            operations.commit(target, lambda s: sm.withdraw(s, version), "phase1-undone", reason)
            log.error("%s: %s; unlisted it again", target.model, reason)
            return "withdrew the candidate"
        operations.finish_phase2(target, version, "phase 2 finished by the controller")
        return "labelled the candidate"

    def _roll_out(self, target: operations.Target) -> str:
        settings = self.settings
        controller = RolloutController(
            target,
            self.source,
            settings.plan,
            settings.criteria,
            max_extensions=settings.max_extensions,
            retain_seconds=settings.retain_seconds,
            stop=self.stop_event,
        )
        outcome = controller.run()
        self.outcomes.append((target.model, outcome))
        if outcome.verdict == "inconclusive":
            self._held_until[target.model] = time.monotonic() + settings.hold_retry_s
        log.info("%s: rollout %s", target.model, outcome.verdict)
        return outcome.verdict
