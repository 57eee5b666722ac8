"""The ``tfx-canary`` command line.

Each subcommand group lives in the package that owns it and exposes ``register(subparsers)``.
Registration must stay cheap: TensorFlow/TFX are imported inside the command functions, so
``tfx-canary --help`` answers in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from tfx_canary import __version__

PROJECT_PACKAGES = ("tfx_canary", "pipeline", "models", "components", "serving", "kubeflow")
# Modules that add subcommands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "pipeline.cli",
    "kubeflow.cli",
    "components.cli",
    "serving.cli",
    "serving.rollout_cli",
    "tfx_canary.demo",
)


def _version(args: argparse.Namespace) -> int:
    """Print this package's version and, with --all, the pinned stack it runs on."""
    print(f"tfx-canary {__version__}")
    if args.all:
        from importlib import metadata

        for name in (
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
        ):
            try:
                print(f"  {name} {metadata.version(name)}")
            except metadata.PackageNotFoundError:
                print(f"  {name} (not installed)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tfx-canary",
        description="Train with TFX, push blessed models to TensorFlow Serving, release them by canary.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    version = subparsers.add_parser("version", help="print the version (--all: the TFX stack too)")
    version.add_argument("--all", action="store_true", help="also list the pinned TFX stack")
    version.set_defaults(func=_version)
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Our own loggers say what happens in plain words; TFX, Beam and absl only speak up on warnings
    # (or everything with -v).
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for package in PROJECT_PACKAGES:
        logging.getLogger(package).setLevel(logging.DEBUG if args.verbose else logging.INFO)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
