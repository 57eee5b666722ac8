"""The installed ``tfx-canary`` console script."""

import subprocess
import sys
from pathlib import Path

from tfx_canary import __version__, cli

SCRIPT = Path(sys.executable).parent / "tfx-canary"


def test_console_script_help_lists_commands() -> None:
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage: tfx-canary" in result.stdout
    assert "version" in result.stdout


def test_version_all_reports_the_pinned_stack(capsys) -> None:
    assert cli.main(["version", "--all"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tfx-canary {__version__}\n")
    assert "  tfx 1.21.0" in out
    assert "  tensorflow 2.21.0" in out
    assert "  ml-metadata 1.21.0" in out


def test_unknown_command_fails_with_usage() -> None:
    result = subprocess.run([str(SCRIPT), "no-such-command"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "invalid choice: 'no-such-command'" in result.stderr
