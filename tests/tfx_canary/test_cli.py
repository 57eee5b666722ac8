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


def test_every_subcommand_renders_its_help() -> None:
    """argparse formats help lazily: a stray ``%`` in a help string only fails on ``--help``."""
    parser = cli.build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]
    assert {"version", "run", "serve", "status", "rollout", "compile"} <= set(subparsers.choices)
    for name, subparser in subparsers.choices.items():
        assert subparser.format_help().startswith("usage: tfx-canary"), name
        for nested in subparser._actions:  # e.g. `data init`, `data add-span`
            if isinstance(nested.choices, dict):
                for sub_name, sub_parser in nested.choices.items():
                    assert sub_parser.format_help().startswith("usage:"), f"{name} {sub_name}"
