"""BackfillSpans gives, per span, what CsvExampleGen → StatisticsGen → ExampleValidator give.

Both sides run for real (TFX's own executors and ours, Beam FnApiRunner) on small spans of the taxi
sample; one span is made bad (a payment type outside the schema's domain).
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

from components.backfill_spans.executor import Executor
from components.spans import artifact_span
from components.window_ingest.ingest import find_span_files
from pipeline import data
from pipeline.config import load_config
from pipeline.pipeline import _INPUT_CONFIG, _OUTPUT_CONFIG

ROWS_PER_SPAN = 80
BEAM = ["--runner=FnApiRunner", "--direct_running_mode=in_memory", "--direct_num_workers=1"]
CONTEXT = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=BEAM)


def _artifact(kind, uri):
    artifact = kind()
    artifact.uri = str(uri)
    return artifact


@pytest.fixture(scope="module")
def spans(tmp_path_factory):
    """Spans 1-3; span 2 has an out-of-domain payment type on every row."""
    root = tmp_path_factory.mktemp("data")
    header, by_span = data.split_into_spans()
    for span in (1, 2, 3):
        rows = [list(row) for row in data._sample(by_span[span], ROWS_PER_SPAN)]
        if span == 2:
            for row in rows:
                row[header.index("payment_type")] = "Bitcoin"
        data.write_span(root, span, header, rows)
    return root


@pytest.fixture(scope="module")
def schema(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    shutil.copy(load_config(model="taxi_tips").schema_file, folder / "schema.pbtxt")
    return _artifact(standard_artifacts.Schema, folder)


def _outputs(folder):
    """One output artifact per key, as the launcher hands them to an executor."""
    kinds = {
        "examples": standard_artifacts.Examples,
        "statistics": standard_artifacts.ExampleStatistics,
        "anomalies": standard_artifacts.ExampleAnomalies,
    }
    return {key: [_artifact(kind, folder / key)] for key, kind in kinds.items()}


def _properties(input_base, spans_json):
    return {
        "input_base": str(input_base),
        "input_config": proto_utils.proto_to_json(_INPUT_CONFIG),
        "output_config": proto_utils.proto_to_json(_OUTPUT_CONFIG),
        "spans": spans_json,
    }


@pytest.fixture(scope="module")
def backfill(spans, schema, tmp_path_factory):
    out = tmp_path_factory.mktemp("backfill")
    outputs = _outputs(out)
    Executor(CONTEXT).Do({"schema": [schema]}, outputs, _properties(spans, json.dumps([3, 1, 2])))
    return outputs


@pytest.fixture(scope="module")
def tfx_components(spans, schema, tmp_path_factory):
    """Span 3 through TFX's own CsvExampleGen, StatisticsGen and ExampleValidator executors."""
    out = tmp_path_factory.mktemp("tfx")
    input_config = example_gen_pb2.Input()
    input_config.CopyFrom(_INPUT_CONFIG)
    input_config.splits[0].pattern = "span-3/*"  # what ExampleGen's driver resolves {SPAN} to
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


def _records(artifact, split):
    pattern = f"{artifact_utils.get_split_uri([artifact], split)}/*.gz"
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


def test_one_artifact_per_span_in_every_output(backfill):
    for key in ("examples", "statistics", "anomalies"):
        assert [artifact_span(a) for a in backfill[key]] == [1, 2, 3]
        assert [a.uri.rsplit("/", 1)[-1] for a in backfill[key]] == ["span-1", "span-2", "span-3"]
        for artifact in backfill[key]:
            assert artifact_utils.decode_split_names(artifact.split_names) == ["train", "eval"]


def test_examples_are_the_ones_csv_example_gen_writes(spans, backfill, tfx_components):
    ours = backfill["examples"][2]
    for split in ("train", "eval"):
        assert _records(ours, split) == _records(tfx_components["examples"], split)
    rows = len((spans / "span-3" / "data.csv").read_text().splitlines()) - 1
    assert len(_records(ours, "train")) + len(_records(ours, "eval")) == rows
    assert ours.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert ours.get_string_custom_property("file_format") == "tfrecords_gzip"
    assert ours.get_string_custom_property("input_fingerprint").startswith("split:single_split,num_files:1,")


def test_statistics_are_the_ones_statistics_gen_writes(backfill, tfx_components):
    for split in ("train", "eval"):
        ours = _statistics(backfill["statistics"][2], split)
        theirs = _statistics(tfx_components["statistics"], split)
        assert len(ours.datasets) == 1 and ours.datasets[0].num_examples > 0
        assert ours == theirs


def test_clean_spans_are_blessed_and_the_bad_one_names_its_anomaly(backfill, tfx_components):
    blessed = [a.get_json_value_custom_property("blessed") for a in backfill["anomalies"]]
    assert [dict(b) for b in blessed] == [
        {"train": 1, "eval": 1},
        {"train": 0, "eval": 0},
        {"train": 1, "eval": 1},
    ]
    assert "payment_type" in _anomalies(backfill["anomalies"][1], "train").anomaly_info
    for split in ("train", "eval"):
        assert _anomalies(backfill["anomalies"][2], split) == _anomalies(tfx_components["anomalies"], split)


def test_a_missing_span_is_refused_by_name(spans, schema, tmp_path):
    outputs = _outputs(tmp_path)
    with pytest.raises(ValueError, match="span 7"):
        Executor(CONTEXT).Do({"schema": [schema]}, outputs, _properties(spans, "[1, 7]"))
    assert not (tmp_path / "examples").exists()  # refused before anything was written


def test_a_span_whose_files_disagree_on_the_header_is_refused(tmp_path):
    folder = tmp_path / "span-4"
    folder.mkdir()
    (folder / "a.csv").write_text("x,y\n1,2\n")
    (folder / "b.csv").write_text("x,z\n1,2\n")
    with pytest.raises(ValueError, match="different header"):
        find_span_files(str(tmp_path), data.SPAN_PATTERN, 4)


def test_a_split_without_rows_still_gets_a_file_and_statistics(schema, tmp_path):
    header, by_span = data.split_into_spans()
    data.write_span(tmp_path / "data", 5, header, by_span[5][:1])  # one row: one split stays empty
    outputs = _outputs(tmp_path)
    Executor(CONTEXT).Do({"schema": [schema]}, outputs, _properties(tmp_path / "data", "[5]"))
    [examples], [statistics] = outputs["examples"], outputs["statistics"]
    assert examples.uri == str(tmp_path / "examples")  # one span: the system's own URI
    counts = {split: len(_records(examples, split)) for split in ("train", "eval")}
    assert sorted(counts.values()) == [0, 1]
    for split, count in counts.items():
        assert _statistics(statistics, split).datasets[0].num_examples == count


def test_a_row_that_does_not_fit_the_header_is_refused_naming_the_span(schema, tmp_path):
    header, by_span = data.split_into_spans()
    rows = [list(row) for row in by_span[6][:5]]
    rows[2] = rows[2][:-1]  # one cell short
    data.write_span(tmp_path / "data", 6, header, rows)
    outputs = _outputs(tmp_path)
    with pytest.raises(Exception, match="span 6: Columns do not match specified csv headers"):
        Executor(CONTEXT).Do({"schema": [schema]}, outputs, _properties(tmp_path / "data", "[6]"))
