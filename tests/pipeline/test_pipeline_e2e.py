"""The pipeline end to end on small spans, and the canary loop it feeds: push (straight to `stable`),
a second version (`canary`) pushed under client load, the controller promotes it and an operator
rolls it back; then nothing new, the data gate, the model gate and the load check.

One project home and one model server are shared by the runs, in order, like a real deployment
receiving data over time; clients call through the router from before the second run to the
rollback, and none may fail. Everything is real: TFX LocalDagRunner, Beam FnApiRunner, MLMD SQLite,
TF SavedModels on disk, the embedded model server polling the emitted models.config on loopback, the
router, the controller reading the router's Prometheus metrics.
"""

import csv
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml
from ml_metadata.proto import metadata_store_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx.utils.path_utils import serving_model_path

from fixtures.served_root import ServedRoot
from fixtures.taxi import serving_raw_bodies, taxi_spec, to_example
from models import features, warm_start
from pipeline import data
from pipeline.config import load_config
from pipeline.outcome import summary
from pipeline.runner import run_pipeline
from release import audit, config_store
from release.metadata import open_store
from release.server_client import ServerClient
from release.serving_dir import CONFIG_NAME, METRICS_PATH, list_versions
from rollout.analysis import Criteria
from rollout.controller import RolloutController, parse_plan
from rollout.load import SteadyLoad
from rollout.router import Router
from tests.pipeline.nodes import ANALYZER_CACHE_NODES
from tfx_canary import cli

pytestmark = pytest.mark.e2e

MODEL = "taxi_tips"
ROWS_PER_SPAN = 250
# Everything shares two busy cores here: judge latency with a wide margin (the rollout tests plant a
# slow canary to check that criterion); errors and prediction divergence keep their defaults.
CRITERIA = Criteria(min_requests=20, p99_slack_s=0.15)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    data.init_spans(home / "data" / "taxi", spans=2, rows_per_span=ROWS_PER_SPAN)
    return home


@pytest.fixture(scope="module")
def served(home):
    """The model server on the home's models.config, polled every second, for the whole module."""
    with ServedRoot(home / "serving", model=MODEL, poll_seconds=1) as served:
        yield served


@pytest.fixture(scope="module")
def config(home, served):
    return load_config(
        home=home,
        span_window=3,
        train_steps=200,
        eval_steps=5,
        warmup_examples=2,
        analyzer_cache=True,  # an analysis of a window reads the spans analyzed before from the cache
        metrics=[
            {"name": "AUC", "min": 0.7, "max_drop": 0.1},
            {"name": "BinaryAccuracy", "min": 0.6},
            {"name": "ExampleCount"},
        ],
        server_address=served.address,
    )


@pytest.fixture(scope="module")
def runs(config):
    """Results of each run, filled as the ordered tests below go."""
    return {}


@pytest.fixture(scope="module")
def clients(config, served):
    """Clients calling through the router from before the second run to the rollback, which stops them."""
    bodies = serving_raw_bodies(config.paths.data_root, MODEL)
    assert len(bodies) > 100
    with (
        Router(served.address, served.root, refresh_s=0.05) as router,
        SteadyLoad(router.port, MODEL, threads=2, rate=15, max_seconds=900, bodies=bodies) as load,
    ):
        yield router, load


def _labels_on_server(client: ServerClient) -> dict[str, int | None]:
    return {label: client.label_version(MODEL, label) for label in ("stable", "canary")}


def _pushed_model_of(store, serving_config) -> metadata_store_pb2.Artifact:
    """The PushedModel that the ServingConfigGen execution which wrote ``serving_config`` read."""
    events = store.get_events_by_artifact_ids([serving_config.id])
    [producer] = [e.execution_id for e in events if e.type == metadata_store_pb2.Event.OUTPUT]
    inputs = [
        e.artifact_id
        for e in store.get_events_by_execution_ids([producer])
        if e.type == metadata_store_pb2.Event.INPUT
    ]
    pushed_type = store.get_artifact_type("PushedModel")
    [pushed] = [a for a in store.get_artifacts_by_id(inputs) if a.type_id == pushed_type.id]
    return pushed


