"""``tfx-canary demo``'s own parts: load bodies from span rows, the model server subprocess, bad flags,
and that stopping the demo never leaves a model server behind. The loop itself is
``tests/test_release_e2e.py``."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from components.release.server_status import ServerClient
from models import features
from pipeline import data
from tfx_canary import cli
from tfx_canary.demo import ModelServerProcess, ServerStartError, request_bodies


def test_request_bodies_are_one_trip_each_for_serving_raw(tmp_path):
    root = tmp_path / "data"
    data.init_spans(root, spans=2, rows_per_span=60)
    rows = []
    for span in (1, 2):
        with open(root / f"span-{span}" / "data.csv", newline="") as handle:
            rows += list(csv.DictReader(handle))
    usable = [r for r in rows if all(r[k] != "" for k in features.REQUIRED_RAW_INPUTS)]
    assert 0 < len(usable) <= len(rows)

    bodies = [json.loads(b) for b in request_bodies(root, "taxi_tips")]
    assert len(bodies) == len(usable)
    spec = features.MODELS["taxi_tips"]
    for body in bodies:
        assert body["signature_name"] == "serving_raw"
        [instance] = body["instances"]
        assert set(instance) == set(spec.input_keys)
        assert isinstance(instance["trip_miles"], float) and isinstance(instance["trip_seconds"], int)
        assert instance["payment_type"] in {r["payment_type"] for r in usable}
    assert {b["instances"][0]["trip_seconds"] for b in bodies} == {int(r["trip_seconds"]) for r in usable}
    assert len(request_bodies(root, "taxi_tips", limit=5)) == 5


def test_model_server_process_answers_on_loopback_and_drains_on_stop(tmp_path):
    config = tmp_path / "models.config"
    config.write_text("model_config_list {}\n")
    log = tmp_path / "server.log"
    with ModelServerProcess(config, log) as server:
        host, _, port = server.address.partition(":")
        assert host == "127.0.0.1" and int(port) > 0
        assert ServerClient(server.address).reachable()
        process = server.process
    assert process.returncode == 0
    assert "Model server stopped cleanly" in log.read_text()


def test_model_server_process_restarts_on_a_config_with_labels(tmp_path):
    """A second demo run restarts the server on the config the first one left, labels included."""
    from serving.testing import write_fixture_model

    write_fixture_model(tmp_path / "m", 1, offset=2.0)
    config = tmp_path / "models.config"
    config.write_text(
        f'model_config_list {{ config {{ name: "m" base_path: "{tmp_path / "m"}" model_platform: '
        '"tensorflow" model_version_policy { specific { versions: 1 } } '
        'version_labels { key: "stable" value: 1 } } }\n'
    )
    with ModelServerProcess(config, tmp_path / "server.log") as server:
        ServerClient(server.address).wait_labels("m", {"stable": 1}, timeout_s=60)


def test_a_model_server_that_cannot_start_says_why_and_is_gone(tmp_path):
    server = ModelServerProcess(tmp_path / "missing.config", tmp_path / "server.log")
    with pytest.raises(ServerStartError, match="the model server exited") as raised:
        server.start()
    assert "missing.config: no such file" in str(raised.value)
    assert server.process.returncode is not None


@pytest.mark.parametrize(
    "flags", [["--spans", "1"], ["--rows-per-span", "10"], ["--plan", "half"], ["--rps", "0"]]
)
def test_bad_flags_are_refused_before_anything_starts(tmp_path, capsys, flags):
    home = tmp_path / "home"
    assert cli.main(["demo", "--home", str(home), *flags]) == 2
    assert "error:" in capsys.readouterr().out
    assert not home.exists()


def _servers_of(home: Path) -> list[int]:
    """Process ids of model servers watching this home's models.config."""
    needle = f"--model_config_file={home / 'serving' / 'models.config'}".encode()
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.e2e
def test_stopping_the_demo_stops_its_model_server(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    demo = subprocess.Popen(
        [sys.executable, "-m", "tfx_canary.cli", "demo", "--home", str(home), "--rows-per-span", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not list(home.glob("pipelines/*/logs/run-*.log")):  # the servers are up, the pipeline runs
            assert demo.poll() is None and time.monotonic() < deadline, "the pipeline did not start"
            time.sleep(0.2)
        time.sleep(2.0)
        assert _servers_of(home)
        demo.send_signal(signal.SIGTERM)
        output, _ = demo.communicate(timeout=120)
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130, output
    assert "Interrupted: the model server and the router were stopped" in output
    assert _servers_of(home) == []
