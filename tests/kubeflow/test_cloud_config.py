"""Cloud settings come from one YAML file plus environment overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kubeflow.cloud_config import IMAGE_SETUP_FILE, CloudConfigError, load_cloud_config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "kubeflow" / "cloud.example.yaml"


def write_config(tmp_path: Path, **changes) -> Path:
    values = yaml.safe_load(EXAMPLE.read_text())
    for key, value in changes.items():
        if value is None:
            values.pop(key)
        else:
            values[key] = value
    path = tmp_path / "cloud.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_example_config_loads_and_builds_dataflow_beam_args() -> None:
    cloud = load_cloud_config(EXAMPLE, environ={})
    assert cloud.project == "my-gcp-project" and cloud.region == "us-central1"
    assert cloud.location_path == "projects/my-gcp-project/locations/us-central1"
    args = cloud.beam_args(("--runner=FnApiRunner",))
    assert args[0] == "--runner=DataflowRunner"
    assert "--setup_file=/tfx-canary/setup.py" in args
    assert f"--service_account_email={cloud.service_account}" in args
    assert "--temp_location=gs://my-gcp-project-tfx-canary/tmp" in args


def test_dataflow_off_keeps_the_local_beam_args_with_the_images_setup_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, dataflow={"enabled": False})
    cloud = load_cloud_config(path, environ={})
    # declared, so TFX does not build an sdist of tfx in each Beam component's container
    assert cloud.beam_args(("--runner=FnApiRunner",)) == (
        "--runner=FnApiRunner",
        f"--setup_file={IMAGE_SETUP_FILE}",
    )
    declared = ("--runner=FnApiRunner", "--extra_package=gs://b/p.tar.gz")
    assert cloud.beam_args(declared) == declared


def test_environment_overrides_top_level_values() -> None:
    cloud = load_cloud_config(EXAMPLE, environ={"TFX_CANARY_CLOUD_PROJECT": "other-project-1"})
    assert cloud.project == "other-project-1"
    assert cloud.beam_args(())[1] == "--project=other-project-1"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"projct": "x"}, r"unknown key\(s\) \['projct'\]"),
        ({"project": None}, r"missing key\(s\) \['project'\]"),
        ({"serving_root": "/local/serving"}, "serving_root '/local/serving' must be a gs://bucket/path URI"),
        ({"region": "Europe"}, "region 'Europe' is not a valid value"),
        ({"image": "tfx-canary"}, "image 'tfx-canary' must be a registry path with a tag"),
        ({"dataflow": {"enabled": "yes"}}, r"dataflow.enabled must be bool, got 'yes'"),
        ({"dataflow": {"max_num_wokers": 3}}, r"unknown key\(s\) \['dataflow.max_num_wokers'\]"),
        ({"service_account": "me@example.com"}, "service_account 'me@example.com' is not a valid value"),
    ],
)
def test_bad_settings_fail_with_a_message_naming_them(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(CloudConfigError, match=message):
        load_cloud_config(write_config(tmp_path, **changes), environ={})


def test_relative_pipeline_config_is_resolved_next_to_the_cloud_config(tmp_path: Path) -> None:
    cloud = load_cloud_config(write_config(tmp_path, pipeline_config="pipeline.yaml"), environ={})
    assert cloud.pipeline_config == str(tmp_path / "pipeline.yaml")


def test_kubernetes_manifests_point_at_the_example_serving_root_and_image() -> None:
    """serving_configs/k8s and the example cloud config describe the same deployment."""
    cloud = load_cloud_config(EXAMPLE, environ={})
    manifests = (ROOT / "serving_configs" / "k8s" / "tf-serving.yaml").read_text()
    assert f"--model_config_file={cloud.serving_root}/models.config" in manifests
    assert f"image: {cloud.image}" in (ROOT / "serving_configs" / "k8s" / "router.yaml").read_text()
