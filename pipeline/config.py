"""One typed configuration for the training pipeline, loadable from YAML and overridable from the CLI.

A config names everything model-specific: the team's TFX user code (``preprocessing_fn`` and ``run_fn``
as dotted paths, importable from ``code_dir``), the curated raw schema, the label and task, the
metric gates and the serving name. The shipped taxi examples are config files like any other
(``models/configs/``; ``load_config(model="taxi_tips")``). Paths inside a config file are relative to
the file.

Every other path derives from ``home`` (``tfx_canary.home.Home``: ``--home``, ``$TFX_CANARY_HOME`` or
``./.home``), so a project home holds the pipeline outputs, the one MLMD database and the serving
directory; ``data_root``, ``pipelines_root`` and ``serving_root`` may point elsewhere (the compiled
Vertex pipeline sets them to ``gs://`` URIs).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.load_check.check import MAX_LATENCY_BUDGET_MS
from models import catalog, contract
from release.model_registry import RegistryBinding
from release.serving_dir import MAX_WARMUP_RECORDS
from tfx_canary.errors import ConfigError
from tfx_canary.home import Home, is_uri, join

# FnApiRunner in one process: measured fastest on 2 cores (see benchmarks/pipeline_bench.py).
DEFAULT_BEAM_ARGS = ("--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1")
# Beam options that declare the workers' Python dependencies (the ones TFX looks for).
DEPENDENCY_FLAGS = ("--extra_package", "--setup_file", "--requirements_file", "--sdk_container_image")
CHECKOUT_SETUP_FILE = str(Path(__file__).resolve().parent.parent / "setup.py")
# Vertex AI accepts lowercase letters, digits and hyphens only.
_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
_DOTTED_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
# Keys holding paths: in a config file they are relative to the file.
PATH_KEYS = ("home", "data_root", "pipelines_root", "serving_root", "schema_file", "code_dir")


def _default_home() -> str:
    return Home.resolve().root


def with_dependencies(args: Sequence[str], setup_file: str | None = None) -> list[str]:
    """``args``, plus ``--setup_file`` (``setup_file``, else this checkout's ``setup.py`` if there is
    one) unless they declare the workers' dependencies already.

    Without a dependency flag every TFX Beam component first builds an sdist of the whole tfx package
    for remote workers (a Python process each: ~1 s per component here, ~3 s elsewhere). The
    in-process FnApiRunner builds and stages nothing for ``--setup_file``; a remote runner gets the
    project's own package (tfx + ``models``).
    """
    args = list(args)
    if any(arg.startswith(DEPENDENCY_FLAGS) for arg in args):
        return args
    if setup_file is None and os.path.isfile(CHECKOUT_SETUP_FILE):
        setup_file = CHECKOUT_SETUP_FILE
    return [*args, f"--setup_file={setup_file}"] if setup_file else args


@dataclass(frozen=True)
class MetricGate:
    """One TFMA metric (a TFMA or Keras metric class name) and its gates.

    ``min`` or ``max`` is the value threshold (and says which way is better); ``max_drop`` is how much
    worse than the latest blessed model the candidate may be (ignored on a first run).
    """

    name: str
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None

    @property
    def higher_is_better(self) -> bool:
        return self.max is None


@dataclass(frozen=True)
class PipelineConfig:
    """What to train, on which spans, with which gates, and where everything lives."""

    model: str = ""  # the model's name: the TF Serving name and folder unless serving_model_name says
    name: str = ""  # the pipeline name; defaults to ``model`` with hyphens
    home: str = field(default_factory=_default_home)
    # Roots outside the home (empty: under it, see ``tfx_canary.home.Home``).
    data_root: str = ""  # span-<N>/ folders of CSV
    pipelines_root: str = ""
    serving_root: str = ""
    serving_model_name: str = ""  # TF Serving model name and folder; defaults to ``model``
    # The team's TFX user code: dotted paths as TFX takes them, importable from code_dir (or installed).
    preprocessing_fn: str = ""
    run_fn: str = ""
    code_dir: str = ""  # put first on sys.path for local runs; empty: the package is installed
    schema_file: str = ""  # the curated raw-data schema (schema.pbtxt)
    label: str = ""  # the raw column the label comes from; never a serving input
    label_key: str = ""  # the transformed label the Trainer and TFMA read; defaults to <label>_xf
    task: str = ""  # one of models.contract.TASKS
    classes: tuple[str, ...] = ()  # classification: class names in index order (binary: 0, 1)
    metrics: tuple[MetricGate, ...] = ()
    custom_config: Mapping[str, Any] = field(default_factory=dict)  # passed on to the user code
    span_window: int = 8  # train on the latest K spans
    train_steps: int = 500  # a first run, or a retrain whose base weights do not fit
    warm_start_steps: int = 150  # a retrain from the latest blessed model's weights; 0: always from scratch
    # A warm retrain reuses the blessed model's analysis (vocabularies, scales) for up to this many
    # retrains in a row, then re-analyzes the window and trains from scratch; 0: analyze every run
    # (and so train from scratch every run: weights fit only the encoding they were trained on).
    transform_reuses: int = 6
    # Transform analyzes each span as its own dataset and reuses the analyzer cache of spans it has seen.
    # Off by default: on the local FnApiRunner, 16 spans as 16 datasets cost more Beam stages than the
    # analysis they save (README, Benchmarks); worth it where analysis is the cost (large spans, Dataflow).
    analyzer_cache: bool = False
    eval_steps: int = 50
    warmup_examples: int = 5  # eval examples replayed per signature by the load check and at load
    # the load check's budget: each signature's median latency at batch 1, REST and gRPC
    load_check_latency_ms: float = 250.0
    # Vertex Model Registry mirroring (optional): {project, region, model_id[, serving_image]}; each
    # pushed version is uploaded, and the aliases stable/canary/default follow the labels
    model_registry: Mapping[str, str] = field(default_factory=dict)
    # REST address (host:port) of the model server that reads the serving root. When set, a new version
    # is labelled once the server reports it AVAILABLE (phase 2); when empty, only phase 1 is written
    # and `tfx-canary rollout` / `promote --phase2` finishes the release where the server is reachable.
    server_address: str = ""
    beam_args: tuple[str, ...] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True
    # The file this config was read from (not a key of the file): error messages name it.
    config_file: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        for key in PATH_KEYS:
            if isinstance(getattr(self, key), os.PathLike):
                object.__setattr__(self, key, os.fspath(getattr(self, key)))
        object.__setattr__(self, "beam_args", tuple(self.beam_args))
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "metrics", tuple(_metric_gate(m, self.where) for m in self.metrics))
        if not self.name and isinstance(self.model, str):
            object.__setattr__(self, "name", self.model.replace("_", "-"))
        if not self.serving_model_name:
            object.__setattr__(self, "serving_model_name", self.model)
        if not self.label_key and isinstance(self.label, str) and self.label:
            object.__setattr__(self, "label_key", contract.transformed_name(self.label))
        if not self.classes and self.task == contract.BINARY:
            object.__setattr__(self, "classes", ("0", "1"))
        self._validate()

    @property
    def where(self) -> str:
        """`` in <file>`` for error messages, when the config came from a file."""
        return f" in {self.config_file}" if self.config_file else ""

    def _error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{key}{self.where}: {problem}")

    def _validate(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            expected = {"str": str, "int": int, "float": (int, float), "bool": bool}.get(str(f.type))
            if expected is not None and (
                not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))
            ):
                raise ConfigError(
                    f"{f.name} must be {f.type}, got {type(value).__name__} {value!r}{self.where}"
                )
        if self.warm_start_steps < 0:
            raise self._error("warm_start_steps", f"must be 0 (off) or more, got {self.warm_start_steps}")
        if self.transform_reuses < 0:
            raise self._error("transform_reuses", f"must be 0 (off) or more, got {self.transform_reuses}")
        for key in ("span_window", "train_steps", "eval_steps", "warmup_examples"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be at least 1, got {getattr(self, key)}{self.where}")
        if self.warmup_examples > MAX_WARMUP_RECORDS:
            raise self._error(
                "warmup_examples", f"{self.warmup_examples} is over TF Serving's {MAX_WARMUP_RECORDS} records"
            )
        if not 0 < self.load_check_latency_ms <= MAX_LATENCY_BUDGET_MS:
            raise self._error(
                "load_check_latency_ms",
                f"{self.load_check_latency_ms:g} ms is out of range (0, {MAX_LATENCY_BUDGET_MS:g}]",
            )
        if not isinstance(self.model_registry, Mapping):
            raise self._error(
                "model_registry", f"must be a mapping, got {type(self.model_registry).__name__}"
            )
        if self.model_registry:
            RegistryBinding.from_dict(dict(self.model_registry))  # names a missing or bad field
        if not all(isinstance(a, str) for a in self.beam_args):
            raise ConfigError(
                f"beam_args must be a list of strings, got {list(self.beam_args)!r}{self.where}"
            )
        if self.name and not _NAME_PATTERN.match(self.name):
            raise self._error(
                "name", f"{self.name!r} must be lowercase letters, digits and hyphens (e.g. taxi-tips)"
            )
        for key in ("model", "preprocessing_fn", "run_fn", "schema_file", "label", "task"):
            if not getattr(self, key):
                raise self._error(key, f"is required (a config names all of {_REQUIRED_HELP})")
        if not _NAME_PATTERN.match(self.name):
            raise self._error("name", f"{self.name!r} must be lowercase letters, digits and hyphens")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.model):
            raise self._error("model", f"{self.model!r} must be a plain name (letters, digits, _ . -)")
        if not re.match(r"^[A-Za-z0-9_.-]+$", self.serving_model_name):
            raise self._error(
                "serving_model_name", f"{self.serving_model_name!r} must be a plain folder name"
            )
        for key in ("preprocessing_fn", "run_fn"):
            if not _DOTTED_PATH.match(getattr(self, key)):
                raise self._error(
                    key,
                    f"{getattr(self, key)!r} must be a dotted path module.function, e.g. my_model.{key}",
                )
        if self.task not in contract.TASKS:
            raise self._error("task", f"{self.task!r} is not one of {list(contract.TASKS)}")
        self._validate_classes()
        if not self.metrics:
            raise self._error("metrics", "list at least one metric to gate on, e.g. [{name: AUC, min: 0.7}]")
        if not isinstance(self.custom_config, Mapping):
            raise self._error("custom_config", f"must be a mapping, got {type(self.custom_config).__name__}")

    def _validate_classes(self) -> None:
        if self.task == contract.REGRESSION:
            if self.classes:
                raise self._error("classes", "a regression has no classes; remove the key")
            return
        if len(set(self.classes)) != len(self.classes):
            raise self._error("classes", f"{list(self.classes)} names a class twice")
        if self.task == contract.BINARY and len(self.classes) != 2:
            raise self._error(
                "classes",
                f"a binary classification has exactly 2 classes, got {list(self.classes)}; "
                f"for more use task: {contract.MULTICLASS}",
            )
        if self.task == contract.MULTICLASS and len(self.classes) < 3:
            raise self._error(
                "classes",
                f"a multi-class classification names its 3 or more classes in index order, got "
                f"{list(self.classes)}; for two use task: {contract.BINARY}",
            )

    @property
    def settings(self) -> contract.ModelSettings:
        """What the user code receives in ``custom_config`` besides the config's own mapping."""
        return contract.ModelSettings(self.label, self.label_key, self.task, self.classes)

    @property
    def user_custom_config(self) -> dict[str, Any]:
        """The ``custom_config`` Transform and Trainer pass to the user code."""
        return self.settings.to_custom_config(self.custom_config)

    @property
    def paths(self) -> Home:
        """Every path of this run: the home and the three roots (strings; roots may be ``gs://``)."""
        return Home(self.home, self.data_root, self.pipelines_root, self.serving_root)

    @property
    def pipeline_root(self) -> str:
        return self.paths.pipeline_root(self.name)

    @property
    def span_cache_dir(self) -> str:
        """Spans WindowIngest has ingested, for the next run to reuse (``components/window_ingest``)."""
        return join(self.pipeline_root, "span-cache")

    @property
    def metadata_path(self) -> str:
        return self.paths.metadata_path

    @property
    def serving_model_dir(self) -> str:
        """Where versions land: ``<serving_root>/<serving_model_name>/<version>``."""
        return self.paths.model_dir(self.serving_model_name)

    def replace(self, **overrides: Any) -> PipelineConfig:
        return from_dict({**self.to_dict(), **overrides}, config_file=self.config_file)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values (metrics as mappings), what ``from_dict`` takes back."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "config_file"}
        values["metrics"] = [
            {k: v for k, v in dataclasses.asdict(m).items() if v is not None} for m in self.metrics
        ]
        values["custom_config"] = dict(self.custom_config)
        values["model_registry"] = dict(self.model_registry)
        return values

    def to_yaml(self) -> str:
        """The settings as a YAML config file (lists for tuples); ``from_yaml`` reads it back."""
        values = self.to_dict()
        for key in ("beam_args", "classes"):
            values[key] = list(values[key])
        return yaml.safe_dump(values, sort_keys=False)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, **overrides: Any) -> PipelineConfig:
        """Load ``path`` (a YAML mapping of field names) and apply non-None ``overrides`` on top.

        Relative paths in the file are relative to the file's folder; overrides are taken as given.
        """
        path = Path(path).resolve()
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config {path}: {error}") from error
        if not isinstance(loaded, dict):
            raise ConfigError(f"config {path} must be a mapping of settings, got {type(loaded).__name__}")
        for key in PATH_KEYS:
            value = loaded.get(key)
            if isinstance(value, str) and value and not is_uri(value) and not os.path.isabs(value):
                loaded[key] = str(path.parent / value)
        return from_dict({**loaded, **{k: v for k, v in overrides.items() if v is not None}}, str(path))


