"""Optional mirror of the serving directory in the Vertex AI Model Registry.

TF Serving serves ``<serving_root>/<model>/<version>/`` and two labels, ``stable`` and ``canary``.
With the registry enabled, each pushed version is uploaded as a new version of ONE registry model
(found again by its ``VERSION_LABEL``), and the registry's version aliases follow the labels:

- ``stable`` on the version labelled stable, ``canary`` on the version on trial, none otherwise;
- ``default`` follows ``stable``. Vertex gives ``default`` to a model's first version by itself and
  requires exactly one; adding it to a version moves it, so it is only ever added, never removed.

Vertex cannot be reached from tests: the request protos are built offline (as ``kubeflow.vertex``
does) and a ``RegistryClient`` sends them, ``VertexRegistry`` in production, a fake in tests. The SDK
takes about two seconds to import, so it is imported only inside the functions that need it.
"""

from __future__ import annotations

import concurrent.futures
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Protocol

from release.state import CANARY, STABLE
from tfx_canary.errors import CanaryError, ConfigError

VERSION_LABEL = "tfx-canary-serving-version"  # Vertex label: the serving version number, as a string
DEFAULT = "default"
MIRRORED = (STABLE, CANARY)  # the serving labels that become aliases (`previous` is not mirrored)
DEFAULT_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"
UPLOAD_TIMEOUT_S = 1800.0  # an upload is a long-running operation (minutes)

# Same rules as kubeflow/cloud_config.py (release must not import kubeflow, so they are repeated here).
_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")
# UploadModelRequest.model_id: up to 63 of [a-z0-9_-]; here it must also start with a letter.
_MODEL_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
# ModelContainerSpec.image_uri must name an image in Artifact Registry or Container Registry.
_IMAGE = re.compile(
    r"^(?:[a-z0-9-]+-docker\.pkg\.dev|(?:[a-z]+\.)?gcr\.io)/[^\s:@]+(?::[\w.-]+|@sha256:[0-9a-f]{64})$"
)
_VERSION_NAME = re.compile(r"^projects/[^/]+/locations/([^/]+)/models/[^/@]+@[0-9]+$")


class RegistryError(CanaryError):
    """The registry cannot mirror the serving directory; the message says which version and why."""


