"""`tfx-canary compile`: the project's own create_pipeline, compiled by KubeflowV2DagRunner, strictly parsed.

The JSON is parsed into ``pipeline_spec_pb2.PipelineJob`` and the YAML through kfp's own loader
(what ``create_recurring_run`` uses), both rejecting unknown fields.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

import pytest
from google.protobuf import json_format

pytest.importorskip("pipeline.pipeline", reason="pipeline/ has not landed")

from kfp.client import client as kfp_client
from kfp.pipeline_spec import pipeline_spec_pb2

from kubeflow.cloud_config import load_cloud_config
from kubeflow.compile import IMAGE_SOURCE_DIR, IMAGE_USER_PROJECT_DIR, compile_pipeline
from pipeline.pipeline import create_pipeline

ROOT = Path(__file__).resolve().parents[2]
# The shipped example's schema, where the Dockerfile puts it in the image.
IMAGE_SCHEMA_FILE = f"{IMAGE_SOURCE_DIR}/models/configs/taxi.pbtxt"


@pytest.fixture(scope="module")
def cloud():
    return load_cloud_config(ROOT / "kubeflow" / "cloud.example.yaml", environ={})


@pytest.fixture(scope="module")
def ingest_specs(cloud, tmp_path_factory) -> dict[str, Path]:
    """The ingest-and-validate part of create_pipeline, compiled in both formats."""
    out = tmp_path_factory.mktemp("compiled")
    build = functools.partial(create_pipeline, ingest_only=True, orchestrator="kubeflow_v2")
    return {target: compile_pipeline(cloud, target, out, build=build) for target in ("vertex", "kfp")}


def executors(spec: pipeline_spec_pb2.PipelineSpec) -> dict:
    return json_format.MessageToDict(spec.deployment_spec)["executors"]


def test_vertex_json_is_a_strict_pipeline_job(cloud, ingest_specs) -> None:
    path = ingest_specs["vertex"]
    assert path.name == "taxi-tips.json"
    job = json_format.ParseDict(json.loads(path.read_text()), pipeline_spec_pb2.PipelineJob())
    assert job.display_name == "taxi-tips"
    assert job.runtime_config.gcs_output_directory == f"{cloud.pipeline_root}/taxi-tips"
    assert job.labels["tfx_runner"] == "kubeflow_v2"
    spec = json_format.ParseDict(
        json_format.MessageToDict(job.pipeline_spec), pipeline_spec_pb2.PipelineSpec()
    )
    assert spec.pipeline_info.name == "taxi-tips"


def test_kfp_yaml_is_a_strict_pipeline_spec(ingest_specs) -> None:
    path = ingest_specs["kfp"]
    assert path.name == "taxi-tips.yaml"
    spec = kfp_client._extract_pipeline_yaml(str(path)).pipeline_spec
    assert spec.pipeline_info.name == "taxi-tips"
    assert sorted(spec.root.dag.tasks) == ["ImportSchemaGen", "WindowIngest"]


def test_task_graph_images_and_importable_executors(cloud, ingest_specs) -> None:
    job = json.loads(ingest_specs["vertex"].read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert tasks["WindowIngest"]["dependentTasks"] == ["ImportSchemaGen"]
    # the ingest reads the data root: Vertex must run it every time, never answer it from its cache
    assert tasks["WindowIngest"].get("cachingOptions", {}).get("enableCache") is not True
    assert tasks["ImportSchemaGen"]["cachingOptions"]["enableCache"] is True
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    for name, executor in executors(spec).items():
        container = executor["container"]
        assert container["image"] == cloud.image, name
        class_path = container["args"][container["args"].index("--executor_class_path") + 1]
        assert not class_path.startswith("__main__"), (
            f"{name} runs {class_path}, which the image cannot import"
        )


def test_dataflow_beam_args_reach_every_beam_component(cloud, ingest_specs) -> None:
    text = ingest_specs["vertex"].read_text()
    for argument in cloud.beam_args(()):
        assert argument in text, f"{argument} is missing from the compiled pipeline"
    assert "--runner=FnApiRunner" not in text


def test_compiled_spec_names_no_file_from_this_checkout(ingest_specs) -> None:
    text = ingest_specs["vertex"].read_text()
    local_paths = set(re.findall(re.escape(str(ROOT)) + r"[^\"\\ ]*", text))
    assert not local_paths, f"paths that do not exist in the pipeline image: {sorted(local_paths)}"
    assert IMAGE_SCHEMA_FILE in text


def test_image_schema_path_matches_the_dockerfile() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f"COPY . {IMAGE_SOURCE_DIR}" in dockerfile
    assert (ROOT / IMAGE_SCHEMA_FILE.removeprefix(IMAGE_SOURCE_DIR + "/")).is_file()


def test_full_pipeline_compiles_with_a_blessing_gated_pusher(cloud, tmp_path) -> None:
    path = compile_pipeline(cloud, "vertex", tmp_path)
    spec = json_format.ParseDict(
        json.loads(path.read_text())["pipelineSpec"], pipeline_spec_pb2.PipelineSpec()
    )
    tasks = json_format.MessageToDict(spec.root.dag)["tasks"]
    # the validated window, as on a local run: no resolver, the ingest feeds Transform and the Evaluator
    assert "WindowIngest" in tasks["Transform"]["dependentTasks"]
    assert "WindowIngest" in tasks["Evaluator"]["dependentTasks"]
    assert not [name for name in tasks if "Resolver" in name or name == "SpanWindow"]
    condition = tasks["Transform"]["triggerPolicy"]["condition"]
    assert "_WindowIngest.anomalies" in condition and "['trained_as'] == 0.0" in condition
    for gated in ("LoadCheck", "Pusher", "ServingConfigGen"):
        condition = tasks[gated]["triggerPolicy"]["condition"]
        # the Evaluator's blessing, by its task's output or as the gated task's own input
        blessing = "_Evaluator.blessing" in condition or "artifacts['model_blessing']" in condition
        assert blessing and "['blessed'] == 1.0" in condition, gated
        assert "_WindowIngest.anomalies" in condition, gated
    assert "LoadCheck" in tasks["Pusher"]["dependentTasks"]  # the infra_blessing channel
    assert "Pusher" in tasks["ServingConfigGen"]["dependentTasks"]
    assert tasks["WindowIngest"].get("cachingOptions", {}).get("enableCache") is not True
    schemas = json.dumps({name: json_format.MessageToDict(c) for name, c in spec.components.items()})
    assert "title: canary.ServingConfig" in schemas


def test_a_teams_own_config_compiles_with_its_dotted_paths_and_image_paths(cloud, tmp_path) -> None:
    """The config `tfx-canary compile --config` takes: the spec names the team's code, its schema where
    the Dockerfile's USER_PROJECT puts it, its label and task, and no file of this machine."""
    project = tmp_path / "wine"
    package = project / "wine_model"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "code.py").write_text(
        "def preprocessing_fn(inputs, custom_config):\n    return inputs\n\n\n"
        "def run_fn(fn_args):\n    pass\n"
    )
    (project / "schema").mkdir()
    (project / "schema" / "schema.pbtxt").write_text(
        'feature { name: "alcohol" type: FLOAT }\nfeature { name: "cultivar" type: INT }\n'
    )
    config = project / "config.yaml"
    config.write_text(
        "model: wine\ncode_dir: .\npreprocessing_fn: wine_model.code.preprocessing_fn\n"
        "run_fn: wine_model.code.run_fn\nschema_file: schema/schema.pbtxt\nlabel: cultivar\n"
        "task: multiclass_classification\nclasses: ['0', '1', '2']\n"
        "metrics: [{name: SparseCategoricalAccuracy, min: 0.8, max_drop: 0.05}]\n"
    )
    path = compile_pipeline(cloud, "vertex", tmp_path / "out", config_file=config)
    assert path.name == "wine.json"
    job = json.loads(path.read_text())
    spec = json_format.ParseDict(job["pipelineSpec"], pipeline_spec_pb2.PipelineSpec())
    text = json.dumps(json_format.MessageToDict(spec))
    for dotted in ("wine_model.code.preprocessing_fn", "wine_model.code.run_fn"):
        assert dotted in text, f"{dotted} is missing from the compiled spec"
    assert "models.preprocessing.preprocessing_fn" not in text and "models.model.run_fn" not in text
    assert f"{IMAGE_USER_PROJECT_DIR}/schema/schema.pbtxt" in text
    assert "multiclass_classification" in text and "cultivar_xf" in text
    assert "SparseCategoricalAccuracy" in text
    assert str(tmp_path) not in text, "a path of this machine would not exist in the pipeline image"


def test_a_config_whose_code_does_not_import_is_refused_before_compiling(cloud, tmp_path) -> None:
    from tfx_canary.errors import ConfigError

    config = tmp_path / "config.yaml"
    config.write_text(
        "model: m\npreprocessing_fn: nosuch.preprocessing_fn\nrun_fn: nosuch.run_fn\n"
        f"schema_file: {ROOT / 'models' / 'configs' / 'taxi.pbtxt'}\nlabel: fare\ntask: regression\n"
        "metrics: [{name: MeanAbsoluteError, max: 5}]\n"
    )
    with pytest.raises(ConfigError, match=r"preprocessing_fn in .*module 'nosuch' does not import"):
        compile_pipeline(cloud, "vertex", tmp_path / "out", config_file=config)
    assert not (tmp_path / "out").exists()
