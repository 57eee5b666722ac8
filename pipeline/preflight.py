"""Check a config against its code, schema and data before any TFX component runs.

A wrong dotted path, a label the schema or the data lacks, a task that does not fit the label, a CSV
header that disagrees with the schema, an empty span or a metric TFMA does not know would otherwise
fail minutes into a run, deep inside a component. Each is one ``ConfigError`` here, naming the file,
the key and what would be valid; nothing is written anywhere.
"""

from __future__ import annotations

import csv
import difflib
import importlib
import itertools
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from models import contract
from pipeline.config import PipelineConfig
from tfx_canary.errors import ConfigError
from tfx_canary.home import is_uri

# Label values are read from at most this many rows of the newest span.
SAMPLE_ROWS = 10_000


def check_config(config: PipelineConfig, span_files: Sequence[str | os.PathLike] = ()) -> None:
    """Everything a run needs from ``config``; ``span_files`` are the CSV files this run ingests
    (the newest one last; its rows are the sample the label is checked on).

    A span file without rows is left to the data gate (an empty file is refused before the run, a
    split with too few examples is an anomaly): new data that is short is not a config error.
    """
    import_user_code(config)
    schema = read_schema(config)
    columns = {feature.name: feature for feature in schema.feature}
    if config.label not in columns:
        raise _error(config, "label", f"{config.label!r} is not a column of {_schema_names(config, columns)}")
    _check_task_fits_type(config, columns[config.label])
    check_metrics(config)
    present = [path for path in span_files if os.path.getsize(path) > 0]
    for path in present:
        check_header(config, path, list(columns), require_rows=False)
    if present:
        _check_task_fits_values(config, present[-1])


def import_user_code(config: PipelineConfig) -> dict[str, Callable]:
    """Import ``preprocessing_fn`` and ``run_fn`` as TFX will (``code_dir`` first on ``sys.path``)."""
    if config.code_dir:
        if not os.path.isdir(config.code_dir):
            raise _error(config, "code_dir", f"{config.code_dir} is not a folder")
        if config.code_dir not in sys.path:
            sys.path.insert(0, config.code_dir)
        importlib.invalidate_caches()
    where = (
        f"from code_dir {config.code_dir}" if config.code_dir else "(set code_dir, or install the package)"
    )
    functions = {}
    for key in ("preprocessing_fn", "run_fn"):
        module_name, _, function_name = getattr(config, key).rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # the user's module may fail in any way while importing
            raise _error(
                config,
                key,
                f"module {module_name!r} does not import ({type(error).__name__}: {error}); "
                f"it must be a dotted path module.function importable {where}",
            ) from error
        function = getattr(module, function_name, None)
        if not callable(function):
            defined = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
            raise _error(
                config,
                key,
                f"module {module_name!r} ({getattr(module, '__file__', '?')}) has no function "
                f"{function_name!r}; its functions are {defined}",
            )
        functions[key] = function
    return functions


def read_schema(config: PipelineConfig):
    """The curated raw schema (``schema_pb2.Schema``) of ``schema_file``."""
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2

    try:
        text = Path(config.schema_file).read_text() if not is_uri(config.schema_file) else None
    except OSError as error:
        raise _error(config, "schema_file", f"cannot read {config.schema_file}: {error}") from error
    if text is None:
        import tensorflow as tf

        text = tf.io.gfile.GFile(config.schema_file).read()
    try:
        schema = text_format.Parse(text, schema_pb2.Schema())
    except text_format.ParseError as error:
        raise _error(
            config, "schema_file", f"{config.schema_file} is not a schema.pbtxt (TFDV text format): {error}"
        ) from error
    if not schema.feature:
        raise _error(config, "schema_file", f"{config.schema_file} lists no feature")
    return schema


def check_header(
    config: PipelineConfig, csv_file: str | os.PathLike, columns: Sequence[str], require_rows: bool = True
) -> list[str]:
    """The CSV header of ``csv_file``, which must name exactly the schema's columns."""
    header = read_header(csv_file, require_rows)
    missing = [c for c in columns if c not in header]
    extra = [c for c in header if c not in columns]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"lacks the schema's column(s) {missing}")
        if extra:
            problems.append(f"has column(s) {extra} the schema does not know")
        raise ConfigError(
            f"{csv_file}: the CSV header {' and '.join(problems)}; schema_file {config.schema_file}"
            f"{config.where} expects exactly {sorted(columns)} (curate the schema or fix the data)"
        )
    return header


