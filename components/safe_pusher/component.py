"""SafePusher: the TFX component spec and wiring (the executor does the ``Do``)."""

from __future__ import annotations

from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.safe_pusher.executor import SafePusherExecutor


class SafePusherSpec(ComponentSpec):
    PARAMETERS: ClassVar[dict[str, Any]] = {
        "base_directory": ExecutionParameter(type=str),
        "pipeline_name": ExecutionParameter(type=str),
        "warmup_examples": ExecutionParameter(type=int, optional=True),
    }
    INPUTS: ClassVar[dict[str, Any]] = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
        "examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
        # what the model was trained on (MergeSpans' output): a window already released is not again
        "training_examples": ChannelParameter(type=standard_artifacts.Examples, optional=True),
    }
    OUTPUTS: ClassVar[dict[str, Any]] = {
        "pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)
    }


class SafePusher(base_component.BaseComponent):
    """Pusher into ``base_directory/<version>``; see the module docstring for how it differs."""

    SPEC_CLASS = SafePusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(SafePusherExecutor)

    def __init__(
        self,
        model: types.BaseChannel,
        model_blessing: types.BaseChannel,
        base_directory: str,
        pipeline_name: str,
        examples: types.BaseChannel | None = None,
        warmup_examples: int = 5,
        training_examples: types.BaseChannel | None = None,
    ):
        pushed_model = types.Channel(type=standard_artifacts.PushedModel)
        super().__init__(
            spec=SafePusherSpec(
                model=model,
                model_blessing=model_blessing,
                examples=examples,
                training_examples=training_examples,
                base_directory=base_directory,
                pipeline_name=pipeline_name,
                warmup_examples=warmup_examples,
                pushed_model=pushed_model,
            )
        )
