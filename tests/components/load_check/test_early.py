"""The load check server a runner starts early: taken once by LoadCheck, used for the check, stopped by
the runner's context whether or not it was taken."""

from __future__ import annotations

from components.load_check import early
from components.load_check.check import Budget
from components.load_check.executor import _check
from fixtures.models import write_fixture_model
from tests.components.load_check.test_check import children_of_this_process, new_children, running, x_requests


def test_nothing_started_means_nothing_to_take():
    with early.early_server():
        assert early.take() is None


def test_the_check_runs_on_the_early_server_which_the_runner_stops(tmp_path):
    model = write_fixture_model(tmp_path / "m", 1)
    before = children_of_this_process()
    log = tmp_path / "server.log"
    with early.early_server() as start:
        start()
        start()  # once: a second call starts nothing more
        [pid] = new_children(before, 1)
        report = _check(str(model), "early", x_requests(), Budget(latency_ms=2000), str(log))
        assert report.blessed, report.reason
        assert early.take() is None  # taken by the check: a second check would start its own
        assert running(pid)  # still the runner's to stop
        assert "Running gRPC ModelServer at 127.0.0.1:" in log.read_text()
    assert not running(pid)
    assert children_of_this_process() == before


def test_an_early_server_not_taken_is_stopped_too():
    before = children_of_this_process()
    with early.early_server() as start:
        start()
        assert len(new_children(before, 1)) == 1
    assert children_of_this_process() == before
    assert early.take() is None
