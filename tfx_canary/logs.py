"""A quiet terminal: the project's own lines on the terminal, everything libraries say in a log file.

TensorFlow, gRPC and absl write their C++ start-up lines (``cudart_stub.cc ... Could not find cuda
drivers``, ``E0000 ... failed call to cuInit``) straight to file descriptor 2, and Keras, Beam and TFX
warn through Python's ``warnings`` and ``logging``. On a machine without a GPU by design those lines
read like failures, so while a command runs:

- file descriptor 2 points at the log file, which catches every C++ line;
- ``sys.stderr`` keeps writing to the terminal, for the project's own error lines;
- Python warnings and library log records go to the log file only; the project's own loggers
  (``tfx_canary``, ``pipeline``, ``release`` ...) also reach the terminal.

``-v`` (``verbose=True``) leaves the terminal as it is and shows every record.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator

# The packages whose loggers speak to the user.
PROJECT_LOGGERS = (
    "tfx_canary",
    "pipeline",
    "components",
    "release",
    "rollout",
    "scheduler",
    "kubeflow",
    "serving",
    "models",
    "fixtures",
    "observe",
)
_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _ProjectOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.name.split(".", 1)[0] in PROJECT_LOGGERS


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False


@contextlib.contextmanager
def fd2_to(log_file: str) -> Iterator[None]:
    """Point file descriptor 2 at ``log_file`` (appending) for the duration; ``sys.stderr`` stays
    on the terminal. Nests: the previous target is restored on exit."""
    os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    terminal = None
    previous_stderr = sys.stderr
    try:
        with open(log_file, "ab", buffering=0) as log:
            os.dup2(log.fileno(), 2)
        if _writes_to_fd2(previous_stderr):
            raw = open(saved, "wb", buffering=0, closefd=False)  # noqa: SIM115 - detached below
            terminal = io.TextIOWrapper(raw, line_buffering=True, errors="backslashreplace")
            sys.stderr = terminal
        yield
    finally:
        sys.stderr.flush()
        sys.stderr = previous_stderr
        if terminal is not None:
            terminal.detach()
        os.dup2(saved, 2)
        os.close(saved)


class CommandLog:
    """Where one command's library output goes: ``<home>/logs/<command>.log``.

    A command must not write under a home it refuses to create (a usage error leaves no trace), so when
    the home does not exist yet the output starts in a temporary file and ``finish`` appends it to the
    home's log once the command has created the home; otherwise the temporary file is kept (if not
    empty) and ``path`` says where.
    """

    def __init__(self, home_root: str, command: str) -> None:
        self.final = os.path.join(home_root, "logs", f"{command}.log")
        self.home_root = home_root
        self.temporary = not os.path.isdir(home_root)
        if self.temporary:
            fd, self.path = tempfile.mkstemp(prefix=f"tfx-canary-{command}-", suffix=".log")
            os.close(fd)
        else:
            os.makedirs(os.path.dirname(self.final), exist_ok=True)
            self.path = self.final

    @property
    def destination(self) -> str:
        """Where the output will be once the command ends."""
        return self.final if not self.temporary or os.path.isdir(self.home_root) else self.path

    def finish(self) -> None:
        if not self.temporary:
            return
        if os.path.getsize(self.path) and os.path.isdir(self.home_root):
            os.makedirs(os.path.dirname(self.final), exist_ok=True)
            with open(self.path, "rb") as source, open(self.final, "ab") as target:
                shutil.copyfileobj(source, target)
            os.unlink(self.path)
            self.path = self.final
        elif not os.path.getsize(self.path):
            os.unlink(self.path)
            self.path = self.final


def configured() -> bool:
    """True while a command set up the terminal already (a command that runs another in-process)."""
    return any(getattr(h, "_tfx_canary", False) for h in logging.getLogger().handlers)


def unconfigure() -> None:
    """Remove what ``configure`` added (in-process callers such as tests run several commands)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_tfx_canary", False):
            root.removeHandler(handler)
            handler.close()
    logging.captureWarnings(False)


def configure(verbose: bool, log_file: str | None) -> None:
    """Console handler (project loggers only, unless verbose) and a file handler for everything."""
    unconfigure()
    root = logging.getLogger()
    console = logging.StreamHandler(_Terminal())
    console.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    console._tfx_canary = True  # type: ignore[attr-defined]
    if verbose:
        console.setLevel(logging.DEBUG)
    else:
        console.setLevel(logging.INFO)
        console.addFilter(_ProjectOnly())
    root.addHandler(console)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
        to_file = logging.FileHandler(log_file)
        to_file.setFormatter(logging.Formatter(_FORMAT))
        to_file.setLevel(logging.INFO)
        to_file._tfx_canary = True  # type: ignore[attr-defined]
        root.addHandler(to_file)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for package in PROJECT_LOGGERS:
        logging.getLogger(package).setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.captureWarnings(True)


class _Terminal(io.TextIOBase):
    """Writes to whatever ``sys.stderr`` is at the time (the terminal, also while fd 2 is the log)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()
