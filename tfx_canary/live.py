"""A view kept up to date on the terminal: redrawn in place on a TTY, plain lines in a pipe or a file.

A terminal gets one block (a rich renderable) rewritten in place, with the project's log lines printed
above it. Anything else (CI logs, ``| tee``, a file) gets one plain line whenever the headline changes
(a new step, a verdict) and otherwise at most every ``every_s`` seconds, so a log stays readable.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.live import Live


class LiveOutput:
    """``update(block, line, headline)`` as often as wanted; ``close()`` leaves the last block shown."""

    def __init__(self, stream: IO[str] | None = None, every_s: float = 10.0, terminal: bool | None = None):
        self.stream = stream if stream is not None else sys.stdout
        self.console = Console(file=self.stream, force_terminal=terminal, highlight=False)
        self.terminal = self.console.is_terminal
        self.every_s = every_s
        self._live: Live | None = None
        self._headline: Any = object()
        self._printed_at = -float("inf")

    def update(self, block: Any, line: str, headline: Any) -> None:
        if self.terminal:
            if self._live is None:
                # log lines written meanwhile go above the block instead of through it
                self._live = Live(block, console=self.console, auto_refresh=False, transient=False)
                self._live.start()
            self._live.update(block, refresh=True)
            return
        now = time.monotonic()
        if headline != self._headline or now - self._printed_at >= self.every_s:
            self.stream.write(line + "\n")
            self.stream.flush()
            self._headline, self._printed_at = headline, now

    def close(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __enter__(self) -> LiveOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
