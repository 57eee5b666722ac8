"""WindowTransform: a warm retrain reuses the blessed model's transform graph and applies it as TFX's
Transform does; an analysis with the cache analyzes only the span it has not seen, and transforms as an
uncached Transform does (floats to float32 rounding). Real WindowIngest and Transform executors (Beam
FnApiRunner) on small spans of the taxi sample, with the taxi model's own preprocessing_fn."""

import json
import logging
import shutil

import numpy as np
import pytest
import tensorflow as tf
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils, proto_utils

from components.window_ingest.executor import Executor as WindowIngest
from components.window_transform import reuse
from components.window_transform.executor import Executor as WindowTransform
from components.window_transform.executor import _cannot_reuse
from components.window_transform.keys import dataset_key, per_span
from models import warm_start
from pipeline import data
from pipeline.config import DEFAULT_BEAM_ARGS, load_config, with_dependencies
from pipeline.pipeline import _INPUT_CONFIG, _OUTPUT_CONFIG

ROWS_PER_SPAN = 120
# the project declared as the workers' dependency, as a run declares it: else TFX builds an sdist of tfx
BEAM = with_dependencies(DEFAULT_BEAM_ARGS)
CONTEXT = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=BEAM)


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    return artifact


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("window-transform")
    header, by_span = data.split_into_spans()
    for span in (1, 2, 3):
        data.write_span(root / "data", span, header, data._sample(by_span[span], ROWS_PER_SPAN))
    (root / "schema").mkdir()
    shutil.copy(load_config(model="taxi_tips").schema_file, root / "schema" / "schema.pbtxt")
    return root


def _window(workspace, name: str, spans: list[int]):
    """WindowIngest over ``spans`` (the others moved aside for the run)."""
    aside = workspace / f"aside-{name}"
    aside.mkdir()
    for folder in (workspace / "data").iterdir():
        if int(folder.name.split("-")[1]) not in spans:
            folder.rename(aside / folder.name)
    outputs = {
        "examples": [_artifact(standard_artifacts.Examples, workspace / name / "examples")],
        "statistics": [_artifact(standard_artifacts.ExampleStatistics, workspace / name / "statistics")],
        "anomalies": [_artifact(standard_artifacts.ExampleAnomalies, workspace / name / "anomalies")],
    }
    properties = {
        "input_base": str(workspace / "data"),
        "input_config": proto_utils.proto_to_json(_INPUT_CONFIG),
        "output_config": proto_utils.proto_to_json(_OUTPUT_CONFIG),
        "num_spans": len(spans),
    }
    schema = _artifact(standard_artifacts.Schema, workspace / "schema")
    WindowIngest(CONTEXT).Do({"schema": [schema]}, outputs, properties)
    for folder in aside.iterdir():
        folder.rename(workspace / "data" / folder.name)
    return outputs["examples"][0]


def _transform(workspace, name: str, examples, cache=None, base_model=None, reuses=0):
    config = load_config(model="taxi_tips")
    outputs = {
        "transform_graph": [_artifact(standard_artifacts.TransformGraph, workspace / name / "graph")],
        "transformed_examples": [_artifact(standard_artifacts.Examples, workspace / name / "transformed")],
        "updated_analyzer_cache": [_artifact(standard_artifacts.TransformCache, workspace / name / "cache")],
    }
    outputs["transformed_examples"][0].split_names = examples.split_names
    inputs = {"examples": [examples], "schema": [_artifact(standard_artifacts.Schema, workspace / "schema")]}
    if cache is not None:
        inputs["analyzer_cache"] = [cache]
    if base_model is not None:
        inputs["base_model"] = [base_model]
    properties = {
        "preprocessing_fn": config.preprocessing_fn,
        "custom_config": json.dumps(config.user_custom_config),
        "force_tf_compat_v1": 0,
        "disable_statistics": 1,
        "transform_reuses": reuses,
    }
    WindowTransform(CONTEXT).Do(inputs, outputs, properties)
    return {key: artifacts[0] for key, artifacts in outputs.items()}


def _records(examples, split):
    """The split's examples as rows of (feature, kind, values), sorted (a map's wire order is not fixed,
    so not bytes); rows sort on their values rounded, so float rounding cannot reorder them."""
    pattern = f"{artifact_utils.get_split_uri([examples], split)}/*"
    rows = []
    for record in tf.data.TFRecordDataset(sorted(tf.io.gfile.glob(pattern)), "GZIP"):
        features = tf.train.Example.FromString(record.numpy()).features.feature
        row = []
        for name, feature in sorted(features.items()):
            kind = feature.WhichOneof("kind")
            row.append((name, kind, tuple(getattr(feature, kind).value)))
        rows.append(row)
    assert rows, pattern
    return sorted(rows, key=_rounded)


def _rounded(row):
    """A row with its floats rounded: the sort key."""
    return [(n, k, tuple(round(v, 4) for v in vs) if k == "float_list" else vs) for n, k, vs in row]


def _assert_same_examples(got, expected):
    """The same examples: names, kinds and integers exact; floats to float32 rounding (a retrain
    combines cached per-span accumulators, which adds in another order than one pass does)."""
    assert len(got) == len(expected)
    for got_row, expected_row in zip(got, expected, strict=True):
        assert [(n, k) for n, k, _ in got_row] == [(n, k) for n, k, _ in expected_row]
        for (name, kind, got_values), (_, _, expected_values) in zip(got_row, expected_row, strict=True):
            if kind == "float_list":
                np.testing.assert_allclose(got_values, expected_values, rtol=1e-6, atol=1e-6, err_msg=name)
            else:
                assert got_values == expected_values, name


