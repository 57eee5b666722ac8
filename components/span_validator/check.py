"""One split's statistics against the curated schema: TFDV's checks, and a minimum number of examples.

TFDV applies ``dataset_constraints.min_examples_count`` only to a split that has examples: a split
with none passes every check, so an empty span (a ``data.csv`` truncated to nothing) would train
nothing new and still go out as a release. Here a split with fewer examples than the schema's
``min_examples_count`` (or none, when the schema sets no minimum) is a dataset anomaly, worded like
TFDV's own.
"""

from __future__ import annotations

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

LOW_COUNT = "Low num examples in dataset."


def minimum_examples(schema: schema_pb2.Schema) -> int:
    """The schema's minimum examples per split; at least one."""
    return (
        max(1, schema.dataset_constraints.min_examples_count) if schema.HasField("dataset_constraints") else 1
    )


def validate(
    statistics: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema
) -> anomalies_pb2.Anomalies:
    """TFDV's anomalies for one split, plus a dataset anomaly when it has too few examples."""
    anomalies = tfdv.validate_statistics(statistics=statistics, schema=schema)
    count = sum(dataset.num_examples for dataset in statistics.datasets)
    minimum = minimum_examples(schema)
    if count < minimum and not anomalies.HasField("dataset_anomaly_info"):
        description = (
            f"The dataset has {count} examples, which is fewer than expected (at least {minimum}, "
            "the schema's dataset_constraints.min_examples_count)."
        )
        reason = anomalies_pb2.AnomalyInfo.Reason(
            type=anomalies_pb2.AnomalyInfo.DATASET_LOW_NUM_EXAMPLES,
            short_description=LOW_COUNT,
            description=description,
        )
        anomalies.dataset_anomaly_info.CopyFrom(
            anomalies_pb2.AnomalyInfo(
                description=description,
                severity=anomalies_pb2.AnomalyInfo.ERROR,
                short_description=LOW_COUNT,
                reason=[reason],
            )
        )
    return anomalies
