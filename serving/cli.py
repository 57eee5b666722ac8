"""``tfx-canary serve``: tensorflow_model_server's command line, served by the embedded model server."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from tfx_canary.signals import stop_on_signals

log = logging.getLogger(__name__)

# How long a thread may hold the GIL while another waits (Python's default is 5 ms). The serve process
# runs the REST event loop and the batch threads; with 20 ms they mostly hand the GIL over at I/O rather
# than on forced timeouts. Measured with 64 wrk clients on the taxi model, batched REST, medians of 5 runs
# of 6000 requests: 1626-1671 QPS at 5 ms, 1911-1916 at 20 ms; no change at concurrency 1. Only this
# process: in-process servers leave the host application's setting alone.
GIL_SWITCH_INTERVAL_SECONDS = 0.02


def register(subparsers) -> None:
    from serving.options import PROFILER_NOTE, add_flags, unknown_argument

    parser = subparsers.add_parser(
        "serve",
        allow_abbrev=False,  # TF Serving matches flag names exactly
        help="serve models like tensorflow_model_server (same flags, configs, REST and gRPC API)",
        description=(
            "Serve SavedModels with TensorFlow Serving's flags, config files, REST and gRPC API. Every "
            "flag of tensorflow_model_server is accepted; those marked 'no effect' warn when given. "
            "Booleans take --flag, --flag=true or --flag=false. SIGTERM drains in-flight requests. "
            + PROFILER_NOTE
        ),
    )
    add_flags(parser, suppress_defaults=True)
    parser.add_argument(
        "--drain_seconds", type=float, default=10.0, help="longest wait for in-flight requests at shutdown"
    )
    parser.set_defaults(func=serve)
    known = parser.parse_known_args

    def strict(args=None, namespace=None):
        """An unknown flag fails with TF Serving's wording (argparse would say "unrecognized")."""
        namespace, extra = known(args, namespace)
        if extra:
            parser.exit(2, f"error: {unknown_argument(extra)}\n")
        return namespace, extra

    parser.parse_known_args = strict


def print_version() -> None:
    """``--version``: main.cc's two lines (the serving API this server implements, and TensorFlow)."""
    from importlib import metadata

    print(
        f"TensorFlow ModelServer: {metadata.version('tensorflow-serving-api')} "
        f"(tfx-canary {metadata.version('tfx-canary')} embedded model server)"
    )
    print(f"TensorFlow Library: {metadata.version('tensorflow')}")  # no TF import: answers at once


def serve(args: argparse.Namespace) -> int:
    from serving.options import options_from_args

    if getattr(args, "version", False):
        print_version()
        return 0
    options = options_from_args(args)  # FlagError: a usage error (exit 2), before TensorFlow is imported
    from tfx_canary.startup import heavy_imports

    with heavy_imports():  # with Keras 2 (tfx_canary.cli): 1.5 CPU-s less than Keras 3 at every start
        from serving.server import ModelServer

    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    server = ModelServer(options)
    server.start()  # StartupError: exit 1, with TF Serving's message
    if server.grpc_port:
        print(f"Running gRPC ModelServer at {options.host}:{server.grpc_port} ...", flush=True)
    if server.rest_port:
        print(f"Exporting HTTP/REST API at:{options.host}:{server.rest_port} ...", flush=True)
    log.info("GIL switch interval: %g ms", sys.getswitchinterval() * 1000)
    stop = threading.Event()

    stop_on_signals(
        stop,
        also=lambda signum: log.info(
            "Received %s: draining in-flight requests, then exiting", signal.Signals(signum).name
        ),
    )
    stop.wait()
    server.stop(grace_seconds=args.drain_seconds)
    from serving.servable import RUNNING

    if RUNNING.count:
        # Model calls still inside TensorFlow after the drain: Python's exit would join their threads and
        # outlast --drain_seconds, until the kubelet's SIGKILL. (TF Serving has no SIGTERM handling at
        # all, tensorflow/serving#1853: its calls end with the process.)
        log.warning(
            "Model server stopped: %d model call(s) still running after the %g s drain are cut off",
            RUNNING.count,
            args.drain_seconds,
        )
        logging.shutdown()
        sys.stdout.flush()
        os._exit(0)
    log.info("Model server stopped cleanly")
    return 0
