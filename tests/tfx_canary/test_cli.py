"""The installed ``tfx-canary`` console script."""

import json
import os
import subprocess
import sys
from pathlib import Path

from tfx_canary import __version__, cli

SCRIPT = Path(sys.executable).parent / "tfx-canary"
# What TensorFlow, absl and Python warnings print on their own at start-up.
TENSORFLOW_LINES = (
    "cudart_stub",
    "cuda drivers",
    "cuInit",
    "absl::InitializeLog",
    "I0000",
    "E0000",
    "Warning:",
)


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


def test_help_documents_the_exit_codes() -> None:
    result = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    text = " ".join(result.stdout.split())
    assert "exit codes: 0 done; 1 failed; 2 usage error" in text and "4 held (inconclusive)" in text


def test_a_usage_error_is_one_line_on_stderr_with_exit_2(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train_stepz: 3\n")
    home = tmp_path / "home"
    result = subprocess.run(
        [str(SCRIPT), "run", "--home", str(home), "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(
        "error: unknown config key(s) ['train_stepz']"
    )
    assert not home.exists()  # refused before anything was written


def test_a_failure_is_one_line_on_stderr_with_exit_1(tmp_path, capsys) -> None:
    assert cli.main(["promote", "--home", str(tmp_path), "--model", "m"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("error: model 'm': ")


def test_tensorflow_start_up_lines_go_to_the_log_not_the_terminal(tmp_path) -> None:
    """`run` imports TensorFlow (and says there is no data yet): its C++ lines must not reach the user."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # what a user's shell has
    quiet = subprocess.run(
        [str(SCRIPT), "run", "--home", str(home)], capture_output=True, text=True, timeout=300, env=env
    )
    assert quiet.returncode == 1 and "no data spans under" in quiet.stdout
    for stream in (quiet.stdout, quiet.stderr):
        for marker in TENSORFLOW_LINES:
            assert marker not in stream, stream
    log = (home / "logs" / "run.log").read_text()
    assert "cuda drivers" in log  # TensorFlow's own start-up line, kept in the log
    verbose = subprocess.run(
        [str(SCRIPT), "-v", "run", "--home", str(home)], capture_output=True, text=True, timeout=300, env=env
    )
    assert "cuda drivers" in verbose.stderr  # -v shows everything


def test_run_json_is_the_outcome_alone_on_stdout(tmp_path, capsys) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assert cli.main(["run", "--home", str(home), "--json"]) == 1  # no data yet: the run says why
    captured = capsys.readouterr()
    answer = json.loads(captured.out)
    assert answer["ok"] is False and answer["pushed_version"] is None and answer["model"] == "taxi_tips"
    assert answer["reason"].startswith("no data spans under ") and "tfx-canary data init" in answer["reason"]
