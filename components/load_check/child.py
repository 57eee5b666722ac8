"""The load check's model server process: ``tfx-canary serve``, ended by the kernel if its parent dies.

A killed pipeline run (SIGKILL leaves no ``finally``) takes its child server with it, so no orphan keeps
a port or a model in memory. The CLI is run by name, the way the check would run
``tensorflow_model_server``: a command, not an import.
"""

from __future__ import annotations

import os
import runpy
import sys

from tfx_canary.process import die_with_parent

PARENT_PID_ENV = "TFX_CANARY_LOAD_CHECK_PARENT"


def main() -> None:
    parent = os.environ.get(PARENT_PID_ENV)
    die_with_parent(parent_pid=int(parent) if parent else None)
    sys.argv = ["tfx-canary", *sys.argv[1:]]
    runpy.run_module("tfx_canary.cli", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
