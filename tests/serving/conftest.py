"""Shared fixtures for the serving tests: fixture SavedModels, servers on loopback, small HTTP helpers."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

import pytest

from fixtures import contract, models
from serving.options import AUTO_PORT, ServerOptions
from serving.server import ModelServer


@pytest.fixture(scope="session")
def contract_root(tmp_path_factory) -> Path:
    """half_plus v1 (0.5x+2, stable) and v2 (0.5x+3, canary), echo v1, and their models.config."""
    root = tmp_path_factory.mktemp("contract")
    contract.write_contract_fixtures(root)
    return root


@pytest.fixture(scope="session")
def half_plus_versions(tmp_path_factory) -> Path:
    """A read-only source of fixture versions 1 (offset 2) and 2 (offset 3) to copy into test dirs."""
    root = tmp_path_factory.mktemp("versions")
    models.write_fixture_model(root, 1, offset=2.0)
    models.write_fixture_model(root, 2, offset=3.0)
    models.write_fixture_model(root, 3, offset=4.0)
    return root


def server_options(**overrides) -> ServerOptions:
    """Options for a test server: OS-chosen ports on 127.0.0.1, fast polling and retries."""
    values = dict(
        port=AUTO_PORT,
        rest_api_port=AUTO_PORT,
        file_system_poll_wait_seconds=1,
        max_num_load_retries=0,
        load_retry_interval_micros=0,
    )
    values.update(overrides)
    return ServerOptions(**values)


def start_server(**overrides) -> ModelServer:
    return ModelServer(server_options(**overrides)).start()


def http_request(port: int, method: str, path: str, body=None, headers=None, timeout: float = 30.0):
    """One request on a fresh connection: (status, headers, parsed JSON or raw bytes)."""
    if body is not None and not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        raw = response.read()
        content_type = response.getheader("Content-Type", "")
        data = json.loads(raw) if content_type.startswith("application/json") else raw
        return response.status, dict(response.getheaders()), data
    finally:
        connection.close()
