"""A real tf.Transform output over a few taxi rows, shared by the model tests."""

import csv
import itertools

import apache_beam as beam
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
from tfx.utils import io_utils

from models import features
from models.preprocessing import preprocessing_fn
from pipeline import data
from pipeline.pipeline import schema_path

ROWS = 40


def raw_rows(count: int = ROWS) -> list[dict]:
    """The first ``count`` CSV rows as typed dicts; empty cells are missing features."""
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
    feature = {}
    for key, value in row.items():
        if isinstance(value, float):
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        elif isinstance(value, int):
            feature[key] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feature[key] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def transform_rows(model: str, out_dir: str) -> tuple[list[dict], tft.TFTransformOutput]:
    """Analyze the rows with tf.Transform on Beam (FnApiRunner); write the transform graph."""
    schema = io_utils.SchemaReader().read(str(schema_path()))
    raw_metadata = dataset_metadata.DatasetMetadata(schema)
    every = [f.name for f in schema.feature]
    instances = [{key: [row[key]] if key in row else [] for key in every} for row in raw_rows()]
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=f"{out_dir}/tmp"):
        raw = pipeline | beam.Create(instances)
        transform_fn = (raw, raw_metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, {"model": model})
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    metadata_io.write_metadata(raw_metadata, f"{out_dir}/{tft.TFTransformOutput.RAW_METADATA_DIR}")
    return [to_example(r) for r in raw_rows()], tft.TFTransformOutput(out_dir)


@pytest.fixture(scope="session")
def tips_transform(tmp_path_factory):
    return transform_rows("taxi_tips", str(tmp_path_factory.mktemp("tips_transform")))


@pytest.fixture(scope="session")
def fare_transform(tmp_path_factory):
    return transform_rows("taxi_fare", str(tmp_path_factory.mktemp("fare_transform")))
