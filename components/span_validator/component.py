"""SpanValidator: the TFX component (ExampleValidator's spec, channels and outputs; our executor)."""

from __future__ import annotations

from tfx.components.example_validator.component import ExampleValidator
from tfx.dsl.components.base import executor_spec

from components.span_validator.executor import Executor


class SpanValidator(ExampleValidator):
    """ExampleValidator that also refuses a split with too few examples (see ``check``)."""

    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)
