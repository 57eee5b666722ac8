"""``tfx-canary init DIR --csv FILE --label COLUMN --task TASK``: a new project from a data sample."""

from __future__ import annotations

import argparse
from pathlib import Path

from models.contract import TASKS


def register(subparsers: argparse._SubParsersAction) -> None:
    init = subparsers.add_parser(
        "init",
        help="scaffold a project (config, model code, schema, first span) from a sample of your data",
    )
    init.add_argument("directory", type=Path, help="the new project folder (must not exist, or be empty)")
    init.add_argument("--csv", required=True, type=Path, help="a sample of your data: a CSV with a header")
    init.add_argument("--label", required=True, help="the column the model predicts")
    init.add_argument("--task", required=True, choices=TASKS, help="what kind of prediction the label is")
    init.add_argument("--name", help="model name (default: the folder's name)")
    init.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from scaffold.project import init_project

    config = init_project(args.directory, args.csv, args.label, args.task, name=args.name)
    print(f"wrote {config.parent}: config, model code, schema (curate it) and span 1")
    print(f"next: tfx-canary run --config {config}")
    return 0
