"""``tfx-canary route`` and ``rollout`` registration and argument errors (the flows run in test_rollout)."""

import argparse

import pytest

from serving import rollout_cli


def parser():
    p = argparse.ArgumentParser(prog="tfx-canary")
    rollout_cli.register(p.add_subparsers(dest="command", required=True))
    return p


def test_rollout_rejects_a_bad_plan_clearly(tmp_path, capsys):
    args = parser().parse_args(
        ["rollout", "--model", "m", "--server", "127.0.0.1:1", "--plan", "half", "--home", str(tmp_path)]
    )
    assert args.func(args) == 1
    assert "rollout step 'half'" in capsys.readouterr().err


def test_route_needs_a_server():
    with pytest.raises(SystemExit):
        parser().parse_args(["route"])
    args = parser().parse_args(["route", "--server", "127.0.0.1:8501", "--port", "0"])
    assert args.func is rollout_cli.route and args.port == 0
