"""create_pipeline's shape: one definition for every runner (the window ingested in the pipeline, the
load check before the pusher); the ingest is never answered from the cache; Beam dependency flags."""

import json

import pytest

from components.window_transform.component import WindowTransform
from pipeline.config import load_config
from pipeline.pipeline import beam_args, create_pipeline, never_cached
from tests.pipeline.nodes import ANALYZER_CACHE_NODES, NODES


def _nodes(pipeline):
    return {node.id: node for node in pipeline.components}


def test_the_window_is_ingested_in_the_pipeline_and_feeds_transform_and_the_evaluator(tmp_path):
    config = load_config(home=tmp_path, span_window=4)
    nodes = _nodes(create_pipeline(config))
    assert set(nodes) == NODES
    ingest = nodes["WindowIngest"]
    assert ingest.exec_properties["num_spans"] == 4
    assert ingest.exec_properties["input_base"] == str(config.paths.data_root)
    assert ingest.exec_properties["serving_model_dir"] == config.serving_model_dir
    assert nodes["ImportSchemaGen"] in ingest.upstream_nodes
    for consumer in ("Transform", "Evaluator", "LoadCheck", "Pusher"):
        assert ingest in nodes[consumer].upstream_nodes, consumer


def test_with_the_analyzer_cache_transform_reads_the_last_cache_per_span(tmp_path):
    plain = _nodes(create_pipeline(load_config(home=tmp_path)))
    assert "analyzer_cache" not in plain["Transform"].inputs and "LatestAnalyzerCache" not in plain
    nodes = _nodes(create_pipeline(load_config(home=tmp_path, analyzer_cache=True)))
    assert set(nodes) == ANALYZER_CACHE_NODES
    assert isinstance(nodes["Transform"], WindowTransform)
    assert nodes["Transform"].inputs["analyzer_cache"].producer_component_id == "LatestAnalyzerCache"


def test_the_trainer_starts_from_the_blessed_model(tmp_path):
    config = load_config(home=tmp_path, warm_start_steps=40)
    nodes = _nodes(create_pipeline(config))
    trainer = nodes["Trainer"]
    assert trainer.inputs["base_model"].producer_component_id == "LatestBlessedModel"
    assert nodes["Evaluator"].inputs["baseline_model"].producer_component_id == "LatestBlessedModel"
    assert json.loads(trainer.exec_properties["custom_config"])["warm_start_steps"] == 40
    assert "warm_start_steps" not in json.loads(nodes["Transform"].exec_properties["custom_config"])


def test_transform_may_reuse_the_blessed_models_analysis_only_when_the_trainer_warm_starts(tmp_path):
    transform = _nodes(create_pipeline(load_config(home=tmp_path, transform_reuses=4)))["Transform"]
    assert isinstance(transform, WindowTransform)
    assert transform.inputs["base_model"].producer_component_id == "LatestBlessedModel"
    assert transform.exec_properties["transform_reuses"] == 4
    cold = load_config(home=tmp_path, transform_reuses=4, warm_start_steps=0)
    assert _nodes(create_pipeline(cold))["Transform"].exec_properties["transform_reuses"] == 0
    with pytest.raises(ValueError, match="transform_reuses"):
        load_config(home=tmp_path, transform_reuses=-1)


def test_the_same_components_for_vertex(tmp_path):
    config = load_config(home=tmp_path)
    local, vertex = create_pipeline(config), create_pipeline(config, orchestrator="kubeflow_v2")
    assert set(_nodes(local)) == set(_nodes(vertex))
    assert never_cached(local) == never_cached(vertex) == ["WindowIngest"]


def test_the_pusher_needs_the_load_check_and_the_evaluator(tmp_path):
    config = load_config(home=tmp_path, load_check_latency_ms=80, warmup_examples=3)
    nodes = _nodes(create_pipeline(config))
    pusher, load_check = nodes["Pusher"], nodes["LoadCheck"]
    assert {load_check, nodes["Evaluator"]} <= pusher.upstream_nodes
    assert pusher.inputs["infra_blessing"].producer_component_id == "LoadCheck"
    assert load_check.exec_properties["latency_budget_ms"] == 80.0
    assert load_check.exec_properties["warmup_examples"] == 3
    assert load_check.exec_properties["model_name"] == config.serving_model_name


def test_ingest_only_stops_after_the_ingest(tmp_path):
    nodes = _nodes(create_pipeline(load_config(home=tmp_path), ingest_only=True))
    assert set(nodes) == {"ImportSchemaGen", "WindowIngest"}


def test_local_runs_declare_the_project_as_beam_dependency(tmp_path):
    config = load_config(home=tmp_path)
    local = beam_args(config)
    assert local[: len(config.beam_args)] == list(config.beam_args)
    [setup_file] = [a for a in local if a.startswith("--setup_file=")]
    assert setup_file.endswith("/setup.py")
    assert beam_args(config, orchestrator="kubeflow_v2") == list(config.beam_args)
    declared = config.replace(beam_args=["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"])
    assert beam_args(declared) == ["--runner=FnApiRunner", "--extra_packages=/tmp/x.tar.gz"]
