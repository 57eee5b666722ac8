"""The data gate's one rule beyond TFDV: a split with too few examples (none included) is an anomaly."""

import pytest
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx.utils import io_utils

from components.span_validator.check import LOW_COUNT, minimum_examples, validate
from pipeline.data import schema_path


def statistics(count: int) -> statistics_pb2.DatasetFeatureStatisticsList:
    return statistics_pb2.DatasetFeatureStatisticsList(
        datasets=[statistics_pb2.DatasetFeatureStatistics(num_examples=count)]
    )


@pytest.fixture(scope="module")
def schema() -> schema_pb2.Schema:
    return io_utils.SchemaReader().read(str(schema_path()))


def test_the_curated_schema_sets_the_minimum(schema):
    assert minimum_examples(schema) == 20
    assert minimum_examples(schema_pb2.Schema()) == 1  # no constraint: an empty split still fails


@pytest.mark.parametrize("count", [0, 1, 19])
def test_too_few_examples_is_a_dataset_anomaly(schema, count):
    found = validate(statistics(count), schema)
    assert found.HasField("dataset_anomaly_info")
    assert found.dataset_anomaly_info.short_description == LOW_COUNT
    assert f"The dataset has {count} examples" in found.dataset_anomaly_info.description


def test_enough_examples_is_not(schema):
    assert not validate(statistics(25), schema).HasField("dataset_anomaly_info")


def test_an_empty_split_fails_even_without_a_minimum():
    assert validate(statistics(0), schema_pb2.Schema()).HasField("dataset_anomaly_info")
    assert not validate(statistics(1), schema_pb2.Schema()).HasField("dataset_anomaly_info")
