"""The load check's model server process: ``tfx-canary serve``, ended by the kernel if its parent dies.

``PR_SET_PDEATHSIG`` makes a killed pipeline run (SIGKILL leaves no ``finally``) take its child server
with it, so no orphan keeps a port or a model in memory. The CLI is run by name, the way the check
would run ``tensorflow_model_server``: a command, not an import.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1
PARENT_PID_ENV = "TFX_CANARY_LOAD_CHECK_PARENT"


def main() -> None:
    # Not Linux: no prctl; the parent's own clean-up still stops this process.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.environ.get(PARENT_PID_ENV) not in (None, str(os.getppid())):
        sys.exit("error: the load check that started this server has already exited")
    sys.argv = ["tfx-canary", *sys.argv[1:]]
    runpy.run_module("tfx_canary.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
