"""create_pipeline's shape: first-run backfill nodes feed the span window; Beam dependency flags."""

import json

import pytest

from pipeline.config import PipelineConfig
from pipeline.pipeline import beam_args, create_pipeline


def _nodes(pipeline):
    return {node.id: node for node in pipeline.components}


def test_backfill_adds_one_pinned_ingest_and_validation_per_span(tmp_path):
    pipeline = create_pipeline(PipelineConfig(home=tmp_path, span_window=4), backfill_spans=[3, 1, 2])
    nodes = _nodes(pipeline)
    for span in (1, 2, 3):
        example_gen = nodes[f"CsvExampleGen-span{span}"]
        pinned = json.loads(example_gen.exec_properties["range_config"])["static_range"]
        assert pinned == {"start_span_number": span, "end_span_number": span}
        assert nodes[f"StatisticsGen-span{span}"].upstream_nodes == {example_gen}
        assert nodes[f"ExampleValidator-span{span}"] in nodes["SpanWindow"].upstream_nodes
    assert nodes["ExampleValidator"] in nodes["SpanWindow"].upstream_nodes
    assert not nodes["CsvExampleGen"].exec_properties["range_config"]  # the newest span
    assert nodes["SpanWindow"] in nodes["MergeSpans"].upstream_nodes
    assert nodes["MergeSpans"] in nodes["Transform"].upstream_nodes


def test_without_backfill_the_pipeline_has_only_the_newest_span_ingest(tmp_path):
    nodes = _nodes(create_pipeline(PipelineConfig(home=tmp_path)))
    assert not [node_id for node_id in nodes if "-span" in node_id]
    assert {"CsvExampleGen", "SpanWindow", "Transform", "Pusher"} <= set(nodes)


def test_backfill_is_refused_for_kubeflow(tmp_path):
    with pytest.raises(ValueError, match="backfill_spans"):
        create_pipeline(PipelineConfig(home=tmp_path), backfill_spans=[1], orchestrator="kubeflow_v2")


def test_local_runs_declare_the_project_as_beam_dependency(tmp_path):
    config = PipelineConfig(home=tmp_path)
    local = beam_args(config)
    assert local[: len(config.beam_args)] == list(config.beam_args)
    [setup_file] = [a for a in local if a.startswith("--setup_file=")]
    assert setup_file.endswith("/setup.py")
    assert beam_args(config, orchestrator="kubeflow_v2") == list(config.beam_args)
    declared = config.replace(beam_args=["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"])
    assert beam_args(declared) == ["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"]
