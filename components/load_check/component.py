"""LoadCheck: the TFX component spec and wiring (the executor does the ``Do``)."""

from __future__ import annotations

from typing import Any, ClassVar

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.load_check.executor import LoadCheckExecutor


class LoadCheckSpec(ComponentSpec):
    PARAMETERS: ClassVar[dict[str, Any]] = {
        "model_name": ExecutionParameter(type=str),
        "latency_budget_ms": ExecutionParameter(type=float),
        "warmup_examples": ExecutionParameter(type=int),
        "timed_requests": ExecutionParameter(type=int, optional=True),
    }
    INPUTS: ClassVar[dict[str, Any]] = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        # the Evaluator's verdict: a model it did not bless is not worth a server start
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS: ClassVar[dict[str, Any]] = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class LoadCheck(base_component.BaseComponent):
    """InfraValidator's job without Docker: load the candidate in a child model server on loopback, call
    every serving signature over REST and gRPC, time batch-1 calls against a budget; an ``InfraBlessing``
    whose ``blessed`` property the pusher requires. The requests become the version's warm-up file."""

    SPEC_CLASS = LoadCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(LoadCheckExecutor)

    def __init__(
        self,
        model: types.BaseChannel,
        examples: types.BaseChannel,
        model_name: str,
        latency_budget_ms: float,
        warmup_examples: int,
        model_blessing: types.BaseChannel | None = None,
        timed_requests: int | None = None,
    ):
        super().__init__(
            spec=LoadCheckSpec(
                model=model,
                examples=examples,
                model_blessing=model_blessing,
                model_name=model_name,
                latency_budget_ms=float(latency_budget_ms),
                warmup_examples=int(warmup_examples),
                timed_requests=timed_requests,
                blessing=types.Channel(type=standard_artifacts.InfraBlessing),
            )
        )
