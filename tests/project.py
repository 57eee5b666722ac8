"""Facts about this checkout that several tests read: its root and the packages setup.py installs."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def project_packages() -> list[str]:
    """The top-level packages setup.py installs (its ``PACKAGES``)."""
    setup = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(setup):
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == ["PACKAGES"]:
            return [element.value for element in node.value.elts]
    raise AssertionError("setup.py lists no packages")
