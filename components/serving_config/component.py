"""TFX glue for ServingConfigGen; the logic lives in ``release``.

Wiring after the Pusher is one line::

    ServingConfigGen(pushed_model=pusher.outputs["pushed_model"], serving_root=..., model_name=...)
"""

from __future__ import annotations

from typing import ClassVar

from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import channel, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from components.serving_config.executor import Executor
from components.types import ServingConfig


class ServingConfigGenSpec(ComponentSpec):
    PARAMETERS: ClassVar = {
        "serving_root": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
        "base_path": ExecutionParameter(type=str, optional=True),
        "server_address": ExecutionParameter(type=str, optional=True),
        "load_timeout_seconds": ExecutionParameter(type=int, optional=True),
        "label_timeout_seconds": ExecutionParameter(type=int, optional=True),
        # the project's MLMD database and snapshot folder, to record each generation as it is written
        "metadata_path": ExecutionParameter(type=str, optional=True),
        "snapshot_root": ExecutionParameter(type=str, optional=True),
    }
    INPUTS: ClassVar = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}
    OUTPUTS: ClassVar = {"serving_config": ChannelParameter(type=ServingConfig)}


class ServingConfigGen(base_component.BaseComponent):
    """Lists the pushed version in ``models.config`` (phase 1) and, if the server is reachable, labels it
    once AVAILABLE (phase 2): the first version becomes ``stable``, later ones ``canary``."""

    SPEC_CLASS = ServingConfigGenSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(
        self,
        pushed_model: channel.BaseChannel,
        serving_root: str,
        model_name: str,
        base_path: str | None = None,
        server_address: str | None = None,
        load_timeout_seconds: int = 300,
        label_timeout_seconds: int = 60,
        metadata_path: str | None = None,
        snapshot_root: str | None = None,
    ):
        super().__init__(
            spec=ServingConfigGenSpec(
                pushed_model=pushed_model,
                serving_root=str(serving_root),
                model_name=model_name,
                base_path=str(base_path) if base_path else None,
                server_address=server_address,
                load_timeout_seconds=load_timeout_seconds,
                label_timeout_seconds=label_timeout_seconds,
                metadata_path=metadata_path,
                snapshot_root=snapshot_root,
                serving_config=channel.Channel(type=ServingConfig),
            )
        )
