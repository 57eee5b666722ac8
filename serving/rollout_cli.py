"""``tfx-canary route`` (run the router) and ``tfx-canary rollout`` (run the rollout controller)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

DEFAULT_PLAN = "shadow=60s,5%=60s,25%=60s,50%=60s,100%=60s"


def _serving_root(args: argparse.Namespace) -> str:
    home = args.home or os.environ.get("TFX_CANARY_HOME") or ".home"
    return os.path.abspath(args.serving_root or os.path.join(home, "serving"))


def route(args: argparse.Namespace) -> int:
    from serving.router import Router

    router = Router(args.server, _serving_root(args), host=args.host, port=args.port).start()
    print(
        f"router on http://{args.host}:{router.port} -> {args.server}; "
        "metrics at /monitoring/prometheus/metrics"
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    router.stop()
    return 0


def rollout(args: argparse.Namespace) -> int:
    import getpass

    from components.release import audit
    from components.release.operations import Target
    from components.release.server_status import ServerClient
    from components.release.state import ReleaseError
    from serving.rollout import Criteria, RolloutController, parse_plan

    home = args.home or os.environ.get("TFX_CANARY_HOME") or ".home"
    store = audit.open_store(args.metadata or os.path.join(home, "metadata.sqlite"))
    target = Target(
        _serving_root(args),
        args.model,
        server=ServerClient(args.server),
        audit=audit.Audit(
            store, os.path.join(home, "releases"), args.actor or f"controller:{getpass.getuser()}"
        ),
    )
    criteria = Criteria(
        min_requests=args.min_requests,
        max_error_rate_increase=args.max_error_rate_increase,
        max_p99_ratio=args.max_p99_ratio,
        max_divergence=args.max_divergence,
    )
    try:
        plan = parse_plan(args.plan)
        outcome = RolloutController(
            target, args.router_metrics, plan, criteria, retain_seconds=args.retain
        ).run()
    except (ValueError, ReleaseError, TimeoutError, ConnectionError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    for step in outcome.steps:
        reasons = "; ".join(step["reasons"]) or "within criteria"
        print(f"step {step['step']['name']:<8} {step['verdict']:<12} {reasons}")
    print(f"{args.model}: {outcome.verdict}")
    return {"promoted": 0, "rolled back": 3, "inconclusive": 2}[outcome.verdict]


def register(subparsers) -> None:
    p = subparsers.add_parser("route", help="run the canary router in front of a model server")
    p.add_argument("--server", required=True, help="model server REST address, e.g. 127.0.0.1:8501")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--home")
    p.add_argument("--serving-root")
    p.set_defaults(func=route)

    p = subparsers.add_parser(
        "rollout", help="move a canary through the steps; promote or roll back by itself"
    )
    p.add_argument("--model", required=True)
    p.add_argument("--server", required=True, help="model server REST address")
    p.add_argument(
        "--router-metrics",
        default="http://127.0.0.1:8080/monitoring/prometheus/metrics",
        help="the router's Prometheus endpoint",
    )
    p.add_argument("--plan", default=DEFAULT_PLAN, help="steps as data (default %(default)s)")
    p.add_argument("--min-requests", type=int, default=100, help="per side and window; fewer is inconclusive")
    p.add_argument("--max-error-rate-increase", type=float, default=0.01)
    p.add_argument("--max-p99-ratio", type=float, default=1.5)
    p.add_argument("--max-divergence", type=float, default=0.2)
    p.add_argument("--retain", type=float, default=3600.0, help="rollback window after promotion, seconds")
    p.add_argument("--actor", default="")
    p.add_argument("--home")
    p.add_argument("--serving-root")
    p.add_argument("--metadata")
    p.set_defaults(func=rollout)
