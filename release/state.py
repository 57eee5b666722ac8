"""The release state machine of one model, as pure functions over an immutable state.

TF Serving only accepts a version label on a version that is already AVAILABLE, and it validates
labels before it loads new versions. So a release takes two config generations: phase 1 lists the
new version with labels unchanged; phase 2, once the server reports it AVAILABLE, points a label at
it. Every function here returns a new state and never does I/O, so each rule is testable alone.

Labels used: ``stable`` (what clients get), ``canary`` (the version on trial; equal to ``stable``
when nothing is on trial) and ``previous`` (the old stable kept loaded for the rollback window).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tfx_canary.errors import CanaryError

STABLE = "stable"
CANARY = "canary"
PREVIOUS = "previous"


class ReleaseError(CanaryError, ValueError):
    """A transition that TF Serving's label rules or the release rules forbid."""


class NeedsReload(ReleaseError):
    """Rolling back needs a version that is no longer loaded: list it again and wait until AVAILABLE."""

    def __init__(self, model: str, version: int):
        super().__init__(
            f"model {model!r}: version {version} was retired; it must be listed and loaded again "
            "before `stable` can move back to it"
        )
        self.version = version


@dataclass(frozen=True)
class ReleaseState:
    """What the serving config and the release record say about one model."""

    model: str
    versions: tuple[int, ...] = ()  # model_version_policy.specific, ascending
    labels: tuple[tuple[str, int], ...] = ()  # version_labels, sorted by name
    generation: int = 0  # bumped by every written change
    retain_until: float | None = None  # when the `previous` version may retire
    rollback_to: int | None = None  # the last stable before the current one, even once retired
    rejected: tuple[int, ...] = ()  # versions rolled back: never released again automatically
    canary_weight: float = 0.0  # share of routed traffic sent to `canary`
    shadow_fraction: float = 0.0  # share of stable traffic mirrored to `canary`, answers discarded
    step: str = ""  # the rollout step in force, e.g. "25%"
    verdict: str = ""  # the last analysis verdict: pass, fail, inconclusive
    hold_reason: str = ""  # why the step in force is held (e.g. the analysis could not be read)

    @property
    def label_map(self) -> dict[str, int]:
        return dict(self.labels)

    @property
    def stable(self) -> int | None:
        return self.label_map.get(STABLE)

    @property
    def canary(self) -> int | None:
        return self.label_map.get(CANARY)

    @property
    def previous(self) -> int | None:
        return self.label_map.get(PREVIOUS)

    @property
    def in_flight(self) -> int | None:
        """The version on trial: labelled `canary` but not (yet) `stable`."""
        canary = self.canary
        return canary if canary is not None and canary != self.stable else None

    @property
    def candidate(self) -> int | None:
        """A version listed by phase 1 that no label points at yet (phase 2 outstanding)."""
        labelled = set(self.label_map.values())
        waiting = [
            v for v in self.versions if v not in labelled and v != self.rollback_to and v not in self.rejected
        ]
        return max(waiting) if waiting else None


def make_state(
    model: str, versions: Iterable[int] = (), labels: Mapping[str, int] | None = None, **kw
) -> ReleaseState:
    """Build a state with normalised (sorted, de-duplicated) versions and labels."""
    return ReleaseState(model=model, versions=_versions(versions), labels=_labels(labels or {}), **kw)


def _versions(versions: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted({int(v) for v in versions}))


def _labels(labels: Mapping[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(k), int(v)) for k, v in labels.items()))


def _with(state: ReleaseState, **changes) -> ReleaseState:
    if "versions" in changes:
        changes["versions"] = _versions(changes["versions"])
    if "labels" in changes:
        changes["labels"] = _labels(changes["labels"])
    if "rejected" in changes:
        changes["rejected"] = _versions(changes["rejected"])
    return dataclasses.replace(state, **changes)


def _require_available(state: ReleaseState, version: int, available: Iterable[int], why: str) -> None:
    if version not in set(available):
        raise ReleaseError(
            f"model {state.model!r}: cannot {why}: version {version} is not confirmed AVAILABLE "
            "(TF Serving rejects a label on a version that is not loaded)"
        )


def add_candidate(state: ReleaseState, version: int) -> ReleaseState:
    """Phase 1: list a newly pushed version; labels stay as they are.

    Re-running with a version already listed, or one rolled back before, changes nothing. A newer
    version replaces one still waiting for phase 2; a canary on trial blocks a new release.
    """
    version = int(version)
    if version in state.versions or version in state.rejected:
        return state
    if version <= 0:
        raise ReleaseError(f"model {state.model!r}: version must be a positive integer, got {version}")
    if state.stable is not None and version < state.stable:
        raise ReleaseError(
            f"model {state.model!r}: version {version} is older than stable version {state.stable}; "
            "refusing to release it (use `rollback` to go back)"
        )
    if state.in_flight is not None:
        raise ReleaseError(
            f"model {state.model!r}: version {state.in_flight} is still being released; promote or roll it "
            f"back before releasing version {version}"
        )
    pending = state.candidate
    if pending is not None:
        # Listed but never labelled (phase 2 outstanding, e.g. no server reachable from the pipeline):
        # it has had no labelled traffic, so a newer push replaces it; an older one never does.
        if version < pending:
            return state
        return _with(state, versions=_versions(v for v in (*state.versions, version) if v != pending))
    return _with(state, versions=(*state.versions, version))


