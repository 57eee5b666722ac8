"""The ``tfx-canary`` command line.

Each subcommand group lives in the package that owns it and exposes ``register(subparsers)``.
Registration must stay cheap: TensorFlow/TFX are imported inside the command functions, so
``tfx-canary --help`` answers in well under a second.

Every command follows one convention (``tfx_canary.errors``): a failure is raised, printed here as one
``error: ...`` line on stderr and mapped to the exit code of its class; library output goes to the
command's log file unless ``-v`` is given (``tfx_canary.logs``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Sequence

from tfx_canary import __version__, logs
from tfx_canary.errors import EXIT_CODES_HELP, EXIT_FAILED, CanaryError
from tfx_canary.home import Home
from tfx_canary.startup import use_keras_2

log = logging.getLogger("tfx_canary")

# Modules that add subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "scaffold.cli",
    "pipeline.cli",
    "kubeflow.cli",
    "release.cli",
    "serving.cli",
    "rollout.cli",
    "observe.cli",
    "tfx_canary.demo",
)
STACK = (
    "tfx",
    "tensorflow",
    "apache-beam",
    "tensorflow-model-analysis",
    "tensorflow-transform",
    "tensorflow-data-validation",
    "ml-metadata",
    "kfp",
    "tensorflow-serving-api",
    "protobuf",
)


def _version(args: argparse.Namespace) -> int:
    """Print this package's version and, with --all, the pinned stack it runs on."""
    print(f"tfx-canary {__version__}")
    if args.all:
        from importlib import metadata

        for name in STACK:
            try:
                print(f"  {name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                print(f"  {name} (not installed)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfx-canary",
        description="Train with TFX, push blessed models to TensorFlow Serving, release them by canary.",
        epilog=EXIT_CODES_HELP + ". Errors go to stderr; library output to <home>/logs/<command>.log.",
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every log line, TensorFlow's and the libraries' too",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = subparsers.add_parser("version", help="print the version (--all: the TFX stack too)")
    version.add_argument("--all", action="store_true", help="also list the pinned TFX stack")
    version.set_defaults(func=_version, quiet=False)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_keras_2()  # before any command imports TensorFlow
    if logs.configured():  # a command running another in-process (the demo printing `status`)
        return _run(args, None)
    quiet = getattr(args, "quiet", True) and not args.verbose
    command_log = (
        logs.CommandLog(Home.resolve(getattr(args, "home", None)).root, args.command) if quiet else None
    )
    try:
        with logs.fd2_to(command_log.path) if command_log else contextlib.nullcontext():
            logs.configure(args.verbose, command_log.path if command_log else None)
            try:
                return _run(args, command_log)
            finally:
                logs.unconfigure()
    finally:
        if command_log:
            command_log.finish()


def _run(args: argparse.Namespace, command_log: logs.CommandLog | None) -> int:
    """Run the command; a failure becomes one ``error:`` line on stderr and its exit code."""
    # "traceback" is not a project logger: tracebacks reach the log file (with -v, the terminal) only.
    tracebacks = logging.getLogger("traceback")
    try:
        return int(args.func(args) or 0)
    except CanaryError as error:
        tracebacks.info("%s failed", args.command, exc_info=True)
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # a bug or an unexpected library failure: one line here, details in the log
        tracebacks.error("%s failed", args.command, exc_info=True)
        where = f"; the traceback is in {command_log.destination}" if command_log else ""
        print(f"error: {type(error).__name__}: {error}{where}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
