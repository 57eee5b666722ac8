"""The Model Registry mirror: exact request protos, alias plans applied by a fake with Vertex's rules.

The fake refuses what Vertex refuses (an alias held by another version, adding and removing one
alias in one request, removing ``default``), so every plan below is checked by applying it, and the
same fake behind a local gRPC server checks ``VertexRegistry`` with the SDK's real client.
"""

from __future__ import annotations

import json

import grpc
import pytest
from google.api_core import exceptions
from google.cloud.aiplatform_v1.types import model_service

from release.model_registry import (
    DEFAULT_SERVING_IMAGE,
    VERSION_LABEL,
    RegistryBinding,
    RegistryError,
    RegistryVersion,
    VertexRegistry,
    alias_requests,
    mirror_labels,
    register_version,
    upload_request,
)
from tests.release.fake_registry import FakeRegistry, grpc_server
from tfx_canary.errors import ConfigError

BINDING = RegistryBinding(project="my-gcp-project", region="us-central1", model_id="taxi-tips")
ROOT = "gs://my-bucket/serving/taxi_tips"
NAME = "projects/my-gcp-project/locations/us-central1/models/taxi-tips"


def sent(requests) -> list[tuple[str, list[str]]]:
    return [(r.name.rsplit("@", 1)[1], list(r.version_aliases)) for r in requests]


def registry_with(*serving_versions: int) -> FakeRegistry:
    fake = FakeRegistry()
    for version in serving_versions:
        register_version(fake, BINDING, f"{ROOT}/{version}", version)
    return fake


# --- binding ---------------------------------------------------------------------------------------
def test_binding_names_the_vertex_resources_and_defaults() -> None:
    assert BINDING.parent == "projects/my-gcp-project/locations/us-central1"
    assert BINDING.model_name == NAME
    assert BINDING.api_endpoint == "us-central1-aiplatform.googleapis.com"
    assert BINDING.display_name == "taxi-tips" and BINDING.serving_image == DEFAULT_SERVING_IMAGE


def test_binding_round_trips_through_the_release_record_json() -> None:
    binding = RegistryBinding("my-gcp-project", "europe-west4", "taxi_tips", display_name="Taxi tips")
    stored = json.loads(json.dumps(binding.to_dict()))
    assert stored["display_name"] == "Taxi tips" and stored["region"] == "europe-west4"
    assert RegistryBinding.from_dict(stored) == binding


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"region": "us-central1", "model_id": "taxi-tips"}, "model registry needs a project"),
        ({"project": "my-gcp-project", "model_id": "taxi-tips"}, "model registry needs a region"),
        ({"project": "my-gcp-project", "region": "us-central1"}, "model registry needs a model_id"),
        ({"project": "My_Project", "region": "us-central1", "model_id": "t"}, "project 'My_Project'"),
        ({"project": "my-gcp-project", "region": "us_central1", "model_id": "t"}, "region 'us_central1'"),
        ({"project": "my-gcp-project", "region": "us-central1", "model_id": "7taxi"}, "model_id '7taxi'"),
        ({"project": "my-gcp-project", "region": "us-central1", "model_id": "Taxi"}, "model_id 'Taxi'"),
        ({"project": "my-gcp-project", "region": "us-central1", "model_id": "t" * 64}, "model_id 'tttt"),
        ({"project": "my-gcp-project", "region": "us-central1", "model_id": 7}, "model_id 7 is not valid"),
        (
            {"project": "my-gcp-project", "region": "us-central1", "model_id": "t", "serving_image": "x:1"},
            "serving_image 'x:1'",
        ),
        (
            {
                "project": "p-1234",
                "region": "us-central1",
                "model_id": "t",
                "serving_image": "tensorflow/serving:2.21.0",
            },
            "serving_image 'tensorflow/serving:2.21.0' is not valid: use an Artifact/Container Registry",
        ),
        ({"project": "my-gcp-project", "region": "us-central1", "model_id": "t", "zone": "b"}, r"\['zone'\]"),
        (["my-gcp-project"], "must be a mapping"),
    ],
)
def test_invalid_settings_are_config_errors_naming_the_field(values, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        RegistryBinding.from_dict(values)


def test_model_ids_vertex_accepts_are_accepted() -> None:
    for model_id in ("t", "taxi-tips", "taxi_tips", "a" * 63):
        assert RegistryBinding("my-gcp-project", "us-central1", model_id).model_id == model_id


# --- upload ----------------------------------------------------------------------------------------
def test_the_first_upload_creates_the_model_without_aliases() -> None:
    request = upload_request(BINDING, f"{ROOT}/7/", 7, model_exists=False)
    assert request.parent == BINDING.parent
    assert request.model_id == "taxi-tips" and request.parent_model == ""
    model = request.model
    assert model.display_name == "taxi-tips"
    assert model.artifact_uri == f"{ROOT}/7"
    assert model.container_spec.image_uri == DEFAULT_SERVING_IMAGE
    assert dict(model.labels) == {VERSION_LABEL: "7"}
    assert "serving version 7" in model.version_description
    assert list(model.version_aliases) == []  # Vertex gives the first version `default` by itself


def test_a_later_upload_is_a_new_version_of_the_same_model() -> None:
    request = upload_request(BINDING, f"{ROOT}/8", 8, model_exists=True)
    assert request.parent_model == NAME and request.model_id == ""
    assert dict(request.model.labels) == {VERSION_LABEL: "8"}
    assert list(request.model.version_aliases) == []  # the candidate must not take `default`


def test_upload_needs_a_gcs_folder_and_a_positive_version() -> None:
    with pytest.raises(ConfigError, match="gs:// serving root"):
        upload_request(BINDING, "/home/me/.home/serving/taxi_tips/7", 7, model_exists=False)
    with pytest.raises(ConfigError, match="positive integer"):
        upload_request(BINDING, f"{ROOT}/0", 0, model_exists=False)


def test_register_version_is_idempotent_and_uploads_later_versions_into_the_model() -> None:
    fake = FakeRegistry()
    assert register_version(fake, BINDING, f"{ROOT}/7", 7) == "1"
    assert register_version(fake, BINDING, f"{ROOT}/7", 7) == "1"  # a pipeline re-run
    assert register_version(fake, BINDING, f"{ROOT}/9", 9) == "2"
    uploads = [r for r in fake.requests if type(r).__name__ == "UploadModelRequest"]
    assert [(r.model_id, r.parent_model, r.model.labels[VERSION_LABEL]) for r in uploads] == [
        ("taxi-tips", "", "7"),
        ("", NAME, "9"),
    ]
    assert fake.aliases(BINDING) == {"1": {"default"}, "2": set()}


# --- aliases ---------------------------------------------------------------------------------------
def test_the_first_release_adds_stable_and_keeps_the_automatic_default() -> None:
    fake = registry_with(7)
    requests = mirror_labels(fake, BINDING, {"stable": 7, "canary": 7})  # canary == stable: none on trial
    assert sent(requests) == [("1", ["stable"])]
    assert fake.aliases(BINDING) == {"1": {"default", "stable"}}


def test_a_first_canary_gets_the_canary_alias_only() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 7})
    requests = mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    assert sent(requests) == [("2", ["canary"])]
    assert fake.aliases(BINDING) == {"1": {"default", "stable"}, "2": {"canary"}}


