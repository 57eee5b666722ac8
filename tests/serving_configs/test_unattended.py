"""The systemd unit and crontab line that run `tfx-canary schedule --local` unattended."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

from scheduler.cron import parse_vertex_cron
from tfx_canary import cli

CONFIGS = Path(__file__).resolve().parents[2] / "serving_configs"


def parse_cli(argv: list[str]):
    assert Path(argv[0]).name == "tfx-canary"
    return cli.build_parser().parse_args(argv[1:])


def test_systemd_unit_runs_the_daemon_and_stops_it_with_sigterm() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(CONFIGS / "systemd" / "tfx-canary-scheduler.service")
    service = unit["Service"]
    args = parse_cli(shlex.split(service["ExecStart"]))
    assert args.command == "schedule" and args.local and not args.once
    assert args.poll_seconds > 0
    after_push = shlex.split(args.after_push)
    assert "{version}" in args.after_push
    push_args = parse_cli(after_push)
    assert push_args.command == "promote" and push_args.phase2
    assert service["KillSignal"] == "SIGTERM"
    assert float(service["TimeoutStopSec"]) > 60, (
        "longer than the daemon's grace period for a running pipeline"
    )
    assert service["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_crontab_line_checks_once_on_a_valid_schedule() -> None:
    (line,) = [
        line
        for line in (CONFIGS / "cron" / "tfx-canary.crontab").read_text().splitlines()
        if line and line[0] != "#"
    ]
    fields = line.split(None, 5)
    parse_vertex_cron(" ".join(fields[:5]))
    command = shlex.split(fields[5])
    start = next(i for i, word in enumerate(command) if word.endswith("bin/tfx-canary"))
    end = command.index(">>")
    args = parse_cli(command[start:end])
    assert args.command == "schedule" and args.local and args.once
