"""What a pipeline run left in ML Metadata, read back in plain words.

``read_outcome`` fills a ``RunResult`` from the executions of one run: the window trained on and the
spans left out of it, the anomalies found, the metric values against the thresholds, the load check,
and the version pushed or why nothing was; ``summary`` renders the closing lines the CLI prints.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.window_transform import reuse
from models import warm_start
from pipeline import nodes
from pipeline.config import PipelineConfig
from release.metadata import open_store


@dataclass
class ComponentRun:
    name: str
    seconds: float
    status: str  # "ran", "cached" or "skipped"


@dataclass
class RunResult:
    """What one pipeline run did. ``pushed_version`` is None when nothing was pushed; ``reason`` says why."""

    pipeline: str
    model: str
    ok: bool = True  # False when a component failed
    refused: bool = False  # a gate said no: data anomalies, not blessed, or the same data as a release
    spans: list[int] = field(default_factory=list)  # the newest span
    window: list[int] = field(default_factory=list)  # the clean spans merged for training
    left_out: dict[int, list[str]] = field(default_factory=dict)  # older spans with anomalies, and why
    pushed_version: int | None = None
    pushed_destination: str | None = None
    reason: str = ""
    anomalies: list[str] = field(default_factory=list)
    blessed: bool | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    failed_checks: list[str] = field(default_factory=list)
    components: list[ComponentRun] = field(default_factory=list)
    seconds: float = 0.0
    log_file: str | None = None
    tensorboard_dir: str | None = None  # the Trainer's TensorBoard logs (its model_run output)
    transform: str = ""  # whether Transform reused the blessed model's analysis or analyzed, and why
    training: str = ""  # what the Trainer started from: a warm start, or from scratch and why


def _artifacts(store: Any, mlmd_artifacts: list) -> list:
    """MLMD artifacts as TFX Artifact objects (typed access to custom properties)."""
    from tfx.types import artifact_utils

    types = {t.id: t for t in store.get_artifact_types_by_id(sorted({a.type_id for a in mlmd_artifacts}))}
    result = []
    for artifact in mlmd_artifacts:
        result.extend(artifact_utils.deserialize_artifacts(types[artifact.type_id], [artifact]))
    return result


def last_execution_id(config: PipelineConfig) -> int:
    if not os.path.exists(config.metadata_path):
        return 0
    return max((e.id for e in open_store(config.metadata_path).get_executions()), default=0)


def _outputs_of_run(store: Any, config: PipelineConfig, after: int) -> dict[str, dict[str, list]]:
    """node id → output key → artifacts, for executions of this pipeline newer than ``after``."""
    from ml_metadata.proto import metadata_store_pb2

    outputs: dict[str, dict[str, list]] = {}
    for node in store.get_contexts_by_type("node"):
        if not node.name.startswith(f"{config.name}."):
            continue
        node_id = node.name[len(config.name) + 1 :]
        executions = [e.id for e in store.get_executions_by_context(node.id) if e.id > after]
        if not executions:
            continue
        latest = max(executions)
        events = [
            e
            for e in store.get_events_by_execution_ids([latest])
            if e.type == metadata_store_pb2.Event.OUTPUT
        ]
        artifacts = {
            a.id: a for a in _artifacts(store, store.get_artifacts_by_id([e.artifact_id for e in events]))
        }
        for event in events:
            key = event.path.steps[0].key if event.path.steps else "output"
            outputs.setdefault(node_id, {}).setdefault(key, []).append(artifacts[event.artifact_id])
    return outputs


def read_outcome(config: PipelineConfig, after: int, result: RunResult) -> None:
    """Fill the result's spans, anomalies, metrics and push decision from MLMD."""
    if not os.path.exists(config.metadata_path):
        return
    outputs = _outputs_of_run(open_store(config.metadata_path), config, after)
    ingest = outputs.get(nodes.WINDOW_INGEST, {})
    for examples in ingest.get("examples", []):
        newest = examples.get_int_custom_property("span")
        result.spans = [newest]
        result.window = json.loads(examples.get_string_custom_property("spans") or "[]")
        left_out = json.loads(examples.get_string_custom_property("left_out") or "{}")
        result.left_out = {int(span): reasons for span, reasons in left_out.items()}
        unreadable = result.left_out.pop(newest, [])
        for anomalies in ingest.get("anomalies", []):
            result.anomalies = describe_anomalies(anomalies.uri) or unreadable
    if not result.ok:
        return
    if result.anomalies:
        result.refused = True
        result.reason = (
            f"span {', '.join(map(str, result.spans))} has data anomalies, so nothing was trained: "
            + "; ".join(result.anomalies)
        )
        return
    trained_as = [e.get_int_custom_property("trained_as") for e in ingest.get("examples", [])]
    if trained_as and trained_as[0]:
        result.reason = (
            f"nothing new to train: version {trained_as[0]} was trained on exactly this window "
            f"(spans {span_ranges(result.window)})"
        )
        return
    transformed = outputs.get(nodes.TRANSFORM, {}).get("transformed_examples", [])
    if not transformed:
        result.refused = True
        result.reason = "no validated span to train on (every span in the window has anomalies)"
        return
    for graph in outputs.get(nodes.TRANSFORM, {}).get("transform_graph", []):
        analysis = reuse.read(graph.uri)
        result.transform = f"Transform {analysis.reason}" if analysis else ""
    for model_run in outputs.get(nodes.TRAINER, {}).get("model_run", []):
        if _has_files(model_run.uri):
            result.tensorboard_dir = model_run.uri
        begun = warm_start.read_report(model_run.uri)
        result.training = begun.reason if begun else ""
    evaluation = outputs.get(nodes.EVALUATOR, {}).get("evaluation", [])
    blessing = outputs.get(nodes.EVALUATOR, {}).get("blessing", [])
    if evaluation:
        result.metrics, result.failed_checks = read_evaluation(evaluation[0].uri)
    if blessing:
        result.blessed = blessing[0].get_int_custom_property("blessed") == 1
    pushed = outputs.get(nodes.PUSHER, {}).get("pushed_model", [])
    if pushed and pushed[0].get_int_custom_property("pushed") == 1:
        result.pushed_version = int(pushed[0].get_string_custom_property("pushed_version"))
        result.pushed_destination = pushed[0].get_string_custom_property("pushed_destination")
        result.reason = f"pushed version {result.pushed_version} to {result.pushed_destination}"
    elif result.blessed is False:
        result.refused = True
        result.reason = "the model is not blessed: " + "; ".join(
            result.failed_checks or ["see the Evaluator"]
        )
    elif pushed:
        load_check = outputs.get(nodes.LOAD_CHECK, {}).get("blessing", [])
        failed_load_check = bool(load_check) and load_check[0].get_int_custom_property("blessed") != 1
        result.refused = pushed[0].has_custom_property("duplicate_of") or failed_load_check
        result.reason = pushed[0].get_string_custom_property("push_reason") or "the Pusher did not push"
    else:
        result.reason = "the Pusher did not run"


