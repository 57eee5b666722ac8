"""The example models this project ships, each a pipeline config file in ``models/configs/``.

A shipped example goes through exactly the same code path as a team's own config: ``tfx-canary run
--model taxi_tips`` is a shortcut for ``--config <this package>/configs/taxi_tips.yaml``. It imports
nothing, so ``tfx-canary --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

EXAMPLES = ("taxi_tips", "taxi_fare")
DEFAULT_MODEL = "taxi_tips"  # what `tfx-canary run` and the demo train when given no config
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


def example_config_file(name: str) -> Path:
    """The config file of the shipped example ``name``; a clear error naming the examples otherwise."""
    if name not in EXAMPLES:
        raise KeyError(f"unknown example model {name!r}; choose one of {sorted(EXAMPLES)}")
    return CONFIGS_DIR / f"{name}.yaml"
