"""An in-memory Vertex AI Model Registry that applies the real request protos with Vertex's rules.

``FakeRegistry`` implements ``release.model_registry.RegistryClient``: version ids "1", "2", ... in
upload order per model; the first version gets ``default``; an alias belongs to one version of a
model, so adding one another version holds is refused (except ``default``, which moves); ``-alias``
removes; a request adding and removing the same alias is refused (Vertex would cancel the two out);
unknown models and versions are NotFound. Failures raise the ``google.api_core`` exceptions Vertex
returns. It is stricter than Vertex in one way: removing an alias the version does not hold is
refused, so a plan that sends useless removals fails.

``grpc_server`` puts the same fake behind a local gRPC ModelService, so ``VertexRegistry`` and the
SDK's real ``ModelServiceClient`` are tested over the wire too. Every request is kept in ``requests``.
"""

from __future__ import annotations

import itertools
import re
from concurrent import futures

import grpc
from google.api_core import exceptions
from google.cloud.aiplatform_v1.types import model as gca_model
from google.cloud.aiplatform_v1.types import model_service
from google.longrunning import operations_pb2
from google.protobuf import any_pb2

from release.model_registry import RegistryBinding, RegistryVersion

_PARENT = re.compile(r"^projects/[^/]+/locations/[^/]+$")
_VERSION_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+/models/[^/@]+)@([0-9]+)$")
_ALIAS = re.compile(r"^[a-z][a-zA-Z0-9-]{0,126}[a-z0-9-]$")
DEFAULT = "default"


def _copy(model: gca_model.Model) -> gca_model.Model:
    return gca_model.Model.deserialize(gca_model.Model.serialize(model))


class FakeRegistry:
    def __init__(self) -> None:
        self.models: dict[str, list[gca_model.Model]] = {}  # model name -> versions, in upload order
        self.requests: list = []

    # --- RegistryClient ---------------------------------------------------------------------------
    def versions(self, binding: RegistryBinding) -> list[RegistryVersion]:
        try:
            models = self.list_versions(binding.model_name)
        except exceptions.NotFound:
            return []
        return [RegistryVersion.from_model(model) for model in models]

    def upload(self, request: model_service.UploadModelRequest) -> str:
        self.requests.append(type(request)(request))
        if not _PARENT.match(request.parent):
            raise exceptions.InvalidArgument(f"parent {request.parent!r} is not projects/*/locations/*")
        if bool(request.model_id) == bool(request.parent_model):
            raise exceptions.InvalidArgument("give exactly one of model_id (new model), parent_model")
        if request.model_id:
            name = f"{request.parent}/models/{request.model_id}"
            if name in self.models:
                raise exceptions.AlreadyExists(f"model {name} already exists")
            self.models[name] = []
        else:
            name = request.parent_model
            if not name.startswith(request.parent + "/models/"):
                raise exceptions.InvalidArgument(f"parent_model {name} is not under {request.parent}")
            if name not in self.models:
                raise exceptions.NotFound(f"model {name} not found")
        versions = self.models[name]
        aliases = list(request.model.version_aliases)
        if not versions and DEFAULT not in aliases:
            aliases.append(DEFAULT)  # a model's first version is its default
        model = _copy(request.model)
        model.name = name
        model.version_id = str(len(versions) + 1)
        model.version_aliases = []
        versions.append(model)
        try:
            self._add(name, model, set(aliases))
        except exceptions.GoogleAPICallError:
            versions.pop()
            if not versions:
                del self.models[name]
            raise
        return model.version_id

    def merge_aliases(self, request: model_service.MergeVersionAliasesRequest) -> None:
        self.requests.append(type(request)(request))
        model = self.version(request.name)
        entries = list(request.version_aliases)
        if not entries:
            raise exceptions.InvalidArgument("version_aliases is required")
        remove = {entry[1:] for entry in entries if entry.startswith("-")}
        add = {entry for entry in entries if not entry.startswith("-")}
        if remove & add:
            raise exceptions.InvalidArgument(f"adds and removes {sorted(remove & add)}: they cancel out")
        if DEFAULT in remove:
            raise exceptions.FailedPrecondition("a model must keep exactly one default version")
        not_held = remove - set(model.version_aliases)
        if not_held:
            raise exceptions.FailedPrecondition(f"{request.name} does not hold {sorted(not_held)}")
        name = _VERSION_NAME.match(request.name).group(1)
        self._add(name, model, add, check_only=True)  # refuse before changing anything
        model.version_aliases = [alias for alias in model.version_aliases if alias not in remove]
        self._add(name, model, add)

    # --- helpers, also used by the gRPC server -----------------------------------------------------
    def list_versions(self, name: str) -> list[gca_model.Model]:
        self.requests.append(model_service.ListModelVersionsRequest(name=name))
        if name not in self.models:
            raise exceptions.NotFound(f"model {name} not found")
        return [_copy(model) for model in self.models[name]]

    def version(self, name: str) -> gca_model.Model:
        """The stored version named ``<model>@<version id>`` (an alias in the name is refused)."""
        match = _VERSION_NAME.match(name)
        if not match:
            raise exceptions.InvalidArgument(f"{name!r} must be <model>@<version id>")
        model_name, version_id = match.groups()
        for model in self.models.get(model_name, []):
            if model.version_id == version_id:
                return model
        raise exceptions.NotFound(f"model version {name} not found")

    def aliases(self, binding: RegistryBinding) -> dict[str, set[str]]:
        """version id -> aliases, for assertions."""
        return {model.version_id: set(model.version_aliases) for model in self.models[binding.model_name]}

    def _add(self, name: str, model: gca_model.Model, add: set[str], check_only: bool = False) -> None:
        for alias in sorted(add):
            if not _ALIAS.match(alias):
                raise exceptions.InvalidArgument(f"alias {alias!r} does not match {_ALIAS.pattern}")
            for other in self.models[name]:
                if other is not model and alias in other.version_aliases and alias != DEFAULT:
                    raise exceptions.FailedPrecondition(
                        f"alias {alias!r} is already used by version {other.version_id} of {name}"
                    )
        if check_only:
            return
        for alias in sorted(add):
            if alias == DEFAULT:
                for other in self.models[name]:
                    other.version_aliases = [a for a in other.version_aliases if a != DEFAULT]
            if alias not in model.version_aliases:
                model.version_aliases.append(alias)


