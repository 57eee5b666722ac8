"""``tfx-canary route`` and ``rollout`` registration and argument errors (the flows run in test_rollout)."""

import argparse

import pytest

from rollout import cli as rollout_cli
from tfx_canary import cli


def parser():
    p = argparse.ArgumentParser(prog="tfx-canary")
    rollout_cli.register(p.add_subparsers(dest="command", required=True))
    return p


def test_rollout_rejects_a_bad_plan_clearly_as_a_usage_error(tmp_path, capsys):
    argv = ["rollout", "--model", "m", "--server", "127.0.0.1:1", "--plan", "half", "--home", str(tmp_path)]
    assert cli.main(argv) == 2
    assert "error: rollout step 'half'" in capsys.readouterr().err


def test_route_needs_a_server():
    with pytest.raises(SystemExit):
        parser().parse_args(["route"])
    args = parser().parse_args(["route", "--server", "127.0.0.1:8501", "--port", "0"])
    assert args.func is rollout_cli.route and args.port == 0
