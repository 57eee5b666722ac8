"""The wrk driver of the serving benchmark stops at its fixed request count and reports what it measured."""

from __future__ import annotations

import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from benchmarks import serving_bench


class _Counting(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    bodies: ClassVar[list[bytes]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        with self.lock:
            self.bodies.append(body)
        status = 500 if body == b'{"fail": true}' else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server():
    _Counting.bodies = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1]
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_sends_a_fixed_count_and_cycles_the_bodies(server, tmp_path):
    bodies = ['{"row": 0}', '{"row": 1}', '{"row": 2}']
    bodies_file = tmp_path / "bodies.jsonl"
    bodies_file.write_text("\n".join(bodies) + "\n")
    result = serving_bench.wrk_run(serving_bench.HttpTarget(server, "/p", bodies), bodies_file, 4, 60)
    assert result["errors"] == 0
    assert result["qps"] > 0 and 0 < result["p50"] <= result["p99"]
    sent = _Counting.bodies
    assert 60 <= len(sent) <= 60 + 3  # the count, plus at most one in flight on each other connection
    assert {body.decode() for body in sent} == set(bodies)


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk_counts_error_answers(server, tmp_path):
    bodies_file = tmp_path / "bodies.jsonl"
    bodies_file.write_text('{"fail": true}\n{"ok": 1}\n')
    result = serving_bench.wrk_run(serving_bench.HttpTarget(server, "/p", []), bodies_file, 1, 10)
    assert result["errors"] == 5
