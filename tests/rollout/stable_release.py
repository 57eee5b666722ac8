"""Where the rollout tests start: the fixture model's v1 stable behind a router, every transition
audited in ML Metadata (the controller's actor), under one folder."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fixtures.models import write_fixture_model
from fixtures.served_root import ServedRoot
from release import audit, operations
from release.metadata import open_store
from rollout.router import Router


@contextmanager
def stable_behind_router(home: Path) -> Iterator[tuple]:
    """(served root, target, router, MLMD store) with ``m`` v1 (y = 0.5x + 2) stable, under ``home``."""
    write_fixture_model(home / "serving" / "m", 1, offset=2.0)
    store = open_store(str(home / "metadata.sqlite"))
    with ServedRoot(home / "serving") as served:
        target = served.target(audit=audit.Audit(store, str(home / "releases"), actor="controller"))
        operations.publish(target, 1)
        with Router(served.address, served.root, refresh_s=0.05) as router:
            yield served, target, router, store
