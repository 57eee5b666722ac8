"""One actor per model: a lease that a long-running controller holds while it acts on a model.

Two controllers (a rolling update, a second replica by mistake) must never both run a model's plan,
or a step could be taken twice. On a local serving root the lease is an ``fcntl`` lock on
``.release/<model>.lease``: the kernel drops it when its holder dies, so a crash never leaves it held.
The file also names the holder, for the message a second controller prints.
"""

from __future__ import annotations

import fcntl
import os
from typing import IO

from release.serving_dir import RECORD_DIR, is_uri, join
from tfx_canary.errors import UsageError


class Lease:
    def __init__(self, serving_root: str, model: str, holder: str) -> None:
        if is_uri(serving_root):
            raise UsageError(
                f"the controller keeps its lease on a local serving root; for {serving_root} run one "
                "controller per model (a Deployment with replicas: 1 and strategy Recreate)"
            )
        self.path = join(serving_root, RECORD_DIR, f"{model}.lease")
        self.holder = holder
        self._handle: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self) -> bool:
        """Take the lease without waiting; False while another live process holds it."""
        if self._handle is not None:
            return True
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        handle = open(self.path, "a+")  # noqa: SIM115 - held open for as long as the lease is held
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{self.holder}\n")
        handle.flush()
        self._handle = handle
        return True

    def current_holder(self) -> str:
        try:
            with open(self.path) as handle:
                return handle.read().strip()
        except FileNotFoundError:
            return ""

    def release(self) -> None:
        if self._handle is None:
            return
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        self._handle.close()
        self._handle = None
