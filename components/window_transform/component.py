"""WindowTransform: TFX's Transform component (same parameters, channels and outputs), with our
executor and two additions: the blessed model (``base_model``), whose transform graph a warm retrain
reuses, and ``transform_reuses``, how many retrains in a row may reuse one analysis."""

from __future__ import annotations

from typing import Any, ClassVar

from tfx import types
from tfx.components.transform.component import Transform
from tfx.dsl.components.base import executor_spec
from tfx.types import component_spec, standard_artifacts
from tfx.types.standard_component_specs import TransformSpec

from components.window_transform.executor import BASE_MODEL, TRANSFORM_REUSES, Executor


class WindowTransformSpec(TransformSpec):
    PARAMETERS: ClassVar[dict[str, Any]] = {
        **TransformSpec.PARAMETERS,
        TRANSFORM_REUSES: component_spec.ExecutionParameter(type=int, optional=True),
    }
    INPUTS: ClassVar[dict[str, Any]] = {
        **TransformSpec.INPUTS,
        BASE_MODEL: component_spec.ChannelParameter(type=standard_artifacts.Model, optional=True),
    }


class WindowTransform(Transform):
    """Transform that reuses the blessed model's analysis on a warm retrain (``reuse``), and keys its
    analyzer cache by span otherwise (see the package docstring)."""

    SPEC_CLASS = WindowTransformSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self, *, base_model: types.BaseChannel | None = None, transform_reuses: int = 0, **transform_args
    ):
        """``transform_args`` are TFX Transform's own arguments."""
        super().__init__(**transform_args)
        stock = self.spec
        self.spec = WindowTransformSpec(
            **stock.exec_properties,
            **stock.inputs,
            **stock.outputs,
            base_model=base_model,
            transform_reuses=int(transform_reuses),
        )

    def _validate_spec(self, spec) -> None:
        # Transform's __init__ builds the stock spec; __init__ above replaces it with ours.
        if type(spec) is not TransformSpec:
            super()._validate_spec(spec)