def _has_files(uri: str) -> bool:
    import tensorflow as tf

    return any(files for _, _, files in tf.io.gfile.walk(uri))


def describe_anomalies(anomalies_uri: str) -> list[str]:
    """Plain-words lines for every anomaly ExampleValidator recorded, per split."""
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    lines = []
    for split_dir in sorted(Path(anomalies_uri).glob("Split-*")):
        diff_file = split_dir / "SchemaDiff.pb"
        if not diff_file.exists():
            continue
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(diff_file.read_bytes())
        split = split_dir.name.removeprefix("Split-")
        for feature, info in sorted(anomalies.anomaly_info.items()):
            lines.append(f"{split} split, column {feature}: {info.short_description} ({info.description})")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"{split} split: {info.short_description} ({info.description})")
    return lines


def read_evaluation(evaluation_uri: str) -> tuple[dict[str, float], list[str]]:
    """Overall metric values of the candidate, and the failed threshold checks in plain words."""
    import tensorflow_model_analysis as tfma

    metrics: dict[str, float] = {}
    for slice_metrics in tfma.load_metrics(evaluation_uri):
        if slice_metrics.slice_key.single_slice_keys:
            continue
        for key_and_value in slice_metrics.metric_keys_and_values:
            key, value = key_and_value.key, key_and_value.value
            if key.is_diff or not value.HasField("double_value"):
                continue
            if key.model_name in ("", "candidate"):
                metrics[key.name] = round(value.double_value.value, 4)
    failed = []
    validation = tfma.load_validation_result(evaluation_uri)
    for failure in validation.metric_validations_per_slice:
        for check in failure.failures:
            what = "change against the baseline" if check.metric_key.is_diff else "value"
            failed.append(
                f"{check.metric_key.name} {what} {check.metric_value.double_value.value:.4f} "
                f"failed the threshold ({_one_line(check.metric_threshold)})"
            )
    return metrics, failed


def _one_line(message: Any) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(message, as_one_line=True)


def span_ranges(spans: list[int]) -> str:
    """``[1, 2, 3, 5]`` → ``1-3, 5``."""
    parts: list[list[int]] = []
    for span in spans:
        if parts and span == parts[-1][-1] + 1:
            parts[-1].append(span)
        else:
            parts.append([span])
    return ", ".join(f"{p[0]}-{p[-1]}" if len(p) > 1 else str(p[0]) for p in parts)


def summary(result: RunResult) -> str:
    """The closing lines the CLI prints."""
    lines = [f"{result.pipeline}: {'PUSHED' if result.pushed_version else 'nothing pushed'}: {result.reason}"]
    if result.transform:
        lines.append(f"  {result.transform}")
    if result.training:
        lines.append(f"  {result.training}")
    if result.metrics:
        shown = ", ".join(f"{k}={v}" for k, v in sorted(result.metrics.items()))
        lines.append(f"  metrics: {shown}")
    if result.anomalies:
        lines.extend(f"  anomaly: {line}" for line in result.anomalies)
    if result.window:
        lines.append(f"  training window: spans {span_ranges(result.window)}")
    for span, anomalies in sorted(result.left_out.items()):
        lines.extend(f"  span {span} left out of the training window: {line}" for line in anomalies)
    if result.tensorboard_dir:
        lines.append(f"  training curves: tensorboard --logdir {result.tensorboard_dir}")
    lines.append(f"  took {result.seconds:.1f} s; TFX log: {result.log_file}")
    return "\n".join(lines)
