"""Command-line options that several commands share, declared once with the same names and help."""

from __future__ import annotations

import argparse

from tfx_canary.home import HOME_HELP, Home, absolute


def add_home(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--home", help=HOME_HELP)


def home_of(args: argparse.Namespace) -> Home:
    """The home the command works in (``--home``, ``$TFX_CANARY_HOME`` or ``./.home``)."""
    return Home.resolve(getattr(args, "home", None))


def add_model_choice(parser: argparse.ArgumentParser, **kwargs) -> None:
    """``--model`` for commands that train: a shipped example model (``models.catalog``)."""
    from models.catalog import EXAMPLES

    parser.add_argument(
        "--model", choices=sorted(EXAMPLES), help="train a shipped example (its config file)", **kwargs
    )


def add_serving_options(parser: argparse.ArgumentParser, model_required: bool = True) -> None:
    """``--home --serving-root --metadata --model --server`` for commands that act on a served model."""
    add_home(parser)
    parser.add_argument("--serving-root", help="directory with models.config (default <home>/serving)")
    parser.add_argument("--metadata", help="MLMD SQLite file (default <home>/metadata.sqlite)")
    parser.add_argument("--model", required=model_required, help="served model name, e.g. taxi_tips")
    add_server(parser, required=False)


def add_server(parser: argparse.ArgumentParser, required: bool) -> None:
    parser.add_argument(
        "--server",
        required=required,
        default=None if required else "",
        help="model server REST address, e.g. 127.0.0.1:8501",
    )


def serving_paths(args: argparse.Namespace) -> tuple[Home, str, str]:
    """(home, serving root, metadata file) with ``--serving-root`` / ``--metadata`` applied."""
    home = home_of(args)
    serving_root = absolute(args.serving_root) if args.serving_root else home.serving_root
    return home, serving_root, args.metadata or home.metadata_path