def grpc_server(fake: FakeRegistry) -> tuple[grpc.Server, str]:
    """A started gRPC ModelService on 127.0.0.1 backed by ``fake``; returns (server, address)."""
    operation_ids = itertools.count(1)

    def list_versions(request):
        return model_service.ListModelVersionsResponse(models=fake.list_versions(request.name))

    def upload(request):
        version_id = fake.upload(request)
        response = model_service.UploadModelResponse(
            model=request.parent_model or f"{request.parent}/models/{request.model_id}",
            model_version_id=version_id,
        )
        packed = any_pb2.Any()
        packed.Pack(model_service.UploadModelResponse.pb(response))
        name = f"{request.parent}/operations/{next(operation_ids)}"
        return operations_pb2.Operation(name=name, done=True, response=packed)

    def merge(request):
        fake.merge_aliases(request)
        return fake.version(request.name)

    def handler(method, request_type):
        def handle(request, context):
            try:
                return method(request)
            except exceptions.GoogleAPICallError as error:
                context.abort(error.grpc_status_code, error.message)

        def serialize(message) -> bytes:
            return (
                message.SerializeToString()
                if hasattr(message, "SerializeToString")
                else type(message).serialize(message)
            )

        return grpc.unary_unary_rpc_method_handler(
            handle, request_deserializer=request_type.deserialize, response_serializer=serialize
        )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "google.cloud.aiplatform.v1.ModelService",
                {
                    "ListModelVersions": handler(list_versions, model_service.ListModelVersionsRequest),
                    "UploadModel": handler(upload, model_service.UploadModelRequest),
                    "MergeVersionAliases": handler(merge, model_service.MergeVersionAliasesRequest),
                },
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, f"127.0.0.1:{port}"
