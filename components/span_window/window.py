"""Which spans the model trains on: the latest K spans whose data passed validation (the plain logic
behind ``ValidatedSpanWindowStrategy``, over an MLMD store).

CsvExampleGen ingests one span per run, the newest folder; on a first run BackfillSpans ingests the
older ones (see ``pipeline.pipeline``). This resolver strategy gathers the training window from MLMD:
for each span, the newest Examples artifact either produced, kept only if the newest validation of
exactly that artifact found no anomalies in any split. The validation is followed through MLMD
lineage (anomalies ← ExampleValidator ← statistics ← StatisticsGen ← examples), or, for BackfillSpans,
which outputs every span's examples and anomalies from one execution, matched by span within that
execution. So a bad span never enters a window, even after newer good spans arrive; re-ingesting the
fixed folder does.
"""

from __future__ import annotations

import logging
from typing import Any

from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx import v1 as tfx
from tfx.types import artifact_utils

from components.spans import artifact_span, is_clean

log = logging.getLogger(__name__)


# Execution types that ingest raw spans (BackfillSpans: ``components.backfill_spans.executor``).
_INGESTING_TYPES = ("ExampleGen", "BackfillSpans")


def _producers(store: Any, artifact_ids: list[int]) -> dict[int, int]:
    """Artifact id → id of the execution that output it."""
    if not artifact_ids:
        return {}
    return {
        e.artifact_id: e.execution_id
        for e in store.get_events_by_artifact_ids(artifact_ids)
        if e.type == metadata_store_pb2.Event.OUTPUT
    }


def _inputs_of_producer(store: Any, artifact_ids: list[int], input_key: str) -> dict[int, int]:
    """For each artifact id: the id of the ``input_key`` input of the execution that produced it."""
    producer = _producers(store, artifact_ids)
    if not producer:
        return {}
    inputs = {
        e.execution_id: e.artifact_id
        for e in store.get_events_by_execution_ids(sorted(set(producer.values())))
        if e.type == metadata_store_pb2.Event.INPUT and e.path.steps and e.path.steps[0].key == input_key
    }
    return {a: inputs[x] for a, x in producer.items() if x in inputs}


def ingested_examples(store: Any, examples: list[types.Artifact]) -> list[types.Artifact]:
    """The raw spans an ExampleGen or BackfillSpans produced, leaving out e.g. MergeSpans' and Transform's."""
    producer = _producers(store, [a.id for a in examples])
    if not producer:
        return []
    executions = store.get_executions_by_id(sorted(set(producer.values())))
    types_by_id = {
        t.id: t.name for t in store.get_execution_types_by_id(sorted({x.type_id for x in executions}))
    }
    ingesting = {x.id for x in executions if types_by_id[x.type_id].endswith(_INGESTING_TYPES)}
    return [a for a in examples if producer.get(a.id) in ingesting]


def newest_validations(store: Any, anomalies: list[types.Artifact]) -> dict[int, types.Artifact]:
    """Examples artifact id → the newest ExampleAnomalies computed from exactly that artifact."""
    stats_of = _inputs_of_producer(store, [a.id for a in anomalies], "statistics")
    examples_of_stats = _inputs_of_producer(store, sorted(set(stats_of.values())), "examples")
    same_execution = _examples_validated_together(store, [a for a in anomalies if a.id not in stats_of])
    newest: dict[int, types.Artifact] = {}
    for artifact in anomalies:
        examples_id = examples_of_stats.get(stats_of.get(artifact.id, -1), same_execution.get(artifact.id))
        if examples_id is not None and (examples_id not in newest or artifact.id > newest[examples_id].id):
            newest[examples_id] = artifact
    return newest


def _examples_validated_together(store: Any, anomalies: list[types.Artifact]) -> dict[int, int]:
    """Anomalies id → id of the Examples of the same span output by the same execution (BackfillSpans)."""
    producer = _producers(store, [a.id for a in anomalies])
    if not producer:
        return {}
    examples_events = [
        e
        for e in store.get_events_by_execution_ids(sorted(set(producer.values())))
        if e.type == metadata_store_pb2.Event.OUTPUT and e.path.steps and e.path.steps[0].key == "examples"
    ]
    examples = artifact_utils.deserialize_artifacts(
        tfx.types.standard_artifacts.Examples._get_artifact_type(),
        store.get_artifacts_by_id([e.artifact_id for e in examples_events]),
    )
    span_by_id = {a.id: artifact_span(a) for a in examples}
    by_execution_and_span = {
        (e.execution_id, span_by_id[e.artifact_id]): e.artifact_id for e in examples_events
    }
    return {
        a.id: by_execution_and_span[key]
        for a in anomalies
        if (key := (producer.get(a.id), artifact_span(a))) in by_execution_and_span
    }


def validated_examples_ids(store: Any, anomalies: list[types.Artifact]) -> set[int]:
    """Ids of Examples artifacts whose newest validation found no anomalies."""
    return {examples_id for examples_id, a in newest_validations(store, anomalies).items() if is_clean(a)}


def validated_window(
    examples: list[types.Artifact], clean_ids: set[int], num_spans: int
) -> list[types.Artifact]:
    """The newest Examples of each of the latest ``num_spans`` clean spans, newest span first."""
    newest: dict[int, types.Artifact] = {}
    for artifact in examples:
        span = artifact_span(artifact)
        if span not in newest or artifact.id > newest[span].id:
            newest[span] = artifact
    clean = sorted((s for s, a in newest.items() if a.id in clean_ids), reverse=True)
    left_out = sorted(set(newest) - set(clean))
    if left_out:
        log.info("training window leaves out spans with anomalies: %s", left_out)
    return [newest[s] for s in clean[:num_spans]]
