"""``tfx-canary init``: the scaffolded project is complete, plain, ruff-clean and trains through real
tf.Transform; a bad sample fails with one clear error and leaves nothing behind."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow as tf

from pipeline import preflight
from pipeline.config import PipelineConfig
from scaffold.project import init_project
from tfx_canary.errors import ConfigError

HEADER = ["size", "color", "weight", "kind"]
ROWS = [
    ["1.5", "red", "3", "apple"],
    ["2.0", "green", "", "pear"],
    ["0.5", "", "1", "plum"],
    ["1.0", "red", "2", "apple"],
    ["2.5", "green", "5", "pear"],
    ["0.7", "blue", "1", "plum"],
]


def _csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def fruit(tmp_path_factory) -> Path:
    """A project scaffolded from a small sample with numbers, strings, missing cells, 3 classes."""
    folder = tmp_path_factory.mktemp("init")
    sample = _csv(folder / "fruit.csv", HEADER, ROWS)
    return init_project(folder / "Fruit Stand", sample, "kind", "multiclass_classification")


def test_init_writes_a_project_the_pipeline_accepts(fruit):
    root = fruit.parent
    assert sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) == [
        "config.yaml",
        "data/span-1/data.csv",
        "fruit_stand_model/__init__.py",
        "fruit_stand_model/model.py",
        "fruit_stand_model/preprocessing.py",
        "pyproject.toml",
        "schema/schema.pbtxt",
    ]
    assert not [p for p in root.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    config = PipelineConfig.from_yaml(fruit)
    assert (config.model, config.name, config.task) == (
        "fruit_stand",
        "fruit-stand",
        "multiclass_classification",
    )
    assert config.classes == ("apple", "pear", "plum")
    assert config.preprocessing_fn == "fruit_stand_model.preprocessing.preprocessing_fn"
    assert config.code_dir == str(root / ".")
    assert [m.name for m in config.metrics] == ["SparseCategoricalAccuracy", "ExampleCount"]
    # The same checks every run makes pass on the new project, its code included.
    preflight.check_config(config, [root / "data" / "span-1" / "data.csv"])
    schema = {f.name: f for f in preflight.read_schema(config).feature}
    assert sorted(schema) == sorted(HEADER)
    assert schema["kind"].presence.min_fraction == 1.0 and schema["weight"].type == 2  # INT


def test_generated_code_is_ruff_clean(fruit):
    root = fruit.parent
    for command in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command], cwd=root, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


def test_generated_preprocessing_runs_through_tf_transform(fruit, tmp_path):
    import apache_beam as beam
    import tensorflow_transform as tft
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io

    config = PipelineConfig.from_yaml(fruit)
    preprocessing_fn = preflight.import_user_code(config)["preprocessing_fn"]
    schema = preflight.read_schema(config)
    kinds = {f.name: f.type for f in schema.feature}
    cast = {1: lambda v: v.encode(), 2: int, 3: float}
    instances = [
        {k: [cast[kinds[k]](v)] if v else [] for k, v in zip(HEADER, row, strict=True)} for row in ROWS
    ]
    out = str(tmp_path / "transform")
    with beam.Pipeline(runner="FnApiRunner") as pipeline, tft_beam.Context(temp_dir=str(tmp_path / "tmp")):
        raw = pipeline | beam.Create(instances)
        transform_fn = (raw, dataset_metadata.DatasetMetadata(schema)) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, config.user_custom_config)
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out)
    metadata_io.write_metadata(
        dataset_metadata.DatasetMetadata(schema), f"{out}/{tft.TFTransformOutput.RAW_METADATA_DIR}"
    )
    output = tft.TFTransformOutput(out)
    assert set(output.transformed_feature_spec()) == {"size_xf", "color_xf", "weight_xf", "kind_xf"}
    examples = [
        tf.train.Example(
            features=tf.train.Features(
                feature={
                    "size": tf.train.Feature(float_list=tf.train.FloatList(value=[2.0])),
                    "kind": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"plum"])),
                }
            )
        ).SerializeToString()
    ]
    raw_spec = {k: tf.io.VarLenFeature(v.dtype) for k, v in output.raw_feature_spec().items()}
    result = output.transform_features_layer()(tf.io.parse_example(examples, raw_spec))
    assert result["kind_xf"].numpy().tolist() == [2]  # plum's index in classes
    # Missing color and weight were filled in, not dropped.
    assert result["color_xf"].shape == (1,) and result["weight_xf"].shape == (1,)


def _fails(tmp_path: Path, csv_file: Path, label: str, task: str, message: str) -> None:
    target = tmp_path / "project"
    with pytest.raises(ConfigError) as error:
        init_project(target, csv_file, label, task)
    assert message in str(error.value)
    assert str(csv_file) in str(error.value) or "--task" in str(error.value)
    assert not target.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_task_that_does_not_fit_the_label_is_refused(tmp_path):
    sample = _csv(tmp_path / "fruit.csv", HEADER, ROWS)
    _fails(tmp_path, sample, "kind", "regression", "--task regression needs a numeric label")
    _fails(tmp_path, sample, "kind", "binary_classification", "takes 2 classes, but 'kind' has 3")
    _fails(
        tmp_path, sample, "size", "multiclass_classification", "holds decimal numbers; use --task regression"
    )


@pytest.mark.parametrize(
    ("header", "rows", "label", "message"),
    [
        ([], [], "kind", "the file is empty"),
        (HEADER, [], "kind", "has a header but no rows"),
        (HEADER, ROWS, "grape", "--label 'grape' is not a column; its columns are"),
    ],
)
def test_a_bad_sample_is_refused_before_anything_is_written(tmp_path, header, rows, label, message):
    sample = tmp_path / "sample.csv"
    if header:
        _csv(sample, header, rows)
    else:
        sample.write_text("")
    _fails(tmp_path, sample, label, "multiclass_classification", message)


def test_init_never_writes_into_a_folder_in_use(tmp_path, fruit):
    used = tmp_path / "used"
    used.mkdir()
    (used / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not an empty folder"):
        init_project(used, fruit.parent / "data" / "span-1" / "data.csv", "kind", "multiclass_classification")
    assert [p.name for p in used.iterdir()] == ["notes.txt"]
    shutil.rmtree(used)


def test_the_cli_refuses_a_bad_sample_in_one_line_with_exit_2(tmp_path):
    sample = _csv(tmp_path / "fruit.csv", HEADER, ROWS)
    target = tmp_path / "project"
    command = [sys.executable, "-m", "tfx_canary.cli", "init", str(target), "--csv", str(sample)]
    result = subprocess.run(
        [*command, "--label", "grape", "--task", "regression"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {sample}: --label 'grape' is not a column")
    assert not target.exists()
