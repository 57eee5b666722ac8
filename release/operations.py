"""Release operations that combine the state machine, the config files, the server and the audit.

Each operation writes one or more config generations, waits where TF Serving's rules say it must
(a version must be AVAILABLE before a label points at it; labels must be applied before the next
step), and records every generation in MLMD when an ``Audit`` is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from release import state as sm
from release.audit import Audit
from release.config_store import (
    CorruptVersion,
    Snapshot,
    Update,
    clear_pending,
    read_release,
    recover,
    update_release,
    verify_version,
)
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
    # recorded with every transition this target commits: MLMD ids of input artifacts (the PushedModel
    # a pipeline run released) and properties for the config artifacts
    input_ids: tuple[int, ...] = ()
    extra_properties: dict = field(default_factory=dict)

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
    input_ids: tuple[int, ...] = (),
    extra_properties: dict | None = None,
) -> Update:
    """Apply one change and record it: a generation is in the audit trail if and only if it was written.

    The transition goes into the release record together with the new state (``update_release``), so
    a crash between the config write and the audit is finished by the next commit (``reconcile``).
    """
    reconcile(target)
    journal = None
    if target.audit is not None:
        journal = {
            "kind": kind,
            "reason": reason,
            "actor": target.audit.actor,
            "metrics": metrics or {},
            "analysis": analysis,
            "input_ids": list(input_ids or target.input_ids),
            "extra_properties": extra_properties or target.extra_properties,
        }
    update = update_release(target.serving_root, target.model, change, target.base_path, journal=journal)
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
            _record(target.audit, update.before, update.after, journal)
            clear_pending(target.serving_root, target.model, state.generation)
    return update


def reconcile(target: Target) -> None:
    """Finish a transition a crashed writer left half-done (see ``config_store.update_release``)."""
    pending = recover(target.serving_root, target.model, target.base_path)
    if pending is None or target.audit is None:
        return  # without an audit trail here, the next audited writer records it
    generation = pending.after.state.generation
    log.warning("%s: recording generation %d, written before a crash", target.model, generation)
    _record(target.audit, pending.before, pending.after, pending.journal)
    clear_pending(target.serving_root, target.model, generation)


def _record(audit: Audit, before: Snapshot, after: Snapshot, journal: dict) -> None:
    if audit.recorded(after.state.model, after.state.generation, after.config_sha256):
        return
    inputs = (
        audit.store.get_artifacts_by_id(journal.get("input_ids") or []) if journal.get("input_ids") else []
    )
    audit.record(
        kind=journal["kind"],
        reason=journal["reason"],
        before=before,
        after=after,
        metrics=journal.get("metrics") or None,
        analysis=journal.get("analysis"),
        inputs=inputs,
        actor=journal.get("actor"),
        extra_properties=journal.get("extra_properties") or None,
    )


def check_config(target: Target) -> Snapshot:
    """Refuse to act on a config that does not match the serving directory (a hand edit, a lost copy):
    every listed version must be a complete version folder. Returns the snapshot checked."""
    snapshot = target.read()
    for version in snapshot.state.versions:
        try:
            verify_version(snapshot.base_path, version)
        except CorruptVersion as error:
            named = [label for label, v in snapshot.state.label_map.items() if v == version]
            labels = f" (labelled {', '.join(sorted(named))})" if named else ""
            raise sm.ReleaseError(
                f"model {target.model!r}: {snapshot.config_path} lists version {version}{labels}, but "
                f"{error}; refusing to change the release until the config and the version folders agree"
            ) from None
    return snapshot


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
    state = check_config(target).state
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
    target.require_server("promoting")
    check_config(target)
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
    target.require_server("rolling back")
    check_config(target)
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
    check_config(target)
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