_REQUIRED_HELP = "model, preprocessing_fn, run_fn, schema_file, label, task and metrics"


def _metric_gate(value: Any, where: str) -> MetricGate:
    """A ``MetricGate`` from a mapping such as ``{name: AUC, min: 0.7, max_drop: 0.01}``."""
    if isinstance(value, MetricGate):
        gate = value
    else:
        known = {f.name for f in dataclasses.fields(MetricGate)}
        if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
            raise ConfigError(
                f"metrics{where}: each entry is a mapping such as {{name: AUC, min: 0.7}}, got {value!r}"
            )
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(
                f"metrics{where}: unknown key(s) {unknown} for {value['name']}; known: {sorted(known)}"
            )
        gate = MetricGate(**value)
    for key in ("min", "max", "max_drop"):
        bound = getattr(gate, key)
        if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))):
            raise ConfigError(f"metrics{where}: {gate.name} {key} must be a number, got {bound!r}")
    if gate.min is not None and gate.max is not None:
        raise ConfigError(
            f"metrics{where}: {gate.name} takes min (higher is better) or max (lower is better), not both"
        )
    if gate.max_drop is not None and (gate.max_drop < 0 or (gate.min is None and gate.max is None)):
        raise ConfigError(
            f"metrics{where}: {gate.name} max_drop must be a number >= 0 next to a min or max "
            "(which says whether higher or lower is better)"
        )
    return gate


