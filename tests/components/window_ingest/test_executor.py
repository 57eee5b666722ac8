"""WindowIngest: the latest K spans of the data root ingested and validated in one run, bad ones left out.

Both sides run for real (TFX's own CsvExampleGen, StatisticsGen and ExampleValidator executors and ours,
Beam FnApiRunner) on small spans of the taxi sample; one span is made bad (a payment type outside the
schema's domain).
"""

import json
import shutil

import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2, statistics_pb2
from tfx.components.example_gen.csv_example_gen import executor as csv_example_gen
from tfx.components.example_validator import executor as example_validator
from tfx.components.statistics_gen import executor as statistics_gen
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import proto_utils

from components.window_ingest.executor import Executor
from components.window_ingest.ingest import find_span_files
from components.window_ingest.window import DATA_FINGERPRINT, data_fingerprint, latest, present_spans
from pipeline import data
from pipeline.config import DEFAULT_BEAM_ARGS, load_config, with_dependencies
from pipeline.pipeline import _INPUT_CONFIG, _OUTPUT_CONFIG

ROWS_PER_SPAN = 120  # ~30 eval rows: above the schema's 20-example minimum
# the project declared as the workers' dependency, as a run declares it: else TFX builds an sdist of tfx
BEAM = with_dependencies(DEFAULT_BEAM_ARGS)
CONTEXT = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=BEAM)
SPLITS = ("train", "eval")


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    return artifact


def _write_spans(root, spans, bad=()):
    header, by_span = data.split_into_spans()
    for span in spans:
        rows = [list(row) for row in data._sample(by_span[span], ROWS_PER_SPAN)]
        if span in bad:
            for row in rows:
                row[header.index("payment_type")] = "Bitcoin"
        data.write_span(root, span, header, rows)
    return root


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """Spans 1-4; span 3 has an out-of-domain payment type on every row."""
    return _write_spans(tmp_path_factory.mktemp("data"), (1, 2, 3, 4), bad=(3,))


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    shutil.copy(load_config(model="taxi_tips").schema_file, folder / "schema.pbtxt")
    return _artifact(standard_artifacts.Schema, folder)


def _run(input_base, schema, folder, num_spans=3, span_cache=None):
    outputs = {
        "examples": [_artifact(standard_artifacts.Examples, folder / "examples")],
        "statistics": [_artifact(standard_artifacts.ExampleStatistics, folder / "statistics")],
        "anomalies": [_artifact(standard_artifacts.ExampleAnomalies, folder / "anomalies")],
    }
    properties = {
        "input_base": str(input_base),
        "input_config": proto_utils.proto_to_json(_INPUT_CONFIG),
        "output_config": proto_utils.proto_to_json(_OUTPUT_CONFIG),
        "num_spans": num_spans,
        "span_cache": str(span_cache) if span_cache else None,
    }
    Executor(CONTEXT).Do({"schema": [schema]}, outputs, properties)
    return {key: artifacts[0] for key, artifacts in outputs.items()}


@pytest.fixture(scope="module")
def window(spans, schema, tmp_path_factory):
    return _run(spans, schema, tmp_path_factory.mktemp("window"), num_spans=3)


@pytest.fixture(scope="module")
def tfx_components(spans, schema, tmp_path_factory):
    """Span 4 through TFX's own CsvExampleGen, StatisticsGen and ExampleValidator executors."""
    out = tmp_path_factory.mktemp("tfx")
    input_config = example_gen_pb2.Input()
    input_config.CopyFrom(_INPUT_CONFIG)
    input_config.splits[0].pattern = "span-4/*"  # what ExampleGen's driver resolves {SPAN} to
    examples = _artifact(standard_artifacts.Examples, out / "examples")
    csv_example_gen.Executor(CONTEXT).Do(
        {},
        {"examples": [examples]},
        {
            "input_base": str(spans),
            "input_config": proto_utils.proto_to_json(input_config),
            "output_config": proto_utils.proto_to_json(_OUTPUT_CONFIG),
        },
    )
    statistics = _artifact(standard_artifacts.ExampleStatistics, out / "statistics")
    statistics_gen.Executor(CONTEXT).Do({"examples": [examples]}, {"statistics": [statistics]}, {})
    anomalies = _artifact(standard_artifacts.ExampleAnomalies, out / "anomalies")
    example_validator.Executor(CONTEXT).Do(
        {"statistics": [statistics], "schema": [schema]}, {"anomalies": [anomalies]}, {}
    )
    return {"examples": examples, "statistics": statistics, "anomalies": anomalies}