def test_promote_moves_stable_removes_canary_and_default_follows() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    requests = mirror_labels(fake, BINDING, {"stable": 9, "canary": 9, "previous": 7})
    # The old holder loses `stable` first: the fake (like Vertex) refuses a second holder.
    assert sent(requests) == [("1", ["-stable"]), ("2", ["-canary", "default", "stable"])]
    assert fake.aliases(BINDING) == {"1": set(), "2": {"default", "stable"}}


def test_rolling_back_a_canary_removes_its_alias_and_stable_stays() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    requests = mirror_labels(fake, BINDING, {"stable": 7, "canary": 7})
    assert sent(requests) == [("2", ["-canary"])]
    assert fake.aliases(BINDING) == {"1": {"default", "stable"}, "2": set()}


def test_rolling_back_a_promotion_moves_stable_and_default_back() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 9, "canary": 9, "previous": 7})
    requests = mirror_labels(fake, BINDING, {"stable": 7, "canary": 7})
    assert sent(requests) == [("2", ["-stable"]), ("1", ["default", "stable"])]
    assert fake.aliases(BINDING) == {"1": {"default", "stable"}, "2": set()}


def test_an_absent_canary_label_removes_the_alias() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    assert sent(mirror_labels(fake, BINDING, {"stable": 7})) == [("2", ["-canary"])]


def test_matching_aliases_need_no_request() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    before = len(fake.requests)
    assert mirror_labels(fake, BINDING, {"stable": 7, "canary": 9}) == []
    assert [type(r).__name__ for r in fake.requests[before:]] == ["ListModelVersionsRequest"]


def test_a_swap_sends_removals_on_their_own_first() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    requests = mirror_labels(fake, BINDING, {"stable": 9, "canary": 7})
    assert sent(requests) == [("1", ["-stable"]), ("2", ["-canary", "default", "stable"]), ("1", ["canary"])]
    assert fake.aliases(BINDING) == {"1": {"canary"}, "2": {"default", "stable"}}


def test_no_request_adds_and_removes_the_same_alias() -> None:
    current = [
        RegistryVersion("1", 7, frozenset({"default", "stable"})),
        RegistryVersion("2", 9, frozenset({"canary"})),
        RegistryVersion("3", None, frozenset()),  # uploaded by hand, without the serving label
    ]
    for labels in ({"stable": 9}, {"stable": 7, "canary": 9}, {"stable": 9, "canary": 7}, {}):
        for request in alias_requests(BINDING, current, labels):
            removed = {alias[1:] for alias in request.version_aliases if alias.startswith("-")}
            assert not removed & set(request.version_aliases), request


