"""A Pusher that publishes atomically, never pushes the same model twice, and adds warm-up data.

Differences from the stock TFX Pusher (which copies file by file straight into the final integer
folder and re-pushes a cached model under a new timestamp on every re-run):

- publishing goes through ``pipeline.publish.publish_model`` (staged copy, verify, rename);
- a model whose SavedModel is already in the serving directory is skipped with ``pushed=0`` and a
  ``push_reason`` saying which version already holds it;
- the published copy carries ``assets.extra/mlmd_uuid`` (MLMD model id + pipeline run id, so serving
  metrics can be joined to MLMD) and ``assets.extra/tf_serving_warmup_requests`` (real eval
  examples as ``PredictRequest``s on ``serving_default``, replayed by TF Serving at load).

The output ``PushedModel`` has the stock custom properties ``pushed``, ``pushed_version`` and
``pushed_destination``, so downstream components read it like the stock Pusher's output.
"""

from __future__ import annotations

import logging
import os
import tempfile
from typing import Any, ClassVar

import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact_utils, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter
from tfx.utils import path_utils

from pipeline import publish

log = logging.getLogger(__name__)

MLMD_UUID_FILE = "assets.extra/mlmd_uuid"
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
PUSH_REASON_KEY = "push_reason"


def warmup_records(examples_uri: str, count: int, split: str = "eval") -> bytes:
    """A TFRecord file body of ``PredictionLog``s: ``count`` serialized examples from ``split``."""
    files = tf.io.gfile.glob(f"{examples_uri}/Split-{split}/*")
    if not files:
        raise FileNotFoundError(f"no {split} split under {examples_uri} to build warm-up requests from")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").take(count)
    serialized = [record.numpy() for record in dataset]
    with tempfile.TemporaryDirectory(prefix="tfx-canary-warmup-") as scratch:
        temp = os.path.join(scratch, "warmup.tfrecord")
        _write_prediction_logs(temp, serialized)
        with open(temp, "rb") as handle:
            return handle.read()


def _write_prediction_logs(path: str, serialized: list[bytes]) -> None:
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for example in serialized:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(signature_name="serving_default")
            )
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([example], dtype=tf.string, shape=[1]))
            log_record = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log_record.SerializeToString())


def mlmd_uuid(model_artifact_id: int, pipeline_name: str, run_id: str | None) -> bytes:
    """The text TF Serving exports as the model's MLMD key: which artifact and which run made it."""
    return f"pipeline={pipeline_name};model_id={model_artifact_id};run_id={run_id or 'unknown'}\n".encode()


class SafePusherExecutor(pusher_executor.Executor):
    """Publishes a blessed model once, atomically, with MLMD and warm-up files."""

    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        pushed_model = artifact_utils.get_single_instance(output_dict["pushed_model"])
        if not self.CheckBlessing(input_dict):
            self._skip(pushed_model, "the model is not blessed by the Evaluator")
            return
        model = artifact_utils.get_single_instance(input_dict["model"])
        source = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
        base_dir = exec_properties["base_directory"]
        already = publish.find_published_version(source, base_dir)
        if already is not None:
            pushed_model.set_int_custom_property("already_pushed_version", already)
            self._skip(pushed_model, f"this model is already pushed as version {already}")
            return
        extra = {MLMD_UUID_FILE: mlmd_uuid(model.id, exec_properties["pipeline_name"], self._run_id())}
        count = int(exec_properties.get("warmup_examples") or 0)
        if count and input_dict.get("examples"):
            examples = artifact_utils.get_single_instance(input_dict["examples"])
            extra[WARMUP_FILE] = warmup_records(examples.uri, count)
        version = publish.publish_model(source, base_dir, extra_files=extra)
        destination = tf.io.gfile.join(base_dir, str(version))
        pushed_model.set_int_custom_property("pushed", 1)
        pushed_model.set_string_custom_property("pushed_version", str(version))
        pushed_model.set_string_custom_property("pushed_destination", destination)
        pushed_model.set_string_custom_property(PUSH_REASON_KEY, f"pushed version {version} to {destination}")
        log.info("Pushed model %d as version %d to %s", model.id, version, destination)

    def _skip(self, pushed_model: types.Artifact, reason: str) -> None:
        log.info("Not pushing: %s", reason)
        pushed_model.set_int_custom_property("pushed", 0)
        pushed_model.set_string_custom_property(PUSH_REASON_KEY, reason)

    def _run_id(self) -> str | None:
        return self._context.pipeline_run_id if self._context else None


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
    ):
        pushed_model = types.Channel(type=standard_artifacts.PushedModel)
        super().__init__(
            spec=SafePusherSpec(
                model=model,
                model_blessing=model_blessing,
                examples=examples,
                base_directory=base_directory,
                pipeline_name=pipeline_name,
                warmup_examples=warmup_examples,
                pushed_model=pushed_model,
            )
        )
