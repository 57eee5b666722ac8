"""The controller service's decisions, one tick at a time, against a real model server and router."""

from __future__ import annotations

import threading
import time

import pytest

from fixtures.models import write_fixture_model
from fixtures.served_root import ServedRoot
from release import operations
from release import state as sm
from release.config_store import update_release
from release.lease import Lease
from rollout.analysis import Criteria
from rollout.controller import RolloutController, parse_plan
from rollout.metrics_source import RouterScrape
from rollout.router import Router
from rollout.service import ControllerService, ControllerSettings
from tests.release.version_dirs import fake_version


@pytest.fixture
def served(tmp_path):
    write_fixture_model(tmp_path / "serving" / "m", 1, offset=2.0)
    with (
        ServedRoot(tmp_path / "serving") as served,
        Router(served.address, served.root, refresh_s=0.05) as router,
    ):
        yield served, router


def service_for(served, router, holder="controller:test", **settings) -> ControllerService:
    settings.setdefault("plan", parse_plan("shadow=1s"))
    settings.setdefault("criteria", Criteria(min_requests=1))
    source = RouterScrape(f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics")
    return ControllerService(lambda model: served.target(), source, ControllerSettings(**settings), holder)


def stable_and_canary(served) -> operations.Target:
    """Version 1 stable, version 2 the canary on trial (published through the server)."""
    target = served.target()
    operations.publish(target, 1)
    write_fixture_model(served.base_path, 2, offset=2.0)
    operations.publish(target, 2)
    return target


def tick_until(service: ControllerService, wanted: str, model: str = "m", timeout_s: float = 30) -> str:
    """Tick as the service loop would (it polls) until ``wanted`` is done; the last result."""
    deadline = time.monotonic() + timeout_s
    while (done := service.tick(model)) != wanted and time.monotonic() < deadline:
        time.sleep(0.2)
    return done


def test_a_version_listed_without_a_server_is_labelled_once_available(served):
    served, router = served
    vertex = operations.Target(served.root, "m")  # no server: a Vertex pipeline writes phase 1 only
    operations.publish(vertex, 1)
    assert vertex.read().state.candidate == 1
    service = service_for(served, router)
    assert tick_until(service, "labelled the candidate") == "labelled the candidate"
    assert vertex.read().state.label_map == {"stable": 1, "canary": 1}
    assert service.tick("m") == "nothing to do"


def test_a_candidate_that_fails_to_load_is_unlisted_with_the_servers_error(served):
    served, router = served
    operations.publish(served.target(), 1)
    fake_version(served.base_path, 2)  # complete on disk, but not a SavedModel: the server gives up on it
    operations.publish(operations.Target(served.root, "m"), 2)
    service = service_for(served, router)
    assert tick_until(service, "withdrew the candidate") == "withdrew the candidate"
    state = served.target().read().state
    assert state.versions == (1,) and state.stable == 1


def test_one_controller_per_model(served):
    served, router = served
    first, second = service_for(served, router, "controller:a"), service_for(served, router, "controller:b")
    assert first.tick("m") != "leased elsewhere"
    assert second.tick("m") == "leased elsewhere"
    assert Lease(served.root, "m", "x").current_holder() == "controller:a"
    first._leases["m"].release()
    assert second.tick("m") != "leased elsewhere"


def test_an_interrupted_rollback_is_finished_and_an_old_previous_retired(served):
    served, router = served
    target = stable_and_canary(served)
    operations.commit(target, lambda s: sm.rollback(s, {1, 2}), "rollback", "killed before the unload")
    service = service_for(served, router)
    assert service.tick("m") == "unloaded rejected"
    assert target.read().state.versions == (1,)
    write_fixture_model(served.base_path, 3, offset=2.0)
    operations.publish(target, 3)
    operations.promote(target, "by hand", retain_seconds=0.0)
    assert target.read().state.previous == 1
    assert service.tick("m") == "retired"
    assert target.read().state.versions == (3,)


def test_a_stop_leaves_the_step_in_force_and_a_new_run_resumes_it(served):
    served, router = served
    target = stable_and_canary(served)
    update_release(served.root, "m", lambda s: sm.set_traffic(s, 0.5, step="50%"))
    stop = threading.Event()
    stop.set()
    source = RouterScrape(f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics")
    plan = parse_plan("shadow=1s,50%=1s,100%=1s")
    outcome = RolloutController(target, source, plan, stop=stop).run()
    assert outcome.verdict == "interrupted" and target.read().state.step == "50%"
    generation = target.read().state.generation
    held = RolloutController(target, source, plan, Criteria(min_requests=10**6), max_extensions=0).run()
    assert held.verdict == "inconclusive" and held.steps[0]["step"]["name"] == "50%"  # resumed, not restarted
    state = target.read().state
    assert (state.step, state.verdict, state.generation) == ("50%", "inconclusive", generation + 1)
    assert "too few samples" in state.hold_reason


def test_analysis_that_cannot_be_read_holds_the_step_and_says_why(served):
    served, _ = served
    target = stable_and_canary(served)
    dead = RouterScrape("http://127.0.0.1:9/metrics", timeout_s=0.2, delays=(0.01,))
    outcome = RolloutController(target, dead, parse_plan("shadow=1s")).run()
    assert outcome.verdict == "inconclusive"
    state = target.read().state
    assert state.in_flight == 2 and state.step == "shadow" and state.verdict == "inconclusive"
    assert state.hold_reason.startswith(
        "analysis unavailable: reading the router metrics at http://127.0.0.1:9"
    )
    assert state.canary_weight == 0.0 and state.shadow_fraction == 1.0  # the weight in force, recorded
