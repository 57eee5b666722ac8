"""Bring your own model, through the CLI only, on data that is not the taxi: scikit-learn's wine.

``init`` -> ``run`` -> ``serve`` -> ``promote --phase2`` (the first version becomes stable) ->
``route`` -> ``data add-span`` (a second span) -> ``run --server`` (the new version becomes the
canary) -> ``rollout`` (promoted) -> ``status``; then the served ``:classify`` and ``:predict``
answers equal the Trainer's own model on the same rows. One process per CLI step, every part real:
TFX LocalDagRunner, Beam, MLMD, the model server and the router on 127.0.0.1.
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from release.metadata import open_store
from tfx_canary.process import stop

pytestmark = pytest.mark.e2e

LABEL = "cultivar"
MODEL = "wine"
TRAIN_STEPS = "60"
MAX_REQUESTS = 4000  # the client load stops here, or after LOAD_SECONDS, whichever comes first
LOAD_SECONDS = 120


def _wine_spans(folder: Path) -> tuple[Path, Path]:
    """The 178 wine rows, shuffled, as two CSV files of 89 rows: the sample and the next span."""
    from sklearn.datasets import load_wine

    wine = load_wine()
    columns = [name.replace("/", "_") for name in wine.feature_names]
    rows = [[repr(float(v)) for v in x] + [str(int(y))] for x, y in zip(wine.data, wine.target, strict=True)]
    random.Random(7).shuffle(rows)
    files = []
    for index, part in enumerate((rows[:89], rows[89:]), start=1):
        path = folder / f"wine-{index}.csv"
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow([*columns, LABEL])
            writer.writerows(part)
        files.append(path)
    return files[0], files[1]


def _env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "tfx_canary.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=_env(),
    )
    assert result.returncode == 0, f"tfx-canary {' '.join(args)}: {result.stdout}\n{result.stderr}"
    print(f"tfx-canary {' '.join(args[:2])}: {time.monotonic() - started:.1f} s")
    return result


def _start(*args: str, pattern: str) -> tuple[subprocess.Popen, re.Match]:
    """A long-running CLI command, and the first stdout line matching ``pattern``."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tfx_canary.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=_env(),
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        assert line, f"tfx-canary {args[0]} exited early with {process.poll()}"
        if match := re.search(pattern, line):
            return process, match
    process.kill()
    raise AssertionError(f"tfx-canary {args[0]} printed no line matching {pattern!r}")


def _post(port: int, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST", path, json.dumps(body), {"Content-Type": "application/json", **(headers or {})}
        )
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _rows(csv_file: Path, count: int) -> list[dict]:
    with open(csv_file, newline="") as handle:
        rows = list(csv.DictReader(handle))[:count]
    return [{k: float(v) for k, v in row.items() if k != LABEL} for row in rows]


def _pushed(stdout: str) -> int:
    match = re.search(r"PUSHED: pushed version (\d+)", stdout)
    assert match, stdout
    return int(match.group(1))


def _trainer_model(home: Path, version: int):
    """The Trainer's own SavedModel behind a pushed version (its MLMD artifact, not the served copy)."""
    uuid = (home / "serving" / MODEL / str(version) / "assets.extra" / "mlmd_uuid").read_text()
    model_id = int(dict(p.split("=") for p in uuid.strip().split(";"))["model_id"])
    [artifact] = open_store(str(home / "metadata.sqlite")).get_artifacts_by_id([model_id])
    return tf.saved_model.load(os.path.join(artifact.uri, "Format-Serving"))


class _Clients:
    """Plain JSON clients calling the router, bounded in requests and time."""

    def __init__(self, port: int, instances: list[dict]):
        self.port, self.instances = port, instances
        self.statuses: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_SECONDS
        rng = random.Random(0)
        while not self._stop.is_set() and len(self.statuses) < MAX_REQUESTS and time.monotonic() < deadline:
            body = {"signature_name": "serving_raw", "instances": [rng.choice(self.instances)]}
            key = {"X-Request-Key": f"client-{rng.randrange(10**6)}"}
            status, _ = _post(self.port, f"/v1/models/{MODEL}:predict", body, key)
            self.statuses.append(status)
            time.sleep(0.01)

    def __enter__(self) -> _Clients:
        self._thread.start()
        return self

    def __exit__(self, *_) -> None:
        self._stop.set()
        self._thread.join(timeout=60)


