"""SafePusher's executor: a Pusher that publishes atomically, never pushes the same model twice, and
adds warm-up data.

Differences from the stock TFX Pusher (which copies file by file straight into the final integer
folder and re-pushes a cached model under a new timestamp on every re-run):

- publishing goes through ``components.safe_pusher.publish.publish_model`` (staged copy, verify, rename);
- a model whose SavedModel is already in the serving directory is skipped with ``pushed=0`` and a
  ``push_reason`` saying which version already holds it;
- a model trained on exactly the data of a version already in the serving directory (released, or
  rolled back: its folder stays) is skipped too, with ``duplicate_of`` naming that version;
- the published copy carries ``assets.extra/mlmd_uuid`` (MLMD model id + pipeline run id, so serving
  metrics can be joined to MLMD) and ``assets.extra/tf_serving_warmup_requests`` (real eval
  examples as ``PredictRequest``s on every signature, replayed by TF Serving at load).

The output ``PushedModel`` has the stock custom properties ``pushed``, ``pushed_version`` and
``pushed_destination``, so downstream components read it like the stock Pusher's output.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import tensorflow as tf
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.merge_spans.merge import DATA_FINGERPRINT
from components.safe_pusher import publish
from components.safe_pusher.assets_extra import mlmd_uuid, warmup_records
from release.serving_dir import MLMD_UUID_FILE, TRAINING_DATA_FILE, WARMUP_FILE

log = logging.getLogger(__name__)

PUSH_REASON_KEY = "push_reason"


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
        training = _training_data(input_dict)
        duplicate = publish.find_version_trained_on(training, base_dir) if training else None
        if duplicate is not None:
            pushed_model.set_int_custom_property("duplicate_of", duplicate)
            self._skip(
                pushed_model,
                f"the model was trained on exactly the data of version {duplicate} (spans "
                f"{training['spans']}), which was released or rolled back before; not pushing it again",
            )
            return
        extra = {MLMD_UUID_FILE: mlmd_uuid(model.id, exec_properties["pipeline_name"], self._run_id())}
        if training:
            extra[TRAINING_DATA_FILE] = json.dumps(training, sort_keys=True).encode()
        count = int(exec_properties.get("warmup_examples") or 0)
        if count and input_dict.get("examples"):
            examples = artifact_utils.get_single_instance(input_dict["examples"])
            extra[WARMUP_FILE] = warmup_records(examples.uri, count, model_dir=source)
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


def _training_data(input_dict: dict[str, list[types.Artifact]]) -> dict | None:
    """{"spans": [...], "fingerprint": ...} of the merged window the model was trained on, if wired."""
    [merged] = input_dict.get("training_examples") or [None]
    if merged is None or not merged.has_custom_property(DATA_FINGERPRINT):
        return None
    spans = json.loads(merged.get_string_custom_property("spans") or "[]")
    return {"spans": spans, "fingerprint": merged.get_string_custom_property(DATA_FINGERPRINT)}
