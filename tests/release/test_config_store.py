"""models.config emission: own entry only, locked, atomic, clear errors, version checks."""

import json
import multiprocessing
import os
import threading

import pytest

from release import config_store as cs
from release.state import add_candidate, label_candidate, set_traffic


def release_first(root, model, version=1):
    cs.update_release(str(root), model, lambda s: add_candidate(s, version))
    return cs.update_release(str(root), model, lambda s: label_candidate(s, version, available={version}))


def test_first_release_writes_config_and_support_files(tmp_path):
    update = release_first(tmp_path, "taxi")
    text = (tmp_path / "models.config").read_text()
    config = cs.parse_config(text, "models.config")
    [entry] = config.model_config_list.config
    assert entry.name == "taxi" and entry.base_path == str(tmp_path / "taxi")
    assert entry.model_platform == "tensorflow"
    assert list(entry.model_version_policy.specific.versions) == [1]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 1}
    assert update.after.state.generation == 2 and update.after.config_text == text
    assert 'path: "/monitoring/prometheus/metrics"' in (tmp_path / "monitoring.config").read_text()
    assert "max_batch_size { value: 128 }" in (tmp_path / "batching_parameters.txt").read_text()
    # the release record is in the same file (one write a step), as a comment TF Serving ignores
    assert cs.parse_records(text, "models.config")["taxi"]["generation"] == 2
    assert not (tmp_path / ".release").exists()
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert leftovers == []


def test_a_noop_change_writes_nothing(tmp_path):
    release_first(tmp_path, "taxi")
    before = (tmp_path / "models.config").stat().st_mtime_ns
    update = cs.update_release(str(tmp_path), "taxi", lambda s: add_candidate(s, 1))
    assert not update.changed
    assert (tmp_path / "models.config").stat().st_mtime_ns == before


def test_two_models_keep_each_others_entries(tmp_path):
    release_first(tmp_path, "tips", 10)
    release_first(tmp_path, "fare", 20)
    cs.update_release(str(tmp_path), "tips", lambda s: add_candidate(s, 11))
    config = cs.parse_config((tmp_path / "models.config").read_text(), "x")
    versions = {
        e.name: list(e.model_version_policy.specific.versions) for e in config.model_config_list.config
    }
    assert versions == {"tips": [10, 11], "fare": [20]}


def test_hand_written_entries_and_fields_survive(tmp_path):
    (tmp_path / "models.config").write_text(
        'model_config_list { config { name: "other" base_path: "/srv/other" model_platform: "tensorflow" '
        "logging_config { sampling_config { sampling_rate: 0.5 } } } }"
    )
    release_first(tmp_path, "taxi")
    config = cs.parse_config((tmp_path / "models.config").read_text(), "x")
    other = cs.find_entry(config, "other")
    assert other.logging_config.sampling_config.sampling_rate == 0.5
    assert cs.find_entry(config, "taxi") is not None


def _bump_many(root: str, model: str, times: int, writer: str = "") -> None:
    """Each call is a distinct change (an identical one would rightly be a no-op)."""
    for i in range(times):
        cs.update_release(
            root, model, lambda s, i=i: set_traffic(s, 0.0, step=f"{model}-{i}", verdict=writer)
        )


def test_concurrent_writers_lose_no_update(tmp_path):
    root = str(tmp_path)
    models = [f"m{i}" for i in range(6)]
    for model in models:
        release_first(tmp_path, model)
    threads = [threading.Thread(target=_bump_many, args=(root, m, 5)) for m in models[:3]]
    processes = [
        multiprocessing.get_context("fork").Process(target=_bump_many, args=(root, m, 5)) for m in models[3:]
    ]
    for worker in threads + processes:
        worker.start()
    for worker in threads + processes:
        worker.join(60)
    assert all(p.exitcode == 0 for p in processes)
    config = cs.parse_config((tmp_path / "models.config").read_text(), "x")
    assert sorted(e.name for e in config.model_config_list.config) == models
    for model in models:
        state = cs.read_release(root, model).state
        assert state.generation == 2 + 5, model
        assert state.step == f"{model}-4"


