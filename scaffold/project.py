"""``tfx-canary init``: a working project from a sample of the user's data.

From one CSV, a label column and a task it writes, into a new folder::

    config.yaml                  the pipeline config (`tfx-canary run --config DIR/config.yaml`)
    pyproject.toml               makes the package installable (the Vertex / KFP pipeline image)
    <package>/preprocessing.py   the tf.Transform preprocessing_fn
    <package>/model.py           the Keras run_fn
    schema/schema.pbtxt          the raw schema TFDV inferred from the sample, for the user to curate
    data/span-1/data.csv         the sample, as the first span

Everything is written into a temporary folder beside the target and renamed at the end, so a bad
sample leaves nothing behind.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from models import contract
from pipeline import preflight
from pipeline.config import DEFAULT_BEAM_ARGS
from tfx_canary.errors import ConfigError

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
CONFIG_FILE = "config.yaml"
SCHEMA_FILE = "schema/schema.pbtxt"
DATA_DIR = "data"
MAX_NAME = 40  # the generated code keeps its lines short with names up to this long


@dataclass(frozen=True)
class Sample:
    """What the sample says about its columns: TFDV's schema, the label's values and kinds."""

    header: list[str]
    schema: object  # schema_pb2.Schema
    label_values: list[str]  # the label's non-empty cells, in file order

    def kind(self, column: str) -> str:
        from tensorflow_metadata.proto.v0 import schema_pb2

        feature = next(f for f in self.schema.feature if f.name == column)
        return schema_pb2.FeatureType.Name(feature.type)


def init_project(
    target: str | os.PathLike, csv_file: str | os.PathLike, label: str, task: str, name: str | None = None
) -> Path:
    """Scaffold the project in ``target`` (a new or empty folder); return its config file."""
    target = Path(target).resolve()
    csv_file = Path(csv_file)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"{target} exists and is not an empty folder; init writes a new project")
    if task not in contract.TASKS:
        raise ConfigError(f"--task {task!r} is not one of {list(contract.TASKS)}")
    model = _model_name(name or target.name)
    header = preflight.read_header(csv_file)
    if label not in header:
        raise ConfigError(f"{csv_file}: --label {label!r} is not a column; its columns are {header}")
    sample = _read_sample(csv_file, header, label)
    classes = _classes(csv_file, sample, label, task)

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        _write_project(staging, csv_file, sample, model, label, task, classes)
        if target.exists():
            target.rmdir()  # empty, checked above
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target / CONFIG_FILE


def _model_name(text: str) -> str:
    """``My Wine-Data`` → ``my_wine_data``: a Python identifier, a TF Serving model name."""
    slug = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    if not slug or not slug[0].isalpha():
        slug = f"model_{slug}".rstrip("_")
    if len(slug) > MAX_NAME:
        raise ConfigError(
            f"the model name {slug!r} is longer than {MAX_NAME} characters; pass a shorter --name"
        )
    return slug


def _read_sample(csv_file: Path, header: list[str], label: str) -> Sample:
    """TFDV's statistics and inferred schema of the sample (the same CSV type inference as
    CsvExampleGen), and the label's values."""
    import tensorflow_data_validation as tfdv
    from apache_beam.options.pipeline_options import PipelineOptions

    log.info("inferring the schema of %s with TFDV", csv_file)
    with tempfile.TemporaryDirectory(prefix="tfx-canary-init-") as scratch:
        stats = tfdv.generate_statistics_from_csv(
            str(csv_file),
            output_path=os.path.join(scratch, "stats.tfrecord"),
            pipeline_options=PipelineOptions(list(DEFAULT_BEAM_ARGS)),
        )
    # No fixed shapes: every column may miss a value in a later span (the preprocessing fills it in).
    schema = tfdv.infer_schema(stats, infer_feature_shape=False)
    with open(csv_file, newline="") as handle:
        values = [row[label] for row in csv.DictReader(handle) if row.get(label)]
    if not values:
        raise ConfigError(f"{csv_file}: the label column {label!r} has no value in any row")
    return Sample(header, schema, values)


def _classes(csv_file: Path, sample: Sample, label: str, task: str) -> tuple[str, ...]:
    """The class names in index order (sorted, numerically for integers); () for a regression."""
    kind = sample.kind(label)
    distinct = set(sample.label_values)
    if task == contract.REGRESSION:
        if kind not in ("INT", "FLOAT"):
            raise ConfigError(
                f"{csv_file}: --task regression needs a numeric label, but {label!r} holds strings "
                f"(e.g. {sorted(distinct)[:3]}); use --task {contract.BINARY} or {contract.MULTICLASS}"
            )
        return ()
    if kind == "FLOAT":
        raise ConfigError(
            f"{csv_file}: --task {task} needs integer or string classes, but {label!r} holds decimal "
            f"numbers; use --task {contract.REGRESSION}"
        )
    classes = sorted(distinct, key=int) if kind == "INT" else sorted(distinct)
    if task == contract.BINARY and len(classes) != 2:
        raise ConfigError(
            f"{csv_file}: --task {task} takes 2 classes, but {label!r} has {len(classes)} "
            f"({classes[:10]}); use --task {contract.MULTICLASS if len(classes) > 2 else contract.REGRESSION}"
        )
    if task == contract.MULTICLASS and len(classes) < 3:
        raise ConfigError(
            f"{csv_file}: --task {task} takes 3 or more classes, but {label!r} has {classes}; "
            f"use --task {contract.BINARY}"
        )
    return tuple(classes)


