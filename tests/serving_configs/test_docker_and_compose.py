"""serving_configs/: the docker run script, the compose stack and the TF Serving config files."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.serving_configs.tf_serving_flags import check_tf_serving_args, parse_text_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "serving_configs"
SCRIPT = CONFIGS / "docker" / "run_tf_serving.sh"


def run_script(*args: str, serving_root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SERVING_ROOT": str(serving_root)}
    env.pop("TF_SERVING_IMAGE", None)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=30)


def docker_command(mode: str, serving_root: Path) -> list[str]:
    result = run_script(mode, "--print", serving_root=serving_root)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def split_docker_run(argv: list[str]) -> tuple[list[str], str, list[str]]:
    """(docker options, image, server args) of a ``docker run`` command line."""
    assert argv[:2] == ["docker", "run"]
    options_with_value = {"--name", "-p", "--mount", "--entrypoint", "--gpus"}
    index = 2
    while argv[index].startswith("-"):
        index += 2 if argv[index] in options_with_value else 1
    return argv[2:index], argv[index], argv[index + 1 :]


@pytest.fixture
def serving_root(tmp_path: Path) -> Path:
    root = tmp_path / "serving"
    (root / "taxi_tips").mkdir(parents=True)
    (root / "models.config").write_text('model_config_list { config { name: "taxi_tips" } }\n')
    return root


@pytest.mark.parametrize(
    ("mode", "image"), [("cpu", "tensorflow/serving:2.21.0"), ("gpu", "tensorflow/serving:2.21.0-gpu")]
)
def test_docker_run_line_mounts_the_serving_root_at_the_same_path(
    serving_root: Path, mode: str, image: str
) -> None:
    options, actual_image, server_args = split_docker_run(docker_command(mode, serving_root))
    assert actual_image == image
    assert ("--gpus" in options) == (mode == "gpu")
    assert options[options.index("--entrypoint") + 1] == "/usr/bin/tensorflow_model_server"
    mounts = [
        dict(item.partition("=")[::2] for item in options[i + 1].split(","))
        for i, o in enumerate(options)
        if o == "--mount"
    ]
    by_target = {mount["target"]: mount for mount in mounts}
    # models.config names absolute host paths: the container sees them at the same place.
    assert by_target[str(serving_root)]["source"] == str(serving_root)
    for mount in mounts:
        assert Path(mount["source"]).is_dir() and "readonly" in mount
    flags = check_tf_serving_args(server_args)
    assert flags["model_config_file"] == str(serving_root / "models.config")
    for flag in ("batching_parameters_file", "monitoring_config_file"):
        directory, name = flags[flag].rsplit("/", 1)
        assert (Path(by_target[directory]["source"]) / name).is_file(), f"--{flag} names a file not mounted"
    published = {options[i + 1] for i, o in enumerate(options) if o == "-p"}
    assert {
        f"{flags['port']}:{flags['port']}",
        f"{flags['rest_api_port']}:{flags['rest_api_port']}",
    } <= published


def test_docker_script_refuses_a_serving_root_without_models_config(tmp_path: Path) -> None:
    result = run_script("cpu", "--print", serving_root=tmp_path)
    assert result.returncode == 1
    assert f"no models.config in serving root '{tmp_path}'" in result.stderr
    assert result.stdout == ""


def test_docker_script_rejects_unknown_arguments(serving_root: Path) -> None:
    result = run_script("tpu", serving_root=serving_root)
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_batching_and_monitoring_files_parse_as_tf_serving_protos() -> None:
    batching = parse_text_config(
        (CONFIGS / "tf_serving" / "batching_parameters.txt").read_text(), "BatchingParameters"
    )
    assert batching.max_batch_size.value >= batching.num_batch_threads.value > 0
    assert batching.HasField("batch_timeout_micros") and batching.HasField("max_enqueued_batches")
    monitoring = parse_text_config(
        (CONFIGS / "tf_serving" / "monitoring.config").read_text(), "MonitoringConfig"
    )
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_the_config_parser_is_strict() -> None:
    with pytest.raises(Exception, match="max_batch_sise"):
        parse_text_config("max_batch_sise { value: 1 }", "BatchingParameters")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((CONFIGS / "compose.yaml").read_text())


def test_compose_stack_has_server_router_prometheus_and_controller(compose: dict, serving_root: Path) -> None:
    services = compose["services"]
    assert set(services) == {"tf-serving", "router", "prometheus", "controller", "grafana"}
    tf_serving = services["tf-serving"]
    assert tf_serving["entrypoint"] == ["/usr/bin/tensorflow_model_server"]
    command = [
        arg.replace("${SERVING_ROOT:?set SERVING_ROOT to the serving root}", str(serving_root))
        for arg in tf_serving["command"]
    ]
    flags = check_tf_serving_args(command)
    docker_flags = check_tf_serving_args(split_docker_run(docker_command("cpu", serving_root))[2])
    assert flags == docker_flags, "compose and the docker run line must start the server the same way"
    assert services["router"]["depends_on"]["tf-serving"]["condition"] == "service_healthy"
    assert "healthcheck" in tf_serving


def test_compose_bind_mounts_name_files_that_exist(compose: dict) -> None:
    relative_sources = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            if isinstance(volume, str):  # a named volume: the controller's home (its audit trail)
                assert (name, volume.split(":")[0]) == ("controller", "controller-home")
                assert "controller-home" in compose["volumes"]
                continue
            # only the controller writes: models.config and the release records
            assert volume["type"] == "bind" and volume.get("read_only", False) is (name != "controller")
            if volume["source"].startswith("."):
                relative_sources.append(volume["source"])
                assert (CONFIGS / volume["source"]).exists(), volume["source"]
    assert sorted(relative_sources) == [
        "./grafana/dashboards",
        "./grafana/provisioning",
        "./prometheus",
        "./tf_serving",
    ]
    build = compose["services"]["router"]["build"]
    dockerfile = (CONFIGS / build["context"] / build["dockerfile"]).resolve()
    assert dockerfile == ROOT / "Dockerfile" and dockerfile.is_file()


def test_prometheus_scrapes_the_compose_services_on_their_metrics_paths(compose: dict) -> None:
    prometheus = yaml.safe_load((CONFIGS / "prometheus" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    monitoring = parse_text_config(
        (CONFIGS / "tf_serving" / "monitoring.config").read_text(), "MonitoringConfig"
    )
    assert jobs["tf-serving"]["metrics_path"] == monitoring.prometheus_config.path
    for job in jobs.values():
        for target in job["static_configs"][0]["targets"]:
            host, port = target.split(":")
            assert host in compose["services"], f"{job['job_name']} scrapes unknown service {host}"
            published = [p.split(":")[1] for p in compose["services"][host]["ports"]]
            assert port in published


def router_command_in_kubernetes() -> list[str]:
    documents = yaml.safe_load_all((CONFIGS / "k8s" / "router.yaml").read_text())
    deployment = next(doc for doc in documents if doc["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container["command"]


def test_router_runs_the_same_command_in_compose_and_kubernetes(compose: dict) -> None:
    router = compose["services"]["router"]
    assert [*router["entrypoint"], *router["command"]] == router_command_in_kubernetes()
    assert "--server=tf-serving:8501" in router["command"]
    # The router reads the rollout's weights from the serving root that compose mounts for it.
    serving_root = next(arg for arg in router["command"] if arg.startswith("--serving-root="))
    mounts = {volume["target"] for volume in router["volumes"]}
    assert serving_root.split("=", 1)[1] in mounts


def test_router_command_is_accepted_by_the_real_cli() -> None:
    from tfx_canary import cli

    parser = cli.build_parser()
    command = router_command_in_kubernetes()
    assert command[0] == "tfx-canary"
    args = parser.parse_args(command[1:])
    assert callable(args.func)


def test_the_compose_controller_reads_the_compose_prometheus(compose: dict) -> None:
    from tfx_canary import cli

    controller = compose["services"]["controller"]
    args = cli.build_parser().parse_args(controller["command"])
    assert args.command == "controller"
    host, port = args.server.split(":")
    assert host == "tf-serving" and f"{port}:{port}" in compose["services"]["tf-serving"]["ports"]
    assert args.prometheus == "http://prometheus:9090"


def test_compose_grafana_provisions_the_dashboard_from_prometheus(compose: dict) -> None:
    grafana = compose["services"]["grafana"]
    mounts = {volume["target"]: CONFIGS / volume["source"] for volume in grafana["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    provider = yaml.safe_load((provisioning / "dashboards" / "tfx-canary.yaml").read_text())["providers"][0]
    dashboards = mounts[provider["options"]["path"]]
    assert (dashboards / "tfx-canary.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/tfx-canary.json"
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    host, port = datasource["url"].removeprefix("http://").split(":")
    assert f"{port}:{port}" in compose["services"][host]["ports"] and host in grafana["depends_on"]
    assert "3000:3000" in grafana["ports"]
