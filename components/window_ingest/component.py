"""WindowIngest: the TFX component spec and wiring (Beam work in ``ingest``, window rules in ``window``)."""

from __future__ import annotations

from typing import ClassVar

from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.window_ingest.executor import Executor


class WindowIngestSpec(ComponentSpec):
    PARAMETERS: ClassVar = {
        "input_base": ExecutionParameter(type=str),
        "input_config": ExecutionParameter(type=example_gen_pb2.Input),
        "output_config": ExecutionParameter(type=example_gen_pb2.Output),
        "num_spans": ExecutionParameter(type=int),
        # the pushed versions' folder: a window a version was trained on already has nothing new
        "serving_model_dir": ExecutionParameter(type=str, optional=True),
        # spans ingested by earlier runs (``span_cache``): a retrain ingests only the new ones
        "span_cache": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: ClassVar = {"schema": ChannelParameter(type=standard_artifacts.Schema)}
    OUTPUTS: ClassVar = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }


class WindowIngest(base_component.BaseComponent):
    """The latest ``num_spans`` spans under ``input_base``, each validated against the schema in this run;
    the clean ones as one Examples artifact (see ``executor``). It reads the data root, so it must never
    be answered from the cache: ``NEVER_CACHED`` tells the local runner and the Vertex compiler."""

    SPEC_CLASS = WindowIngestSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    NEVER_CACHED = True

    def __init__(
        self,
        input_base: str,
        num_spans: int,
        schema: channel.BaseChannel,
        input_config: example_gen_pb2.Input,
        output_config: example_gen_pb2.Output,
        serving_model_dir: str | None = None,
        span_cache: str | None = None,
    ):
        super().__init__(
            spec=WindowIngestSpec(
                input_base=str(input_base),
                input_config=input_config,
                output_config=output_config,
                num_spans=int(num_spans),
                serving_model_dir=str(serving_model_dir) if serving_model_dir else None,
                span_cache=str(span_cache) if span_cache else None,
                schema=schema,
                examples=channel.Channel(type=standard_artifacts.Examples),
                statistics=channel.Channel(type=standard_artifacts.ExampleStatistics),
                anomalies=channel.Channel(type=standard_artifacts.ExampleAnomalies),
            )
        )
