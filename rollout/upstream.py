"""A pooled keep-alive HTTP/1.1 client to the model server, on asyncio protocols and httptools.

The router makes one upstream call per client request, so this call's own cost is most of what routing
adds at low concurrency. aiohttp's client builds a request object, timers and trace hooks per call;
this one writes the request bytes to an idle pooled connection and parses the answer with httptools
(the C parser uvicorn uses): measured with ``benchmarks/router_bench.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field

import httptools


class UpstreamError(ConnectionError):
    """The model server closed the connection or did not answer in time."""


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future | None = None
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self.reusable = True
        self.closed = False

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as error:
            self._fail(UpstreamError(f"unreadable answer from the model server: {error}"))

    def connection_lost(self, exc) -> None:
        self.closed = True
        self._fail(UpstreamError(f"the model server closed the connection{f': {exc}' if exc else ''}"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode("latin-1").title()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.reusable = self.parser.should_keep_alive()
        answer = Answer(self.parser.get_status_code(), b"".join(self._body), self._headers)
        self._headers, self._body = {}, []
        if self._answer is not None and not self._answer.done():
            self._answer.set_result(answer)

    def _fail(self, error: Exception) -> None:
        self.reusable = False
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    async def send(self, request: bytes, timeout: float) -> Answer:
        self._answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await asyncio.wait_for(self._answer, timeout)
        except TimeoutError:
            self.reusable = False
            raise UpstreamError(f"the model server did not answer within {timeout:.0f} s") from None
        finally:
            self._answer = None


class UpstreamPool:
    def __init__(self, host: str, port: int, timeout_s: float, max_idle: int = 256) -> None:
        self.host, self.port, self.timeout_s, self.max_idle = host, port, timeout_s, max_idle
        self._host_header = f"{host}:{port}".encode()
        self._idle: list[_Connection] = []

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_connection(_Connection, self.host, self.port)
        return connection

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: " + self._host_header]
        lines += [f"{name}: {value}".encode("latin-1") for name, value in headers.items()]
        lines.append(f"Content-Length: {len(body)}".encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def request(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
        """One call on an idle connection (or a new one); a stale idle connection gets one retry."""
        request = self._request(method, path, body, headers)
        for attempt in (0, 1):
            fresh = not self._idle
            connection = self._idle.pop() if self._idle else await self._connect()
            try:
                answer = await connection.send(request, self.timeout_s)
            except UpstreamError:
                with contextlib.suppress(Exception):
                    connection.transport.close()
                if fresh or attempt:  # a new connection that fails is not a stale one
                    raise
                continue
            if connection.reusable and not connection.closed and len(self._idle) < self.max_idle:
                self._idle.append(connection)
            else:
                connection.transport.close()
            return answer
        raise AssertionError("unreachable")

    def close(self) -> None:
        for connection in self._idle:
            connection.transport.close()
        self._idle.clear()
