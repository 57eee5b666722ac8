"""A real tf.Transform output over a few taxi rows, shared by the model tests (built by fixtures.taxi)."""

import pytest

from fixtures.taxi import ROWS, custom_config, raw_rows, taxi_spec, to_example, transform_rows

__all__ = ["ROWS", "custom_config", "raw_rows", "taxi_spec", "to_example", "transform_rows"]


@pytest.fixture(scope="session")
def tips_transform(tmp_path_factory):
    return transform_rows("taxi_tips", str(tmp_path_factory.mktemp("tips_transform")))


@pytest.fixture(scope="session")
def fare_transform(tmp_path_factory):
    return transform_rows("taxi_fare", str(tmp_path_factory.mktemp("fare_transform")))