def _write_project(
    root: Path, csv_file: Path, sample: Sample, model: str, label: str, task: str, classes: tuple[str, ...]
) -> None:
    package = f"{model}_model"
    inputs = [column for column in sample.header if column != label]
    numeric = [c for c in inputs if sample.kind(c) in ("INT", "FLOAT")]
    strings = [c for c in inputs if sample.kind(c) == "BYTES"]
    numbers = [float(v) for v in sample.label_values] if task == contract.REGRESSION else [0.0]
    mean, spread = statistics.fmean(numbers), (statistics.pstdev(numbers) or 1.0)
    values = {
        "model": model,
        "package": package,
        "distribution": package.replace("_", "-"),
        "numeric_features": _tuple_literal(numeric),
        "string_features": _tuple_literal(strings),
        "label_mean": repr(round(mean, 6)),
        "label_std": repr(round(spread, 6)),
    }
    (root / package).mkdir()
    for template, destination in (
        ("__init__.py.tmpl", f"{package}/__init__.py"),
        ("preprocessing.py.tmpl", f"{package}/preprocessing.py"),
        ("model.py.tmpl", f"{package}/model.py"),
        ("pyproject.toml.tmpl", "pyproject.toml"),
    ):
        text = Template((TEMPLATES / template).read_text()).substitute(values)
        (root / destination).write_text(text)
    (root / "schema").mkdir()
    (root / SCHEMA_FILE).write_text(_schema_text(sample, label, task, classes, csv_file))
    span = root / DATA_DIR / "span-1"
    span.mkdir(parents=True)
    shutil.copyfile(csv_file, span / "data.csv")
    (root / CONFIG_FILE).write_text(
        config_text(model, package, label, task, classes, csv_file.name, spread if numbers else 1.0)
    )


def _tuple_literal(names: list[str]) -> str:
    """A tuple of strings, one per line with a trailing comma (the shape ruff format keeps)."""
    if not names:
        return "()"
    if len(names) == 1:
        return f'("{names[0]}",)'
    return "(\n" + "".join(f"    {name!r},\n".replace("'", '"') for name in names) + ")"


def _schema_text(sample: Sample, label: str, task: str, classes: tuple[str, ...], csv_file: Path) -> str:
    """TFDV's schema, the label made required and bounded to its classes, with a note to curate it."""
    from google.protobuf import text_format

    schema = sample.schema
    feature = next(f for f in schema.feature if f.name == label)
    feature.presence.min_fraction = 1.0  # a row without a label cannot be trained or evaluated on
    if task != contract.REGRESSION and sample.kind(label) == "INT":
        feature.int_domain.min, feature.int_domain.max = int(classes[0]), int(classes[-1])
    note = (
        f"# The raw schema of this project, inferred by TFDV from {csv_file.name} by `tfx-canary init`.\n"
        "# Curate it: the pipeline validates every new span against it and stops before training when\n"
        "# a span breaks it (types, presence, domains, ranges). Relax what may change (a string domain's\n"
        "# min_domain_mass, an optional column's presence) and bound what may not (float_domain min/max).\n"
    )
    return note + text_format.MessageToString(schema)


def default_metrics(task: str, label_std: float) -> list[dict]:
    """Gates a trained model of the task passes on ordinary data; curate them in config.yaml."""
    if task == contract.BINARY:
        return [
            {"name": "AUC", "min": 0.6, "max_drop": 0.05},
            {"name": "BinaryAccuracy", "min": 0.5},
            {"name": "ExampleCount"},
        ]
    if task == contract.MULTICLASS:
        return [{"name": "SparseCategoricalAccuracy", "min": 0.5, "max_drop": 0.05}, {"name": "ExampleCount"}]
    spread = round(label_std, 6)
    return [
        {"name": "MeanAbsoluteError", "max": spread, "max_drop": round(0.05 * spread, 6)},
        {"name": "MeanSquaredError"},
        {"name": "ExampleCount"},
    ]


def config_text(
    model: str, package: str, label: str, task: str, classes: tuple[str, ...], sample: str, label_std: float
) -> str:
    """config.yaml, commented: every key a newcomer needs, nothing more."""
    import yaml

    def flow(value) -> str:
        return yaml.safe_dump(value, default_flow_style=True, width=1000, sort_keys=False).strip()

    lines = [
        f"# {model}: a tfx-canary pipeline config, written by `tfx-canary init` from {sample}.",
        "#   tfx-canary run --config <this file>   trains, gates and pushes a model",
        "# Paths are relative to this file. New data: a folder data/span-<N>/ with CSV files of the",
        "# same columns (`tfx-canary data add-span --config <this file> --csv FILE` writes the next one).",
        f"model: {model}  # the TF Serving model name: <home>/serving/{model}/<version>/",
        "code_dir: .  # the folder that holds the package below (on the import path for local runs)",
        f"preprocessing_fn: {package}.preprocessing.preprocessing_fn",
        f"run_fn: {package}.model.run_fn",
        f"schema_file: {SCHEMA_FILE}  # inferred by TFDV from the sample: curate it",
        f"data_root: {DATA_DIR}  # span-<N>/ folders; each run ingests the newest",
        f"label: {label}",
        f"task: {task}",
    ]
    if classes:
        lines.append(f"classes: {flow(list(classes))}  # in index order: what the model predicts")
    lines.append("# The model is pushed only if it passes every gate: min (higher is better) or max, and")
    lines.append("# max_drop: how much worse than the last pushed model it may be.")
    lines.append("metrics:")
    lines.extend(f"  - {flow(gate)}" for gate in default_metrics(task, label_std))
    lines += [
        "span_window: 8  # train on the latest 8 clean spans",
        "train_steps: 200",
        "eval_steps: 10",
        "warmup_examples: 5  # eval examples TF Serving replays when it loads a version",
        "",
    ]
    return "\n".join(lines)
