"""Asks a model server (TF Serving or the embedded one) what it has loaded, over its public REST API.

Uses only ``GET /v1/models/{m}`` (version states) and ``GET /v1/models/{m}/labels/{l}/metadata``
(which version a label resolves to), so it works against real ``tensorflow_model_server`` too.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request

from tfx_canary.errors import CanaryError


class ServerUnreachable(CanaryError, ConnectionError):
    """Nothing answers at the server address."""


class VersionLoadFailed(CanaryError, RuntimeError):
    """The server tried to load the version and gave up (state END with an error)."""


class WaitTimedOut(CanaryError, TimeoutError):
    """The server did not reach the expected state in time; the message says what it last reported."""


class ServerClient:
    def __init__(self, address: str, request_timeout_s: float = 5.0):
        self.base = address if address.startswith(("http://", "https://")) else f"http://{address}"
        self.base = self.base.rstrip("/")
        self.request_timeout_s = request_timeout_s

    def _get(self, path: str) -> tuple[int, dict]:
        url = self.base + path
        try:
            with urllib.request.urlopen(url, timeout=self.request_timeout_s) as response:
                return response.status, json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as e:
            try:
                body = json.loads(e.read() or b"{}")
            except ValueError:
                body = {}
            return e.code, body
        except (urllib.error.URLError, OSError) as e:
            raise ServerUnreachable(f"model server at {self.base} is not reachable: {e}") from None

    def reachable(self) -> bool:
        try:
            self._get("/v1/models/_probe")
        except ServerUnreachable:
            return False
        return True

    def version_status(self, model: str) -> dict[int, dict]:
        """version -> {"state": ..., "error_code": ..., "error_message": ...}; empty if none loaded yet."""
        code, body = self._get(f"/v1/models/{urllib.parse.quote(model)}")
        if code == 404:
            return {}
        if code != 200:
            raise CanaryError(f"model server status for {model!r} answered {code}: {body.get('error', body)}")
        result = {}
        for item in body.get("model_version_status", []):
            status = item.get("status", {})
            result[int(item["version"])] = {
                "state": item.get("state", "UNKNOWN"),
                "error_code": status.get("error_code", "OK"),
                "error_message": status.get("error_message", ""),
            }
        return result

    def available(self, model: str) -> set[int]:
        return {v for v, s in self.version_status(model).items() if s["state"] == "AVAILABLE"}

    def label_version(self, model: str, label: str) -> int | None:
        """The version the server resolves ``label`` to, or None if it does not know the label."""
        code, body = self._get(
            f"/v1/models/{urllib.parse.quote(model)}/labels/{urllib.parse.quote(label)}/metadata"
        )
        if code != 200:
            return None
        return int(body["model_spec"]["version"])

    def wait_available(self, model: str, version: int, timeout_s: float, poll_s: float = 0.1) -> None:
        """Block until ``version`` is AVAILABLE; a failed load or the timeout raises with the reason."""
        deadline = time.monotonic() + timeout_s
        last = "not reported yet"
        while True:
            status = self.version_status(model).get(version)
            if status is not None:
                if status["state"] == "AVAILABLE":
                    return
                if status["state"] == "END" and status["error_code"] != "OK":
                    raise VersionLoadFailed(
                        f"model {model!r} version {version} failed to load: "
                        f"{status['error_code']}: {status['error_message']}"
                    )
                last = status["state"]
            if time.monotonic() > deadline:
                raise WaitTimedOut(
                    f"model {model!r} version {version} did not become AVAILABLE within {timeout_s:.0f}s "
                    f"(last state: {last}) at {self.base}"
                )
            time.sleep(poll_s)

    def wait_labels(self, model: str, labels: dict[str, int], timeout_s: float, poll_s: float = 0.1) -> None:
        """Block until the server resolves every label to the expected version (it polls the config)."""
        deadline = time.monotonic() + timeout_s
        while True:
            actual = {label: self.label_version(model, label) for label in labels}
            if actual == labels:
                return
            if time.monotonic() > deadline:
                raise WaitTimedOut(
                    f"model {model!r}: the server still resolves labels as {actual}, expected {labels} after "
                    f"{timeout_s:.0f}s; is it polling the models.config that was written?"
                )
            time.sleep(poll_s)