@pytest.fixture(scope="module")
def runs(workspace):
    first_window = _window(workspace, "w12", [1, 2])
    first = _transform(workspace, "t12", first_window)
    second_window = _window(workspace, "w23", [2, 3])
    return first_window, first, second_window


def test_each_span_of_the_train_split_is_its_own_dataset_with_a_stable_key(runs):
    first_window, _first, second_window = runs
    ours = per_span(f"{first_window.uri}/Split-train/*")
    theirs = per_span(f"{second_window.uri}/Split-train/*")
    assert [key.split("-")[1] for _, key in ours] == ["1", "2"]
    assert ours[1][1] == theirs[0][1]  # span 2: the same key in both windows (another path)
    assert ours[1][0] != theirs[0][0]
    assert per_span(f"{first_window.uri}/Split-train/span-1-*") is None  # already per span
    assert dataset_key(2, "a", "train") != dataset_key(2, "b", "train")  # new files, new key


def test_a_retrain_analyzes_only_the_new_span_and_transforms_like_an_uncached_transform(
    workspace, runs, caplog
):
    _first_window, first, second_window = runs
    with caplog.at_level(logging.INFO, logger="components.window_transform.executor"):
        cached = _transform(workspace, "t23-cached", second_window, cache=first["updated_analyzer_cache"])
    [line] = [r.getMessage() for r in caplog.records if "analyzer cache" in r.getMessage()]
    key2, key3 = (key for _, key in per_span(f"{second_window.uri}/Split-train/*"))
    assert f"1 dataset(s) cached ['{key2}'], 1 analyzed ['{key3}']" in line

    uncached = _transform(workspace, "t23-uncached", second_window)
    for split in ("train", "eval"):
        _assert_same_examples(
            _records(cached["transformed_examples"], split), _records(uncached["transformed_examples"], split)
        )


def _blessed_model(workspace, graph) -> standard_artifacts.Model:
    """A model artifact that keeps ``graph`` as the transform graph it was trained on (as an export does)."""
    model = _artifact(standard_artifacts.Model, workspace / f"model-of-{graph.uri.split('/')[-2]}")
    warm_start.copy_transform(graph.uri, warm_start.transform_path(path_utils.serving_model_path(model.uri)))
    return model


def test_a_warm_retrain_applies_the_blessed_graph_exactly_as_tfx_transform_does(workspace, runs, caplog):
    first_window, first, second_window = runs
    base = _blessed_model(workspace, first["transform_graph"])
    # the same window as the blessed analysis: plain TF must give what tf.Transform's Beam pass gave
    with caplog.at_level(logging.INFO, logger="components.window_transform.executor"):
        again = _transform(workspace, "t12-reused", first_window, base_model=base, reuses=3)
    assert "Transform reused the blessed model's analysis" in caplog.text
    assert "Transform analyzer cache" not in caplog.text  # no analysis ran
    for split in ("train", "eval"):
        _assert_same_examples(
            _records(again["transformed_examples"], split), _records(first["transformed_examples"], split)
        )
    # sorted: TFX's own Transform lists the splits in a set's order (ResolveSplitsConfig)
    assert sorted(artifact_utils.decode_split_names(again["transformed_examples"].split_names)) == [
        "eval",
        "train",
    ]
    # a new window: the graph is the blessed one, byte for byte, and the record counts the reuse
    reused = _transform(workspace, "t23-reused", second_window, base_model=base, reuses=3)
    graph = reused["transform_graph"].uri
    assert warm_start.transform_digest(graph) == warm_start.transform_digest(first["transform_graph"].uri)
    first_analysis, analysis = reuse.read(first["transform_graph"].uri), reuse.read(graph)
    assert first_analysis.reuses == 0 and analysis.reuses == 1
    assert analysis.fingerprint == first_analysis.fingerprint
    for split in ("train", "eval"):
        raw = f"{artifact_utils.get_split_uri([second_window], split)}/*"
        count = sum(1 for _ in tf.data.TFRecordDataset(tf.io.gfile.glob(raw), "GZIP"))
        assert len(_records(reused["transformed_examples"], split)) == count


def test_reuse_needs_what_the_plain_tensorflow_path_handles():
    examples = standard_artifacts.Examples()
    examples.split_names = artifact_utils.encode_split_names(["train", "eval"])
    inputs = {"examples": [examples]}
    ours = {"preprocessing_fn": "models.preprocessing.preprocessing_fn", "disable_statistics": 1}
    assert _cannot_reuse(inputs, ours) is None
    assert _cannot_reuse(inputs, {**ours, "module_file": "/code/preprocessing.py"}) == (
        "the preprocessing code is a module file (reuse needs preprocessing_fn as a dotted path)"
    )
    assert _cannot_reuse(inputs, {**ours, "disable_statistics": 0}) == (
        "pre/post-transform statistics are asked for (disable_statistics is off)"
    )
    examples.set_string_custom_property("file_format", "parquet")
    assert _cannot_reuse(inputs, ours) == "the examples are stored as ['parquet'], not tfrecords_gzip"
    examples.set_string_custom_property("file_format", "tfrecords_gzip")
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_PROTO)
    assert _cannot_reuse(inputs, ours) == "the examples are FORMAT_PROTO, not tf.Examples"
