"""``tfx-canary route`` (run the router) and ``tfx-canary rollout`` (run the rollout controller)."""

from __future__ import annotations

import argparse
import signal
import threading

from tfx_canary.options import add_home, add_server, serving_paths

DEFAULT_PLAN = "shadow=60s,5%=60s,25%=60s,50%=60s,100%=60s"


def route(args: argparse.Namespace) -> int:
    from release.serving_dir import METRICS_PATH
    from rollout.router import Router

    _, serving_root, _ = serving_paths(args)
    router = Router(args.server, serving_root, host=args.host, port=args.port).start()
    print(f"router on http://{args.host}:{router.port} -> {args.server}; metrics at {METRICS_PATH}")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    router.stop()
    return 0


def rollout(args: argparse.Namespace) -> int:
    import getpass

    from release import audit
    from release.metadata import open_store
    from release.operations import Target
    from release.server_client import ServerClient
    from rollout.controller import OUTCOME_EXIT_CODES, Criteria, RolloutController, parse_plan

    home, serving_root, metadata = serving_paths(args)
    plan = parse_plan(args.plan)
    target = Target(
        serving_root,
        args.model,
        server=ServerClient(args.server),
        audit=audit.Audit(
            open_store(metadata), home.releases_dir, args.actor or f"controller:{getpass.getuser()}"
        ),
    )
    criteria = Criteria(
        min_requests=args.min_requests,
        max_error_rate_increase=args.max_error_rate_increase,
        max_p99_ratio=args.max_p99_ratio,
        max_divergence=args.max_divergence,
    )
    outcome = RolloutController(target, args.router_metrics, plan, criteria, retain_seconds=args.retain).run()
    for step in outcome.steps:
        reasons = "; ".join(step["reasons"]) or "within criteria"
        print(f"step {step['step']['name']:<8} {step['verdict']:<12} {reasons}")
    print(f"{args.model}: {outcome.verdict}")
    return OUTCOME_EXIT_CODES[outcome.verdict]


def _add_roots(parser: argparse.ArgumentParser) -> None:
    add_home(parser)
    parser.add_argument("--serving-root", help="directory with models.config (default <home>/serving)")


def register(subparsers) -> None:
    from release.serving_dir import METRICS_PATH

    p = subparsers.add_parser("route", help="run the canary router in front of a model server")
    add_server(p, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    _add_roots(p)
    p.set_defaults(func=route, metadata=None)

    p = subparsers.add_parser(
        "rollout",
        help="move a canary through the steps; promote or roll back by itself",
        epilog="exit codes: 0 promoted, 3 rolled back, 4 held (inconclusive), 1 failed, 2 usage error",
    )
    p.add_argument("--model", required=True)
    add_server(p, required=True)
    p.add_argument(
        "--router-metrics",
        default=f"http://127.0.0.1:8080{METRICS_PATH}",
        help="the router's Prometheus endpoint",
    )
    p.add_argument("--plan", default=DEFAULT_PLAN, help="steps as data (default %(default)s)")
    p.add_argument("--min-requests", type=int, default=100, help="per side and window; fewer is inconclusive")
    p.add_argument("--max-error-rate-increase", type=float, default=0.01)
    p.add_argument("--max-p99-ratio", type=float, default=1.5)
    p.add_argument("--max-divergence", type=float, default=0.2)
    p.add_argument("--retain", type=float, default=3600.0, help="rollback window after promotion, seconds")
    p.add_argument("--actor", default="")
    _add_roots(p)
    p.add_argument("--metadata", help="MLMD SQLite file (default <home>/metadata.sqlite)")
    p.set_defaults(func=rollout)
