"""Release operations that combine the state machine, the config files, the server and the audit.

Each operation writes one or more config generations, waits where TF Serving's rules say it must
(a version must be AVAILABLE before a label points at it; labels must be applied before the next
step), and records every generation in MLMD when an ``Audit`` is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from release import state as sm
from release.audit import Audit
from release.config_store import Snapshot, Update, read_release, update_release, verify_version
from release.server_client import ServerClient

log = logging.getLogger(__name__)


@dataclass
class Target:
    """One model in one serving root, optionally with the server that polls its config."""

    serving_root: str
    model: str
    base_path: str | None = None
    server: ServerClient | None = None
    load_timeout_s: float = 300.0
    label_timeout_s: float = 60.0
    audit: Audit | None = None

    def read(self) -> Snapshot:
        return read_release(self.serving_root, self.model, self.base_path)

    def require_server(self, why: str) -> ServerClient:
        if self.server is None:
            raise sm.ReleaseError(f"model {self.model!r}: {why} needs a model server address (--server)")
        return self.server

    def available(self) -> set[int]:
        return self.require_server("confirming AVAILABLE versions").available(self.model)


def commit(
    target: Target,
    change: Callable[[sm.ReleaseState], sm.ReleaseState],
    kind: str,
    reason: str,
    metrics: dict | None = None,
    analysis: dict | None = None,
) -> Update:
    update = update_release(target.serving_root, target.model, change, target.base_path)
    if update.changed:
        state = update.after.state
        log.info(
            "%s: generation %d (%s): versions %s, labels %s",
            target.model,
            state.generation,
            kind,
            list(state.versions),
            state.label_map,
        )
        if target.audit is not None:
            target.audit.record(
                kind=kind,
                reason=reason,
                before=update.before,
                after=update.after,
                metrics=metrics,
                analysis=analysis,
            )
    return update


def wait_applied(target: Target, update: Update) -> None:
    """Wait until the server resolves every label as the new config says."""
    if target.server is not None and update.changed:
        target.server.wait_labels(target.model, update.after.state.label_map, target.label_timeout_s)


def publish(target: Target, version: int, reason: str = "pushed by the pipeline") -> list[Update]:
    """Phase 1, then (if a server is reachable) wait until AVAILABLE and phase 2.

    If the server is unreachable, phase 1 stays and the rollout controller finishes phase 2. If the
    version fails to load or the wait times out, phase 1 is undone so the serving state is as before.
    """
    verify_version(target.read().base_path, version)
    first = commit(target, lambda s: sm.add_candidate(s, version), "phase1", reason)
    if first.after.state.candidate != version and first.after.state.canary != version:
        log.info(
            "%s: version %s is not released again (already handled or rolled back)", target.model, version
        )
        return [first]
    if target.server is None or not target.server.reachable():
        log.warning(
            "%s: no model server reachable; version %s is listed (phase 1) and the rollout controller "
            "must label it (phase 2)",
            target.model,
            version,
        )
        return [first]
    try:
        return [first, finish_phase2(target, version, reason)]
    except Exception as e:
        if first.changed:
            commit(target, lambda s: sm.withdraw(s, version), "phase1-undone", f"phase 2 failed: {e}")
        raise


def finish_phase2(target: Target, version: int | None = None, reason: str = "version loaded") -> Update:
    server = target.require_server("phase 2")
    state = target.read().state
    version = version if version is not None else state.candidate
    if version is None:
        raise sm.ReleaseError(f"model {target.model!r}: no version is waiting for phase 2")
    log.info("%s: waiting until version %s is AVAILABLE", target.model, version)
    server.wait_available(target.model, version, target.load_timeout_s)
    kind = "first-stable" if state.stable is None else "canary-start"
    update = commit(
        target, lambda s: sm.label_candidate(s, version, server.available(target.model)), kind, reason
    )
    wait_applied(target, update)
    return update


def promote(
    target: Target,
    reason: str,
    retain_seconds: float = 3600.0,
    metrics: dict | None = None,
    analysis: dict | None = None,
) -> Update:
    available = target.available()
    update = commit(
        target,
        lambda s: sm.promote(s, available, time.time(), retain_seconds),
        "promote",
        reason,
        metrics,
        analysis,
    )
    wait_applied(target, update)
    return update


def rollback(
    target: Target, reason: str, metrics: dict | None = None, analysis: dict | None = None
) -> list[Update]:
    """Roll back; if the old stable was retired, list and load it again first (never re-push)."""
    available = target.available()
    updates = []
    try:
        update = commit(target, lambda s: sm.rollback(s, available), "rollback", reason, metrics, analysis)
    except sm.NeedsReload as needed:
        snapshot = target.read()
        verify_version(snapshot.base_path, needed.version)
        updates.append(
            commit(target, sm.prepare_reload, "reload", f"reload version {needed.version} to roll back")
        )
        target.require_server("reloading").wait_available(target.model, needed.version, target.load_timeout_s)
        available = target.available()
        update = commit(target, lambda s: sm.rollback(s, available), "rollback", reason, metrics, analysis)
    wait_applied(target, update)
    unload = commit(target, sm.unload_rejected, "unload", "rolled-back version unloads")
    wait_applied(target, unload)
    return [*updates, update, unload]


def retire(target: Target, now: float | None = None) -> Update:
    update = commit(
        target,
        lambda s: sm.retire(s, time.time() if now is None else now),
        "retire",
        "rollback window passed",
    )
    wait_applied(target, update)
    return update


def set_traffic(
    target: Target,
    canary_weight: float,
    shadow_fraction: float,
    step: str,
    reason: str,
    verdict: str = "",
    metrics: dict | None = None,
    analysis: dict | None = None,
    hold_reason: str = "",
) -> Update:
    return commit(
        target,
        lambda s: sm.set_traffic(s, canary_weight, shadow_fraction, step, verdict, hold_reason),
        "traffic",
        reason,
        metrics,
        analysis,
    )