def _records(artifact, split, glob="*.gz"):
    pattern = f"{artifact_utils.get_split_uri([artifact], split)}/{glob}"
    return sorted(r.numpy() for r in tf.data.TFRecordDataset(tf.io.gfile.glob(pattern), "GZIP"))


def _statistics(artifact, split):
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    with open(f"{artifact_utils.get_split_uri([artifact], split)}/FeatureStats.pb", "rb") as f:
        stats.ParseFromString(f.read())
    return stats


def _anomalies(artifact, split):
    found = anomalies_pb2.Anomalies()
    with open(f"{artifact_utils.get_split_uri([artifact], split)}/SchemaDiff.pb", "rb") as f:
        found.ParseFromString(f.read())
    return found


def test_the_window_is_the_latest_spans_with_the_bad_one_left_out_and_named(window):
    examples = window["examples"]
    assert json.loads(examples.get_string_custom_property("spans")) == [2, 4]
    left_out = json.loads(examples.get_string_custom_property("left_out"))
    assert list(left_out) == ["3"]
    assert any("payment_type" in reason for reason in left_out["3"])
    assert examples.get_int_custom_property("span") == 4
    for artifact in window.values():
        assert artifact_utils.decode_split_names(artifact.split_names) == list(SPLITS)
    files = tf.io.gfile.glob(f"{examples.uri}/Split-train/*")
    assert {path.rsplit("/", 1)[-1].split("-data")[0] for path in files} == {"span-2", "span-4"}
    assert not tf.io.gfile.exists(f"{examples.uri}/.staging")  # nothing half-written stays behind


def test_each_span_is_what_csv_example_gen_writes(spans, window, tfx_components):
    for split in SPLITS:
        assert _records(window["examples"], split, "span-4-*") == _records(tfx_components["examples"], split)
    total = sum(len(_records(window["examples"], split)) for split in SPLITS)
    rows = sum(len((spans / f"span-{s}" / "data.csv").read_text().splitlines()) - 1 for s in (2, 4))
    assert total == rows  # spans 2 and 4, every row once
    examples = window["examples"]
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"


def test_the_newest_spans_statistics_and_anomalies_sit_where_tfx_puts_them(window, tfx_components):
    for split in SPLITS:
        assert _statistics(window["statistics"], split) == _statistics(tfx_components["statistics"], split)
        assert _anomalies(window["anomalies"], split) == _anomalies(tfx_components["anomalies"], split)
    assert dict(window["anomalies"].get_json_value_custom_property("blessed")) == {"train": 1, "eval": 1}
    bad = _artifact(standard_artifacts.ExampleAnomalies, f"{window['anomalies'].uri}/span-3")
    bad.split_names = window["anomalies"].split_names
    assert "payment_type" in _anomalies(bad, "train").anomaly_info


def test_the_fingerprint_follows_the_span_files(spans, window):
    files = {s: find_span_files(str(spans), data.SPAN_PATTERN, s).fingerprint for s in (2, 4)}
    assert window["examples"].get_string_custom_property(DATA_FINGERPRINT) == data_fingerprint(files)
    assert data_fingerprint(files) != data_fingerprint({**files, 4: files[4] + "changed"})
    assert data_fingerprint(files) == data_fingerprint(dict(reversed(files.items())))


def _outputs(run):
    """Everything a window's consumers read: records, statistics, anomalies and custom properties."""
    examples = run["examples"]
    return {
        "records": {split: _records(examples, split) for split in SPLITS},
        "statistics": {split: _statistics(run["statistics"], split) for split in SPLITS},
        "anomalies": {split: _anomalies(run["anomalies"], split) for split in SPLITS},
        "properties": {
            key: examples.get_string_custom_property(key) for key in ("spans", "left_out", DATA_FINGERPRINT)
        },
        "blessed": dict(run["anomalies"].get_json_value_custom_property("blessed")),
    }


