"""One typed configuration for the training pipeline, loadable from YAML and overridable from the CLI.

Every path derives from ``home`` (``tfx_canary.home.Home``: ``--home``, ``$TFX_CANARY_HOME`` or
``./.home``), so a project home holds the data spans, pipeline outputs, the one MLMD database and the
serving directory; ``data_root``, ``pipelines_root`` and ``serving_root`` may point elsewhere (the
compiled Vertex pipeline sets them to ``gs://`` URIs).
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from models.catalog import MODELS, CatalogModel
from tfx_canary.errors import ConfigError
from tfx_canary.home import Home

# FnApiRunner in one process: measured fastest on 2 cores (see benchmarks/pipeline_bench.py).
DEFAULT_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1")
# Vertex AI accepts lowercase letters, digits and hyphens only.
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")


def _default_home() -> str:
    return Home.resolve().root


@dataclass(frozen=True)
class PipelineConfig:
    """What to train, on which spans, with which gates, and where everything lives."""

    name: str = "taxi-tips"
    model: str = "taxi_tips"
    home: str = field(default_factory=_default_home)
    # Roots outside the home (empty: under it, see ``tfx_canary.home.Home``).
    data_root: str = ""
    pipelines_root: str = ""
    serving_root: str = ""
    serving_model_name: str = ""  # TF Serving model name and folder; defaults to ``model``
    span_window: int = 8  # train on the latest K spans
    train_steps: int = 500
    eval_steps: int = 50
    # Classifier gates: AUC and accuracy must reach these; regressor gate: mean absolute error.
    min_auc: float = 0.7
    min_accuracy: float = 0.6
    max_mae: float = 10.0
    # A candidate may be at most this much worse than the latest blessed model (AUC, or MAE in dollars).
    max_metric_drop: float = 0.01
    warmup_examples: int = 5
    # REST address (host:port) of the model server that reads the serving root. When set, a new version
    # is labelled once the server reports it AVAILABLE (phase 2); when empty, only phase 1 is written
    # and `tfx-canary rollout` / `promote --phase2` finishes the release where the server is reachable.
    server_address: str = ""
    # The curated raw-data schema; empty means the one shipped in the `pipeline` package.
    schema_file: str = ""
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True

    def __post_init__(self) -> None:
        for key in ("home", "data_root", "pipelines_root", "serving_root"):
            if isinstance(getattr(self, key), os.PathLike):
                object.__setattr__(self, key, os.fspath(getattr(self, key)))
        object.__setattr__(self, "beam_args", tuple(self.beam_args))
        if not self.serving_model_name:
            object.__setattr__(self, "serving_model_name", self.model)
        self._validate()

    def _validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = {"str": str, "int": int, "float": (int, float), "bool": bool}.get(str(f.type))
            if expected is not None and (
                not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))
            ):
                raise ConfigError(f"{f.name} must be {f.type}, got {type(value).__name__} {value!r}")
        if not _NAME_PATTERN.match(self.name):
            raise ConfigError(
                f"name {self.name!r} must be lowercase letters, digits and hyphens (e.g. taxi-tips)"
            )
        if self.model not in MODELS:
            raise ConfigError(f"model {self.model!r} is not one of {sorted(MODELS)}")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.serving_model_name):
            raise ConfigError(f"serving_model_name {self.serving_model_name!r} must be a plain folder name")
        for key in ("span_window", "train_steps", "eval_steps", "warmup_examples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}")
        for key in ("min_auc", "min_accuracy"):
            if not 0.0 <= getattr(self, key) <= 1.0:
                raise ConfigError(f"{key} must be between 0 and 1, got {getattr(self, key)}")
        if self.max_mae <= 0 or self.max_metric_drop < 0:
            raise ConfigError("max_mae must be positive and max_metric_drop not negative")
        if not all(isinstance(a, str) for a in self.beam_args):
            raise ConfigError(f"beam_args must be a list of strings, got {list(self.beam_args)!r}")

    @property
    def paths(self) -> Home:
        """Every path of this run: the home and the three roots (strings; roots may be ``gs://``)."""
        return Home(self.home, self.data_root, self.pipelines_root, self.serving_root)

    @property
    def catalog_entry(self) -> CatalogModel:
        return MODELS[self.model]

    @property
    def task(self) -> str:
        return self.catalog_entry.task

    @property
    def pipeline_root(self) -> str:
        return self.paths.pipeline_root(self.name)

    @property
    def metadata_path(self) -> str:
        return self.paths.metadata_path

    @property
    def serving_model_dir(self) -> str:
        """Where versions land: ``<serving_root>/<serving_model_name>/<version>``."""
        return self.paths.model_dir(self.serving_model_name)

    def replace(self, **overrides: Any) -> PipelineConfig:
        return from_dict({**self.to_dict(), **overrides})

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> PipelineConfig:
        """Load ``path`` (a YAML mapping of field names) and apply non-None ``overrides`` on top."""
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of settings, got {type(loaded).__name__}")
        return from_dict({**loaded, **{k: v for k, v in overrides.items() if v is not None}})


def from_dict(values: dict[str, Any]) -> PipelineConfig:
    """Build a config from plain values, naming any unknown key."""
    known = {f.name for f in dataclasses.fields(PipelineConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; known keys are {sorted(known)}")
    values = dict(values)
    for key in ("home", "data_root", "pipelines_root", "serving_root"):
        if key in values and not isinstance(values[key], (str, os.PathLike)):
            raise ConfigError(f"{key} must be a path, got {type(values[key]).__name__}")
    if "beam_args" in values:
        if not isinstance(values["beam_args"], (list, tuple)):
            raise ConfigError(f"beam_args must be a list of strings, got {values['beam_args']!r}")
        values["beam_args"] = tuple(values["beam_args"])
    return PipelineConfig(**values)
