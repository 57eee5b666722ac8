"""Tiny but real taxi models for tests and benchmarks: tf.Transform on Beam, a short fit, a full export.

The model and serving tests and the serving benchmark all need the pipeline's own model (same
preprocessing, same signatures) without running the pipeline, so the builder lives here once::

    rows, transform_output = transform_rows("taxi_tips", "/tmp/tips_transform")
    export_dir = write_taxi_model("/tmp/serving/taxi_tips", 1, "taxi_tips", (rows, transform_output))
"""

from __future__ import annotations

import csv
import itertools
import os
from pathlib import Path

ROWS = 40


def raw_rows(count: int = ROWS) -> list[dict]:
    """The first ``count`` CSV rows as typed dicts; empty cells are missing features."""
    import tensorflow as tf

    from models import features
    from pipeline import data

    with open(data.sample_csv(), newline="") as handle:
        rows = list(itertools.islice(csv.DictReader(handle), count))
    typed = []
    for row in rows:
        values = {}
        for key, text in row.items():
            if text == "":
                continue
            dtype = features.raw_dtype(key)
            values[key] = float(text) if dtype == tf.float32 else int(text) if dtype == tf.int64 else text
        typed.append(values)
    return typed


def to_example(row: dict) -> bytes:
    """One row as a serialized tf.Example (floats, ints and strings as the CSV types them)."""
    import tensorflow as tf

    feature = {}
    for key, value in row.items():
        if isinstance(value, float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def transform_rows(model: str, out_dir: str, count: int = ROWS):
    """Analyze ``count`` rows with tf.Transform on Beam (FnApiRunner); write the transform graph.

    Returns the rows as serialized tf.Examples and the ``TFTransformOutput``.
    """
    return transform_models({model: out_dir}, count)[model]


def transform_models(out_dirs: dict[str, str], count: int = ROWS) -> dict:
    """``transform_rows`` for several models in one Beam pipeline (its start-up is paid once)."""
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx.utils import io_utils

    from models.preprocessing import preprocessing_fn
    from pipeline.pipeline import schema_path

    schema = io_utils.SchemaReader().read(str(schema_path()))
    raw_metadata = dataset_metadata.DatasetMetadata(schema)
    every = [f.name for f in schema.feature]
    rows = raw_rows(count)
    instances = [{key: [row[key]] if key in row else [] for key in every} for row in rows]
    temp_dir = f"{next(iter(out_dirs.values()))}/tmp"
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=temp_dir):
        raw = pipeline | beam.Create(instances)
        for model, out_dir in out_dirs.items():
            transform_fn = (raw, raw_metadata) | f"Analyze {model}" >> tft_beam.AnalyzeDataset(
                lambda inputs, model=model: preprocessing_fn(inputs, {"model": model})
            )
            _ = transform_fn | f"Write {model}" >> tft_beam.WriteTransformFn(out_dir)
    serialized = [to_example(r) for r in rows]
    results = {}
    for model, out_dir in out_dirs.items():
        metadata_io.write_metadata(raw_metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
        results[model] = (serialized, tft.TFTransformOutput(out_dir))
    return results


def export_model(transform, model: str, path: str | os.PathLike) -> None:
    """Fit ``model`` for one epoch on the transformed rows and save it with all serving signatures."""
    import tensorflow as tf

    from models import features
    from models.model import SEED, build_keras_model, export_signatures

    rows, output = transform
    spec = features.MODELS[model]
    tf.keras.utils.set_random_seed(SEED)
    keras_model = build_keras_model(spec)
    transformed = output.transform_features_layer()(tf.io.parse_example(rows, output.raw_feature_spec()))
    inputs = {
        features.transformed_name(k): transformed[features.transformed_name(k)] for k in spec.input_keys
    }
    keras_model.fit(inputs, transformed[spec.label_key], epochs=1, batch_size=len(rows), verbose=0)
    tf.saved_model.save(keras_model, str(path), signatures=export_signatures(keras_model, output, spec))


def write_taxi_model(base_path: str | os.PathLike, version: int, model: str, transform) -> Path:
    """Export ``model`` as ``<base_path>/<version>``, staged under a non-numeric name and renamed."""
    from pipeline.publish import write_local_version

    def write(staging: str) -> None:
        export_model(transform, model, staging)

    return Path(write_local_version(base_path, version, write))


def serving_raw_inputs(rows: list[dict], model: str) -> dict[str, list]:
    """``serving_raw`` columns for ``rows``: every input of ``model``, the MISSING sentinel where absent."""
    import tensorflow as tf

    from models import features

    missing = {tf.float32: features.MISSING_FLOAT, tf.int64: features.MISSING_INT}
    columns = {}
    for key in features.MODELS[model].input_keys:
        default = missing.get(features.raw_dtype(key), features.MISSING_STRING)
        columns[key] = [row.get(key, default) for row in rows]
    return columns
