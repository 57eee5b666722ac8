"""A load check server started before LoadCheck runs, by a runner that knows one is coming.

On the local runner every component runs in one process, one after another: the runner starts the
child model server when Transform starts, so its start-up (a Python process importing TensorFlow,
seconds on this machine) overlaps Transform and the Trainer instead of adding to LoadCheck. LoadCheck
takes it, once; without one (Vertex, where each component is its own container, or a second check in
the same run) it starts its own. Either way the candidate is judged by the same ``check_on``.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from components.load_check.check import StartingServer

_waiting: list[StartingServer] = []


@contextmanager
def early_server() -> Iterator[Callable[[], None]]:
    """Yields ``start``: call it to launch the server (once); whatever was started is stopped on exit."""
    workdir = tempfile.mkdtemp(prefix="tfx-canary-load-check-")
    started: list[StartingServer] = []

    def start() -> None:
        if not started:
            started.append(StartingServer(workdir))
            _waiting.append(started[0])

    try:
        yield start
    finally:
        for server in started:
            if server in _waiting:
                _waiting.remove(server)
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def take() -> StartingServer | None:
    """The server started early for this run, if there is one not taken yet."""
    return _waiting.pop() if _waiting else None
