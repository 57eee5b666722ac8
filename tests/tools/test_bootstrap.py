"""The install script's decisions: what is pinned, when wheels get patched, when it may skip."""

from pathlib import Path

import pytest

from tools import bootstrap

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_pin_the_requested_stack() -> None:
    expected = {
        "tfx": "1.21.0",
        "tensorflow": "2.21.0",
        "apache-beam": "2.77.0",
        "tensorflow_model_analysis": "0.52.0",
        "tensorflow-transform": "1.21.0",
        "tensorflow-data-validation": "1.21.0",
        "ml-metadata": "1.21.0",
        "tfx-bsl": "1.21.0",
        "tensorflow-serving-api": "2.19.1",
    }
    for name, version in expected.items():
        assert bootstrap.pinned(name) == version
    assert bootstrap.pinned("kfp").startswith("2.16.")
    assert bootstrap.pinned("protobuf").startswith("6.")
    assert bootstrap.pinned("tensorboard")


def test_every_constraint_is_an_exact_pin() -> None:
    lines = [
        line
        for line in (ROOT / "requirements" / "constraints.txt").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert len(lines) > 100
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]


def test_unpinned_package_is_a_clear_error() -> None:
    with pytest.raises(SystemExit, match="no pin for not-a-package"):
        bootstrap.pinned("not-a-package")


@pytest.mark.parametrize(
    ("mode", "glibc", "expected"),
    [("auto", (2, 36), True), ("auto", (2, 39), False), ("always", (2, 40), True), ("never", (2, 36), False)],
)
def test_compat_wheels_only_where_needed(monkeypatch, mode, glibc, expected) -> None:
    monkeypatch.setenv("TFX_CANARY_COMPAT_WHEELS", mode)
    monkeypatch.setattr(bootstrap, "host_glibc", lambda: glibc)
    assert bootstrap.needs_compat_wheels() is expected


def test_fingerprint_changes_with_inputs() -> None:
    assert bootstrap.fingerprint(True) == bootstrap.fingerprint(True)
    assert bootstrap.fingerprint(True) != bootstrap.fingerprint(False)


def test_this_venv_was_installed_by_bootstrap() -> None:
    """The stamp the fast path relies on matches what the inputs say now."""
    stamp = bootstrap.STAMP
    assert stamp.exists()
    assert stamp.read_text() == bootstrap.fingerprint(bootstrap.needs_compat_wheels())
