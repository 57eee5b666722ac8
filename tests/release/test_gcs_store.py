"""The config store on gs://: concurrent writers lose no update, a lost race is retried, a dead
writer's lock expires; against a fake that enforces GCS's generation preconditions."""

from __future__ import annotations

import dataclasses
import json
import threading
import time

import pytest

from release import config_store, object_store
from release.lease import Lease
from release.object_store import GcsLock, GcsObject, PreconditionLost
from tests.release.fake_gcs import FakeStorage

ROOT = "gs://bucket/serving"


@pytest.fixture
def gcs(monkeypatch):
    storage = FakeStorage(jitter_s=0.01)
    monkeypatch.setattr(object_store, "storage_client", lambda: storage)
    return storage


def reject(version: int):
    return lambda s: dataclasses.replace(s, rejected=(*s.rejected, version))


def test_a_write_names_the_generation_it_replaces(gcs):
    obj = GcsObject(f"{ROOT}/x.txt")
    first = obj.write("one", if_generation=0)
    with pytest.raises(PreconditionLost):
        obj.write("again", if_generation=0)  # it exists already
    second = obj.write("two", if_generation=first)
    with pytest.raises(PreconditionLost):
        obj.write("stale", if_generation=first)
    assert obj.read() == ("two", second)


def test_concurrent_writers_lose_no_update(gcs):
    errors = []

    def writer(version: int) -> None:
        try:
            config_store.update_release(ROOT, "m", reject(version))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(v,)) for v in range(1, 7)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    state = config_store.read_release(ROOT, "m").state
    assert state.rejected == tuple(range(1, 7)) and state.generation == 6


def test_without_the_lock_a_lost_race_is_caught_by_the_precondition_and_retried(gcs, monkeypatch):
    class NoLock:  # a writer whose lock expired while it was slow, or that ignores it
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(object_store, "GcsLock", NoLock)
    threads = [
        threading.Thread(
            target=config_store.update_release, args=(ROOT, "m", reject(v)), kwargs={"attempts": 50}
        )
        for v in range(1, 5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    state = config_store.read_release(ROOT, "m").state
    assert state.rejected == (1, 2, 3, 4) and state.generation == 4
    assert gcs.conflicts > 0  # races happened, and none was lost


def test_a_dead_writers_lock_is_taken_over_after_it_expires(gcs):
    lock = GcsObject(f"{ROOT}/{config_store.LOCK_NAME}")
    lock.write(json.dumps({"holder": "dead:1", "expires": time.time() - 1}), if_generation=0)
    started = time.monotonic()
    config_store.update_release(ROOT, "m", reject(1))
    assert time.monotonic() - started < 5
    assert lock.read() == (None, 0)  # released after the write


def test_a_live_lock_makes_others_wait_then_time_out_clearly(gcs):
    waiting = GcsLock(f"{ROOT}/{config_store.LOCK_NAME}", timeout_s=0.2)
    with (
        GcsLock(f"{ROOT}/{config_store.LOCK_NAME}"),
        pytest.raises(config_store.LockTimeout, match="held for over 0 s"),
    ):
        waiting.__enter__()


def test_one_controller_holds_a_model_lease_on_gcs_until_it_lets_go_or_dies(gcs):
    first = Lease(ROOT, "m", "controller:a", ttl_s=0.6)
    second = Lease(ROOT, "m", "controller:b", ttl_s=0.6)
    assert first.acquire() and not second.acquire()
    time.sleep(1.0)  # longer than the ttl: the holder's renewals keep it
    assert not second.acquire() and second.current_holder() == "controller:a"
    first._impl._stop.set()  # the holder dies: no more renewals
    first._impl._renewer.join()
    time.sleep(0.7)
    assert second.acquire() and second.current_holder() == "controller:b"
    second.release()
    assert GcsObject(f"{ROOT}/.release/m.lease").read() == (None, 0)
