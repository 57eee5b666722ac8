"""BackfillSpans: the TFX component spec and wiring (logic in ``ingest``, glue in ``executor``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import ClassVar

from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.backfill_spans.executor import Executor


class BackfillSpansSpec(ComponentSpec):
    PARAMETERS: ClassVar = {
        "input_base": ExecutionParameter(type=str),
        "input_config": ExecutionParameter(type=example_gen_pb2.Input),
        "output_config": ExecutionParameter(type=example_gen_pb2.Output),
        "spans": ExecutionParameter(type=str),  # JSON list of span numbers
    }
    INPUTS: ClassVar = {"schema": ChannelParameter(type=standard_artifacts.Schema)}
    OUTPUTS: ClassVar = {
        "examples": ChannelParameter(type=standard_artifacts.Examples),
        "statistics": ChannelParameter(type=standard_artifacts.ExampleStatistics),
        "anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies),
    }


class BackfillSpans(base_component.BaseComponent):
    """Older spans of a first run: ingested, summarized and validated together (see the module doc)."""

    SPEC_CLASS = BackfillSpansSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

    def __init__(
        self,
        input_base: str,
        spans: Iterable[int],
        schema: channel.BaseChannel,
        input_config: example_gen_pb2.Input,
        output_config: example_gen_pb2.Output,
    ):
        super().__init__(
            spec=BackfillSpansSpec(
                input_base=str(input_base),
                input_config=input_config,
                output_config=output_config,
                spans=json.dumps(sorted(set(int(s) for s in spans))),
                schema=schema,
                examples=channel.Channel(type=standard_artifacts.Examples),
                statistics=channel.Channel(type=standard_artifacts.ExampleStatistics),
                anomalies=channel.Channel(type=standard_artifacts.ExampleAnomalies),
            )
        )
