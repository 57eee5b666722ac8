"""The rollout controller: plans, and whole releases under steady load on loopback."""

import pytest

from release import audit, operations
from rollout.analysis import Criteria
from rollout.controller import RolloutController, Step, parse_plan
from rollout.load import SteadyLoad
from tests.rollout.bad_models import write_failing_model, write_slow_model
from tests.rollout.stable_release import stable_behind_router


def test_parse_plan():
    assert parse_plan("shadow=30s, 5%=1m, 100%") == [
        Step("shadow", 0.0, 1.0, 30.0),
        Step("5%", 0.05, 0.0, 60.0),
        Step("100%", 1.0, 0.0, 60.0),
    ]
    assert parse_plan("shadow:10%=500ms")[0] == Step("shadow:10%", 0.0, 0.1, 0.5)
    for bad in ("", "half", "150%", "5%=soon"):
        with pytest.raises(ValueError):
            parse_plan(bad)


# A p99 over a few dozen samples on a shared 2-core box is noisy: allow 40 ms, the slow canary adds far more
CRITERIA = Criteria(min_requests=20, p99_slack_s=0.04)


@pytest.fixture
def release(tmp_path):
    """v1 stable behind a router, MLMD audit on, ready for a v2 to be pushed."""
    with stable_behind_router(tmp_path) as release:
        yield release


def controller(target, router, plan, criteria=CRITERIA, max_extensions=2):
    url = f"http://127.0.0.1:{router.port}/monitoring/prometheus/metrics"
    return RolloutController(
        target,
        url,
        parse_plan(plan),
        criteria,
        max_extensions=max_extensions,
        retain_seconds=600,
    )


@pytest.mark.e2e
def test_good_canary_is_promoted_then_rolled_back_with_zero_failed_requests(release):
    from fixtures.models import predict_warmup_log, write_fixture_model, write_warmup_requests

    served, target, router, store = release
    with SteadyLoad(router.port, "m", threads=2, rate=40) as load:
        version = write_fixture_model(
            served.base_path, 2, offset=2.02
        )  # a good retrain: nearly the same answers
        write_warmup_requests(version, [predict_warmup_log([1.0])])  # as the Pusher does: no cold first calls
        operations.publish(target, 2)
        # everything shares one process and two busy cores here, so latency gets a wide margin in this test
        lenient = Criteria(min_requests=20, p99_slack_s=0.15)
        outcome = controller(target, router, "shadow=1.5s,50%=1.5s,100%=1s", lenient).run()
        assert outcome.verdict == "promoted", outcome.steps
        assert target.read().state.label_map == {"stable": 2, "canary": 2, "previous": 1}
        operations.retire(target, now=10**12)  # window over: version 1 unloads
        assert target.read().state.versions == (2,)
        operations.rollback(target, "manual rollback after promotion")  # reloads v1 first, never re-pushes
        load.stop()
    assert load.failures == [], load.failures[:5]
    assert load.total > 200 and load.labels["canary"] > 0
    state = target.read().state
    assert state.label_map == {"stable": 1, "canary": 1} and state.versions == (1,)
    kinds = [e["kind"] for e in audit.history(store, "m")]
    assert kinds == [
        "phase1", "first-stable", "phase1", "canary-start",
        "traffic", "traffic", "traffic", "promote", "retire", "reload", "rollback", "unload",
    ]  # fmt: skip
    promote = audit.history(store, "m")[7]
    assert promote["analysis"]["verdict"] == "pass" and promote["analysis"]["canary"]["requests"] >= 20


@pytest.mark.e2e
@pytest.mark.parametrize("plant", [write_failing_model, write_slow_model], ids=["errors", "slow"])
def test_bad_canary_is_rolled_back_automatically(release, plant):
    served, target, router, store = release
    with SteadyLoad(router.port, "m", threads=2, rate=40) as load:
        plant(served.base_path, 2)
        operations.publish(target, 2)
        # a slow canary also slows the shadow sampling: allow more window extensions before holding
        outcome = controller(target, router, "shadow=2s,50%=1s", max_extensions=4).run()
        load.stop()
    assert outcome.verdict == "rolled back", outcome.steps
    assert outcome.steps[0]["verdict"] == "fail"
    assert target.read().state.label_map == {"stable": 1, "canary": 1}
    assert target.read().state.versions == (1,)
    assert load.failures == [], load.failures[:5]  # the shadow step caught it: no client saw the canary
    rollback = next(e for e in audit.history(store, "m") if e["kind"] == "rollback")
    assert rollback["actor"] == "controller" and rollback["analysis"]["verdict"] == "fail"
