"""``tfx-canary report``: the release report pages of one model (``observe.report``)."""

from __future__ import annotations

import argparse
import json
import os

from tfx_canary.options import add_home, home_of


def report(args: argparse.Namespace) -> int:
    from observe.report import ReportError, write_reports
    from release.metadata import open_store
    from tfx_canary.home import absolute

    home = home_of(args)
    metadata = args.metadata or home.metadata_path
    if not os.path.exists(metadata):  # opening it would create an empty store under a wrong home
        raise ReportError(f"no ML Metadata at {metadata}: nothing was released from this home (--home?)")
    out = absolute(args.out) if args.out else os.path.join(home.root, "reports")
    pages, index = write_reports(open_store(metadata), home.releases_dir, args.model, out, args.release)
    if args.json:
        print(json.dumps({"model": args.model, "pages": pages, "index": index}, indent=1))
        return 0
    for page in pages:
        print(f"release report: file://{page}")
    print(f"all releases of {args.model}: file://{index}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "report", help="write one HTML page per release: timeline, per-step canary-vs-stable plots, verdicts"
    )
    add_home(p)
    p.add_argument("--model", required=True, help="served model name, e.g. taxi_tips")
    p.add_argument("--release", type=int, help="only the release of this version (default: every release)")
    p.add_argument(
        "--out", help="directory for the pages (default <home>/reports); <out>/<model>/ is written"
    )
    p.add_argument("--metadata", help="MLMD SQLite file (default <home>/metadata.sqlite)")
    p.add_argument("--json", action="store_true", help="print the written paths as JSON")
    p.set_defaults(func=report)
