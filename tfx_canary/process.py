"""A child process that must not outlive its parent (a pipeline run under the scheduler, the load
check's model server): the kernel signals it when the parent dies, even by SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM, parent_pid: int | None = None) -> None:
    """Ask Linux for ``sig`` when the parent exits; exit at once if it already has (``parent_pid`` no
    longer the parent, or re-parented to init). Elsewhere nothing happens: the parent's own clean-up
    still stops the child."""
    if not sys.platform.startswith("linux"):
        return
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, sig)
    if os.getppid() == 1 or (parent_pid is not None and os.getppid() != parent_pid):
        os._exit(1)
