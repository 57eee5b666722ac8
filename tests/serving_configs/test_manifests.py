"""Kubernetes manifests in serving_configs/k8s: strictly schema-checked and cross-referenced.

The kubernetes client's ``ApiClient().deserialize`` silently drops unknown fields (a typo such as
``imagee`` vanishes), so every document is first walked against the client's generated models
(``openapi_types`` / ``attribute_map``) and any key the API does not define fails the test.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import urllib.parse
from pathlib import Path
from typing import Any

import kubernetes.client
import pytest
import tensorflow as tf
import yaml

from tests.serving_configs.tf_serving_flags import check_tf_serving_args, parse_flags
from tfx_canary import cli

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "serving_configs" / "k8s"
TF_SERVING_CONFIG_DIR = ROOT / "serving_configs" / "tf_serving"
PROMETHEUS = ROOT / "serving_configs" / "prometheus"
GRAFANA = ROOT / "serving_configs" / "grafana"

PRIMITIVES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (int, float),
    "bool": (bool,),
    "object": (str, int, float, bool, dict, list),  # IntOrString, Quantity, free-form
    "datetime": (str,),
    "date": (str,),
}


def strict_check(data: Any, type_name: str, where: str) -> None:
    """Raise ValueError naming the first key or value the Kubernetes API model does not accept."""
    if type_name.startswith("list["):
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
        for index, item in enumerate(data):
            strict_check(item, type_name[5:-1], f"{where}[{index}]")
        return
    if type_name.startswith("dict("):
        value_type = type_name[5:-1].split(", ", 1)[1]
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
        for key, value in data.items():
            strict_check(value, value_type, f"{where}.{key}")
        return
    if type_name in PRIMITIVES:
        if not isinstance(data, PRIMITIVES[type_name]) or (type_name == "int" and isinstance(data, bool)):
            raise ValueError(f"{where}: expected {type_name}, got {data!r}")
        return
    model = getattr(kubernetes.client, type_name)
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a {type_name} mapping, got {data!r}")
    field_of_key = {key: field for field, key in model.attribute_map.items()}
    for key, value in data.items():
        if key not in field_of_key:
            raise ValueError(f"{where}: unknown field {key!r} for {type_name}")
        strict_check(value, model.openapi_types[field_of_key[key]], f"{where}.{key}")


def model_name(document: dict[str, Any]) -> str:
    """apps/v1 Deployment -> V1Deployment; autoscaling/v2 HorizontalPodAutoscaler -> V2Horizontal..."""
    version = document["apiVersion"].rsplit("/", 1)[-1]
    return version[0].upper() + version[1:] + document["kind"]


def load_strictly(path: Path) -> list[tuple[dict[str, Any], Any]]:
    """Each YAML document of a manifest file, schema-checked, with its kubernetes client model object."""

    class Response:
        def __init__(self, document: dict[str, Any]) -> None:
            self.data = json.dumps(document)

    api = kubernetes.client.ApiClient()
    loaded = []
    for document in yaml.safe_load_all(path.read_text()):
        name = model_name(document)
        strict_check(document, name, f"{path.name}:{document['kind']}/{document['metadata']['name']}")
        loaded.append((document, api.deserialize(Response(document), name)))  # also enforces required fields
    return loaded


@pytest.fixture(scope="module")
def objects() -> dict[tuple[str, str], Any]:
    found: dict[tuple[str, str], Any] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document, obj in load_strictly(path):
            key = (document["kind"], document["metadata"]["name"])
            assert key not in found, f"{key} defined twice"
            found[key] = obj
    return found


def test_the_strict_check_rejects_a_misspelled_field() -> None:
    deployment = yaml.safe_load((K8S / "router.yaml").read_text().split("---")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    with pytest.raises(ValueError, match="unknown field 'imagee' for V1Container"):
        strict_check(deployment, "V1Deployment", "router")
    deployment["spec"]["template"]["spec"]["containers"][0].pop("imagee")
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(ValueError, match=r"spec.replicas: expected int"):
        strict_check(deployment, "V1Deployment", "router")


def test_every_manifest_loads_into_the_kubernetes_models(objects) -> None:
    assert sorted(objects) == sorted(
        [
            ("ConfigMap", "tf-serving-config"),
            ("ConfigMap", "prometheus-config"),
            ("ConfigMap", "grafana-provisioning"),
            ("ConfigMap", "grafana-dashboards"),
            ("Deployment", "tf-serving"),
            ("Deployment", "tfx-canary-router"),
            ("Deployment", "tfx-canary-controller"),
            ("Deployment", "prometheus"),
            ("Deployment", "grafana"),
            ("HorizontalPodAutoscaler", "tf-serving"),
            ("PersistentVolumeClaim", "tfx-canary-controller-home"),
            ("Service", "tf-serving"),
            ("Service", "tf-serving-pods"),
            ("Service", "tfx-canary-router"),
            ("Service", "tfx-canary-router-pods"),
            ("Service", "prometheus"),
            ("Service", "grafana"),
            ("ServiceAccount", "tfx-canary-serving"),
        ]
    )
    assert isinstance(objects[("Deployment", "tf-serving")], kubernetes.client.V1Deployment)
    assert isinstance(
        objects[("HorizontalPodAutoscaler", "tf-serving")], kubernetes.client.V2HorizontalPodAutoscaler
    )


def container_ports(deployment) -> dict[str | int, int]:
    ports: dict[str | int, int] = {}
    for container in deployment.spec.template.spec.containers:
        for port in container.ports or []:
            ports[port.container_port] = port.container_port
            if port.name:
                ports[port.name] = port.container_port
    return ports


@pytest.mark.parametrize(
    ("service_name", "name"),
    [
        ("tf-serving", "tf-serving"),
        ("tf-serving-pods", "tf-serving"),
        ("tfx-canary-router", "tfx-canary-router"),
        ("tfx-canary-router-pods", "tfx-canary-router"),
        ("prometheus", "prometheus"),
        ("grafana", "grafana"),
    ],
)
def test_services_and_selectors_reach_their_deployment(objects, service_name: str, name: str) -> None:
    deployment = objects[("Deployment", name)]
    service = objects[("Service", service_name)]
    pod_labels = deployment.spec.template.metadata.labels
    assert deployment.spec.selector.match_labels.items() <= pod_labels.items()
    assert service.spec.selector.items() <= pod_labels.items()
    ports = container_ports(deployment)
    for port in service.spec.ports:
        assert port.target_port in ports, f"Service {name} targets port {port.target_port!r}, not in the pod"


@pytest.mark.parametrize("name", ["tf-serving", "tfx-canary-router"])
def test_probes_and_scrape_annotations_use_real_ports(objects, name: str) -> None:
    deployment = objects[("Deployment", name)]
    ports = container_ports(deployment)
    for container in deployment.spec.template.spec.containers:
        for probe in (container.readiness_probe, container.liveness_probe):
            if probe is None:
                continue
            action = probe.http_get or probe.tcp_socket
            assert action.port in ports, f"{name}: probe port {action.port!r} is not a container port"
    annotations = deployment.spec.template.metadata.annotations
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) in ports.values()


def tf_serving_container(objects):
    (container,) = objects[("Deployment", "tf-serving")].spec.template.spec.containers
    return container


def test_tf_serving_is_ready_only_once_stable_is_servable(objects) -> None:
    container = tf_serving_container(objects)
    probe = container.readiness_probe.http_get
    # TF Serving resolves a label's metadata only for an AVAILABLE version (LOADING or END: 404)
    assert re.fullmatch(r"/v1/models/[a-z0-9_]+/labels/stable/metadata", probe.path)
    ports = container_ports(objects[("Deployment", "tf-serving")])
    assert ports[probe.port] == int(parse_flags(container.args)["rest_api_port"])


def test_tf_serving_args_are_real_flags_with_a_polled_object_store_config(objects) -> None:
    container = tf_serving_container(objects)
    assert container.command == ["/usr/bin/tensorflow_model_server"]
    flags = check_tf_serving_args(container.args)
    assert flags["model_config_file"].startswith("gs://")
    assert flags["model_config_file"].endswith("/models.config")


def test_tf_serving_config_files_come_from_the_configmap_unchanged(objects) -> None:
    deployment = objects[("Deployment", "tf-serving")]
    container = tf_serving_container(objects)
    config_map = objects[("ConfigMap", "tf-serving-config")]
    (volume,) = deployment.spec.template.spec.volumes
    assert volume.config_map.name == config_map.metadata.name
    (mount,) = container.volume_mounts
    assert mount.name == volume.name
    flags = parse_flags(container.args)
    for flag in ("batching_parameters_file", "monitoring_config_file"):
        directory, file_name = flags[flag].rsplit("/", 1)
        assert directory == mount.mount_path
        # The same text as serving_configs/tf_serving/, so docker, compose and Kubernetes never drift.
        assert config_map.data[file_name] == strip_comments((TF_SERVING_CONFIG_DIR / file_name).read_text())


def strip_comments(text: str) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if not line.lstrip().startswith("#"))


def test_pods_run_as_the_workload_identity_service_account(objects) -> None:
    deployment = objects[("Deployment", "tf-serving")]
    account = objects[("ServiceAccount", deployment.spec.template.spec.service_account_name)]
    assert account.metadata.annotations["iam.gke.io/gcp-service-account"].endswith(".iam.gserviceaccount.com")


def test_autoscaler_targets_the_tf_serving_deployment(objects) -> None:
    hpa = objects[("HorizontalPodAutoscaler", "tf-serving")]
    target = hpa.spec.scale_target_ref
    assert (target.kind, target.name) in objects
    assert target.api_version == "apps/v1"
    assert 1 <= hpa.spec.min_replicas <= hpa.spec.max_replicas
    (container,) = objects[(target.kind, target.name)].spec.template.spec.containers
    assert "cpu" in container.resources.requests, "CPU utilisation needs a CPU request"


def test_every_pod_service_is_headless_and_reaches_pods_that_are_not_ready(objects) -> None:
    tf_pods = objects[("Service", "tf-serving-pods")]
    assert tf_pods.spec.cluster_ip == "None" and tf_pods.spec.publish_not_ready_addresses
    assert objects[("Service", "tfx-canary-router-pods")].spec.cluster_ip == "None"


def cli_args(container) -> argparse.Namespace:
    """The container's command as the real ``tfx-canary`` parser reads it (a bad flag fails here)."""
    assert container.command[0] == "tfx-canary", container.command
    return cli.build_parser().parse_args(container.command[1:] + list(container.args or []))