@dataclass(frozen=True)
class RegistryBinding:
    """Which registry model mirrors one served model. Stored in the release record as ``to_dict()``."""

    project: str
    region: str
    model_id: str  # the registry model's resource id, e.g. taxi-tips
    serving_image: str = DEFAULT_SERVING_IMAGE  # the container Vertex would serve the versions with
    display_name: str = ""  # empty: the model_id

    def __post_init__(self) -> None:
        for name, pattern, rule in (
            ("project", _PROJECT, "a Google Cloud project id, e.g. my-gcp-project"),
            ("region", _REGION, "a Vertex AI region, e.g. us-central1"),
            ("model_id", _MODEL_ID, "up to 63 of a-z 0-9 _ -, starting with a letter, e.g. taxi-tips"),
            ("serving_image", _IMAGE, f"an Artifact/Container Registry image, e.g. {DEFAULT_SERVING_IMAGE}"),
        ):
            value = getattr(self, name)
            if value is None or value == "":
                raise ConfigError(f"model registry needs a {name} ({rule})")
            if not isinstance(value, str) or not pattern.match(value):
                raise ConfigError(f"model registry {name} {value!r} is not valid: use {rule}")
        if not self.display_name:
            object.__setattr__(self, "display_name", self.model_id)
        if not isinstance(self.display_name, str) or len(self.display_name) > 128:
            raise ConfigError(
                f"model registry display_name {self.display_name!r} must be text of <= 128 chars"
            )

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Any) -> RegistryBinding:
        """Read it back from the release record; unknown keys are named, not ignored."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"model registry settings must be a mapping, got {values!r}")
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ConfigError(f"model registry: unknown key(s) {unknown}; known: {known}")
        required = {"project": "", "region": "", "model_id": ""}  # missing: named by __post_init__
        return cls(**{**required, **values})

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    @property
    def model_name(self) -> str:
        return f"{self.parent}/models/{self.model_id}"

    @property
    def api_endpoint(self) -> str:
        return f"{self.region}-aiplatform.googleapis.com"

    def version_name(self, version_id: str) -> str:
        """``<model_name>@<version id>``: MergeVersionAliases needs a version id, not an alias."""
        return f"{self.model_name}@{version_id}"


@dataclass(frozen=True)
class RegistryVersion:
    """What the planner needs to know about one registry version."""

    version_id: str  # "1", "2", ... assigned by Vertex in upload order
    serving_version: int | None  # from VERSION_LABEL; None for a version tfx-canary did not upload
    aliases: frozenset[str] = frozenset()

    @classmethod
    def from_model(cls, model: Any) -> RegistryVersion:
        """From a ``Model`` proto as ListModelVersions returns it."""
        label = model.labels.get(VERSION_LABEL, "")
        return cls(
            version_id=model.version_id,
            serving_version=int(label) if label.isdigit() else None,
            aliases=frozenset(model.version_aliases),
        )


def find_version(current: Iterable[RegistryVersion], serving_version: int) -> RegistryVersion | None:
    """The registry version holding ``serving_version`` (the first uploaded, should there be two)."""
    matches = [v for v in current if v.serving_version == serving_version]
    return min(matches, key=lambda v: int(v.version_id)) if matches else None


def upload_request(binding: RegistryBinding, artifact_uri: str, serving_version: int, model_exists: bool):
    """The ``UploadModelRequest`` that adds ``serving_version`` (its pushed folder) to the registry.

    No aliases are set: the version is a candidate until ``alias_requests`` labels it. (The SDK's
    ``Model.upload`` would add ``default`` to every new version; the API itself gives ``default`` only
    to a model's first version, and that is what we want: ``default`` moves with ``stable`` later.)
    """
    from google.cloud.aiplatform_v1.types import model as gca_model
    from google.cloud.aiplatform_v1.types import model_service

    if not isinstance(artifact_uri, str) or not artifact_uri.startswith("gs://"):
        raise ConfigError(
            f"model registry: artifact_uri {artifact_uri!r} must be a gs:// folder (Vertex reads models "
            "from Cloud Storage): the registry needs a gs:// serving root"
        )
    if isinstance(serving_version, bool) or not isinstance(serving_version, int) or serving_version <= 0:
        raise ConfigError(
            f"model registry: serving version must be a positive integer, got {serving_version!r}"
        )
    artifact_uri = artifact_uri.rstrip("/")
    request = model_service.UploadModelRequest(
        parent=binding.parent,
        model=gca_model.Model(
            display_name=binding.display_name,
            artifact_uri=artifact_uri,
            container_spec=gca_model.ModelContainerSpec(image_uri=binding.serving_image),
            labels={VERSION_LABEL: str(serving_version)},
            version_description=f"tfx-canary serving version {serving_version} ({artifact_uri})",
        ),
    )
    if model_exists:
        request.parent_model = binding.model_name
    else:
        request.model_id = binding.model_id
    return request


def wanted_aliases(labels: Mapping[str, int]) -> dict[str, int]:
    """alias -> serving version. ``canary`` equal to ``stable`` means nothing is on trial: no alias."""
    wanted = {alias: int(labels[alias]) for alias in MIRRORED if alias in labels}
    if wanted.get(CANARY) is not None and wanted.get(CANARY) == wanted.get(STABLE):
        del wanted[CANARY]
    return wanted


def alias_requests(binding: RegistryBinding, current: list[RegistryVersion], labels: Mapping[str, int]):
    """The fewest ``MergeVersionAliasesRequest`` that make the registry's aliases match ``labels``.

    ``labels`` is the serving config's label map (``ReleaseState.label_map``). Aliases are unique per
    model, so a version gaining ``stable`` or ``canary`` is only sent after the version losing it
    (one request per changed version; only a swap needs a version's removals sent on their own).
    A request never adds and removes the same alias (Vertex would cancel the two out). A label on
    a serving version missing from the registry raises RegistryError before anything is planned.
    """
    from google.cloud.aiplatform_v1.types import model_service

    wanted = wanted_aliases(labels)
    targets: dict[str, str] = {}  # alias -> version id
    missing = []
    for alias, serving_version in wanted.items():
        found = find_version(current, serving_version)
        if found is None:
            missing.append(f"{serving_version} (labelled {alias})")
        else:
            targets[alias] = found.version_id
    if missing:
        raise RegistryError(
            f"model registry {binding.model_name}: serving version(s) {', '.join(missing)} not in the "
            "registry (pushed before the registry was enabled, or the upload failed): register them, "
            "then mirror the labels again"
        )
    if STABLE in targets:
        targets[DEFAULT] = targets[STABLE]

    held = {v.version_id: set(v.aliases) for v in current}
    pending: dict[str, tuple[set[str], set[str]]] = {}  # version id -> (remove, add)
    for version_id, aliases in sorted(held.items(), key=lambda item: int(item[0])):
        mine = {alias for alias, target in targets.items() if target == version_id}
        remove = {alias for alias in aliases & set(MIRRORED) if alias not in mine}
        add = mine - aliases
        if remove or add:
            pending[version_id] = (remove, add)

    def holder(alias: str) -> str | None:
        return next((version_id for version_id, aliases in held.items() if alias in aliases), None)

    requests = []
    while pending:
        ready = [
            version_id
            for version_id, (_, add) in pending.items()
            if all(holder(alias) in (None, version_id) for alias in add - {DEFAULT})
        ]
        if ready:
            version_id = ready[0]
            remove, add = pending.pop(version_id)
        else:  # only in a swap: one version's removals go on their own, its additions later
            version_id = next(v for v, (remove, _) in pending.items() if remove)
            remove, later = pending[version_id]
            pending[version_id], add = (set(), later), set()
        if DEFAULT in add:  # adding `default` moves it
            for aliases in held.values():
                aliases.discard(DEFAULT)
        held[version_id] = (held[version_id] - remove) | add
        requests.append(
            model_service.MergeVersionAliasesRequest(
                name=binding.version_name(version_id),
                version_aliases=[f"-{alias}" for alias in sorted(remove)] + sorted(add),
            )
        )
    return requests


class RegistryClient(Protocol):
    """What tfx-canary needs from the Model Registry; ``VertexRegistry`` is the real one."""

    def versions(self, binding: RegistryBinding) -> list[RegistryVersion]:
        """Every version of the binding's model; [] when the model does not exist yet."""
        ...

    def upload(self, request: Any) -> str:
        """Send an ``UploadModelRequest``, wait for it; return the new version id."""
        ...

    def merge_aliases(self, request: Any) -> None:
        """Send a ``MergeVersionAliasesRequest``."""
        ...


class VertexRegistry:
    """``RegistryClient`` over ``aiplatform_v1.ModelServiceClient``, one client per regional endpoint.

    Clients are built at the first call, so constructing this needs neither network nor credentials
    (``credentials=None``: Application Default Credentials). ``transport`` is passed to the client
    (default gRPC); tests give a callable returning a transport on a local channel. API failures are
    raised as RegistryError, one line each.
    """

    def __init__(self, credentials: Any = None, transport: str | Callable[..., Any] | None = None) -> None:
        self._credentials = credentials
        self._transport = transport
        self._clients: dict[str, Any] = {}

    def _client(self, region: str) -> Any:
        if region not in self._clients:
            import google.auth.exceptions
            from google.cloud import aiplatform_v1

            try:
                self._clients[region] = aiplatform_v1.ModelServiceClient(
                    credentials=self._credentials,
                    transport=self._transport,
                    client_options={"api_endpoint": f"{region}-aiplatform.googleapis.com"},
                )
            except google.auth.exceptions.DefaultCredentialsError as error:
                raise RegistryError(f"model registry: no Google Cloud credentials: {error}") from error
        return self._clients[region]

    def versions(self, binding: RegistryBinding) -> list[RegistryVersion]:
        from google.api_core import exceptions

        try:
            models = list(self._client(binding.region).list_model_versions(name=binding.model_name))
        except exceptions.NotFound:
            return []
        except exceptions.GoogleAPICallError as error:
            raise RegistryError(
                f"model registry {binding.model_name}: cannot list versions: {error}"
            ) from error
        return [RegistryVersion.from_model(model) for model in models]

    def upload(self, request: Any) -> str:
        from google.api_core import exceptions

        region = request.parent.split("/")[3]
        try:
            operation = self._client(region).upload_model(request=request)
            return operation.result(timeout=UPLOAD_TIMEOUT_S).model_version_id
        except (exceptions.GoogleAPICallError, concurrent.futures.TimeoutError) as error:
            where = request.parent_model or f"{request.parent}/models/{request.model_id}"
            raise RegistryError(
                f"model registry {where}: upload of {request.model.artifact_uri} failed: {error}"
            ) from error

    def merge_aliases(self, request: Any) -> None:
        from google.api_core import exceptions

        match = _VERSION_NAME.match(request.name)
        if not match:
            raise RegistryError(f"model registry: {request.name!r} is not a <model>@<version id> name")
        try:
            self._client(match.group(1)).merge_version_aliases(request=request)
        except exceptions.GoogleAPICallError as error:
            raise RegistryError(
                f"model registry {request.name}: cannot set aliases {list(request.version_aliases)}: {error}"
            ) from error


def register_version(
    client: RegistryClient, binding: RegistryBinding, artifact_uri: str, serving_version: int
) -> str:
    """Upload ``serving_version`` unless the registry has it already; return its version id.

    A re-run of the pipeline (or of the push step) therefore never creates a duplicate version.
    """
    current = client.versions(binding)
    found = find_version(current, serving_version)
    if found is not None:
        return found.version_id
    return client.upload(upload_request(binding, artifact_uri, serving_version, model_exists=bool(current)))


def mirror_labels(client: RegistryClient, binding: RegistryBinding, labels: Mapping[str, int]) -> list:
    """Make the registry's aliases match ``labels``; return the requests sent ([] when they matched)."""
    requests = alias_requests(binding, client.versions(binding), labels)
    for request in requests:
        client.merge_aliases(request)
    return requests
