"""``tfx-canary data ...`` (prepare spans) and ``tfx-canary run`` (run the pipeline once)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
from pathlib import Path

from tfx_canary.errors import EXIT_FAILED, EXIT_OK, EXIT_REFUSED
from tfx_canary.options import add_home, add_model_choice, home_of


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="prepare data spans: the taxi example's, or add your own CSV")
    data_commands = data.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    init = data_commands.add_parser("init", help="write the quarterly spans (idempotent)")
    add_home(init)
    init.add_argument("--spans", type=int, help="write only the first N spans (default: all 16)")
    _rows_argument(init)
    init.set_defaults(func=_data_init)
    add = data_commands.add_parser(
        "add-span", help="write the next span (new data arriving): the next taxi quarter, or --csv FILE"
    )
    add_home(add)
    _rows_argument(add)
    add.add_argument(
        "--csv", type=Path, help="your new data: copied as the next span of --config's data root"
    )
    add.add_argument("--config", type=Path, help="the model's config file (with --csv)")
    add.set_defaults(func=_data_add_span)

    run = subparsers.add_parser(
        "run",
        help="run the training pipeline once on the spans present",
        epilog="exit codes: 0 pushed (or nothing new to push), 3 refused by a gate (data anomalies, not "
        "blessed, the same data as a released version), 1 failed, 2 usage error",
    )
    add_home(run)
    run.add_argument("--config", type=Path, help="the model's config file (see `tfx-canary init`)")
    add_model_choice(run)
    run.add_argument("--name", help="pipeline name (default: the model name with hyphens)")
    run.add_argument("--train-steps", type=int, help="training steps")
    run.add_argument("--span-window", type=int, help="train on the latest K validated spans")
    run.add_argument(
        "--server", help="model server REST address: label the new version once it loads (stable/canary)"
    )
    run.add_argument(
        "--json", action="store_true", help="print the outcome as JSON (the progress lines go to stderr)"
    )
    run.set_defaults(func=_run)


def _rows_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows-per-span", type=int, help="keep at most this many rows per span (demos)")


def _data_init(args: argparse.Namespace) -> int:
    from pipeline import data

    root = Path(home_of(args).data_root)
    written = data.init_spans(root, spans=args.spans, rows_per_span=args.rows_per_span)
    present = data.present_spans(root)
    print(f"{len(written)} span(s) written, {len(present)} present under {root}: {present}")
    return 0


def _data_add_span(args: argparse.Namespace) -> int:
    from pipeline import data

    if args.csv or args.config:
        return _add_csv_span(args)
    root = Path(home_of(args).data_root)
    span = data.add_span(root, rows_per_span=args.rows_per_span)
    print(f"added span {span} under {root}" if span else f"no more spans to add under {root}")
    return 0


def _add_csv_span(args: argparse.Namespace) -> int:
    """The user's CSV as the next span, after checking it against the config's schema."""
    from pipeline import data, preflight
    from pipeline.config import load_config
    from tfx_canary.errors import UsageError

    if not (args.csv and args.config):
        raise UsageError(
            "add-span: --csv FILE and --config go together (the CSV becomes a span of its data_root)"
        )
    config = load_config(args.config, home=args.home)
    columns = [feature.name for feature in preflight.read_schema(config).feature]
    header = preflight.check_header(config, args.csv, columns)
    root = Path(config.paths.data_root)
    span = max(data.present_spans(root), default=0) + 1
    with open(args.csv, newline="") as handle:
        rows = list(csv.reader(handle))[1:]
    data.write_span(root, span, header, rows)
    print(f"added span {span} ({len(rows)} rows) under {root}")
    return 0


def build_config(args: argparse.Namespace):
    """The config from ``--config`` plus the flags given (flags win)."""
    from pipeline.config import load_config

    overrides = {
        "home": args.home,
        "name": args.name,
        "train_steps": args.train_steps,
        "span_window": args.span_window,
        "server_address": args.server,
    }
    return load_config(args.config, args.model, **overrides)


def _run(args: argparse.Namespace) -> int:
    from tfx_canary.startup import heavy_imports

    with heavy_imports():
        from pipeline.outcome import summary
        from pipeline.pipeline import create_pipeline  # noqa: F401  TFX and TFMA, loaded with the rest
        from pipeline.runner import run_pipeline

    config = build_config(args)
    if args.json:  # stdout holds only the answer; the progress lines go to stderr
        result = run_pipeline(config, progress=lambda line: print(line, file=sys.stderr))
        print(json.dumps(dataclasses.asdict(result), indent=1))
    else:
        result = run_pipeline(config, progress=print)
        print(summary(result))
    if not result.ok:
        return EXIT_FAILED
    return EXIT_REFUSED if result.refused else EXIT_OK