def _store(config):
    return open_store(config.metadata_path)


def _executed_nodes(config):
    store = _store(config)
    return {
        c.name.split(".", 1)[1]
        for c in store.get_contexts_by_type("node")
        if c.name.startswith(config.name + ".") and store.get_executions_by_context(c.id)
    }


def _eval_rows(count=4):
    with open(data.sample_csv(), newline="") as handle:
        rows = [r for r, _ in zip(csv.DictReader(handle), range(count), strict=False)]
    typed = []
    for row in rows:
        typed.append(
            {
                key: (float(v) if features.raw_dtype(key) == tf.float32 else int(v))
                if features.raw_dtype(key) != tf.string
                else v
                for key, v in row.items()
                if v != ""
            }
        )
    return typed


def test_first_run_pushes_a_blessed_version(served, config, runs):
    result = run_pipeline(config)
    runs["first"] = result
    assert result.ok, result.reason
    assert result.blessed is True and result.pushed_version is not None, result.reason
    assert result.metrics["auc"] >= config.metrics[0].min
    assert result.spans == [2] and result.window == [1, 2]  # every span of the window, in this run
    assert result.transform == "Transform analyzed the window: no blessed model yet"
    assert result.training == f"trained from scratch ({config.train_steps} steps): no blessed model yet"
    # TensorBoard logs in the Trainer's model_run output, and the run says where
    assert list(Path(result.tensorboard_dir).rglob("events.out.tfevents.*")), result.tensorboard_dir
    assert f"tensorboard --logdir {result.tensorboard_dir}" in summary(result)
    assert _executed_nodes(config) == ANALYZER_CACHE_NODES
    assert list_versions(config.serving_model_dir) == [result.pushed_version]
    assert not [n for n in os.listdir(config.serving_model_dir) if n.startswith(".")]  # no staging left
    # the first blessed version goes straight to `stable`, through ServingConfigGen
    v1 = result.pushed_version
    state = served.target().read().state
    assert state.versions == (v1,) and state.label_map == {"stable": v1, "canary": v1}
    emitted = config_store.parse_config((Path(served.root) / CONFIG_NAME).read_text(), CONFIG_NAME)
    [entry] = emitted.model_config_list.config
    assert entry.name == MODEL and entry.base_path == str(config.serving_model_dir)
    assert list(entry.model_version_policy.specific.versions) == [v1]
    assert dict(entry.version_labels) == {"stable": v1, "canary": v1}
    client = ServerClient(served.address)
    assert client.version_status(MODEL)[v1]["state"] == "AVAILABLE"
    assert _labels_on_server(client) == {"stable": v1, "canary": v1}


