"""A child process that must not outlive its parent (a pipeline run under the scheduler, the load
check's model server): the kernel signals it when the parent dies, even by SIGKILL."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
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


def stop(process: subprocess.Popen, timeout_s: float = 30.0, sig: int = signal.SIGTERM) -> int:
    """Ask ``process`` to stop with ``sig``, wait up to ``timeout_s``, then kill it; its exit code.

    A process that has already exited is only reaped.
    """
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode
