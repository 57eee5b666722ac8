"""Where the pipeline runs in Google Cloud: one YAML file (plus environment overrides), never code edits.

``kubeflow/cloud.example.yaml`` documents every key. Any top-level value can be overridden from
the environment as ``TFX_CANARY_CLOUD_<KEY>`` (e.g. ``TFX_CANARY_CLOUD_PROJECT=my-project``), which
is how CI or a second project reuse one file.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import with_dependencies
from tfx_canary.errors import ConfigError

ENV_PREFIX = "TFX_CANARY_CLOUD_"
# Where Beam's --setup_file finds this package inside the pipeline image (see the Dockerfile).
IMAGE_SETUP_FILE = "/tfx-canary/setup.py"

_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9.-]+\.iam\.gserviceaccount\.com$")


class CloudConfigError(ConfigError):
    """A cloud setting is missing, unknown or malformed; the message names it."""


@dataclass(frozen=True)
class DataflowConfig:
    """Run the Beam-based components (ExampleGen, StatisticsGen, Transform, Evaluator) on Dataflow."""

    enabled: bool = False
    temp_location: str = ""  # gs:// scratch space for Dataflow; defaults to <pipeline_root>/tmp
    machine_type: str = "n1-standard-4"
    max_num_workers: int = 4
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class KfpConfig:
    """A self-hosted Kubeflow Pipelines endpoint (only for `--target kfp`)."""

    host: str = ""
    experiment_id: str = ""  # empty: the server's default experiment


@dataclass(frozen=True)
class CloudConfig:
    """Project, region, storage roots, identity and image of the Vertex / KFP deployment."""

    project: str
    region: str
    pipeline_root: str  # gs://... where TFX writes every artifact
    data_root: str  # gs://... holding span-<N>/ folders of CSV
    serving_root: (
        str  # gs://... that tensorflow/serving reads: <serving_root>/<model>/<version>, models.config
    )
    service_account: str
    image: str  # the pipeline image built from ./Dockerfile
    pipeline_config: str = ""  # optional pipeline YAML (model, steps, thresholds), relative to this file
    labels: Mapping[str, str] = field(default_factory=dict)
    dataflow: DataflowConfig = field(default_factory=DataflowConfig)
    kfp: KfpConfig = field(default_factory=KfpConfig)

    def __post_init__(self) -> None:
        for name, pattern, example in (
            ("project", _PROJECT, "my-gcp-project"),
            ("region", _REGION, "us-central1"),
            ("service_account", _SERVICE_ACCOUNT, "sa-name@my-gcp-project.iam.gserviceaccount.com"),
        ):
            value = getattr(self, name)
            if not isinstance(value, str) or not pattern.match(value):
                raise CloudConfigError(f"{name} {value!r} is not a valid value (e.g. {example})")
        for name in ("pipeline_root", "data_root", "serving_root"):
            value = getattr(self, name)
            if not isinstance(value, str) or not re.match(
                r"^gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9](/|$)", value
            ):
                raise CloudConfigError(f"{name} {value!r} must be a gs://bucket/path URI (Vertex reads GCS)")
            object.__setattr__(self, name, value.rstrip("/"))
        if not isinstance(self.image, str) or not re.match(
            r"^[a-z0-9.-]+(:[0-9]+)?/[^\s:@]+(:[\w.-]+|@sha256:[0-9a-f]{64})$", self.image
        ):
            raise CloudConfigError(
                f"image {self.image!r} must be a registry path with a tag, e.g. us-docker.pkg.dev/p/r/img:1"
            )
        if self.dataflow.temp_location and not self.dataflow.temp_location.startswith("gs://"):
            raise CloudConfigError(
                f"dataflow.temp_location {self.dataflow.temp_location!r} must be a gs:// URI"
            )
        if self.kfp.host and not re.match(r"^https?://", self.kfp.host):
            raise CloudConfigError(f"kfp.host {self.kfp.host!r} must start with http:// or https://")

    def beam_args(self, local_beam_args: tuple[str, ...]) -> tuple[str, ...]:
        """Beam options for the pipeline's components: Dataflow if enabled, else ``local_beam_args``.

        On Dataflow, workers install this package from ``--setup_file`` (the copy inside the image).
        Without Dataflow the image's copy is declared too: the in-process runner builds nothing for it,
        and without a declared dependency TFX builds an sdist of tfx in every Beam component's container.
        """
        if not self.dataflow.enabled:
            return tuple(with_dependencies(local_beam_args, IMAGE_SETUP_FILE))
        dataflow = self.dataflow
        return (
            "--runner=DataflowRunner",
            f"--project={self.project}",
            f"--region={self.region}",
            f"--temp_location={dataflow.temp_location or self.pipeline_root + '/tmp'}",
            f"--service_account_email={self.service_account}",
            f"--setup_file={IMAGE_SETUP_FILE}",
            f"--machine_type={dataflow.machine_type}",
            f"--max_num_workers={dataflow.max_num_workers}",
            *dataflow.extra_args,
        )

    @property
    def location_path(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"


def _build(cls: type, values: Any, where: str) -> Any:
    """A dataclass from a mapping, naming unknown keys and wrongly typed values."""
    if not isinstance(values, Mapping):
        raise CloudConfigError(
            f"{where or 'the cloud config'} must be a mapping, got {type(values).__name__}"
        )
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise CloudConfigError(f"unknown key(s) {[where + k for k in unknown]}; known: {sorted(fields)}")
    missing = sorted(
        name
        for name, f in fields.items()
        if name not in values
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    )
    if missing:
        raise CloudConfigError(f"missing key(s) {[where + k for k in missing]} in the cloud config")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        kind = fields[name].type
        if kind in ("DataflowConfig", "KfpConfig"):
            kwargs[name] = _build(
                {"DataflowConfig": DataflowConfig, "KfpConfig": KfpConfig}[kind], value, f"{name}."
            )
        elif kind == "tuple[str, ...]":
            if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
                raise CloudConfigError(f"{where}{name} must be a list of strings, got {value!r}")
            kwargs[name] = tuple(value)
        elif kind == "Mapping[str, str]":
            if not isinstance(value, Mapping):
                raise CloudConfigError(f"{where}{name} must be a mapping, got {value!r}")
            kwargs[name] = {str(k): str(v) for k, v in value.items()}
        else:
            expected = {"str": str, "int": int, "bool": bool}[kind]
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise CloudConfigError(f"{where}{name} must be {kind}, got {value!r}")
            kwargs[name] = value
    return cls(**kwargs)


def _from_environment(values: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    merged = dict(values)
    for f in dataclasses.fields(CloudConfig):
        key = ENV_PREFIX + f.name.upper()
        if key in environ and f.type == "str":
            merged[f.name] = environ[key]
    return merged


def load_cloud_config(path: str | os.PathLike, environ: Mapping[str, str] | None = None) -> CloudConfig:
    """Read the cloud config YAML at ``path``; ``TFX_CANARY_CLOUD_<KEY>`` variables override its values."""
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        raise CloudConfigError(f"cannot read cloud config {path}: {error}") from error
    if not isinstance(values, dict):
        raise CloudConfigError(f"cloud config {path} must be a mapping, got {type(values).__name__}")
    config = _build(CloudConfig, _from_environment(values, os.environ if environ is None else environ), "")
    if config.pipeline_config and not Path(config.pipeline_config).is_absolute():
        object.__setattr__(config, "pipeline_config", str(path.parent / config.pipeline_config))
    return config
