"""Cloud settings come from one YAML file plus environment overrides; cron forms are checked early."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import yaml

from kubeflow.cloud_config import CloudConfigError, load_cloud_config
from kubeflow.cron import CronError, check_kfp_cron, parse_vertex_cron

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


def test_dataflow_off_keeps_the_local_beam_args(tmp_path: Path) -> None:
    path = write_config(tmp_path, dataflow={"enabled": False})
    cloud = load_cloud_config(path, environ={})
    assert cloud.beam_args(("--runner=FnApiRunner",)) == ("--runner=FnApiRunner",)


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


def test_vertex_cron_with_time_zone_fires_at_the_right_minutes() -> None:
    schedule = parse_vertex_cron("TZ=Europe/Berlin 30 3 * * 1-5")
    assert schedule.timezone == "Europe/Berlin"
    utc = dt.timezone.utc
    assert schedule.matches(dt.datetime(2026, 3, 2, 2, 30, tzinfo=utc))  # Monday 03:30 in Berlin (CET)
    assert not schedule.matches(dt.datetime(2026, 3, 2, 3, 30, tzinfo=utc))  # 04:30 in Berlin
    saturday = dt.datetime(2026, 3, 7, 2, 30, tzinfo=utc)
    assert not schedule.matches(saturday)
    assert schedule.next_after(saturday) == dt.datetime(2026, 3, 9, 2, 30, tzinfo=utc)


def test_cron_steps_lists_and_either_day_rule() -> None:
    schedule = parse_vertex_cron("*/15 0,12 1 * 0")
    assert schedule.minutes == {0, 15, 30, 45} and schedule.hours == {0, 12}
    first_of_month = dt.datetime(2026, 4, 1, 12, 45)  # a Wednesday
    a_sunday = dt.datetime(2026, 4, 5, 0, 0)
    assert schedule.matches(first_of_month) and schedule.matches(a_sunday)
    assert not schedule.matches(dt.datetime(2026, 4, 2, 0, 0))
    assert parse_vertex_cron("0 3 * * *").next_after(dt.datetime(2026, 4, 2, 3, 0)) == dt.datetime(
        2026, 4, 3, 3, 0
    )


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("0 0 3 * * *", "Vertex needs 5.*Kubeflow's 6-field form"),
        ("61 3 * * *", "minute field '61' is outside 0-59"),
        ("TZ=Mars/Olympus 0 3 * * *", "'Mars/Olympus' is not an IANA zone"),
        ("0 3 * JAN *", "month field 'JAN'"),
    ],
)
def test_bad_vertex_cron_is_refused_clearly(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        parse_vertex_cron(expression)


def test_kfp_cron_needs_six_fields_and_no_time_zone() -> None:
    assert check_kfp_cron("0 0 3 * * *") == "0 0 3 * * *"
    with pytest.raises(CronError, match=r"needs 6, seconds first e.g. '0 0 3 \* \* \*'"):
        check_kfp_cron("0 3 * * *")
    with pytest.raises(CronError, match="no TZ= prefix"):
        check_kfp_cron("TZ=UTC 0 0 3 * * *")
