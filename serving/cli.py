"""``tfx-canary serve``: tensorflow_model_server's command line, served by the embedded model server."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    from serving.options import add_flags

    parser = subparsers.add_parser(
        "serve",
        help="serve models like tensorflow_model_server (same flags, configs, REST and gRPC API)",
        description=(
            "Serve SavedModels with TensorFlow Serving's flags, config files, REST and gRPC API. "
            "Booleans take --flag, --flag=true or --flag=false. SIGTERM drains in-flight requests."
        ),
    )
    add_flags(parser)
    parser.add_argument(
        "--drain_seconds", type=float, default=10.0, help="longest wait for in-flight requests at shutdown"
    )
    parser.set_defaults(func=serve)


def serve(args: argparse.Namespace) -> int:
    from serving.options import FlagError, options_from_args
    from serving.server import ModelServer, StartupError

    try:
        options = options_from_args(args)
        server = ModelServer(options)
        server.start()
    except (FlagError, StartupError) as error:
        print(error, file=sys.stderr)
        return 1
    if server.grpc_port:
        print(f"Running gRPC ModelServer at {options.host}:{server.grpc_port} ...", flush=True)
    if server.rest_port:
        print(f"Exporting HTTP/REST API at:{options.host}:{server.rest_port} ...", flush=True)
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("Received %s: draining in-flight requests, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.wait(0.5):
        pass
    server.stop(grace_seconds=args.drain_seconds)
    log.info("Model server stopped cleanly")
    return 0