def test_pushed_model_loads_and_predicts_like_the_trainer_model(config, runs):
    version_dir = Path(config.serving_model_dir) / str(runs["first"].pushed_version)
    uuid = (version_dir / "assets.extra" / "mlmd_uuid").read_text()
    model_id = int(dict(p.split("=") for p in uuid.strip().split(";"))["model_id"])
    [model_artifact] = _store(config).get_artifacts_by_id([model_id])
    assert model_artifact.uri.endswith(str(model_id)) or "Trainer" in model_artifact.uri
    trainer_model = tf.saved_model.load(os.path.join(model_artifact.uri, "Format-Serving"))
    pushed = tf.saved_model.load(str(version_dir))
    rows = _eval_rows()
    examples = tf.constant([to_example(r) for r in rows])
    expected = trainer_model.signatures["serving_default"](examples=examples)["scores"].numpy()
    got = pushed.signatures["serving_default"](examples=examples)["scores"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    spec = taxi_spec("taxi_tips")
    named = {}
    for key in spec.input_keys:
        dtype = features.raw_dtype(key)
        missing = {tf.float32: features.MISSING_FLOAT, tf.int64: features.MISSING_INT}.get(dtype, "")
        named[key] = tf.constant([r.get(key, missing) for r in rows], dtype)
    by_name = pushed.signatures["serving_raw"](**named)["scores"].numpy()
    np.testing.assert_allclose(by_name, got, rtol=1e-5)
    warmup = [
        prediction_log_pb2.PredictionLog.FromString(r.numpy())
        for r in tf.data.TFRecordDataset(str(version_dir / "assets.extra" / "tf_serving_warmup_requests"))
    ]
    by_signature = {}
    for record in warmup:
        by_signature.setdefault(record.predict_log.request.model_spec.signature_name, []).append(record)
    assert set(by_signature) == set(pushed.signatures)  # every signature is warmed up, not only the default
    assert all(len(records) == config.warmup_examples for records in by_signature.values())
    request = by_signature["serving_default"][0].predict_log.request
    assert warmup[0].predict_log.request.model_spec.signature_name == "serving_default"
    replayed = pushed.signatures["serving_default"](examples=tf.make_ndarray(request.inputs["examples"]))
    assert replayed["scores"].shape == (1, 2)
    raw = by_signature["serving_raw"][0].predict_log.request  # the examples' features as named tensors
    replayed = pushed.signatures["serving_raw"](**{k: tf.make_ndarray(v) for k, v in raw.inputs.items()})
    assert replayed["scores"].shape == (1, 2)


def test_a_new_span_pushes_a_second_version_labelled_canary_under_client_load(served, config, runs, clients):
    _, load = clients
    assert data.add_span(config.paths.data_root, rows_per_span=ROWS_PER_SPAN) == 3
    result = run_pipeline(config)
    runs["second"] = result
    assert result.ok and result.spans == [3] and result.window == [1, 2, 3], result.reason
    assert result.pushed_version is not None and result.pushed_version > runs["first"].pushed_version, (
        result.reason
    )
    versions = list_versions(config.serving_model_dir)
    assert versions == [runs["first"].pushed_version, result.pushed_version]
    # a retrain: Transform reuses the blessed model's analysis, and training starts from its weights,
    # which were trained on that very transform graph
    assert result.transform == (
        "Transform reused the blessed model's analysis (vocabularies, scales): retrain 1 of "
        f"{config.transform_reuses} before the next re-analysis"
    )
    assert result.training == f"warm start from the blessed model's weights ({config.warm_start_steps} steps)"
    first_model, second_model = _store(config).get_artifacts_by_type("Model")
    kept = [warm_start.transform_path(serving_model_path(m.uri)) for m in (first_model, second_model)]
    assert warm_start.transform_digest(kept[0]) == warm_start.transform_digest(kept[1])
    log_text = Path(result.log_file).read_text()
    assert "Transform analyzer cache" not in log_text  # nothing was analyzed
    assert "Span cache: 2 reused [1, 2], 1 ingested [3]" in log_text  # WindowIngest, too, reads only span 3
    # v2 is loaded next to v1 and labelled `canary`; the clients saw the push
    v1, v2 = runs["first"].pushed_version, result.pushed_version
    state = served.target().read().state
    assert state.versions == (v1, v2) and state.label_map == {"stable": v1, "canary": v2}
    client = ServerClient(served.address)
    assert {v: s["state"] for v, s in client.version_status(MODEL).items()} == {
        v1: "AVAILABLE",
        v2: "AVAILABLE",
    }
    assert _labels_on_server(client) == {"stable": v1, "canary": v2}
    assert load.total > 0 and load.failures == [], load.failures[:5]


def test_the_controller_promotes_the_canary_and_an_operator_rolls_it_back(
    home, served, config, runs, clients, capsys
):
    router, load = clients
    v1, v2 = runs["first"].pushed_version, runs["second"].pushed_version
    # the clients have called since before v2 was pushed; none reached the canary yet
    assert load.total > 0 and load.labels["canary"] == 0
    store = _store(config)
    target = served.target(audit=audit.Audit(store, str(home / "releases"), actor="controller"))
    client = ServerClient(served.address)
    # The controller moves traffic step by step and promotes v2.
    controller = RolloutController(
        target,
        f"http://127.0.0.1:{router.port}{METRICS_PATH}",
        parse_plan("shadow=2s,50%=2s,100%=2s"),
        CRITERIA,
        max_extensions=3,
        retain_seconds=600,
    )
    outcome = controller.run()
    assert outcome.verdict == "promoted", outcome.steps
    assert target.read().state.label_map == {"stable": v2, "canary": v2, "previous": v1}
    assert _labels_on_server(client) == {"stable": v2, "canary": v2}

    # An operator rolls back by hand: `stable` flips to v1 (still loaded), v2 unloads.
    rollback = ["rollback", "--home", str(home), "--model", MODEL, "--server", served.address]
    reason = "manual rollback: support tickets after the release"
    assert cli.main([*rollback, "--actor", "oncall", "--reason", reason]) == 0
    time.sleep(1.0)  # clients keep calling after the flip
    load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.statuses[200] == load.total > 200
    assert load.labels["canary"] > 0 and load.labels["stable"] > 0
    state = target.read().state
    assert state.label_map == {"stable": v1, "canary": v1} and state.versions == (v1,)
    assert _labels_on_server(client) == {"stable": v1, "canary": v1}

    # Every transition is in the history with who did it and why.
    capsys.readouterr()
    assert cli.main(["history", "--home", str(home), "--model", MODEL, "--json"]) == 0
    entries = json.loads(capsys.readouterr().out)
    assert [(e["kind"], e["actor"]) for e in entries] == [
        ("phase1", "pipeline"),
        ("first-stable", "pipeline"),
        ("phase1", "pipeline"),
        ("canary-start", "pipeline"),
        ("traffic", "controller"),
        ("traffic", "controller"),
        ("traffic", "controller"),
        ("promote", "controller"),
        ("rollback", "oncall"),
        ("unload", "oncall"),
    ]
    assert all(e["reason"] for e in entries)
    by_kind = {e["kind"]: e for e in entries}
    assert by_kind["first-stable"]["stable"] == v1 and by_kind["canary-start"]["canary"] == v2
    assert by_kind["promote"]["reason"] == "all 3 steps passed"
    assert by_kind["promote"]["analysis"]["verdict"] == "pass"
    assert by_kind["rollback"]["reason"] == reason and by_kind["rollback"]["stable"] == v1
    assert cli.main(["history", "--home", str(home), "--model", MODEL]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == len(entries)
    for line, entry in zip(printed, entries, strict=True):
        assert entry["kind"] in line and entry["actor"] in line and line.endswith(f"- {entry['reason']}")

    # ML Metadata: each ServingConfig the pipeline wrote is an output of the ServingConfigGen
    # execution whose input is the PushedModel it serves.
    pipeline_configs = [
        a for a in audit.serving_configs(store, MODEL) if audit.get_custom(a)["actor"] == "pipeline"
    ]
    assert len(pipeline_configs) == 4
    for artifact, version in zip(pipeline_configs, (v1, v1, v2, v2), strict=True):
        pushed = _pushed_model_of(store, artifact)
        assert audit.get_custom(artifact)["pushed_model_id"] == pushed.id
        assert pushed.custom_properties["pushed_version"].string_value == str(version)
        assert version in json.loads(audit.get_custom(artifact)["versions"])


def test_a_window_a_version_was_trained_on_trains_nothing(config, runs):
    # more steps: another model, but on exactly the window version 2 was trained on: nothing new (that
    # version was rolled back above, and the same data would make the same model again)
    result = run_pipeline(config.replace(train_steps=config.train_steps + 20))
    assert result.ok and not result.refused and result.pushed_version is None, result.reason
    assert result.reason == (
        f"nothing new to train: version {runs['second'].pushed_version} was trained on exactly this "
        "window (spans 1-3)"
    )
    statuses = {c.name: c.status for c in result.components}
    assert statuses["WindowIngest"] == "ran"  # the ingest always looks at the data
    assert statuses["Transform"] == statuses["Trainer"] == "skipped"
    assert len(list_versions(config.serving_model_dir)) == 2


def test_a_span_with_anomalies_is_not_trained_on_and_the_run_says_why(config, runs):
    header, spans = data.split_into_spans()
    rows = [list(r) for r in spans[4][:ROWS_PER_SPAN]]
    payment = header.index("payment_type")
    for row in rows:
        row[payment] = "Bitcoin"  # out of the payment_type domain in every row
    data.write_span(config.paths.data_root, 4, header, rows)
    result = run_pipeline(config)
    assert result.ok and result.spans == [4]
    assert result.pushed_version is None
    assert any("payment_type" in line for line in result.anomalies), result.anomalies
    assert "anomalies" in result.reason and "payment_type" in result.reason
    assert {c.name: c.status for c in result.components}["Trainer"] == "skipped"
    assert len(list_versions(config.serving_model_dir)) == 2
    shutil.rmtree(Path(config.paths.data_root) / "span-4")  # the operator withdraws the bad span


def test_an_empty_span_is_refused_with_exit_code_3(config, runs, tmp_path, capsys):
    span = Path(config.paths.data_root) / "span-4"
    span.mkdir()
    (span / "data.csv").write_bytes(b"")  # `: > span-4/data.csv`
    settings = tmp_path / "pipeline.yaml"
    settings.write_text(yaml.safe_dump({k: v for k, v in config.to_dict().items() if k != "beam_args"}))
    assert cli.main(["run", "--config", str(settings)]) == 3
    out = capsys.readouterr().out
    assert "nothing pushed: span 4 has data anomalies" in out and "span-4/data.csv is empty" in out
    assert len(list_versions(config.serving_model_dir)) == 2
    shutil.rmtree(span)


def test_a_span_with_too_few_examples_is_refused(config, runs):
    header, spans = data.split_into_spans()
    data.write_span(config.paths.data_root, 4, header, spans[4][:1])  # one row: a cut-off copy
    result = run_pipeline(config)
    assert result.ok and result.refused and result.spans == [4] and result.pushed_version is None
    low = [line for line in result.anomalies if "Low num examples" in line]
    assert {line.split(" split")[0] for line in low} == {"train", "eval"}, result.anomalies
    assert {c.name: c.status for c in result.components}["Trainer"] == "skipped"
    shutil.rmtree(Path(config.paths.data_root) / "span-4")


def test_a_worse_model_is_not_blessed_nor_pushed(config, runs):
    data.add_span(config.paths.data_root, rows_per_span=ROWS_PER_SPAN)  # a new, clean span 4
    # one step from scratch (a warm start would begin from the blessed model and stay as good)
    result = run_pipeline(config.replace(train_steps=1, warm_start_steps=0))
    assert result.ok and result.window == [2, 3, 4], result.reason
    assert result.training == "trained from scratch (1 steps): warm start is off"
    # no warm start, so no reuse: the window is analyzed, from the analyzer cache of the first run's
    # spans (the second run reused the analysis and carried the cache over)
    assert result.transform == "Transform analyzed the window: reuse of the blessed model's analysis is off"
    log_text = Path(result.log_file).read_text()
    assert "Transform analyzer cache: 1 dataset(s) cached ['span-2-" in log_text, result.log_file
    assert "2 analyzed ['span-3-" in log_text
    assert result.blessed is False and result.pushed_version is None
    assert result.failed_checks and "not blessed" in result.reason
    assert {c.name: c.status for c in result.components}["LoadCheck"] == "skipped"
    assert len(list_versions(config.serving_model_dir)) == 2


def test_a_candidate_slower_than_the_load_check_budget_is_not_pushed_and_the_run_says_why(config, runs):
    data.add_span(config.paths.data_root, rows_per_span=ROWS_PER_SPAN)  # a new window, spans 3-5
    result = run_pipeline(config.replace(load_check_latency_ms=0.001))
    assert result.ok and result.blessed is True, result.reason
    assert result.refused and result.pushed_version is None
    assert result.reason.startswith("the load check failed: signature "), result.reason
    assert "over the 0.001 ms budget" in result.reason and "\n" not in result.reason
    assert len(list_versions(config.serving_model_dir)) == 2
