"""WindowTransform: TFX's Transform component (same spec, channels and outputs) with our executor."""

from __future__ import annotations

from tfx.components.transform.component import Transform
from tfx.dsl.components.base import executor_spec

from components.window_transform.executor import Executor


class WindowTransform(Transform):
    """Transform whose analyzer cache is keyed by span (see the package docstring)."""

    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