def test_wine_from_a_csv_to_a_promoted_canary(tmp_path):
    started = time.monotonic()
    first_csv, second_csv = _wine_spans(tmp_path)
    project, home = tmp_path / "wine", tmp_path / "home"
    config = project / "config.yaml"

    _cli(
        "init", str(project), "--csv", str(first_csv), "--label", LABEL, "--task", "multiclass_classification"
    )
    assert config.is_file() and (project / "data" / "span-1" / "data.csv").is_file()
    first = _pushed(
        _cli("run", "--config", str(config), "--home", str(home), "--train-steps", TRAIN_STEPS).stdout
    )

    serve_args = (
        "serve",
        "--port=-1",
        "--rest_api_port=-1",
        f"--model_config_file={home / 'serving' / 'models.config'}",
        "--model_config_file_poll_wait_seconds=1",
        "--allow_version_labels_for_unavailable_models=true",
    )
    server, match = _start(*serve_args, pattern=r"Exporting HTTP/REST API at:127\.0\.0\.1:(\d+)")
    rest_port = int(match.group(1))
    address = f"127.0.0.1:{rest_port}"
    router = None
    try:
        common = ("--model", MODEL, "--home", str(home), "--server", address)
        _cli("promote", "--phase2", *common, "--load-timeout", "120")
        router, match = _start(
            "route",
            "--server",
            address,
            "--port",
            "0",
            "--home",
            str(home),
            pattern=r"router on http://[\d.]+:(\d+)",
        )
        router_port = int(match.group(1))

        added = _cli("data", "add-span", "--config", str(config), "--csv", str(second_csv))
        assert "added span 2" in added.stdout
        second_run = _cli(
            "run",
            "--config",
            str(config),
            "--home",
            str(home),
            "--train-steps",
            TRAIN_STEPS,
            "--server",
            address,
        )
        second = _pushed(second_run.stdout)
        assert second > first

        instances = _rows(second_csv, 40)
        with _Clients(router_port, instances) as clients:
            rollout = _cli(
                "rollout",
                *common,
                "--router-metrics",
                f"http://127.0.0.1:{router_port}/monitoring/prometheus/metrics",
                "--plan",
                "25%=3s,100%=3s",
                "--min-requests",
                "10",
                "--max-p99-ratio",
                "10",
                timeout=300,
            )
        assert rollout.stdout.strip().endswith(f"{MODEL}: promoted"), rollout.stdout
        assert clients.statuses and set(clients.statuses) == {200}, sorted(set(clients.statuses))
        status = json.loads(_cli("status", *common, "--json").stdout)
        [row] = [r for r in status if r["model"] == MODEL]
        assert row["labels"]["stable"] == second, row

        # The served answers are the Trainer's model's own, class by class.
        trainer = _trainer_model(home, second)
        rows = _rows(second_csv, 5)
        examples = tf.constant([_example(r) for r in rows])
        expected = trainer.signatures["serving_default"](examples=examples)
        expected_scores = expected["scores"].numpy()
        assert expected_scores.shape == (5, 3)

        code, classified = _post(rest_port, f"/v1/models/{MODEL}/labels/stable:classify", {"examples": rows})
        assert code == 200, classified
        for answer, scores in zip(classified["results"], expected_scores, strict=True):
            assert [label for label, _ in answer] == ["0", "1", "2"]  # every class, with its score
            np.testing.assert_allclose([score for _, score in answer], scores, rtol=1e-5, atol=1e-6)

        raw = {k: tf.constant([r[k] for r in rows], tf.float32) for k in rows[0]}
        expected_raw = trainer.signatures["serving_raw"](**raw)["scores"].numpy()
        np.testing.assert_allclose(expected_raw, expected_scores, rtol=1e-5, atol=1e-6)
        body = {"signature_name": "serving_raw", "instances": rows}
        code, predicted = _post(rest_port, f"/v1/models/{MODEL}/labels/stable:predict", body)
        assert code == 200, predicted
        got = np.array([p["scores"] for p in predicted["predictions"]])
        np.testing.assert_allclose(got, expected_raw, rtol=1e-5, atol=1e-6)
        assert [p["classes"] for p in predicted["predictions"]] == [["0", "1", "2"]] * 5
    finally:
        for process in (router, server):
            if process is not None:
                stop(process)
    print(f"wine e2e took {time.monotonic() - started:.1f} s")


def _example(row: dict) -> bytes:
    feature = {k: tf.train.Feature(float_list=tf.train.FloatList(value=[v])) for k, v in row.items()}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
