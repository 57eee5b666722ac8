"""One actor per model: a lease that a long-running controller holds while it acts on a model.

Two controllers (a rolling update, a second replica by mistake) must never both run a model's plan,
or a step could be taken twice. The lease is ``<serving_root>/.release/<model>.lease``:

- on a local serving root an ``fcntl`` lock on that file: the kernel drops it when its holder dies;
- on ``gs://`` an object created only if absent (a generation precondition) holding the holder and an
  expiry, renewed by a background thread with the generation it replaces; a holder that dies stops
  renewing and the lease is taken over once it expires, never before.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from typing import IO

from release.object_store import GcsObject, PreconditionLost
from release.serving_dir import RECORD_DIR, join

log = logging.getLogger(__name__)


class Lease:
    def __init__(self, serving_root: str, model: str, holder: str, ttl_s: float = 60.0) -> None:
        self.path = join(serving_root, RECORD_DIR, f"{model}.lease")
        self.holder, self.ttl_s = holder, ttl_s
        self._impl = _GcsLease(self) if serving_root.startswith("gs://") else _FileLease(self)

    @property
    def held(self) -> bool:
        return self._impl.held

    def acquire(self) -> bool:
        """Take the lease without waiting; False while another live holder has it."""
        return self._impl.acquire()

    def current_holder(self) -> str:
        return self._impl.current_holder()

    def release(self) -> None:
        self._impl.release()


class _FileLease:
    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> bool:
        if self._handle is not None:
            return True
        os.makedirs(os.path.dirname(self.lease.path), exist_ok=True)
        handle = open(self.lease.path, "a+")  # noqa: SIM115 - held open for as long as the lease is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.lease.holder}\n")
        handle.flush()
        self._handle = handle
        return True

    def current_holder(self) -> str:
        try:
            with open(self.lease.path) as handle:
                return handle.read().strip()
        except FileNotFoundError:
            return ""

    def release(self) -> None:
        if self._handle is None:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None


class _GcsLease:
    def __init__(self, lease: Lease) -> None:
        self.lease = lease
        self.object = GcsObject(lease.path)
        self._generation: int | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    @property
    def held(self) -> bool:
        return self._generation is not None

    def _body(self) -> str:
        return json.dumps({"holder": self.lease.holder, "expires": time.time() + self.lease.ttl_s})

    def acquire(self) -> bool:
        if self.held:
            return True
        for _ in range(2):
            try:
                self._generation = self.object.write(self._body(), if_generation=0)
                break
            except PreconditionLost:
                text, generation = self.object.read()
                if text is None or json.loads(text).get("expires", 0) >= time.time():
                    return False
                self.object.delete(generation)  # expired: its holder is gone
        else:
            return False
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="lease-renewer", daemon=True)
        self._renewer.start()
        return True

    def _renew(self) -> None:
        while not self._stop.wait(self.lease.ttl_s / 3):
            try:
                self._generation = self.object.write(self._body(), if_generation=self._generation)
            except PreconditionLost:
                log.error(
                    "lost the lease %s (taken over after it expired); stopping acting on it", self.lease.path
                )
                self._generation = None
                return

    def current_holder(self) -> str:
        text, _ = self.object.read()
        return json.loads(text).get("holder", "") if text else ""

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self._generation is not None:
            self.object.delete(self._generation)
            self._generation = None
