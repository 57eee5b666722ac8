"""PipelineConfig: derived paths, YAML loading, the shipped examples and clear validation errors."""

import pytest
import yaml

from models import catalog
from pipeline.config import ConfigError, MetricGate, PipelineConfig, load_config


def _write(tmp_path, **changes):
    """A config file: the shipped taxi_tips example with ``changes`` (None deletes a key)."""
    values = {k: v for k, v in yaml.safe_load(load_config().to_yaml()).items() if k != "home"}
    values.update(changes)
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({k: v for k, v in values.items() if v is not None}))
    return path


def test_paths_derive_from_home(tmp_path):
    config = load_config(model="taxi_fare", home=tmp_path)
    assert config.paths.data_root == str(tmp_path / "data" / "taxi")
    assert config.pipeline_root == str(tmp_path / "pipelines" / "taxi-fare")
    assert config.metadata_path == str(tmp_path / "metadata.sqlite")
    assert config.serving_model_dir == str(tmp_path / "serving" / "taxi_fare")
    assert config.task == "regression"


def test_roots_may_live_elsewhere_even_on_gcs(tmp_path):
    config = load_config(
        home=tmp_path, data_root="gs://b/data", pipelines_root="gs://b/p/", serving_root="gs://b/serving"
    )
    assert config.paths.data_root == "gs://b/data"
    assert config.pipeline_root == "gs://b/p/taxi-tips"
    assert config.serving_model_dir == "gs://b/serving/taxi_tips"
    assert config.metadata_path == str(tmp_path / "metadata.sqlite")


def test_home_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TFX_CANARY_HOME", str(tmp_path / "h"))
    assert load_config().home == str(tmp_path / "h")


def test_yaml_with_overrides(tmp_path):
    path = _write(tmp_path, train_steps=7, span_window=3, beam_args=["--runner=FnApiRunner"])
    config = PipelineConfig.from_yaml(path, home=str(tmp_path), span_window=2, name=None)
    assert (config.train_steps, config.span_window, config.home) == (7, 2, str(tmp_path))
    assert config.beam_args == ("--runner=FnApiRunner",)
    assert config.config_file == str(path)


def test_the_shipped_examples_are_plain_config_files():
    for name in catalog.EXAMPLES:
        config = load_config(model=name)
        assert config.config_file == str(catalog.example_config_file(name))
        assert config.preprocessing_fn == "models.preprocessing.preprocessing_fn"
        assert config.schema_file == str(catalog.CONFIGS_DIR / "taxi.pbtxt")
        assert config.user_custom_config["model"] == name
    tips = load_config(model="taxi_tips")
    assert (tips.task, tips.label, tips.label_key, tips.classes) == (
        "binary_classification",
        "tips",
        "big_tipper_xf",
        ("0", "1"),
    )
    assert tips.metrics[0] == MetricGate("AUC", min=0.7, max_drop=0.01)


def test_paths_in_a_config_file_are_relative_to_the_file(tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    path = _write(folder, schema_file="schema/schema.pbtxt", data_root="data", code_dir=".")
    config = PipelineConfig.from_yaml(path)
    assert config.schema_file == str(folder / "schema" / "schema.pbtxt")
    assert config.paths.data_root == str(folder / "data")
    assert config.code_dir == str(folder / ".")
    # Overrides (flags) are taken as given.
    assert PipelineConfig.from_yaml(path, data_root="gs://b/d").paths.data_root == "gs://b/d"


def test_the_user_code_gets_the_model_settings(tmp_path):
    config = PipelineConfig.from_yaml(
        _write(
            tmp_path,
            label="species",
            label_key=None,
            task="multiclass_classification",
            classes=["a", "b", "c"],
            custom_config={"hidden": 8, "task": "ignored"},
        )
    )
    assert config.label_key == "species_xf"
    assert config.user_custom_config == {
        "hidden": 8,
        "label": "species",
        "label_key": "species_xf",
        "task": "multiclass_classification",
        "classes": ["a", "b", "c"],
    }


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("train_stepz: 3\n", "unknown config key(s) ['train_stepz']"),
        ("train_steps: ten\n", "train_steps must be int, got str 'ten'"),
        ("enable_cache: 1\n", "enable_cache must be bool"),
        ("name: Taxi_Tips\n", "name in {file}: 'Taxi_Tips' must be lowercase"),
        ("span_window: 0\n", "span_window must be at least 1, got 0"),
        ("beam_args: --runner=FnApiRunner\n", "beam_args must be a list of strings"),
        ("- a\n- b\n", "must be a mapping of settings, got list"),
        ("model: m\n", "preprocessing_fn in {file}: is required"),
        ("metrics: AUC\n", "metrics must be a list of mappings such as {{name: AUC, min: 0.7}}"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        PipelineConfig.from_yaml(path)
    assert message.format(file=path) in str(error.value)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"task": "classification"},
            "task in {file}: 'classification' is not one of ['binary_classification'",
        ),
        ({"run_fn": "run_fn"}, "run_fn in {file}: 'run_fn' must be a dotted path module.function"),
        ({"classes": ["a", "b", "c"]}, "a binary classification has exactly 2 classes, got ['a', 'b', 'c']"),
        (
            {"task": "multiclass_classification", "classes": ["a", "b"]},
            "names its 3 or more classes in index order",
        ),
        ({"task": "regression"}, "classes in {file}: a regression has no classes"),
        ({"metrics": []}, "metrics in {file}: list at least one metric"),
        ({"metrics": [{"name": "AUC", "min": 0.7, "max": 0.9}]}, "AUC takes min (higher is better) or max"),
        ({"metrics": [{"name": "AUC", "max_drop": 0.1}]}, "AUC max_drop must be a number >= 0 next to a min"),
        ({"metrics": [{"name": "AUC", "minimum": 0.7}]}, "unknown key(s) ['minimum'] for AUC"),
        ({"metrics": [{"name": "AUC", "min": "high"}]}, "AUC min must be a number, got 'high'"),
        ({"load_check_latency_ms": 0}, "load_check_latency_ms in {file}: 0 ms is out of range (0, 60000]"),
        ({"load_check_latency_ms": 90000}, "90000 ms is out of range (0, 60000]"),
        ({"warmup_examples": 1001}, "warmup_examples in {file}: 1001 is over TF Serving's 1000 records"),
        ({"warmup_examples": 0}, "warmup_examples must be at least 1, got 0"),
        ({"model_registry": {"region": "us-central1", "model_id": "m"}}, "model registry needs a project"),
        ({"model_registry": {"project": "my-project", "model_id": "m"}}, "model registry needs a region"),
        ({"model_registry": "taxi"}, "model_registry in {file}: must be a mapping, got str"),
    ],
)
def test_bad_model_settings_name_the_file_the_key_and_what_is_valid(tmp_path, changes, message):
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as error:
        PipelineConfig.from_yaml(path)
    assert message.format(file=path) in str(error.value)


def test_only_shipped_examples_load_by_name():
    with pytest.raises(ConfigError, match=r"model 'taxi_cab' is not a shipped example; choose one of"):
        load_config(model="taxi_cab")
    with pytest.raises(ConfigError, match="not both"):
        load_config("c.yaml", model="taxi_tips")


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        PipelineConfig.from_yaml(tmp_path / "nope.yaml")
