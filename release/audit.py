"""Every config generation and every release transition, recorded in ML Metadata.

Each generation of ``models.config`` becomes a ``canary.ServingConfig`` artifact whose custom
properties say which version each label pointed at, who changed it and why. Each transition
(phase 1/2, promote, rollback, retire, traffic step) is a ``canary.Transition`` execution with the
previous config (and any ``canary.CanaryAnalysis``) as inputs and the new config as output, all in
one ``canary.Release`` context per model.

MLMD 1.21 has no filter queries, so lookups go by type and context and filter in Python.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from release.config_store import Snapshot
from release.serving_dir import join, write_text_atomic

SERVING_CONFIG_TYPE = "canary.ServingConfig"
ANALYSIS_TYPE = "canary.CanaryAnalysis"
TRANSITION_TYPE = "canary.Transition"
RELEASE_CONTEXT_TYPE = "canary.Release"


def serving_config_properties(snapshot: Snapshot, kind: str, actor: str, reason: str) -> dict[str, object]:
    """Custom properties of a ServingConfig artifact; the TFX executor sets the same ones."""
    state = snapshot.state
    return {
        "model": state.model,
        "generation": state.generation,
        "versions": json.dumps(list(state.versions)),
        "labels": json.dumps(state.label_map, sort_keys=True),
        "stable_version": state.stable if state.stable is not None else -1,
        "canary_version": state.canary if state.canary is not None else -1,
        "canary_weight": state.canary_weight,
        "step": state.step,
        "config_sha256": snapshot.config_sha256,
        "config_path": snapshot.config_path,
        "kind": kind,
        "actor": actor,
        "reason": reason,
        "written_at": time.time(),
    }


def set_custom(message, properties: dict[str, object]) -> None:
    for key, value in properties.items():
        if isinstance(value, int):  # bool is an int too
            message.custom_properties[key].int_value = int(value)
        elif isinstance(value, float):
            message.custom_properties[key].double_value = value
        else:
            message.custom_properties[key].string_value = str(value)


def get_custom(message) -> dict[str, object]:
    result = {}
    for key, value in message.custom_properties.items():
        kind = value.WhichOneof("value")
        result[key] = getattr(value, kind) if kind else None
    return result


def _type_id(store, kind: str, name: str) -> int:
    put = {
        "artifact": (store.put_artifact_type, metadata_store_pb2.ArtifactType),
        "execution": (store.put_execution_type, metadata_store_pb2.ExecutionType),
        "context": (store.put_context_type, metadata_store_pb2.ContextType),
    }[kind]
    return put[0](put[1](name=name), can_add_fields=True, can_omit_fields=True)


class Audit:
    """Writes release transitions into MLMD, with a snapshot file of every config generation."""

    def __init__(self, store: metadata_store.MetadataStore, snapshot_root: str, actor: str):
        self.store = store
        self.snapshot_root = snapshot_root
        self.actor = actor

    def _context(self, model: str) -> metadata_store_pb2.Context:
        type_id = _type_id(self.store, "context", RELEASE_CONTEXT_TYPE)
        context = self.store.get_context_by_type_and_name(RELEASE_CONTEXT_TYPE, model)
        if context is None:
            context = metadata_store_pb2.Context(type_id=type_id, name=model)
            [context.id] = self.store.put_contexts([context])
        return context

    def _latest_config(self, model: str, generation: int) -> metadata_store_pb2.Artifact | None:
        for artifact in reversed(serving_configs(self.store, model)):
            if get_custom(artifact).get("generation") == generation:
                return artifact
        return None

    def record(
        self,
        *,
        kind: str,
        reason: str,
        before: Snapshot,
        after: Snapshot,
        metrics: dict | None = None,
        analysis: dict | None = None,
        inputs: Iterable[metadata_store_pb2.Artifact] = (),
        actor: str | None = None,
        extra_properties: dict | None = None,
    ) -> int:
        """One transition: previous config (+ analysis) in, new config out. Returns the execution id.

        ``actor`` overrides this Audit's own (recording a transition another actor made and left
        pending); ``extra_properties`` go on the config artifact (e.g. the PushedModel it serves).
        """
        model = after.state.model
        actor = actor or self.actor
        output = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
        config = self._config_artifact(after, kind, reason, actor)
        set_custom(config, extra_properties or {})
        events: list = [(config, output)]
        previous = self._latest_config(model, before.state.generation)
        consumed = [previous] if previous is not None else []
        consumed += list(inputs)
        if analysis is not None:
            consumed.append(self._analysis_artifact(model, after.state.generation, analysis))
        events += [(a, metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)) for a in consumed]
        execution = self._transition(kind, reason, before, after, metrics, actor)
        execution_id, _, _ = self.store.put_execution(execution, events, [self._context(model)])
        return execution_id

    def recorded(self, model: str, generation: int, config_sha256: str) -> bool:
        """True once this generation of ``model`` (with exactly this config) is in the trail."""
        return any(
            get_custom(a).get("generation") == generation
            and get_custom(a).get("config_sha256") == config_sha256
            for a in serving_configs(self.store, model)
        )

    def _config_artifact(
        self, after: Snapshot, kind: str, reason: str, actor: str
    ) -> metadata_store_pb2.Artifact:
        """The new generation: its text saved under the snapshot root, its labels as properties."""
        path = join(self.snapshot_root, after.state.model, f"generation-{after.state.generation}.config")
        write_text_atomic(path, after.config_text)
        config = metadata_store_pb2.Artifact(
            type_id=_type_id(self.store, "artifact", SERVING_CONFIG_TYPE),
            uri=path,
            state=metadata_store_pb2.Artifact.LIVE,
        )
        set_custom(config, serving_config_properties(after, kind, actor, reason))
        return config

    def _analysis_artifact(self, model: str, generation: int, analysis: dict) -> metadata_store_pb2.Artifact:
        """The canary analysis behind a transition, saved as JSON beside the config snapshots."""
        path = join(self.snapshot_root, model, f"analysis-{generation}.json")
        write_text_atomic(path, json.dumps(analysis, indent=1, sort_keys=True) + "\n")
        artifact = metadata_store_pb2.Artifact(
            type_id=_type_id(self.store, "artifact", ANALYSIS_TYPE),
            uri=path,
            state=metadata_store_pb2.Artifact.LIVE,
        )
        set_custom(
            artifact,
            {"model": model, "verdict": str(analysis.get("verdict", "")), "json": json.dumps(analysis)},
        )
        return artifact

    def _transition(
        self, kind: str, reason: str, before: Snapshot, after: Snapshot, metrics: dict | None, actor: str
    ) -> metadata_store_pb2.Execution:
        execution = metadata_store_pb2.Execution(
            type_id=_type_id(self.store, "execution", TRANSITION_TYPE),
            last_known_state=metadata_store_pb2.Execution.COMPLETE,
        )
        set_custom(
            execution,
            {
                "model": after.state.model,
                "kind": kind,
                "actor": actor,
                "reason": reason,
                "from_generation": before.state.generation,
                "to_generation": after.state.generation,
                "metrics": json.dumps(metrics or {}, sort_keys=True),
                "at": time.time(),
            },
        )
        return execution


def serving_configs(store: metadata_store.MetadataStore, model: str) -> list[metadata_store_pb2.Artifact]:
    """All published ServingConfig artifacts of ``model`` (from the TFX component and the commands)."""
    try:
        artifacts = store.get_artifacts_by_type(SERVING_CONFIG_TYPE)
    except Exception:  # the type is registered on first use
        return []
    live = [
        a
        for a in artifacts
        if get_custom(a).get("model") == model
        and "written_at" in a.custom_properties
        and a.state in (metadata_store_pb2.Artifact.LIVE, metadata_store_pb2.Artifact.UNKNOWN)
    ]
    return sorted(live, key=lambda a: (get_custom(a)["written_at"], get_custom(a)["generation"]))


def history(store: metadata_store.MetadataStore, model: str) -> list[dict]:
    """Every config generation of ``model``, oldest first, with who/why and the analysis behind it."""
    artifacts = serving_configs(store, model)
    if not artifacts:
        return []
    events = store.get_events_by_artifact_ids([a.id for a in artifacts])
    producer = {e.artifact_id: e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT}
    executions = {e.id: e for e in store.get_executions_by_id(set(producer.values()))}
    input_events = store.get_events_by_execution_ids(list(executions)) if executions else []
    inputs_of: dict[int, list[int]] = {}
    for event in input_events:
        if event.type == metadata_store_pb2.Event.INPUT:
            inputs_of.setdefault(event.execution_id, []).append(event.artifact_id)
    analysis_ids = {a for ids in inputs_of.values() for a in ids}
    analyses = {
        a.id: json.loads(get_custom(a).get("json", "{}"))
        for a in store.get_artifacts_by_id(analysis_ids)
        if "verdict" in a.custom_properties
    }
    entries = []
    for artifact in artifacts:
        props = get_custom(artifact)
        execution = executions.get(producer.get(artifact.id, -1))
        exec_props = get_custom(execution) if execution is not None else {}
        analysis = next(
            (analyses[i] for i in inputs_of.get(getattr(execution, "id", -1), []) if i in analyses), None
        )
        entries.append(
            {
                "at": props["written_at"],
                "generation": props["generation"],
                "kind": props.get("kind", ""),
                "actor": props.get("actor", ""),
                "reason": props.get("reason", ""),
                "stable": props.get("stable_version", -1),
                "canary": props.get("canary_version", -1),
                "labels": json.loads(props.get("labels", "{}")),
                "versions": json.loads(props.get("versions", "[]")),
                "canary_weight": props.get("canary_weight", 0.0),
                "step": props.get("step", ""),
                "metrics": json.loads(exec_props.get("metrics", "{}") or "{}"),
                "analysis": analysis,
                "config_uri": artifact.uri,
                "artifact_id": artifact.id,
                "execution_id": getattr(execution, "id", None),
            }
        )
    return entries


def stable_at(store: metadata_store.MetadataStore, model: str, at: float) -> dict | None:
    """What was `stable` for ``model`` at time ``at`` (epoch seconds), and the transition that made it so."""
    earlier = [e for e in history(store, model) if e["at"] <= at]
    if not earlier:
        return None
    current = earlier[-1]
    # the "why" is the transition that last moved `stable`
    cause = current
    for entry in reversed(earlier):
        if entry["stable"] != current["stable"]:
            break
        cause = entry
    return {"stable": current["stable"], "generation": current["generation"], "since": cause}
