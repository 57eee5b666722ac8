"""ServingConfigGen's executor on real files, and the component's spec and type names."""

import dataclasses
import json
import socket

import pytest
from tfx.types import standard_artifacts

from components.serving_config.component import ServingConfigGen
from components.serving_config.executor import Executor, _version_to_release
from components.types import ServingConfig
from release import config_store as cs
from release import state as sm
from tests.release.version_dirs import fake_version


def pushed_model(tmp_path, version: int | None, artifact_id: int = 7, already: int | None = None):
    artifact = standard_artifacts.PushedModel()
    artifact.uri = str(tmp_path / "pushed")
    artifact.id = artifact_id
    artifact.set_int_custom_property("pushed", 1 if version else 0)
    if version:
        artifact.set_string_custom_property("pushed_version", str(version))
    if already:  # what SafePusher records when the model is already in the serving directory
        artifact.set_int_custom_property("already_pushed_version", already)
    return artifact


def run(tmp_path, version, server_address="", model="taxi", already=None):
    output = ServingConfig()
    output.uri = str(tmp_path / "out")
    outputs = {"serving_config": [output]}
    Executor().Do(
        {"pushed_model": [pushed_model(tmp_path, version, already=already)]},
        outputs,
        {
            "serving_root": str(tmp_path / "serving"),
            "model_name": model,
            "server_address": server_address,
            "load_timeout_seconds": 5,
        },
    )
    return outputs["serving_config"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_without_a_server_only_phase1_is_emitted(tmp_path):
    fake_version(tmp_path / "serving" / "taxi", 100)
    [artifact] = run(tmp_path, 100)
    config = cs.parse_config((tmp_path / "serving" / "models.config").read_text(), "x")
    entry = cs.find_entry(config, "taxi")
    assert list(entry.model_version_policy.specific.versions) == [100]
    assert dict(entry.version_labels) == {}
    assert artifact.get_string_custom_property("kind") == "phase1"
    assert artifact.get_int_custom_property("phase2_pending") == 1
    assert artifact.get_int_custom_property("pushed_model_id") == 7
    assert artifact.get_int_custom_property("generation") == 1
    assert json.loads(artifact.get_string_custom_property("versions")) == [100]
    assert (tmp_path / "out" / "models.config").read_text() == (
        tmp_path / "serving" / "models.config"
    ).read_text()


def test_an_unreachable_server_stops_after_phase1(tmp_path):
    fake_version(tmp_path / "serving" / "taxi", 100)
    [artifact] = run(tmp_path, 100, server_address=f"127.0.0.1:{closed_port()}")
    assert artifact.get_string_custom_property("kind") == "phase1"
    assert cs.read_release(str(tmp_path / "serving"), "taxi").state.candidate == 100


def test_nothing_pushed_changes_nothing(tmp_path):
    fake_version(tmp_path / "serving" / "taxi", 100)
    run(tmp_path, 100)
    before = (tmp_path / "serving" / "models.config").read_text()
    [artifact] = run(tmp_path, None)
    assert artifact.get_string_custom_property("kind") == "unchanged"
    assert (tmp_path / "serving" / "models.config").read_text() == before
    [again] = run(tmp_path, 100)  # a re-run with the same version: nothing new
    assert again.get_string_custom_property("kind") == "unchanged"
    assert again.get_int_custom_property("generation") == 1


def test_a_corrupt_version_fails_clearly_and_writes_nothing(tmp_path):
    directory = fake_version(tmp_path / "serving" / "taxi", 100)
    (directory / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    with pytest.raises(cs.CorruptVersion, match=r"saved_model\.pb is not a valid protobuf"):
        run(tmp_path, 100)
    assert not (tmp_path / "serving" / "models.config").exists()


def test_component_spec_and_type_names(tmp_path):
    from tfx.types import channel

    component = ServingConfigGen(
        pushed_model=channel.Channel(type=standard_artifacts.PushedModel),
        serving_root=str(tmp_path),
        model_name="taxi",
        server_address="127.0.0.1:8501",
    )
    assert ServingConfig.TYPE_NAME == "canary.ServingConfig"
    assert component.outputs["serving_config"].type_name == "canary.ServingConfig"
    assert component.inputs["pushed_model"].type_name == "PushedModel"
    assert component.exec_properties["model_name"] == "taxi"
    assert component.exec_properties["load_timeout_seconds"] == 300
    assert component.executor_spec.executor_class is Executor


def test_a_version_pushed_by_a_killed_run_is_released_by_the_rerun(tmp_path):
    """Killed after the push, before the config step: the re-run's Pusher says "already pushed"."""
    fake_version(tmp_path / "serving" / "taxi", 100)
    [artifact] = run(tmp_path, None, already=100)
    assert artifact.get_string_custom_property("kind") == "phase1"
    assert cs.read_release(str(tmp_path / "serving"), "taxi").state.versions == (100,)


def test_an_already_listed_or_rolled_back_version_is_not_released_again(tmp_path):
    fake_version(tmp_path / "serving" / "taxi", 100)
    run(tmp_path, 100)
    before = (tmp_path / "serving" / "models.config").read_text()
    [artifact] = run(tmp_path, None, already=100)
    assert artifact.get_string_custom_property("kind") == "unchanged"
    assert (tmp_path / "serving" / "models.config").read_text() == before


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (sm.make_state("taxi"), 100),  # never seen: release it
        (sm.make_state("taxi", versions=[100]), None),  # already listed
        (dataclasses.replace(sm.make_state("taxi"), rejected=(100,)), None),  # rolled back before
        (sm.make_state("taxi", versions=[200], labels={"stable": 200}), None),  # older than stable
    ],
)
def test_which_already_pushed_version_is_released(tmp_path, state, expected):
    class Snapshot:
        def __init__(self, state):
            self.state = state

    class Target:
        model = "taxi"

        def read(self):
            return Snapshot(state)

    assert _version_to_release(pushed_model(tmp_path, None, already=100), Target()) == expected
