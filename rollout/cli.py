"""``tfx-canary route`` (run the router) and ``tfx-canary rollout`` (run the rollout controller, shown
live by ``rollout.view``)."""

from __future__ import annotations

import argparse
import json
import sys
import threading

from tfx_canary.options import add_home, add_server, serving_paths
from tfx_canary.signals import stop_on_signals

DEFAULT_PLAN = "shadow=60s,5%=60s,25%=60s,50%=60s,100%=60s"


def route(args: argparse.Namespace) -> int:
    from release.serving_dir import METRICS_PATH
    from rollout.router import Router

    _, serving_root, _ = serving_paths(args)
    router = Router(
        args.server,
        serving_root,
        host=args.host,
        port=args.port,
        grpc_upstream=args.grpc_server,
        grpc_port=args.grpc_port,
    ).start()
    grpc = f"; gRPC on {args.host}:{router.grpc_port} -> {args.grpc_server}" if router.grpc_port else ""
    print(
        f"router on http://{args.host}:{router.port} -> {args.server}{grpc}; metrics at {METRICS_PATH}",
        flush=True,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    stop.wait()
    router.stop()
    return 0


def rollout(args: argparse.Namespace) -> int:
    import getpass

    from release import audit
    from release.metadata import open_store
    from release.operations import Target
    from release.server_client import ServerClient
    from rollout.controller import OUTCOME_EXIT_CODES, RolloutController, parse_plan
    from rollout.view import run_with_view
    from tfx_canary.live import LiveOutput

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
    controller = RolloutController(
        target, metrics_source(args), plan, _criteria(args), retain_seconds=args.retain
    )
    # the live view on stdout (stderr with --json, which keeps stdout for the answer)
    output = LiveOutput(sys.stderr if args.json else sys.stdout)
    outcome = run_with_view(controller, home.releases_dir, output)
    if args.json:
        state = target.read().state
        answer = {"model": args.model, "outcome": outcome.verdict, "stable": state.stable}
        print(json.dumps({**answer, "labels": state.label_map, "steps": outcome.steps}, indent=1))
        return OUTCOME_EXIT_CODES[outcome.verdict]
    for step in outcome.steps:
        reasons = "; ".join(step["reasons"]) or "within criteria"
        print(f"step {step['step']['name']:<8} {step['verdict']:<12} {reasons}")
    print(f"{args.model}: {outcome.verdict}")
    return OUTCOME_EXIT_CODES[outcome.verdict]


def controller(args: argparse.Namespace) -> int:
    """The release loop next to the model server, until SIGTERM (``rollout.service``)."""
    import getpass
    import socket

    from release import audit
    from release.metadata import open_store
    from release.operations import Target
    from release.server_client import ServerClient
    from rollout.controller import parse_plan
    from rollout.service import ControllerService, ControllerSettings

    home, serving_root, metadata = serving_paths(args)
    settings = ControllerSettings(
        plan=parse_plan(args.plan),
        criteria=_criteria(args),
        models=tuple(args.model or ()),
        poll_s=args.poll_seconds,
        hold_retry_s=args.hold_retry_seconds,
        retain_seconds=args.retain,
    )
    holder = args.actor or f"controller:{getpass.getuser()}@{socket.gethostname()}"
    store = open_store(metadata)

    def make_target(model: str) -> Target:
        return Target(
            serving_root,
            model,
            server=ServerClient(args.server),
            audit=audit.Audit(store, home.releases_dir, holder),
        )

    service = ControllerService(make_target, metrics_source(args), settings, holder)
    stop_on_signals(service.stop_event)
    print(f"controller {holder} watching {serving_root} (server {args.server})", flush=True)
    return service.serve_forever(serving_root)


def _criteria(args: argparse.Namespace):
    from rollout.analysis import Criteria

    return Criteria(
        min_requests=args.min_requests,
        max_error_rate_increase=args.max_error_rate_increase,
        max_p99_ratio=args.max_p99_ratio,
        p99_slack_s=args.p99_slack_ms / 1000,
        max_divergence=args.max_divergence,
    )


def _add_criteria(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--plan", default=DEFAULT_PLAN, help="steps as data (default %(default)s)")
    parser.add_argument(
        "--min-requests", type=int, default=100, help="per side and window; fewer is inconclusive"
    )
    parser.add_argument("--max-error-rate-increase", type=float, default=0.01)
    parser.add_argument("--max-p99-ratio", type=float, default=1.5, help="canary p99 / stable p99 allowed")
    parser.add_argument(
        "--p99-slack-ms", type=float, default=5.0, help="or this many ms slower, whichever is more lenient"
    )
    parser.add_argument("--max-divergence", type=float, default=0.2)
    parser.add_argument(
        "--retain", type=float, default=3600.0, help="rollback window after promotion, seconds"
    )
    parser.add_argument("--actor", default="")


def metrics_source(args: argparse.Namespace):
    """Prometheus (every router replica) when ``--prometheus`` is given, else one router's endpoint."""
    from rollout.metrics_source import PrometheusQuery, RouterScrape

    if args.prometheus:
        return PrometheusQuery(args.prometheus, lag_s=args.prometheus_lag)
    return RouterScrape(args.router_metrics)


def _add_metrics_source(parser: argparse.ArgumentParser) -> None:
    from release.serving_dir import METRICS_PATH

    parser.add_argument(
        "--router-metrics",
        default=f"http://127.0.0.1:8080{METRICS_PATH}",
        help="one router's Prometheus endpoint (local use; default %(default)s)",
    )
    parser.add_argument(
        "--prometheus", help="a Prometheus HTTP API scraping every router replica, e.g. http://127.0.0.1:9090"
    )
    parser.add_argument(
        "--prometheus-lag",
        type=float,
        default=2.0,
        help="seconds until a window's last samples are in Prometheus, about a scrape interval (default 2)",
    )


def _add_roots(parser: argparse.ArgumentParser) -> None:
    add_home(parser)
    parser.add_argument("--serving-root", help="directory with models.config (default <home>/serving)")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "route", help="run the canary router (REST and gRPC) in front of a model server"
    )
    add_server(p, required=True)
    p.add_argument(
        "--grpc-server", help="the model server's gRPC address, e.g. 127.0.0.1:8500 (enables gRPC)"
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="REST port (0: the OS chooses)")
    p.add_argument(
        "--grpc-port", type=int, default=8081, help="gRPC port with --grpc-server (0: the OS chooses)"
    )
    _add_roots(p)
    p.set_defaults(func=route, metadata=None)

    p = subparsers.add_parser(
        "rollout",
        help="move a canary through the steps; promote or roll back by itself",
        epilog="exit codes: 0 promoted, 3 rolled back, 4 held (inconclusive), 1 failed, 2 usage error",
    )
    p.add_argument("--model", required=True)
    add_server(p, required=True)
    _add_metrics_source(p)
    _add_criteria(p)
    _add_roots(p)
    p.add_argument("--metadata", help="MLMD SQLite file (default <home>/metadata.sqlite)")
    p.add_argument(
        "--json", action="store_true", help="print the outcome as JSON (the live view goes to stderr)"
    )
    p.set_defaults(func=rollout)

    p = subparsers.add_parser(
        "controller",
        help="run next to the model server: finish phase 2, roll canaries out, promote, roll back, retire",
    )
    add_server(p, required=True)
    p.add_argument("--model", action="append", help="act on this model only (repeatable; default: all)")
    _add_metrics_source(p)
    _add_criteria(p)
    p.add_argument("--poll-seconds", type=float, default=5.0, help="how often to look at the serving root")
    p.add_argument(
        "--hold-retry-seconds",
        type=float,
        default=60.0,
        help="how soon to try a held step again (default 60)",
    )
    _add_roots(p)
    p.add_argument("--metadata", help="MLMD SQLite file (default <home>/metadata.sqlite)")
    p.set_defaults(func=controller)
