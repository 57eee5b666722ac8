"""SpanValidator's executor: ExampleValidator's, validating each split with ``check.validate``."""

from __future__ import annotations

import os
from typing import Any

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator import executor as example_validator
from tfx.components.example_validator import labels
from tfx.components.util import value_utils
from tfx.types import standard_component_specs
from tfx.utils import writer_utils

from components.span_validator.check import validate


class Executor(example_validator.Executor):
    """Same outputs, files and ``blessed`` flags as ExampleValidator's; one more rule per split."""

    def _Validate(self, inputs: dict[str, Any], outputs: dict[str, Any]) -> anomalies_pb2.Anomalies:
        schema = value_utils.GetSoleValue(inputs, standard_component_specs.SCHEMA_KEY)
        statistics = value_utils.GetSoleValue(inputs, standard_component_specs.STATISTICS_KEY)
        anomalies = validate(statistics, schema)
        path = value_utils.GetSoleValue(outputs, labels.SCHEMA_DIFF_PATH)
        writer_utils.write_anomalies(os.path.join(path, example_validator.DEFAULT_FILE_NAME), anomalies)
        return anomalies
