"""Bad config, code, schema or data fails before any TFX component runs: one message naming the file,
the key and what would be valid, exit code 2, and nothing written under the home."""

from __future__ import annotations

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from pipeline.config import PipelineConfig
from pipeline.runner import run_pipeline
from tfx_canary.errors import ConfigError

SCHEMA = """
feature { name: "size" type: FLOAT }
feature { name: "color" type: BYTES }
feature { name: "kind" type: INT }
"""
ROWS = [["1.5", "red", "0"], ["2.0", "green", "1"], ["0.5", "blue", "2"]]


def _project(root: Path, header=("size", "color", "kind"), rows=ROWS, **config) -> Path:
    """A small project: a package with both functions, a schema, one span, and its config file."""
    package = root / "fruit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""Test user code."""\n')
    (package / "code.py").write_text(
        textwrap.dedent(
            """
            def preprocessing_fn(inputs, custom_config):
                return inputs


            def run_fn(fn_args):
                raise NotImplementedError
            """
        )
    )
    (root / "schema.pbtxt").write_text(SCHEMA)
    span = root / "data" / "span-1"
    span.mkdir(parents=True)
    with open(span / "data.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        if header:
            writer.writerow(header)
        writer.writerows(rows)
    values = {
        "model": "fruit",
        "code_dir": ".",
        "preprocessing_fn": "fruit.code.preprocessing_fn",
        "run_fn": "fruit.code.run_fn",
        "schema_file": "schema.pbtxt",
        "data_root": "data",
        "label": "kind",
        "task": "multiclass_classification",
        "classes": ["0", "1", "2"],
        "metrics": [{"name": "SparseCategoricalAccuracy", "min": 0.5}],
    }
    values.update(config)
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    return path


def _refused(tmp_path: Path, config_file: Path, *parts: str) -> str:
    home = tmp_path / "home"
    config = PipelineConfig.from_yaml(config_file, home=str(home))
    with pytest.raises(ConfigError) as error:
        run_pipeline(config)
    message = str(error.value)
    for part in parts:
        assert part in message, message
    assert "\n" not in message
    assert not home.exists(), "a refused run wrote under the home"
    return message


def test_a_good_project_passes(tmp_path):
    from pipeline.preflight import check_config

    config = PipelineConfig.from_yaml(_project(tmp_path / "p"))
    check_config(config, [tmp_path / "p" / "data" / "span-1" / "data.csv"])


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        (
            "preprocessing_fn",
            "nosuch.code.preprocessing_fn",
            ["preprocessing_fn in", "module 'nosuch.code' does not import (ModuleNotFoundError", "code_dir"],
        ),
        (
            "run_fn",
            "fruit.code.train",
            ["run_fn in", "has no function 'train'; its functions are", "'run_fn'"],
        ),
        (
            "label",
            "grape",
            ["label in", "'grape' is not a column of the schema", "['color', 'kind', 'size']"],
        ),
        (
            "metrics",
            [{"name": "SparseCategoricalAccuracyy", "min": 0.5}],
            ["metrics in", "'SparseCategoricalAccuracyy' is not a metric TFMA knows; did you mean Sparse"],
        ),
    ],
)
def test_a_config_that_does_not_fit_its_code_or_schema_is_refused(tmp_path, key, value, expected):
    config_file = _project(tmp_path / "p", **{key: value})
    _refused(tmp_path, config_file, str(config_file), *expected)


def test_a_task_that_does_not_fit_the_label_is_refused(tmp_path):
    binary = _project(tmp_path / "b", task="binary_classification", classes=["0", "1"])
    _refused(
        tmp_path, binary, "task in", "binary_classification takes 2 classes, but 'kind' has 3", "multiclass"
    )
    strings = _project(tmp_path / "s", label="color", task="regression", classes=None)
    _refused(tmp_path, strings, "task in", "regression needs a numeric label, but 'color' is BYTES")
    floats = _project(tmp_path / "f", label="size", classes=["0", "1", "2"])
    _refused(tmp_path, floats, "needs integer or string classes, but 'size' is FLOAT", "use regression")
    missing_class = _project(tmp_path / "m", classes=["0", "1", "9"])
    _refused(tmp_path, missing_class, "classes in", "lacks ['2']", "['0', '1', '2', '9']")


def test_data_that_disagrees_with_the_schema_is_refused(tmp_path):
    renamed = _project(tmp_path / "r", header=("size", "colour", "kind"))
    _refused(
        tmp_path,
        renamed,
        "data/span-1/data.csv: the CSV header lacks the schema's column(s) ['color']",
        "has column(s) ['colour'] the schema does not know",
        "expects exactly ['color', 'kind', 'size']",
    )
    without_label = _project(tmp_path / "l", header=("size", "color"), rows=[r[:2] for r in ROWS])
    _refused(tmp_path, without_label, "lacks the schema's column(s) ['kind']")


def test_short_new_data_is_left_to_the_data_gate_but_a_sample_needs_rows(tmp_path):
    from pipeline.preflight import check_header

    blank = _project(tmp_path / "z", header=(), rows=[])
    home = tmp_path / "home"
    result = run_pipeline(PipelineConfig.from_yaml(blank, home=str(home)))
    assert result.refused and "span-1/data.csv is empty" in result.reason
    assert not home.exists()
    header_only = _project(tmp_path / "e", rows=[])
    config = PipelineConfig.from_yaml(header_only)
    sample = tmp_path / "e" / "data" / "span-1" / "data.csv"
    with pytest.raises(ConfigError, match=r"data.csv: the CSV has a header but no rows"):
        check_header(config, sample, ["size", "color", "kind"])
    assert check_header(config, sample, ["size", "color", "kind"], require_rows=False) == [
        "size",
        "color",
        "kind",
    ]


def test_the_cli_says_it_in_one_line_with_exit_2_and_writes_nothing(tmp_path):
    config_file = _project(tmp_path / "p", run_fn="fruit.code.train")
    home = tmp_path / "home"
    result = subprocess.run(
        [sys.executable, "-m", "tfx_canary.cli", "run", "--config", str(config_file), "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: run_fn in {config_file}: module 'fruit.code'") and "'train'" in line
    assert not home.exists()
