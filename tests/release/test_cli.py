"""The release commands, run in-process as a user would type them (no server needed here)."""

import json

from release import audit, config_store
from release import state as sm
from release.metadata import open_store
from tests.release.version_dirs import fake_version
from tfx_canary import cli


def main(*argv: str) -> int:
    """Run like ``tfx-canary`` (errors printed, exit code by the project's convention)."""
    return cli.main(list(argv))


def seed(home, auditor=None):
    serving = str(home / "serving")
    for version in (1, 2):
        fake_version(home / "serving" / "taxi", version)
    for change, kind in (
        (lambda s: sm.add_candidate(s, 1), "phase1"),
        (lambda s: sm.label_candidate(s, 1, {1}), "first-stable"),
        (lambda s: sm.add_candidate(s, 2), "phase1"),
        (lambda s: sm.label_candidate(s, 2, {1, 2}), "canary-start"),
        (lambda s: sm.set_traffic(s, 0.25, step="25%", verdict="inconclusive"), "traffic"),
    ):
        update = config_store.update_release(serving, "taxi", change)
        if auditor:
            auditor.record(kind=kind, reason=f"test {kind}", before=update.before, after=update.after)


def test_status_shows_versions_labels_and_traffic(tmp_path, capsys):
    seed(tmp_path)
    assert main("status", "--home", str(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "labels: canary=2, stable=1" in out
    assert "traffic: canary 25%, shadow 0%; step 25%; verdict inconclusive" in out
    assert main("status", "--home", str(tmp_path), "--model", "taxi", "--json") == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["versions"] == [1, 2] and row["labels"] == {"canary": 2, "stable": 1}


def test_history_lists_every_transition_and_answers_stable_at(tmp_path, capsys):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    seed(tmp_path, audit.Audit(store, str(tmp_path / "releases"), actor="bob"))
    assert main("history", "--home", str(tmp_path), "--model", "taxi") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5 and "first-stable" in lines[1] and "bob" in lines[1] and "weight=25%" in lines[4]
    assert main("history", "--home", str(tmp_path), "--model", "taxi", "--at", "2999-01-01T00:00:00") == 0
    assert "stable = version 1" in capsys.readouterr().out


def test_nonsense_config_is_reported_with_file_and_line(tmp_path, capsys):
    (tmp_path / "serving").mkdir()
    (tmp_path / "serving" / "models.config").write_text("model_config_list {\n  bogus: 1\n}\n")
    assert main("status", "--home", str(tmp_path)) == 2  # bad input: a usage error, nothing done
    err = capsys.readouterr().err
    assert "models.config:2:" in err and "bogus" in err


def test_promote_without_a_server_is_refused_clearly(tmp_path, capsys):
    seed(tmp_path)
    assert main("promote", "--home", str(tmp_path), "--model", "taxi") == 1
    assert "needs a model server address (--server)" in capsys.readouterr().err
    assert config_store.read_release(str(tmp_path / "serving"), "taxi").state.stable == 1


def test_a_hand_edited_config_naming_a_missing_version_is_refused_and_history_unchanged(tmp_path, capsys):
    store = open_store(str(tmp_path / "metadata.sqlite"))
    seed(tmp_path, audit.Audit(store, str(tmp_path / "releases"), actor="bob"))
    config_path = tmp_path / "serving" / "models.config"
    edited = (
        config_path.read_text()
        .replace("value: 1\n", "value: 999\n")
        .replace("versions: 1\n", "versions: 999\n")
    )
    assert "999" in edited
    config_path.write_text(edited)  # an operator points `stable` at a version that is not there
    before = audit.history(store, "taxi")
    for command in ("rollback", "promote", "retire"):
        assert main(command, "--home", str(tmp_path), "--model", "taxi", "--server", "127.0.0.1:9") == 1
        err = capsys.readouterr().err
        assert "lists version 999 (labelled stable)" in err and "does not exist" in err, err
    assert audit.history(store, "taxi") == before  # nothing recorded for a change that did not happen
    assert config_path.read_text() == edited