def test_the_router_serves_rest_and_grpc_in_front_of_tf_serving(objects) -> None:
    (container,) = objects[("Deployment", "tfx-canary-router")].spec.template.spec.containers
    args = cli_args(container)
    assert args.command == "route" and args.host == "0.0.0.0"
    assert (args.server, args.grpc_server) == ("tf-serving:8501", "tf-serving:8500")
    ports = container_ports(objects[("Deployment", "tfx-canary-router")])
    assert (ports["http"], ports["grpc"]) == (args.port, args.grpc_port)


def test_one_controller_runs_next_to_the_server_reading_prometheus(objects) -> None:
    deployment = objects[("Deployment", "tfx-canary-controller")]
    assert deployment.spec.replicas == 1 and deployment.spec.strategy.type == "Recreate"
    (container,) = deployment.spec.template.spec.containers
    args = cli_args(container)
    assert args.command == "controller"
    host, port = args.server.split(":")
    assert (("Service", host) in objects) and objects[("Service", host)].spec.publish_not_ready_addresses
    assert int(port) == int(parse_flags(tf_serving_container(objects).args)["rest_api_port"])
    prometheus = urllib.parse.urlsplit(args.prometheus)
    service = objects[("Service", prometheus.hostname)]
    assert prometheus.port in {p.port for p in service.spec.ports}
    mounts = {m.mount_path: m.name for m in container.volume_mounts}
    assert args.serving_root in mounts and args.home in mounts
    volumes = {v.name: v for v in deployment.spec.template.spec.volumes}
    claim = volumes[mounts[args.home]].persistent_volume_claim.claim_name
    assert ("PersistentVolumeClaim", claim) in objects  # the audit trail survives a restart
    assert not volumes[mounts[args.serving_root]].csi.read_only  # it writes models.config


