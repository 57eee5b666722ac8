"""A release whose record names a Model Registry model: every label change moves the registry's aliases
(canary start, promote, rollback), through the one ``operations.commit`` every command uses; a registry
that cannot be reached never blocks the release. The registry is ``FakeRegistry`` (Vertex semantics)."""

from __future__ import annotations

import pytest

from release import config_store, operations
from release import state as sm
from release.model_registry import RegistryBinding, register_version
from tests.release.fake_registry import FakeRegistry
from tests.release.version_dirs import fake_version
from tfx_canary.errors import ConfigError

BINDING = RegistryBinding(project="my-project", region="us-central1", model_id="taxi-tips")


@pytest.fixture
def registry():
    fake = FakeRegistry()
    for version in (1, 2, 3):  # pushed to gs:// by the pipeline and uploaded (see publish)
        register_version(fake, BINDING, f"gs://bucket/serving/m/{version}", version)
    return fake


@pytest.fixture
def target(tmp_path, registry):
    for version in (1, 2, 3):
        fake_version(tmp_path / "serving" / "m", version)
    return operations.Target(str(tmp_path / "serving"), "m", registry=registry)


def release(target, version: int, registry: bool = True) -> None:
    def change(state):
        if registry:
            state = sm.with_registry(state, BINDING.to_dict())
        return sm.add_candidate(state, version)

    operations.commit(target, change, "phase1", "pushed")
    operations.commit(target, lambda s: sm.label_candidate(s, version, {1, 2, 3}), "label", "loaded")


def merges(registry) -> list:
    return [r for r in registry.requests if type(r).__name__ == "MergeVersionAliasesRequest"]


def aliases(registry) -> dict[str, set[str]]:
    return {k: v for k, v in registry.aliases(BINDING).items() if v}


def test_the_record_names_the_registry_and_aliases_follow_every_label_change(target, registry):
    release(target, 1)
    assert dict(target.read().state.registry) == BINDING.to_dict()
    assert "taxi-tips" in target.read().config_text  # kept in the release record inside models.config
    assert aliases(registry) == {"1": {"default", "stable"}}

    release(target, 2)  # a canary on trial
    assert aliases(registry) == {"1": {"default", "stable"}, "2": {"canary"}}

    operations.commit(target, lambda s: sm.promote(s, {1, 2, 3}, now=0, retain_seconds=60), "promote", "ok")
    assert aliases(registry) == {"2": {"default", "stable"}}

    release(target, 3)
    operations.commit(target, lambda s: sm.rollback(s, {1, 2, 3}), "rollback", "bad canary")
    assert aliases(registry) == {"2": {"default", "stable"}}
    sent = [(r.name.rsplit("@", 1)[-1], sorted(r.version_aliases)) for r in merges(registry)]
    assert sent[-1] == ("3", ["-canary"])


def test_a_change_that_moves_no_label_sends_nothing(target, registry):
    release(target, 1)
    before = len(merges(registry))
    operations.commit(target, lambda s: sm.set_traffic(s, 0.0, 0.0, "hold"), "traffic", "a new step name")
    assert len(merges(registry)) == before


def test_a_model_without_a_registry_never_calls_one(target, registry):
    release(target, 1, registry=False)
    assert target.read().state.registry == ()
    assert "registry" not in config_store.record_of_model(target.serving_root, "m")
    assert merges(registry) == []


def test_an_unreachable_registry_does_not_block_the_release(target, registry, caplog):
    release(target, 1)

    def down(_request):
        raise operations.RegistryError("model registry: 503 Service Unavailable")

    registry.merge_aliases = down
    release(target, 2)
    assert target.read().state.canary == 2  # the serving config moved on
    assert "the model registry aliases were not moved: model registry: 503" in caplog.text


def test_publishing_with_a_registry_needs_a_gs_serving_root(target):
    target.registry = FakeRegistry()  # nothing uploaded yet
    before = target.read().config_text
    with pytest.raises(ConfigError, match="gs://"):
        operations.publish(target, 1, registry=BINDING)
    assert target.read().config_text == before  # refused before anything was written
    assert [r for r in target.registry.requests if type(r).__name__ == "UploadModelRequest"] == []