def label_candidate(state: ReleaseState, version: int, available: Iterable[int]) -> ReleaseState:
    """Phase 2: the first version becomes `stable` directly; a later one becomes `canary`."""
    version = int(version)
    if version == state.canary:
        return state
    if version not in state.versions:
        raise ReleaseError(f"model {state.model!r}: version {version} is not listed; run phase 1 first")
    _require_available(state, version, available, "label it")
    labels = state.label_map
    if state.stable is None:
        return _with(state, labels={STABLE: version, CANARY: version})
    if state.in_flight is not None:
        raise ReleaseError(f"model {state.model!r}: version {state.in_flight} is already the canary")
    labels[CANARY] = version
    return _with(
        state, labels=labels, canary_weight=0.0, shadow_fraction=0.0, step="", verdict="", hold_reason=""
    )


def promote(state: ReleaseState, available: Iterable[int], now: float, retain_seconds: float) -> ReleaseState:
    """Move `stable` to the canary; keep the old stable loaded as `previous` for the rollback window."""
    new = state.in_flight
    if new is None:
        raise ReleaseError(f"model {state.model!r}: no canary to promote")
    old = state.stable
    _require_available(state, new, available, "promote it")
    _require_available(state, old, available, "keep it as `previous`")
    return _with(
        state,
        versions=(new, old),  # an older `previous` retires early: one rollback target at a time
        labels={STABLE: new, CANARY: new, PREVIOUS: old},
        retain_until=now + retain_seconds,
        rollback_to=old,
        canary_weight=0.0,
        shadow_fraction=0.0,
        step="promoted",
        hold_reason="",
    )


def retire(state: ReleaseState, now: float) -> ReleaseState:
    """Unload the `previous` version once its rollback window has passed."""
    old = state.previous
    if old is None or state.retain_until is None or now < state.retain_until:
        return state
    labels = state.label_map
    del labels[PREVIOUS]
    return _with(
        state,
        versions=[v for v in state.versions if v != old],
        labels=labels,
        retain_until=None,
    )


def prepare_reload(state: ReleaseState) -> ReleaseState:
    """List the retired rollback target again (phase 1 of a late rollback); labels unchanged."""
    target = state.rollback_to
    if target is None:
        raise ReleaseError(f"model {state.model!r}: nothing to roll back to")
    return _with(state, versions=(*state.versions, target))


def rollback(state: ReleaseState, available: Iterable[int]) -> ReleaseState:
    """Undo the newest release step. Labels only ever move to versions confirmed AVAILABLE.

    - a canary on trial: `canary` flips back to stable;
    - a candidate waiting for phase 2: it is unlisted;

    The rolled-back version stays listed until ``unload_rejected``, so the server moves the labels
    away from it before it unloads and no in-flight request meets a missing version.
    - after a promotion: `stable` moves back to the old version, instantly while it is retained,
      otherwise NeedsReload asks the caller to list and load it first (never re-push).
    """
    labels = state.label_map
    bad = state.in_flight
    if bad is not None:
        _require_available(state, state.stable, available, "flip `canary` back to stable")
        labels[CANARY] = state.stable
        return _with(
            state,
            labels=labels,
            rejected=(*state.rejected, bad),
            canary_weight=0.0,
            shadow_fraction=0.0,
            step="rolled back",
            hold_reason="",
        )
    pending = state.candidate
    if pending is not None:
        return _with(
            state, versions=[v for v in state.versions if v != pending], rejected=(*state.rejected, pending)
        )
    target = state.rollback_to
    bad = state.stable
    if target is None or bad is None:
        raise ReleaseError(f"model {state.model!r}: nothing to roll back (no earlier stable version)")
    if target not in state.versions:
        raise NeedsReload(state.model, target)
    _require_available(state, target, available, "move `stable` back to it")
    return _with(
        state,
        labels={STABLE: target, CANARY: target},
        retain_until=None,
        rollback_to=None,
        rejected=(*state.rejected, bad),
        canary_weight=0.0,
        shadow_fraction=0.0,
        step="rolled back",
        hold_reason="",
    )


def unload_rejected(state: ReleaseState) -> ReleaseState:
    """Unlist rolled-back versions once no label points at them (the step after ``rollback``)."""
    labelled = set(state.label_map.values())
    keep = [v for v in state.versions if v not in state.rejected or v in labelled]
    return state if len(keep) == len(state.versions) else _with(state, versions=keep)


def set_traffic(
    state: ReleaseState,
    canary_weight: float,
    shadow_fraction: float = 0.0,
    step: str = "",
    verdict: str = "",
    hold_reason: str = "",
) -> ReleaseState:
    """Record the traffic split the router applies; only a canary on trial may receive traffic."""
    for name, value in (("canary weight", canary_weight), ("shadow fraction", shadow_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ReleaseError(f"model {state.model!r}: {name} must be within [0, 1], got {value}")
    if (canary_weight or shadow_fraction) and state.in_flight is None:
        raise ReleaseError(f"model {state.model!r}: no canary on trial to send traffic to")
    return _with(
        state,
        canary_weight=float(canary_weight),
        shadow_fraction=float(shadow_fraction),
        step=step,
        verdict=verdict,
        hold_reason=hold_reason,
    )


def withdraw(state: ReleaseState, version: int) -> ReleaseState:
    """Undo phase 1 after a failed load: unlist an unlabelled version without rejecting it."""
    if version not in state.versions or version in state.label_map.values() or version == state.rollback_to:
        return state
    return _with(state, versions=[v for v in state.versions if v != version])