def test_prometheus_config_in_the_configmap_is_the_checked_file(objects) -> None:
    config_map = objects[("ConfigMap", "prometheus-config")]
    assert config_map.data["prometheus.yml"] == (PROMETHEUS / "prometheus-k8s.yml").read_text()
    rules = sorted(path.name for path in (PROMETHEUS / "rules").glob("*.yml"))
    assert rules == ["alerting.yml", "recording.yml"]
    for name in rules:
        assert config_map.data[name] == (PROMETHEUS / "rules" / name).read_text()
    (volume,) = objects[("Deployment", "prometheus")].spec.template.spec.volumes
    assert {item.key: item.path for item in volume.config_map.items} == {
        "prometheus.yml": "prometheus.yml",
        # where prometheus-k8s.yml's rule_files looks
        **{name: f"rules/{name}" for name in rules},
    }


def test_grafana_is_provisioned_from_the_checked_files(objects) -> None:
    from observe import dashboard

    deployment = objects[("Deployment", "grafana")]
    (container,) = deployment.spec.template.spec.containers
    mounts = {m.name: m.mount_path for m in container.volume_mounts}
    volumes = {v.name: v.config_map for v in deployment.spec.template.spec.volumes}
    provisioning = objects[("ConfigMap", volumes["provisioning"].name)]
    assert mounts["provisioning"] == "/etc/grafana/provisioning"
    items = {item.key: item.path for item in volumes["provisioning"].items}
    for key, path in items.items():  # the same text compose mounts from serving_configs/grafana/
        assert provisioning.data[key] == (GRAFANA / "provisioning" / path).read_text()
    assert sorted(items.values()) == ["dashboards/tfx-canary.yaml", "datasources/prometheus.yaml"]
    provider = yaml.safe_load(provisioning.data["dashboards.yaml"])["providers"][0]
    assert mounts["dashboards"] == provider["options"]["path"]
    dashboards = objects[("ConfigMap", volumes["dashboards"].name)]
    assert dashboards.data == {"tfx-canary.json": (GRAFANA / "dashboards" / "tfx-canary.json").read_text()}
    assert dashboards.data["tfx-canary.json"] == dashboard.dashboard_json()
    env = {e.name: e.value for e in container.env}
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.rsplit("/", 1) == [provider["options"]["path"], "tfx-canary.json"]
    datasource = yaml.safe_load(provisioning.data["datasources.yaml"])["datasources"][0]
    url = urllib.parse.urlsplit(datasource["url"])
    assert url.port in {p.port for p in objects[("Service", url.hostname)].spec.ports}


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus-k8s.yml"])
def test_prometheus_configs_and_rules_pass_promtool(config: str) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make install` (tools/system_packages.py)"
    checked = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS / config)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout


def test_the_rules_pass_their_promtool_unit_tests() -> None:
    """Each alert fires on its scenario after its ``for`` and stays quiet on the healthy ones."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: run `make install` (tools/system_packages.py)"
    tests = sorted((PROMETHEUS / "tests").glob("*.yml"))
    assert tests, "no promtool unit tests under serving_configs/prometheus/tests"
    checked = subprocess.run(
        [promtool, "check", "rules", *sorted((PROMETHEUS / "rules").glob("*.yml"))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = subprocess.run(
        [promtool, "test", "rules", *tests], capture_output=True, text=True, cwd=PROMETHEUS, timeout=60
    )
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr
    alerts = {
        rule["alert"]
        for group in yaml.safe_load((PROMETHEUS / "rules" / "alerting.yml").read_text())["groups"]
        for rule in group["rules"]
    }
    scenarios = " ".join(path.read_text() for path in tests)
    untested = sorted(name for name in alerts if f"alertname: {name}" not in scenarios)
    assert not untested, f"alerts without a promtool scenario: {untested}"


def test_the_pinned_tf_serving_release_serves_models_of_the_training_tensorflow(objects) -> None:
    """TF Serving loads SavedModels of its own TensorFlow or older: a newer trainer can use ops it lacks."""
    images = {tf_serving_container(objects).image}
    images.add(
        re.search(r"tensorflow/serving:[\w.-]+", (ROOT / "serving_configs" / "compose.yaml").read_text())[0]
    )
    script = (ROOT / "serving_configs" / "docker" / "run_tf_serving.sh").read_text()
    images.update(re.findall(r"tensorflow/serving:[\w.-]+", script))
    tags = {image.split(":")[1].removesuffix("-gpu") for image in images}
    assert len(tags) == 1, f"the TF Serving image differs between the manifests: {sorted(images)}"
    serving = tuple(int(part) for part in tags.pop().split(".")[:2])
    training = tuple(int(part) for part in tf.__version__.split(".")[:2])
    assert serving[0] == training[0] and training[1] <= serving[1] <= training[1] + 1, (
        f"tensorflow/serving {serving} cannot be relied on for models trained with TensorFlow {training}"
    )
