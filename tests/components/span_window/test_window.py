"""The training window: latest K spans, newest ingestion per span, spans with anomalies left out."""

from tfx.types import standard_artifacts

from components.span_window.window import validated_window
from components.spans import artifact_span, is_clean


def _examples(artifact_id, span):
    artifact = standard_artifacts.Examples()
    artifact.id = artifact_id
    artifact.set_int_custom_property("span", span)
    return artifact


def _anomalies(blessed):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.set_json_value_custom_property("blessed", blessed)
    return artifact


def test_is_clean_needs_every_split_blessed():
    assert is_clean(_anomalies({"train": 1, "eval": 1}))
    assert not is_clean(_anomalies({"train": 1, "eval": 0}))
    assert not is_clean(_anomalies({}))
    assert not is_clean(standard_artifacts.ExampleAnomalies())


def test_window_takes_latest_clean_spans_and_newest_ingestion():
    examples = [_examples(1, 1), _examples(2, 2), _examples(3, 3), _examples(4, 4), _examples(5, 2)]
    clean = {1, 3, 5}  # span 4 has anomalies; span 2 was re-ingested as id 5
    window = validated_window(examples, clean, num_spans=3)
    assert [(artifact_span(a), a.id) for a in window] == [(3, 3), (2, 5), (1, 1)]
    assert [artifact_span(a) for a in validated_window(examples, clean, num_spans=1)] == [3]


def test_a_span_whose_newest_ingestion_has_anomalies_is_left_out():
    examples = [_examples(1, 1), _examples(2, 1)]
    assert validated_window(examples, {1}, num_spans=2) == []
