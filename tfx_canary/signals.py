"""SIGINT/SIGTERM that stop a command's main loop: the handler hands ``Event.set`` to a short thread.

A Python signal handler runs in the main thread between two bytecodes, which may be inside
``stop.wait(...)`` while that thread holds the event's own lock: ``stop.set()`` called there waits for
itself forever (CPython gh-126434 is the same for multiprocessing's Event). On Python 3.11 a loop of
``stop.wait(50 us)`` with a timer signal that sets it hung within 1,000 signals; a ``status --watch``
ignored SIGTERM under a loaded test run, and ``serve`` would have ignored the kubelet's SIGTERM the same
way until its SIGKILL. The thread takes the lock once the handler has returned.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def set_from_handler(event: threading.Event) -> None:
    """``event.set()``, safe to call from a signal handler."""
    threading.Thread(target=event.set, name="stop-on-signal", daemon=True).start()


def stop_on_signals(
    event: threading.Event,
    also: Callable[[int], None] | None = None,
    signals: Iterable[int] = STOP_SIGNALS,
) -> dict[int, object]:
    """Make ``signals`` set ``event`` (after ``also(signum)``, e.g. a log line); the handlers replaced."""

    def handler(signum: int, _frame: object) -> None:
        if also is not None:
            also(signum)
        set_from_handler(event)

    return {sig: signal.signal(sig, handler) for sig in signals}
