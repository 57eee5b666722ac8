"""Transitions in a real MLMD SQLite: lineage, history and "what was stable at time T, and why"."""

import time

from ml_metadata.proto import metadata_store_pb2

from release import audit, config_store
from release import state as sm
from release.metadata import open_store


def transition(tmp_path, auditor, change, kind, reason, **kw):
    update = config_store.update_release(str(tmp_path / "serving"), "taxi", change)
    auditor.record(kind=kind, reason=reason, before=update.before, after=update.after, **kw)
    time.sleep(0.01)  # distinct timestamps
    return update


def test_history_and_stable_at(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    auditor = audit.Audit(store, str(tmp_path / "releases"), actor="alice")
    transition(tmp_path, auditor, lambda s: sm.add_candidate(s, 1), "phase1", "span 1 pushed")
    transition(tmp_path, auditor, lambda s: sm.label_candidate(s, 1, {1}), "first-stable", "v1 loaded")
    t_v1 = time.time()
    time.sleep(0.01)
    transition(tmp_path, auditor, lambda s: sm.add_candidate(s, 2), "phase1", "span 2 pushed")
    transition(tmp_path, auditor, lambda s: sm.label_candidate(s, 2, {1, 2}), "canary-start", "v2 loaded")
    analysis = {"verdict": "pass", "canary": {"requests": 500, "errors": 0}}
    transition(
        tmp_path,
        auditor,
        lambda s: sm.promote(s, {1, 2}, time.time(), 60),
        "promote",
        "canary healthy",
        metrics={"p99_ms": 3.2},
        analysis=analysis,
    )
    t_v2 = time.time()
    time.sleep(0.01)
    transition(tmp_path, auditor, lambda s: sm.rollback(s, {1, 2}), "rollback", "users complained")

    entries = audit.history(store, "taxi")
    assert [e["kind"] for e in entries] == [
        "phase1",
        "first-stable",
        "phase1",
        "canary-start",
        "promote",
        "rollback",
    ]
    assert [e["generation"] for e in entries] == [1, 2, 3, 4, 5, 6]
    assert [e["stable"] for e in entries] == [-1, 1, 1, 1, 2, 1]
    assert all(e["actor"] == "alice" for e in entries)
    promote = entries[4]
    assert promote["analysis"] == analysis and promote["metrics"] == {"p99_ms": 3.2}
    assert promote["labels"] == {"stable": 2, "canary": 2, "previous": 1}
    with open(promote["config_uri"]) as f:
        assert "previous" in f.read()

    at_v1 = audit.stable_at(store, "taxi", t_v1)
    assert at_v1["stable"] == 1 and at_v1["since"]["reason"] == "v1 loaded"
    at_v2 = audit.stable_at(store, "taxi", t_v2)
    assert at_v2["stable"] == 2 and at_v2["since"]["kind"] == "promote"
    assert at_v2["since"]["analysis"]["verdict"] == "pass"
    now = audit.stable_at(store, "taxi", time.time())
    assert now["stable"] == 1 and now["since"]["reason"] == "users complained"
    assert audit.stable_at(store, "taxi", 0) is None


def test_each_transition_links_previous_config_to_new(tmp_path):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    auditor = audit.Audit(store, str(tmp_path / "releases"), actor="ci")
    transition(tmp_path, auditor, lambda s: sm.add_candidate(s, 1), "phase1", "a")
    transition(tmp_path, auditor, lambda s: sm.label_candidate(s, 1, {1}), "first-stable", "b")
    first, second = audit.serving_configs(store, "taxi")
    [execution] = store.get_executions_by_type(audit.TRANSITION_TYPE)[1:]
    events = store.get_events_by_execution_ids([execution.id])
    roles = {(e.artifact_id, e.type) for e in events}
    assert roles == {(first.id, metadata_store_pb2.Event.INPUT), (second.id, metadata_store_pb2.Event.OUTPUT)}
    [context] = store.get_contexts_by_type(audit.RELEASE_CONTEXT_TYPE)
    assert context.name == "taxi"
    assert {a.id for a in store.get_artifacts_by_context(context.id)} == {first.id, second.id}
    assert audit.history(store, "other") == []
