"""A version directory that fails to load, for the model manager tests."""

from __future__ import annotations

import os
from pathlib import Path


def write_broken_model(base_path: str | os.PathLike, version: int) -> Path:
    """A version directory whose saved_model.pb is garbage: loading it fails, as a half copy would."""
    final = Path(base_path) / str(int(version))
    final.mkdir(parents=True)
    (final / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    return final
