"""A config file for tests: a shipped example's settings with some changed (what a team writes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.config import load_config


def write_config(path: Path, model: str = "taxi_tips", **changes: Any) -> Path:
    """``path``: the shipped ``model`` config with ``changes`` applied; no home (the runner passes it)."""
    values = yaml.safe_load(load_config(model=model, **changes).to_yaml())
    del values["home"]
    path.write_text(yaml.safe_dump(values, sort_keys=False))
    return path
