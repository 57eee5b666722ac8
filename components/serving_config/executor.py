"""Executor of ServingConfigGen: runs ``operations.publish`` and turns each config generation into
a ``canary.ServingConfig`` output artifact (several generations: sub-directories of the output URI)."""

from __future__ import annotations

import copy
import logging
import os
from typing import Any

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from release import operations
from release.audit import Audit, serving_config_properties
from release.config_store import Snapshot, Update
from release.metadata import open_store
from release.server_client import ServerClient
from release.serving_dir import CONFIG_NAME, join, write_text_atomic

log = logging.getLogger(__name__)


def _kind(update: Update) -> str:
    after = update.after.state
    if after.candidate is not None:
        return "phase1"
    return "first-stable" if update.before.state.stable is None else "canary-start"


def _version_to_release(pushed_model: types.Artifact, target: operations.Target) -> int | None:
    """The version this run should release, if any.

    Normally the one the Pusher just pushed. A model the Pusher found already published is released
    too when the serving config has never seen it: that is a run killed between the push and the
    config step, and re-running must finish it rather than leave the version unlisted for ever.
    """
    if pushed_model.get_int_custom_property("pushed") == 1:
        return int(pushed_model.get_string_custom_property("pushed_version"))
    if not pushed_model.has_custom_property("already_pushed_version"):
        return None
    version = pushed_model.get_int_custom_property("already_pushed_version")
    state = target.read().state
    unseen = version not in state.versions and version not in state.rejected
    if unseen and (state.stable is None or version > state.stable):
        log.info(
            "%s: version %s was pushed by an earlier run but never listed; releasing it now",
            target.model,
            version,
        )
        return version
    return None


def _audit(exec_properties: dict[str, Any]) -> Audit | None:
    """The release audit trail in the project's MLMD database, when the run has one (local runs):
    each generation is recorded as it is written, so a run killed mid-way leaves no gap in history."""
    path = exec_properties.get("metadata_path") or ""
    if not path:
        return None
    return Audit(open_store(path), exec_properties.get("snapshot_root") or os.path.dirname(path), "pipeline")


class Executor(base_executor.BaseExecutor):
    def Do(
        self,
        input_dict: dict[str, list[types.Artifact]],
        output_dict: dict[str, list[types.Artifact]],
        exec_properties: dict[str, Any],
    ) -> None:
        pushed_model = artifact_utils.get_single_instance(input_dict["pushed_model"])
        address = exec_properties.get("server_address") or ""
        target = operations.Target(
            serving_root=exec_properties["serving_root"],
            model=exec_properties["model_name"],
            base_path=exec_properties.get("base_path") or None,
            server=ServerClient(address) if address else None,
            load_timeout_s=float(exec_properties.get("load_timeout_seconds") or 300),
            label_timeout_s=float(exec_properties.get("label_timeout_seconds") or 60),
            audit=_audit(exec_properties),
            input_ids=(pushed_model.id,) if pushed_model.id else (),
            extra_properties={"pushed_model_id": pushed_model.id},
        )
        reason = f"PushedModel {pushed_model.id}: " + (
            pushed_model.get_string_custom_property("push_reason") or "pushed by the pipeline"
        )
        updates: list[Update] = []
        version = _version_to_release(pushed_model, target)
        if version is not None:
            updates = [u for u in operations.publish(target, version, reason) if u.changed]
        else:
            log.info("%s: nothing was pushed; the serving config stays as it is", target.model)
        generations = [(u.after, _kind(u)) for u in updates] or [(target.read(), "unchanged")]
        [template] = output_dict["serving_config"]
        base_uri = template.uri
        artifacts = []
        for i, (snapshot, kind) in enumerate(generations):
            artifact = template if i == 0 else copy.deepcopy(template)
            if i > 0:
                artifact.mlmd_artifact.ClearField("id")
            if len(generations) > 1:  # TFX wants several outputs in direct sub-directories
                artifact.uri = os.path.join(base_uri, f"generation-{snapshot.state.generation}")
            self._describe(artifact, snapshot, kind, reason, pushed_model)
            artifacts.append(artifact)
        output_dict["serving_config"][:] = artifacts
        last = generations[-1][0].state
        if last.candidate is not None:
            log.warning(
                "%s: phase 1 only: version %s is listed but not labelled; run `tfx-canary rollout` (or "
                "`tfx-canary promote --phase2`) where the server is reachable",
                target.model,
                last.candidate,
            )

    @staticmethod
    def _describe(
        artifact: types.Artifact, snapshot: Snapshot, kind: str, reason: str, pushed_model: types.Artifact
    ) -> None:
        """The output artifact: the generation's config and properties. Not a history entry (the audit
        trail records generations as they are written), so it carries no ``written_at``."""
        write_text_atomic(join(artifact.uri, CONFIG_NAME), snapshot.config_text)
        properties = serving_config_properties(snapshot, kind, "pipeline", reason)
        del properties["written_at"]
        properties["pushed_model_id"] = pushed_model.id
        properties["phase2_pending"] = int(snapshot.state.candidate is not None)
        for key, value in properties.items():
            if isinstance(value, int):
                artifact.set_int_custom_property(key, value)
            elif isinstance(value, float):
                artifact.set_float_custom_property(key, value)
            else:
                artifact.set_string_custom_property(key, str(value))
