"""Feature names, raw types and labels of the Chicago taxi data, for both models.

One place that says what each CSV column is, so the preprocessing, the model, the serving signatures
and the tests agree. Two models share the data: ``taxi_tips`` (is the tip more than 20% of the fare?,
a binary classifier) and ``taxi_fare`` (the fare in dollars, a regressor).
"""

from __future__ import annotations

from dataclasses import dataclass

import tensorflow as tf

from models import contract

# Raw CSV columns by the type CsvExampleGen infers for them.
FLOAT_FEATURES = (
    "fare",
    "trip_miles",
    "pickup_latitude",
    "pickup_longitude",
    "dropoff_latitude",
    "dropoff_longitude",
    "tips",
)
INT_FEATURES = (
    "trip_seconds",
    "trip_start_hour",
    "trip_start_day",
    "trip_start_month",
    "trip_start_timestamp",
    "pickup_community_area",
    "dropoff_community_area",
    "pickup_census_tract",
    "dropoff_census_tract",
)
STRING_FEATURES = ("payment_type", "company")

# How each model input is encoded.
DENSE_FLOAT_KEYS = ("trip_miles", "fare", "trip_seconds")  # z-scored
VOCAB_KEYS = ("payment_type", "company")  # vocabulary + out-of-vocabulary buckets
BUCKET_KEYS = ("pickup_latitude", "pickup_longitude", "dropoff_latitude", "dropoff_longitude")  # quantiles
# Small integer categoricals and their number of values (hour 0-23, weekday 1-7, month 1-12).
CATEGORICAL_KEYS = {"trip_start_hour": 24, "trip_start_day": 8, "trip_start_month": 13}
# Large integer ids (community areas, census tracts): hashed after filling in missing values.
HASHED_INT_KEYS = (
    "pickup_community_area",
    "dropoff_community_area",
    "dropoff_census_tract",
)

VOCAB_SIZE = 1000
OOV_SIZE = 10
BUCKET_COUNT = 10
HASH_BUCKETS = 100

# Never model inputs: the raw timestamp only defines spans, tips leak the label and the pickup census
# tract is missing in all but one of the 15,002 rows.
NOT_INPUTS = ("trip_start_timestamp", "tips", "pickup_census_tract")

# A REST client must send these to ``serving_raw``; every other input is optional (see MISSING).
REQUIRED_RAW_INPUTS = ("trip_miles", "trip_seconds", "payment_type")
# What a client sends for a missing optional value in ``serving_raw`` (see ``models.contract``).
MISSING_FLOAT = contract.MISSING_FLOAT
MISSING_INT = contract.MISSING_INT
MISSING_STRING = contract.MISSING_STRING


@dataclass(frozen=True)
class ModelSpec:
    """What one taxi model predicts (its config's settings) and from which raw features."""

    name: str
    task: str  # models.contract.BINARY or REGRESSION
    label_key: str  # the transformed label feature
    input_keys: tuple[str, ...]  # raw features the model reads

    @property
    def dense_keys(self) -> tuple[str, ...]:
        return tuple(k for k in DENSE_FLOAT_KEYS if k in self.input_keys)


def _inputs_without(*excluded: str) -> tuple[str, ...]:
    every = FLOAT_FEATURES + INT_FEATURES + STRING_FEATURES
    return tuple(k for k in every if k not in NOT_INPUTS and k not in excluded)


# The raw features each taxi model reads (the fare model must not see the fare it predicts).
INPUTS = {"taxi_tips": _inputs_without(), "taxi_fare": _inputs_without("fare")}


def model_spec(custom_config: dict | None) -> ModelSpec:
    """The taxi model a component's ``custom_config`` selects (``model: taxi_fare`` in its config file),
    with the label and task the pipeline put there (``models.contract``)."""
    name = (custom_config or {}).get("model")
    if name not in INPUTS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(INPUTS)}")
    settings = contract.ModelSettings.from_custom_config(custom_config)
    return ModelSpec(name, settings.task, settings.label_key, INPUTS[name])


def raw_dtype(key: str) -> tf.DType:
    """The dtype of a raw feature as parsed from tf.Example."""
    if key in FLOAT_FEATURES:
        return tf.float32
    if key in INT_FEATURES:
        return tf.int64
    if key in STRING_FEATURES:
        return tf.string
    raise KeyError(f"unknown feature {key!r}")


transformed_name = contract.transformed_name
