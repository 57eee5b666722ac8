"""A first run on several spans ingests and validates them all in one run; a bad old span stays out.

Real TFX LocalDagRunner, Beam FnApiRunner and MLMD SQLite on three small spans.
"""

import pytest
from ml_metadata.proto import metadata_store_pb2

from components.spans import artifact_span
from pipeline import data
from pipeline.config import load_config
from pipeline.outcome import validated_spans
from pipeline.runner import run_pipeline
from release.metadata import open_store

pytestmark = pytest.mark.e2e

ROWS_PER_SPAN = 120


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    config = load_config(
        home=home,
        span_window=3,
        train_steps=20,
        eval_steps=2,
        warmup_examples=1,
        metrics=[{"name": "AUC", "min": 0.0, "max_drop": 0.01}, {"name": "BinaryAccuracy", "min": 0.0}],
    )
    header, spans = data.split_into_spans()
    rows = [list(r) for r in data._sample(spans[1], ROWS_PER_SPAN)]
    for row in rows:
        row[header.index("payment_type")] = "Bitcoin"  # out of the payment_type domain
    data.write_span(config.paths.data_root, 1, header, rows)
    data.init_spans(config.paths.data_root, spans=3, rows_per_span=ROWS_PER_SPAN)  # keeps the bad span 1
    return config, run_pipeline(config)


def _store(config):
    return open_store(config.metadata_path)


def test_older_spans_are_ingested_and_validated_in_the_same_run(first_run):
    config, result = first_run
    assert result.ok, result.reason
    assert result.spans == [3] and result.backfilled == [1, 2]
    store = _store(config)
    runs = [c for c in store.get_contexts_by_type("pipeline_run") if store.get_executions_by_context(c.id)]
    assert len(runs) == 1  # one LocalDagRunner run did it all
    assert validated_spans(config) == {1, 2, 3}  # the next run backfills nothing


def test_an_old_span_with_anomalies_stays_out_of_the_training_window(first_run):
    config, result = first_run
    assert list(result.left_out) == [1]
    assert any("payment_type" in line for line in result.left_out[1]), result.left_out
    store = _store(config)
    [merge] = store.get_executions_by_context(
        store.get_context_by_type_and_name("node", f"{config.name}.MergeSpans").id
    )
    inputs = [
        e.artifact_id
        for e in store.get_events_by_execution_ids([merge.id])
        if e.type == metadata_store_pb2.Event.INPUT and e.path.steps[0].key == "spans"
    ]
    trained_on = {span_of_mlmd(a) for a in store.get_artifacts_by_id(inputs)}
    assert trained_on == {2, 3}
    assert result.pushed_version is not None, result.reason


def span_of_mlmd(artifact):
    from tfx.types import artifact_utils, standard_artifacts

    [typed] = artifact_utils.deserialize_artifacts(
        standard_artifacts.Examples._get_artifact_type(), [artifact]
    )
    return artifact_span(typed)
