"""A generation is in the audit trail if and only if it was written, even when a writer dies between
the two writes (the release record, then models.config) or between the config and the audit."""

from __future__ import annotations

import pytest

from release import audit, config_store, operations
from release import state as sm
from release.metadata import open_store
from tests.release.version_dirs import fake_version


@pytest.fixture
def target(tmp_path):
    for version in (1, 2):
        fake_version(tmp_path / "serving" / "m", version)
    store = open_store(str(tmp_path / "metadata.sqlite"))
    return operations.Target(
        str(tmp_path / "serving"), "m", audit=audit.Audit(store, str(tmp_path / "releases"), actor="pipeline")
    )


def kinds(target) -> list[tuple[int, str]]:
    return [(e["generation"], e["kind"]) for e in audit.history(target.audit.store, target.model)]


def test_a_crash_before_the_config_write_leaves_no_change_and_no_history(target, monkeypatch):
    operations.commit(target, lambda s: sm.add_candidate(s, 1), "phase1", "first push")
    before = target.read()
    real_write = config_store.write_text_atomic

    def crash_on_the_config(path, text):
        if path.endswith("models.config"):
            raise KeyboardInterrupt("killed between the record and the config")  # what SIGKILL leaves
        real_write(path, text)

    monkeypatch.setattr(config_store, "write_text_atomic", crash_on_the_config)
    with pytest.raises(KeyboardInterrupt):
        operations.commit(target, lambda s: sm.add_candidate(s, 2), "phase1", "second push")
    monkeypatch.setattr(config_store, "write_text_atomic", real_write)
    operations.reconcile(target)  # what the next command does first
    assert target.read().state == before.state  # the record written ahead is put back
    assert kinds(target) == [(1, "phase1")]
    operations.commit(target, lambda s: sm.add_candidate(s, 2), "phase1", "second push, again")
    assert kinds(target) == [(1, "phase1"), (2, "phase1")]


def test_a_crash_after_the_config_write_is_recorded_by_the_next_writer_once(target, monkeypatch):
    operations.commit(target, lambda s: sm.add_candidate(s, 1), "phase1", "first push")
    real_record = operations._record

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed before the audit")

    monkeypatch.setattr(operations, "_record", crash)
    with pytest.raises(KeyboardInterrupt):
        operations.commit(target, lambda s: sm.label_candidate(s, 1, {1}), "first-stable", "loaded")
    monkeypatch.setattr(operations, "_record", real_record)
    assert target.read().state.stable == 1  # it was applied ...
    assert kinds(target) == [(1, "phase1")]  # ... but not yet recorded
    other = operations.Target(
        target.serving_root, "m", audit=audit.Audit(target.audit.store, "/tmp", "controller")
    )
    operations.commit(other, lambda s: sm.add_candidate(s, 2), "phase1", "second push")
    history = audit.history(target.audit.store, "m")
    assert [(e["generation"], e["kind"], e["actor"]) for e in history] == [
        (1, "phase1", "pipeline"),
        (2, "first-stable", "pipeline"),  # recorded as the actor who made it, with its own reason
        (3, "phase1", "controller"),
    ]
    assert history[1]["reason"] == "loaded"
    operations.reconcile(other)
    assert len(audit.history(target.audit.store, "m")) == 3  # never twice


def test_a_writer_without_an_audit_keeps_the_pending_transition_for_one_that_has_it(target, monkeypatch):
    operations.commit(target, lambda s: sm.add_candidate(s, 1), "phase1", "first push")
    monkeypatch.setattr(operations, "_record", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        operations.commit(target, lambda s: sm.label_candidate(s, 1, {1}), "first-stable", "loaded")
    monkeypatch.undo()
    unaudited = operations.Target(target.serving_root, "m")
    operations.commit(unaudited, lambda s: sm.add_candidate(s, 2), "phase1", "no audit here")
    operations.reconcile(target)
    assert (2, "first-stable") in kinds(target)
