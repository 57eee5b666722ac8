"""Vertex and KFP requests, built offline: what `submit` / `schedule` would send, field by field.

Vertex cannot be reached from tests: the SDK's own objects are built with anonymous credentials
and the request protos asserted. Kubeflow Pipelines is open source, so the real ``kfp.Client``
sends its request to a recorder on 127.0.0.1 and the body must equal what `--dry-run` prints.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import google.auth.credentials
import pytest
import yaml

from kubeflow import kfp_recurring, vertex
from kubeflow.cloud_config import load_cloud_config
from scheduler.cron import CronError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    path = tmp_path_factory.mktemp("cloud") / "cloud.yaml"
    values = yaml.safe_load((ROOT / "kubeflow" / "cloud.example.yaml").read_text())
    values["kfp"] = {"host": "http://127.0.0.1:1", "experiment_id": "exp-42"}
    path.write_text(yaml.safe_dump(values))
    return load_cloud_config(path, environ={})


@pytest.fixture(scope="module")
def templates(cloud, tmp_path_factory) -> dict[str, Path]:
    """A small real TFX pipeline compiled by KubeflowV2DagRunner in both formats."""
    from tfx import v1 as tfx

    out = tmp_path_factory.mktemp("compiled")
    paths = {}
    for target, file_name in (("vertex", "mini.json"), ("kfp", "mini.yaml")):
        example_gen = tfx.components.CsvExampleGen(input_base=cloud.data_root)
        statistics = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
        pipeline = tfx.dsl.Pipeline(
            pipeline_name="mini-pipeline",
            pipeline_root=cloud.pipeline_root,
            components=[example_gen, statistics],
        )
        tfx.orchestration.experimental.KubeflowV2DagRunner(
            config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=cloud.image),
            output_dir=str(out),
            output_filename=file_name,
        ).run(pipeline)
        paths[target] = out / file_name
    return paths


@pytest.fixture(scope="module")
def job(cloud, templates):
    return vertex.build_pipeline_job(
        cloud,
        str(templates["vertex"]),
        display_name="mini-pipeline",
        credentials=google.auth.credentials.AnonymousCredentials(),
    )


def test_pipeline_job_request_runs_as_the_service_account_under_the_pipeline_root(cloud, job) -> None:
    request = vertex.pipeline_job_request(job, cloud)
    assert request.parent == "projects/my-gcp-project/locations/us-central1"
    assert request.pipeline_job_id == job.job_id and request.pipeline_job_id.startswith("mini-pipeline-")
    pipeline_job = request.pipeline_job
    assert pipeline_job.service_account == cloud.service_account
    assert pipeline_job.runtime_config.gcs_output_directory == cloud.pipeline_root
    assert pipeline_job.labels["team"] == "ml-platform"
    executors = pipeline_job.pipeline_spec["deploymentSpec"]["executors"]
    assert {executor["container"]["image"] for executor in executors.values()} == {cloud.image}
    # Building the request did not touch the SDK's own resource (it stays reusable for a schedule).
    assert job._gca_resource.service_account == ""


def test_dry_run_json_is_the_request_in_api_field_names(cloud, job) -> None:
    printed = json.loads(vertex.to_json(vertex.pipeline_job_request(job, cloud)))
    assert printed["parent"] == cloud.location_path
    assert printed["pipelineJob"]["serviceAccount"] == cloud.service_account
    assert printed["pipelineJob"]["runtimeConfig"]["gcsOutputDirectory"] == cloud.pipeline_root
    assert printed["pipelineJob"]["pipelineSpec"]["pipelineInfo"]["name"] == "mini-pipeline"


def test_schedule_request_wraps_a_pipeline_job_request_with_the_cron(cloud, job) -> None:
    request = vertex.schedule_request(job, cloud, cron="TZ=Europe/Berlin 0 3 * * *", display_name="nightly")
    assert request.parent == cloud.location_path
    schedule = request.schedule
    assert schedule.display_name == "nightly"
    assert schedule.cron == "TZ=Europe/Berlin 0 3 * * *"
    assert schedule.max_concurrent_run_count == 1 and not schedule.allow_queueing
    inner = schedule.create_pipeline_job_request
    assert inner.parent == cloud.location_path
    assert inner.pipeline_job.service_account == cloud.service_account
    assert inner.pipeline_job.runtime_config.gcs_output_directory == cloud.pipeline_root
    assert inner.pipeline_job.pipeline_spec["pipelineInfo"]["name"] == "mini-pipeline"


def test_schedule_refuses_a_kfp_style_cron(cloud, job) -> None:
    with pytest.raises(CronError, match="Vertex needs 5"):
        vertex.schedule_request(job, cloud, cron="0 0 3 * * *", display_name="nightly")


class Recorder(BaseHTTPRequestHandler):
    """A Kubeflow Pipelines API stand-in that records what the client sends."""

    received: ClassVar[list[tuple[str, str, dict]]] = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.received.append(("GET", self.path, {}))
        self._reply({"multi_user": False})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.received.append(("POST", self.path, body))
        self._reply({**body, "recurring_run_id": "rr-1", "status": "ENABLED"})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kfp_server():
    Recorder.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_kfp_client_sends_exactly_the_dry_run_body(cloud, templates, kfp_server: str) -> None:
    run = kfp_recurring.recurring_run(
        cloud, str(templates["kfp"]), cron="0 0 3 * * *", job_name="mini-nightly"
    )
    dry_run_body = kfp_recurring.request_body(run)
    assert kfp_recurring.send(run, kfp_server) == "rr-1"
    posts = [(path, body) for method, path, body in Recorder.received if method == "POST"]
    assert posts == [("/apis/v2beta1/recurringruns", dry_run_body)]
    assert dry_run_body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert dry_run_body["experiment_id"] == "exp-42"
    assert dry_run_body["max_concurrency"] == 1 and dry_run_body["no_catchup"] is True
    assert dry_run_body["mode"] == "ENABLE"
    assert dry_run_body["runtime_config"]["pipeline_root"] == cloud.pipeline_root
    assert dry_run_body["pipeline_spec"]["pipelineInfo"]["name"] == "mini-pipeline"


def test_kfp_needs_the_yaml_spec_and_a_six_field_cron(cloud, templates) -> None:
    with pytest.raises(ValueError, match=r"takes the \.yaml PipelineSpec"):
        kfp_recurring.recurring_run(cloud, str(templates["vertex"]), cron="0 0 3 * * *", job_name="x")
    with pytest.raises(CronError, match="needs 6"):
        kfp_recurring.recurring_run(cloud, str(templates["kfp"]), cron="0 3 * * *", job_name="x")


def cloud_file(tmp_path: Path, kfp_host: str = "http://127.0.0.1:1") -> Path:
    path = tmp_path / "cloud.yaml"
    values = yaml.safe_load((ROOT / "kubeflow" / "cloud.example.yaml").read_text())
    values["kfp"] = {"host": kfp_host, "experiment_id": "exp-42"}
    path.write_text(yaml.safe_dump(values))
    return path


def cli_output(capsys, *argv: str) -> str:
    from tfx_canary import cli

    assert cli.main(list(argv)) == 0, capsys.readouterr().err
    return capsys.readouterr().out


@pytest.mark.parametrize(
    ("command", "extra"),
    [("submit", ()), ("schedule", ("--cron", "0 3 * * *"))],
)
def test_dry_run_json_is_the_same_request_as_the_text(tmp_path, templates, capsys, command, extra) -> None:
    argv = [command, "--cloud-config", str(cloud_file(tmp_path)), "--template", str(templates["vertex"])]
    text = cli_output(capsys, *argv, *extra, "--dry-run").split("\n", 1)
    answer = json.loads(cli_output(capsys, *argv, *extra, "--dry-run", "--json"))
    assert answer["dry_run"] is True and answer["method"] == "POST"
    assert text[0] == f"POST {answer['url']}"

    def stamped(body) -> str:  # job ids carry the second they were made: one run to the next may differ
        return re.sub(r"-\d{14}\b", "-<time>", json.dumps(body, sort_keys=True))

    assert stamped(answer["body"]) == stamped(json.loads(text[1]))
    assert answer["url"].endswith("/schedules" if command == "schedule" else "/pipelineJobs")


def test_kfp_schedule_json_names_the_recurring_run_it_created(
    tmp_path, templates, kfp_server, capsys
) -> None:
    argv = ["schedule", "--target", "kfp", "--cloud-config", str(cloud_file(tmp_path, kfp_server))]
    argv += ["--template", str(templates["kfp"]), "--cron", "0 0 3 * * *", "--name", "mini-nightly"]
    planned = json.loads(cli_output(capsys, *argv, "--dry-run", "--json"))
    Recorder.received.clear()
    assert json.loads(cli_output(capsys, *argv, "--json")) == {"recurring_run": "rr-1", "cron": "0 0 3 * * *"}
    posts = [(path, body) for method, path, body in Recorder.received if method == "POST"]
    assert posts == [("/apis/v2beta1/recurringruns", planned["body"])]
    assert planned["url"] == f"{kfp_server}/apis/v2beta1/recurringruns"


def test_local_schedule_json_needs_once(tmp_path, capsys) -> None:
    from tfx_canary import cli

    assert cli.main(["schedule", "--local", "--home", str(tmp_path), "--json"]) == 2
    assert "error: --json with --local needs --once" in capsys.readouterr().err


def test_local_schedule_once_json_is_the_decision(tmp_path, capsys) -> None:
    answer = json.loads(
        cli_output(capsys, "schedule", "--local", "--home", str(tmp_path), "--once", "--json")
    )
    assert answer == {"decision": "skipped", "runs": 0, "state": {}}  # no spans yet: nothing to train on
