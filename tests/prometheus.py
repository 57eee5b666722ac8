"""A real Prometheus for tests (Debian's ``prometheus`` package, installed by ``make install``)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import yaml

from release.serving_dir import METRICS_PATH
from tfx_canary.process import stop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Prometheus:
    """Scrapes ``jobs`` ({job: ["host:port", ...]}) every second on loopback; ``url`` is its HTTP API."""

    def __init__(self, workdir: Path, jobs: dict[str, list[str]], rule_files: list[Path] = ()) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus is not installed: run `make install` (tools/system_packages.py)")
        workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(p) for p in rule_files],
            "scrape_configs": [
                {"job_name": job, "metrics_path": METRICS_PATH, "static_configs": [{"targets": targets}]}
                for job, targets in jobs.items()
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log = open(workdir / "prometheus.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    f"prometheus did not start: {(workdir / 'prometheus.log').read_text()[-800:]}"
                )
            time.sleep(0.2)

    def query(self, promql: str) -> list[dict]:
        url = f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())["data"]["result"]

    def wait_for_targets(self, count: int, timeout_s: float = 30) -> None:
        """Until ``count`` targets are up (each scraped at least once)."""
        deadline = time.monotonic() + timeout_s
        while sum(float(r["value"][1]) for r in self.query("up")) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"prometheus sees {self.query('up')}, wanted {count} targets up")
            time.sleep(0.5)

    def stop(self) -> None:
        stop(self.process, timeout_s=20)
        self.log.close()
