"""Debian packages the tests and benchmarks need, installed by the project itself (stdlib only).

A fresh machine and CI run ``make install`` before anything else, so what a feature needs from the
system (a real Prometheus and promtool for the production-topology and rules tests, Chromium for the
release report's test, wrk and h2load for the benchmarks) is installed here rather than by hand. The
check is a PATH look-up, so an installed machine pays nothing. Without root or apt-get the step says
what to install and goes on; the tests that need a command then fail with that same message.
"""

from __future__ import annotations

import os
import shutil
import subprocess

# command on PATH -> the Debian package that provides it
COMMANDS = {
    "prometheus": "prometheus",
    "promtool": "prometheus",
    "wrk": "wrk",
    "h2load": "nghttp2-client",
    "chromium": "chromium",  # a real headless browser for the release report's test
}


def missing_packages() -> list[str]:
    """Debian packages whose command is not on PATH yet, each once."""
    return sorted({package for command, package in COMMANDS.items() if shutil.which(command) is None})


def install_hint(packages: list[str]) -> str:
    return f"apt-get install -y --no-install-recommends {' '.join(packages)}"


def ensure_installed(say) -> list[str]:
    """Install what is missing with apt-get; return the packages still missing."""
    packages = missing_packages()
    if not packages:
        return []
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        say(f"system packages missing (tests that need them will fail): run `{install_hint(packages)}`")
        return packages
    say(f"installing Debian packages: {' '.join(packages)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    lock = ["-o", "DPkg::Lock::Timeout=600"]
    subprocess.run(["apt-get", *lock, "update", "-qq"], check=True, env=env)
    subprocess.run(
        ["apt-get", *lock, "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env
    )
    return missing_packages()