def test_a_retrain_ingests_only_new_spans_and_writes_what_a_full_ingest_writes(
    spans, schema, window, tmp_path, caplog
):
    root = tmp_path / "data"
    shutil.copytree(spans, root)
    cache = tmp_path / "span-cache"
    with caplog.at_level("INFO", logger="components.window_ingest.executor"):
        first = _run(root, schema, tmp_path / "first", span_cache=cache)
        assert "Span cache: 0 reused [], 3 ingested [2, 3, 4]" in caplog.text
        again = _run(root, schema, tmp_path / "again", span_cache=cache)
        assert "Span cache: 3 reused [2, 3, 4], 0 ingested []" in caplog.text
    assert _outputs(first) == _outputs(again) == _outputs(window)  # span 3 (bad) is left out again

    _write_spans(root, (5,))
    with caplog.at_level("INFO", logger="components.window_ingest.executor"):
        caplog.clear()
        newer = _run(root, schema, tmp_path / "newer", span_cache=cache)
        assert "Span cache: 2 reused [3, 4], 1 ingested [5]" in caplog.text
    assert json.loads(newer["examples"].get_string_custom_property("spans")) == [4, 5]
    assert sorted(p.name.split("-")[1] for p in cache.iterdir()) == ["3", "4", "5"]  # span 2 left the window
    uncached = _run(root, schema, tmp_path / "uncached")
    assert _outputs(newer) == _outputs(uncached)

    # a rewritten span file is a new entry: ingested again, not read from the cache
    shutil.rmtree(root / "span-4")
    _write_spans(root, (4,), bad=(4,))
    with caplog.at_level("INFO", logger="components.window_ingest.executor"):
        caplog.clear()
        rewritten = _run(root, schema, tmp_path / "rewritten", span_cache=cache)
        assert "Span cache: 2 reused [3, 5], 1 ingested [4]" in caplog.text
    assert json.loads(rewritten["examples"].get_string_custom_property("spans")) == [5]


def test_a_bad_newest_span_closes_the_gate_and_an_empty_one_is_left_out_by_name(schema, tmp_path):
    root = _write_spans(tmp_path / "data", (1, 2), bad=(2,))
    bad_newest = _run(root, schema, tmp_path / "bad", num_spans=2)
    assert dict(bad_newest["anomalies"].get_json_value_custom_property("blessed")) == {"train": 0, "eval": 0}
    assert json.loads(bad_newest["examples"].get_string_custom_property("spans")) == [1]

    (root / "span-3").mkdir()
    (root / "span-3" / "data.csv").write_text("")
    empty_newest = _run(root, schema, tmp_path / "empty", num_spans=3)
    assert dict(empty_newest["anomalies"].get_json_value_custom_property("blessed")) == {
        "train": 0,
        "eval": 0,
    }
    left_out = json.loads(empty_newest["examples"].get_string_custom_property("left_out"))
    assert sorted(left_out) == ["2", "3"]
    assert any("examples" in reason.lower() for reason in left_out["3"])


def test_a_root_without_spans_is_refused_by_name(schema, tmp_path):
    (tmp_path / "data").mkdir()
    with pytest.raises(ValueError, match=r"no span matching 'span-\{SPAN\}/\*' under"):
        _run(tmp_path / "data", schema, tmp_path)


def test_present_spans_reads_only_span_folders(tmp_path):
    for name in ("span-1", "span-10", "span-2", "span-x", "spans-3", "other"):
        (tmp_path / name).mkdir()
    (tmp_path / "span-7.csv").write_text("x\n")
    assert present_spans(str(tmp_path), data.SPAN_PATTERN) == [1, 2, 10]
    assert latest([1, 2, 10], 2) == [2, 10]
    assert latest([4], 16) == [4]
    with pytest.raises(ValueError, match="at least one span"):
        latest([1], 0)
    with pytest.raises(ValueError, match="exactly once"):
        present_spans(str(tmp_path), "data/*")
