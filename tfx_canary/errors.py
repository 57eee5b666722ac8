"""One error and exit-code convention for every ``tfx-canary`` command.

Commands raise these instead of printing; ``tfx_canary.cli.main`` prints the message as one line on
stderr (``error: ...``) and exits with the code of its class. The full traceback, if any, goes to the
log. This module imports nothing, so every package (the model server included) can use it.
"""

from __future__ import annotations

EXIT_OK = 0  # done
EXIT_FAILED = 1  # the command ran and failed
EXIT_USAGE = 2  # wrong flags, settings or config files: nothing was done
EXIT_REFUSED = 3  # a gate said no (e.g. the canary was rolled back)
EXIT_HELD = 4  # no decision yet (e.g. a rollout step stayed inconclusive and is held)

EXIT_CODES_HELP = (
    "exit codes: 0 done; 1 failed; 2 usage error (wrong flags, settings or config, nothing done); "
    "3 refused by a gate (rolled back); 4 held (inconclusive)"
)


class CanaryError(Exception):
    """A failure the user can act on: printed as one line, exit 1."""

    exit_code = EXIT_FAILED


class UsageError(CanaryError):
    """Wrong flags or settings given to a command: printed as one line, exit 2."""

    exit_code = EXIT_USAGE


class ConfigError(UsageError, ValueError):
    """A configuration file or value is invalid; the message names the file or key and what is valid."""