def test_concurrent_writers_on_one_model_serialise(tmp_path):
    release_first(tmp_path, "m")
    threads = [threading.Thread(target=_bump_many, args=(str(tmp_path), "m", 10, f"w{i}")) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert cs.read_release(str(tmp_path), "m").state.generation == 2 + 40


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "model_config_list {\n  config {\n    nmae: 'x'\n  }\n}\n",
            r"models\.config:3:5: .*no field named \"nmae\"",
        ),
        ("model_config_list { config { name: 'a' base_path: 'rel/a' } }", "must be absolute"),
        (
            "model_config_list { config { name: 'a' base_path: '/a' } config { name: 'a' base_path: '/b' } }",
            "listed more than once",
        ),
        (
            "model_config_list { config { name: 'a' base_path: '/a' "
            "model_version_policy { specific { versions: 1 } }"
            " version_labels { key: 'stable' value: 2 } } }",
            "label 'stable' points at version 2, which is not listed",
        ),
    ],
)
def test_nonsense_config_fails_clearly_and_is_left_as_it_was(tmp_path, text, message):
    (tmp_path / "models.config").write_text(text)
    with pytest.raises(cs.ConfigError, match=message):
        cs.update_release(str(tmp_path), "taxi", lambda s: add_candidate(s, 1))
    assert (tmp_path / "models.config").read_text() == text
    assert not (tmp_path / ".release").exists()


def test_a_failed_change_writes_nothing(tmp_path):
    release_first(tmp_path, "taxi")
    before = (tmp_path / "models.config").read_text()

    def broken(state):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cs.update_release(str(tmp_path), "taxi", broken)
    assert (tmp_path / "models.config").read_text() == before


# ---- version directories ----

MAGIC = bytes.fromhex("57fb808b247547db")


def fake_version(base, version, shards=1, graph=b"\x0a\x03abc", index=b"idx" + MAGIC):
    directory = base / str(version)
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(graph)
    (directory / "variables" / "variables.index").write_bytes(index)
    for i in range(shards):
        (directory / "variables" / f"variables.data-{i:05d}-of-{shards:05d}").write_bytes(b"d")
    return directory


def test_verify_accepts_a_complete_version(tmp_path):
    fake_version(tmp_path, 5, shards=2)
    assert cs.verify_version(str(tmp_path), 5) == str(tmp_path / "5")


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "saved_model.pb").unlink(), "saved_model.pb is missing or empty"),
        (lambda d: (d / "saved_model.pb").write_bytes(b"\x0a\xff\x01ab"), "not a valid protobuf"),
        (lambda d: (d / "variables" / "variables.index").write_bytes(b"truncated"), "missing or truncated"),
        (lambda d: (d / "variables" / "variables.data-00001-of-00002").unlink(), "shards are missing"),
    ],
)
def test_verify_rejects_a_corrupt_version(tmp_path, damage, message):
    damage(fake_version(tmp_path, 5, shards=2))
    with pytest.raises(cs.CorruptVersion, match=message):
        cs.verify_version(str(tmp_path), 5)


def test_verify_rejects_a_missing_version(tmp_path):
    with pytest.raises(cs.CorruptVersion, match="does not exist"):
        cs.verify_version(str(tmp_path), 9)


def test_a_record_from_an_older_home_beside_the_config_is_read_and_moved_in(tmp_path):
    cs.update_release(str(tmp_path), "taxi", lambda s: add_candidate(s, 1))
    text = (tmp_path / "models.config").read_text()
    (tmp_path / "models.config").write_text(text.split("# Release records")[0])  # as older homes wrote it
    (tmp_path / ".release").mkdir()
    (tmp_path / ".release" / "taxi.json").write_text(json.dumps({"generation": 7, "rejected": [3]}))
    state = cs.read_release(str(tmp_path), "taxi").state
    assert (state.generation, state.rejected) == (7, (3,))
    update = cs.update_release(str(tmp_path), "taxi", lambda s: label_candidate(s, 1, available={1}))
    assert update.after.state.generation == 8
    records = cs.parse_records((tmp_path / "models.config").read_text(), "models.config")
    assert records["taxi"]["rejected"] == [3]


def test_a_record_line_that_is_not_json_names_the_file_and_line(tmp_path):
    release_first(tmp_path, "taxi")
    text = (tmp_path / "models.config").read_text()
    (tmp_path / "models.config").write_text(text.replace('"generation": 2', '"generation": 2,,'))
    with pytest.raises(
        cs.ConfigError, match=r"models.config:\d+: the release record of taxi is not valid JSON"
    ):
        cs.read_release(str(tmp_path), "taxi")
