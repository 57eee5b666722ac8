"""A real tf.Transform output over a few taxi rows per model (``taxi_transforms``, tests/conftest.py)."""

import pytest

from fixtures.taxi import ROWS, custom_config, raw_rows, taxi_spec, to_example

__all__ = ["ROWS", "custom_config", "raw_rows", "taxi_spec", "to_example"]


@pytest.fixture(scope="session")
def tips_transform(taxi_transforms):
    return taxi_transforms["taxi_tips"]


@pytest.fixture(scope="session")
def fare_transform(taxi_transforms):
    return taxi_transforms["taxi_fare"]