def test_a_label_on_an_unregistered_version_is_a_registry_error_and_nothing_is_sent() -> None:
    fake = registry_with(9)
    with pytest.raises(
        RegistryError, match=r"serving version\(s\) 7 \(labelled stable\) not in the registry"
    ):
        mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    assert "MergeVersionAliasesRequest" not in [type(r).__name__ for r in fake.requests]
    with pytest.raises(RegistryError, match=r"serving version\(s\) 3 \(labelled stable\)"):
        mirror_labels(FakeRegistry(), BINDING, {"stable": 3})  # no registry model yet


def test_the_fake_refuses_what_vertex_refuses() -> None:
    fake = registry_with(7, 9)

    def merge(version: str, *aliases: str) -> None:
        fake.merge_aliases(
            model_service.MergeVersionAliasesRequest(name=f"{NAME}@{version}", version_aliases=aliases)
        )

    merge("1", "stable")
    with pytest.raises(exceptions.FailedPrecondition, match="already used by version 1"):
        merge("2", "stable")  # the order a planner must avoid: add before the old holder lost it
    with pytest.raises(exceptions.InvalidArgument, match="cancel out"):
        merge("2", "canary", "-canary")
    with pytest.raises(exceptions.InvalidArgument, match="<version id>"):
        merge("stable", "canary")
    with pytest.raises(exceptions.FailedPrecondition, match="exactly one default"):
        merge("1", "-default")
    with pytest.raises(exceptions.NotFound):
        merge("3", "canary")
    merge("2", "default")  # `default` moves instead
    assert fake.aliases(BINDING) == {"1": {"stable"}, "2": {"default"}}


def test_requests_print_as_the_api_json() -> None:
    fake = registry_with(7, 9)
    mirror_labels(fake, BINDING, {"stable": 7, "canary": 7})
    [request] = mirror_labels(fake, BINDING, {"stable": 7, "canary": 9})
    printed = json.loads(type(request).to_json(request))
    assert printed == {"name": f"{NAME}@2", "versionAliases": ["canary"]}
    upload = upload_request(BINDING, f"{ROOT}/9", 9, model_exists=True)
    printed = json.loads(type(upload).to_json(upload))
    assert printed["parentModel"] == NAME
    assert printed["model"]["containerSpec"]["imageUri"] == DEFAULT_SERVING_IMAGE
    assert printed["model"]["labels"] == {VERSION_LABEL: "9"}


# --- VertexRegistry over gRPC ----------------------------------------------------------------------
@pytest.fixture
def vertex():
    """A VertexRegistry whose ModelServiceClient talks to the fake over a local gRPC server."""
    from google.cloud.aiplatform_v1.services.model_service.transports import ModelServiceGrpcTransport

    fake = FakeRegistry()
    server, address = grpc_server(fake)
    hosts, channels = [], []

    def transport(**kwargs):
        hosts.append(kwargs["host"])
        channels.append(grpc.insecure_channel(address))
        return ModelServiceGrpcTransport(channel=channels[-1])

    yield VertexRegistry(transport=transport), fake, hosts
    for channel in channels:
        channel.close()
    server.stop(None)


def test_vertex_registry_needs_credentials_only_at_the_first_call(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    registry = VertexRegistry()  # builds nothing yet
    with pytest.raises(RegistryError, match="no Google Cloud credentials"):
        registry.versions(BINDING)


def test_vertex_registry_registers_and_mirrors_over_the_real_client(vertex) -> None:
    registry, fake, hosts = vertex
    assert registry.versions(BINDING) == []  # NotFound: no model yet
    assert register_version(registry, BINDING, f"{ROOT}/7", 7) == "1"
    assert register_version(registry, BINDING, f"{ROOT}/9", 9) == "2"
    assert register_version(registry, BINDING, f"{ROOT}/9", 9) == "2"
    assert sent(mirror_labels(registry, BINDING, {"stable": 7, "canary": 9})) == [
        ("1", ["stable"]),
        ("2", ["canary"]),
    ]
    assert registry.versions(BINDING) == [
        RegistryVersion("1", 7, frozenset({"default", "stable"})),
        RegistryVersion("2", 9, frozenset({"canary"})),
    ]
    assert hosts == ["us-central1-aiplatform.googleapis.com"]  # one client per regional endpoint
    assert [type(r).__name__ for r in fake.requests].count("UploadModelRequest") == 2


def test_vertex_registry_reports_api_failures_as_one_line_registry_errors(vertex) -> None:
    registry, _, _ = vertex
    register_version(registry, BINDING, f"{ROOT}/7", 7)
    with pytest.raises(RegistryError, match=r"@5: cannot set aliases \['canary'\]: 404"):
        registry.merge_aliases(
            model_service.MergeVersionAliasesRequest(name=f"{NAME}@5", version_aliases=["canary"])
        )
    with pytest.raises(RegistryError, match=r"upload of gs://.*/8 failed: 409"):
        registry.upload(upload_request(BINDING, f"{ROOT}/8", 8, model_exists=False))  # model exists already