def read_header(csv_file: str | os.PathLike, require_rows: bool = True) -> list[str]:
    """The header row of a CSV file; an empty file, or one without data rows (a sample must have
    some), is a ``ConfigError``."""
    try:
        with open(csv_file, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            first_row = next(reader, None)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ConfigError(f"{csv_file}: cannot read it as CSV: {error}") from error
    if not header:
        raise ConfigError(f"{csv_file}: the file is empty; a sample is a CSV header and at least one row")
    if first_row is None and require_rows:
        raise ConfigError(f"{csv_file}: the CSV has a header but no rows; a sample needs at least one row")
    return header


def check_metrics(config: PipelineConfig) -> None:
    """Every metric gate names a TFMA metric or a Keras metric class, as TFMA resolves them."""
    known = known_metrics()
    for gate in config.metrics:
        if gate.name not in known:
            close = difflib.get_close_matches(gate.name, sorted(known), n=3)
            hint = f"did you mean {' or '.join(close)}? " if close else ""
            raise _error(
                config,
                "metrics",
                f"{gate.name!r} is not a metric TFMA knows; {hint}valid are TFMA's metrics (AUC, "
                "BinaryAccuracy, ExampleCount, MeanAbsoluteError, ...) and tf.keras metric classes "
                "(SparseCategoricalAccuracy, ...)",
            )


def known_metrics() -> set[str]:
    """The class names TFMA accepts in a ``MetricConfig`` without a module."""
    import tf_keras
    from tensorflow_model_analysis.metrics import metric_types

    keras = {
        name
        for name, value in vars(tf_keras.metrics).items()
        if isinstance(value, type) and issubclass(value, tf_keras.metrics.Metric)
    }
    return set(metric_types.registered_metrics()) | keras


def _check_task_fits_type(config: PipelineConfig, label) -> None:
    from tensorflow_metadata.proto.v0 import schema_pb2

    kind = schema_pb2.FeatureType.Name(label.type)
    if config.task == contract.REGRESSION and label.type not in (schema_pb2.INT, schema_pb2.FLOAT):
        raise _error(
            config,
            "task",
            f"regression needs a numeric label, but {config.label!r} is {kind} in {config.schema_file}; "
            f"for class names use {contract.BINARY} or {contract.MULTICLASS}",
        )
    if _label_used_as_is(config) and config.task != contract.REGRESSION and label.type == schema_pb2.FLOAT:
        raise _error(
            config,
            "task",
            f"{config.task} needs integer or string classes, but {config.label!r} is FLOAT in "
            f"{config.schema_file}; for a number use {contract.REGRESSION}",
        )


def _check_task_fits_values(config: PipelineConfig, csv_file: str | os.PathLike) -> None:
    """A label used as it is (no ``label_key`` of the user's own) takes only the config's classes."""
    if config.task == contract.REGRESSION or not _label_used_as_is(config):
        return
    seen = label_values(csv_file, config.label)
    unknown = sorted(seen - set(config.classes))
    if config.task == contract.BINARY and len(seen) > 2:
        raise _error(
            config,
            "task",
            f"{contract.BINARY} takes 2 classes, but {config.label!r} has {len(seen)} in {csv_file} "
            f"({sorted(seen)}); use task: {contract.MULTICLASS}",
        )
    if unknown:
        raise _error(
            config,
            "classes",
            f"{list(config.classes)} lacks {unknown}, which {config.label!r} takes in {csv_file}; "
            f"list every class in index order, e.g. {sorted(seen | set(config.classes))}",
        )


def label_values(csv_file: str | os.PathLike, label: str) -> set[str]:
    """The distinct non-empty values of ``label`` in the first ``SAMPLE_ROWS`` rows of ``csv_file``."""
    with open(csv_file, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = itertools.islice(reader, SAMPLE_ROWS)
        return {row[label] for row in rows if row.get(label)}


def _label_used_as_is(config: PipelineConfig) -> bool:
    return config.label_key == contract.transformed_name(config.label)


def _schema_names(config: PipelineConfig, columns: dict) -> str:
    return f"the schema {config.schema_file} (its columns: {sorted(columns)})"


def _error(config: PipelineConfig, key: str, problem: str) -> ConfigError:
    return ConfigError(f"{key}{config.where}: {problem}")
