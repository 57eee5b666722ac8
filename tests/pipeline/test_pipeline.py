"""create_pipeline's shape: first-run backfill nodes feed the span window; Beam dependency flags."""

import json

import pytest

from pipeline.config import load_config
from pipeline.pipeline import beam_args, create_pipeline


def _nodes(pipeline):
    return {node.id: node for node in pipeline.components}


def test_backfill_adds_one_node_for_all_older_spans_before_the_window(tmp_path):
    config = load_config(home=tmp_path, span_window=4)
    nodes = _nodes(create_pipeline(config, backfill_spans=[3, 1, 2, 3]))
    backfill = nodes["BackfillSpans"]
    assert json.loads(backfill.exec_properties["spans"]) == [1, 2, 3]
    assert backfill.exec_properties["input_base"] == str(config.paths.data_root)
    # The same input pattern and splits as the newest span's CsvExampleGen.
    for key in ("input_config", "output_config"):
        assert backfill.exec_properties[key] == nodes["CsvExampleGen"].exec_properties[key]
    assert nodes["ImportSchemaGen"] in backfill.upstream_nodes
    assert {backfill, nodes["ExampleValidator"]} <= nodes["SpanWindow"].upstream_nodes
    assert nodes["SpanWindow"] in nodes["MergeSpans"].upstream_nodes
    assert nodes["MergeSpans"] in nodes["Transform"].upstream_nodes


def test_without_backfill_the_pipeline_has_only_the_newest_span_ingest(tmp_path):
    nodes = _nodes(create_pipeline(load_config(home=tmp_path)))
    assert "BackfillSpans" not in nodes
    assert {"CsvExampleGen", "SpanWindow", "Transform", "Pusher"} <= set(nodes)


def test_backfill_is_refused_for_kubeflow(tmp_path):
    with pytest.raises(ValueError, match="backfill_spans"):
        create_pipeline(load_config(home=tmp_path), backfill_spans=[1], orchestrator="kubeflow_v2")


def test_local_runs_declare_the_project_as_beam_dependency(tmp_path):
    config = load_config(home=tmp_path)
    local = beam_args(config)
    assert local[: len(config.beam_args)] == list(config.beam_args)
    [setup_file] = [a for a in local if a.startswith("--setup_file=")]
    assert setup_file.endswith("/setup.py")
    assert beam_args(config, orchestrator="kubeflow_v2") == list(config.beam_args)
    declared = config.replace(beam_args=["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"])
    assert beam_args(declared) == ["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"]
