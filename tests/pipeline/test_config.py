"""PipelineConfig: derived paths, YAML loading and clear validation errors."""

import pytest

from pipeline.config import ConfigError, PipelineConfig


def test_paths_derive_from_home(tmp_path):
    config = PipelineConfig(home=tmp_path, model="taxi_fare", name="taxi-fare")
    assert config.paths.data_root == str(tmp_path / "data" / "taxi")
    assert config.pipeline_root == str(tmp_path / "pipelines" / "taxi-fare")
    assert config.metadata_path == str(tmp_path / "metadata.sqlite")
    assert config.serving_model_dir == str(tmp_path / "serving" / "taxi_fare")
    assert config.task == "regression"


def test_roots_may_live_elsewhere_even_on_gcs(tmp_path):
    config = PipelineConfig(
        home=tmp_path, data_root="gs://b/data", pipelines_root="gs://b/p/", serving_root="gs://b/serving"
    )
    assert config.paths.data_root == "gs://b/data"
    assert config.pipeline_root == "gs://b/p/taxi-tips"
    assert config.serving_model_dir == "gs://b/serving/taxi_tips"
    assert config.metadata_path == str(tmp_path / "metadata.sqlite")


def test_home_defaults_to_env(monkeypatch, tmp_path):
    monkeypatch.setenv("TFX_CANARY_HOME", str(tmp_path / "h"))
    assert PipelineConfig().home == str(tmp_path / "h")


def test_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train_steps: 7\nspan_window: 3\nbeam_args: ['--runner=FnApiRunner']\n")
    config = PipelineConfig.from_yaml(path, home=str(tmp_path), span_window=2, name=None)
    assert (config.train_steps, config.span_window, config.home) == (7, 2, str(tmp_path))
    assert config.beam_args == ("--runner=FnApiRunner",)


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("train_stepz: 3\n", "unknown config key(s) ['train_stepz']"),
        ("train_steps: ten\n", "train_steps must be int, got str 'ten'"),
        ("enable_cache: 1\n", "enable_cache must be bool"),
        ("min_auc: 1.5\n", "min_auc must be between 0 and 1, got 1.5"),
        ("model: taxi_cab\n", "model 'taxi_cab' is not one of"),
        ("name: Taxi_Tips\n", "name 'Taxi_Tips' must be lowercase"),
        ("span_window: 0\n", "span_window must be at least 1, got 0"),
        ("beam_args: --runner=FnApiRunner\n", "beam_args must be a list of strings"),
        ("- a\n- b\n", "must be a mapping of settings, got list"),
    ],
)
def test_bad_config_names_the_problem(tmp_path, yaml_text, message):
    path = tmp_path / "c.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError) as error:
        PipelineConfig.from_yaml(path)
    assert message in str(error.value)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        PipelineConfig.from_yaml(tmp_path / "nope.yaml")