def from_dict(values: dict[str, Any], config_file: str = "") -> PipelineConfig:
    """Build a config from plain values, naming any unknown key."""
    where = f" in {config_file}" if config_file else ""
    known = {f.name for f in dataclasses.fields(PipelineConfig)} - {"config_file"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}{where}; known keys are {sorted(known)}")
    values = dict(values)
    for key in PATH_KEYS:
        if key in values and not isinstance(values[key], (str, os.PathLike)):
            raise ConfigError(f"{key} must be a path, got {type(values[key]).__name__}{where}")
    for key in ("beam_args", "classes", "metrics"):
        if key in values:
            if not isinstance(values[key], (list, tuple)):
                what = "mappings such as {name: AUC, min: 0.7}" if key == "metrics" else "strings"
                raise ConfigError(f"{key} must be a list of {what}, got {values[key]!r}{where}")
            values[key] = tuple(values[key])
    if values.get("custom_config") is None:
        values.pop("custom_config", None)
    return PipelineConfig(**values, config_file=config_file)


def load_config(
    config_file: str | os.PathLike | None = None, model: str | None = None, **overrides: Any
) -> PipelineConfig:
    """The config in ``config_file``, else the shipped example ``model`` (default: the catalog's default).

    ``overrides`` that are not None win over the file.
    """
    if config_file and model:
        raise ConfigError("give a config file or a shipped example model, not both")
    if not config_file:
        name = model or catalog.DEFAULT_MODEL
        if name not in catalog.EXAMPLES:
            raise ConfigError(
                f"model {name!r} is not a shipped example; choose one of {sorted(catalog.EXAMPLES)}"
            )
        config_file = catalog.example_config_file(name)
    return PipelineConfig.from_yaml(config_file, **overrides)
