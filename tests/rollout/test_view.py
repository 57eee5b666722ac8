"""The live rollout view on real rollouts (model server, router, steady load on loopback): redrawn in
place on a terminal, plain lines elsewhere, the same progress in the record ``status --watch`` reads;
and ``tfx-canary rollout --json``."""

from __future__ import annotations

import io
import json
import re

import pytest

from release import operations
from release import progress as record
from rollout.analysis import Criteria
from rollout.controller import RolloutController, parse_plan
from rollout.load import SteadyLoad
from rollout.view import run_with_view
from tests.rollout.stable_release import stable_behind_router
from tfx_canary import cli
from tfx_canary.live import LiveOutput

CRITERIA = Criteria(min_requests=20, p99_slack_s=0.15)  # a shared 2-core box: latency gets a wide margin
METRICS = "/monitoring/prometheus/metrics"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """v1 stable behind a router with an audit; each test pushes its own canary."""
    home = tmp_path_factory.mktemp("view")
    with stable_behind_router(home) as (served, target, router, _store):
        yield home, served, target, router


def push_canary(served, target, version: int) -> None:
    from fixtures.models import write_fixture_model

    write_fixture_model(served.base_path, version, offset=2.01)  # a good retrain: nearly the same answers
    operations.publish(target, version)
    assert target.read().state.in_flight == version


def rollout_with_view(home, target, router, output: LiveOutput, plan: str):
    controller = RolloutController(
        target, f"http://127.0.0.1:{router.port}{METRICS}", parse_plan(plan), CRITERIA, max_extensions=3
    )
    with SteadyLoad(router.port, "m", threads=2, rate=40) as load:
        outcome = run_with_view(controller, str(home / "releases"), output)
        load.stop()
    assert load.failures == [], load.failures[:3]
    return outcome


def test_redrawn_in_place_on_a_terminal(served):
    home, server, target, router = served
    push_canary(server, target, 2)
    stream = io.StringIO()
    output = LiveOutput(stream, terminal=True)
    assert output.terminal
    outcome = rollout_with_view(home, target, router, output, "shadow=2s")
    assert outcome.verdict == "promoted", outcome.steps
    text = stream.getvalue()
    # rich.live moves the cursor up over the last block and erases it before drawing the next one
    assert text.count("\x1b[2K") > 5 and re.search(r"\x1b\[\d*A", text), text[:500]
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    assert "m: canary v2 against stable v1" in plain
    assert re.search(r"1 of 4, \d s left of 2 s", plain)
    assert re.search(r"stable \d+/20, canary \d+/20", plain)
    last_block = plain[plain.rindex("m: canary v2 against stable v1") :]
    assert "promoted" in last_block.splitlines()[0] and "shadow pass" in last_block


def test_rollout_json_prints_the_outcome_and_the_view_as_plain_lines_on_stderr(served, capsys):
    """Not a terminal (captured): a line when the step, window or verdict changes, no escape codes."""
    home, server, target, router = served
    push_canary(server, target, 3)
    argv = [
        "rollout", "--home", str(home), "--serving-root", server.root, "--model", "m",
        "--server", server.address, "--router-metrics", f"http://127.0.0.1:{router.port}{METRICS}",
        "--plan", "shadow=2s,100%=2s", "--min-requests", "20", "--p99-slack-ms", "150", "--json",
    ]  # fmt: skip
    with SteadyLoad(router.port, "m", threads=2, rate=40) as load:
        code = cli.main(argv)
        load.stop()
    assert load.failures == [], load.failures[:3]
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert code == 0 and answer["outcome"] == "promoted" and answer["stable"] == 3, captured.err[-800:]
    assert answer["labels"]["stable"] == 3 and [s["step"]["name"] for s in answer["steps"]] == [
        "shadow",
        "100%",
    ]
    assert answer["steps"][0]["verdict"] == "pass" and answer["steps"][0]["canary"]["requests"] >= 20
    assert "\x1b[" not in captured.err  # no cursor movement, no colours: a log file stays readable
    lines = [line for line in captured.err.splitlines() if line.startswith("m v3 vs v2 | step ")]
    assert len(lines) >= 4, captured.err
    running = [line for line in lines if "step 1/2 shadow" in line and " s left of 2 s" in line]
    assert running, lines  # the window's clock while it runs
    counts = [int(m[1]) for line in running if (m := re.search(r"canary (\d+)/20", line))]
    assert counts and max(counts) > 0, running  # samples read while the window is still open
    assert any("step 2/2 100%" in line and "(baseline" in line for line in lines), lines
    assert "outcome promoted" in lines[-1] and "verdict pass" in lines[-1]
    saved = record.read(str(home / "releases"), "m")  # what status --watch reads
    assert saved.outcome == "promoted" and [d["step"] for d in saved.done] == ["shadow", "100%"]
    assert all(d["verdict"] == "pass" for d in saved.done) and saved.canary == 3
