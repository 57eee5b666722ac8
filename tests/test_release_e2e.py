"""The whole canary loop end to end: pipeline → Pusher → ServingConfigGen → model server → router →
rollout controller → manual rollback, with clients calling all along and every step audited in MLMD.

Everything is real: TFX LocalDagRunner with Beam, the embedded model server polling the emitted
models.config on loopback, the router, the controller reading the router's Prometheus metrics.
"""

import json
import time

import pytest
from ml_metadata.proto import metadata_store_pb2

from fixtures.served_root import ServedRoot
from fixtures.taxi import serving_raw_bodies
from pipeline import data
from pipeline.config import load_config
from pipeline.runner import run_pipeline
from release import audit, config_store
from release.metadata import open_store
from release.server_client import ServerClient
from release.serving_dir import METRICS_PATH
from rollout.analysis import Criteria
from rollout.controller import RolloutController, parse_plan
from rollout.load import SteadyLoad
from rollout.router import Router
from tfx_canary import cli

pytestmark = pytest.mark.e2e

MODEL = "taxi_tips"
ROWS_PER_SPAN = 250
# Everything shares two busy cores here: judge latency with a wide margin (the rollout tests plant a
# slow canary to check that criterion); errors and prediction divergence keep their defaults.
CRITERIA = Criteria(min_requests=20, p99_slack_s=0.15)


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


def test_push_canary_promote_rollback_with_zero_failed_requests(tmp_path, capsys):
    home = tmp_path / "home"
    data.init_spans(home / "data" / "taxi", spans=2, rows_per_span=ROWS_PER_SPAN)
    with ServedRoot(home / "serving", model=MODEL, poll_seconds=1) as served:
        config = load_config(
            home=home,
            span_window=3,
            train_steps=200,
            eval_steps=5,
            warmup_examples=2,
            metrics=[
                {"name": "AUC", "min": 0.7, "max_drop": 0.1},
                {"name": "BinaryAccuracy", "min": 0.6},
                {"name": "ExampleCount"},
            ],
            server_address=served.address,
        )
        client = ServerClient(served.address)

        # 1. The first blessed version goes straight to `stable`, through ServingConfigGen.
        first = run_pipeline(config)
        assert first.ok and first.pushed_version is not None, first.reason
        v1 = first.pushed_version
        state = served.target().read().state
        assert state.versions == (v1,) and state.label_map == {"stable": v1, "canary": v1}
        emitted = config_store.parse_config((home / "serving" / "models.config").read_text(), "models.config")
        [entry] = emitted.model_config_list.config
        assert entry.name == MODEL and entry.base_path == str(config.serving_model_dir)
        assert list(entry.model_version_policy.specific.versions) == [v1]
        assert dict(entry.version_labels) == {"stable": v1, "canary": v1}
        assert client.version_status(MODEL)[v1]["state"] == "AVAILABLE"
        assert _labels_on_server(client) == {"stable": v1, "canary": v1}

        bodies = serving_raw_bodies(config.paths.data_root, MODEL)
        assert len(bodies) > 100
        store = open_store(str(config.metadata_path))
        target = served.target(audit=audit.Audit(store, str(home / "releases"), actor="controller"))
        with (
            Router(served.address, served.root, refresh_s=0.05) as router,
            SteadyLoad(router.port, MODEL, threads=2, rate=15, max_seconds=600, bodies=bodies) as load,
        ):
            # 2. New data: v2 is pushed, loaded next to v1 and labelled `canary`, under client load.
            assert data.add_span(config.paths.data_root, rows_per_span=ROWS_PER_SPAN) == 3
            second = run_pipeline(config)
            assert second.ok and second.spans == [3], second.reason
            assert second.pushed_version is not None and second.pushed_version > v1, second.reason
            v2 = second.pushed_version
            state = target.read().state
            assert state.versions == (v1, v2) and state.label_map == {"stable": v1, "canary": v2}
            assert {v: s["state"] for v, s in client.version_status(MODEL).items()} == {
                v1: "AVAILABLE",
                v2: "AVAILABLE",
            }
            assert _labels_on_server(client) == {"stable": v1, "canary": v2}
            assert load.total > 0 and load.labels["canary"] == 0  # no traffic to a canary before the rollout

            # 3. The controller moves traffic step by step and promotes v2.
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

            # 4. An operator rolls back by hand: `stable` flips to v1 (still loaded), v2 unloads.
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
