"""The connection protocol: a cap on requests per connection, room made past the connection cap.

The protocol is driven through transports that record what they are given,
so no socket is opened.
"""

from __future__ import annotations

import asyncio
import re
import resource
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from aimass.server.connection import SPARE_FILES, connection_options, files_fit
from aimass.settings import ServerSettings

_GET = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


class _Transport:
    """The part of an asyncio transport the protocol uses, recording writes and the close."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(name, default)

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Server:
    """One server's protocol class and state, opening connections to it."""

    def __init__(self, settings: ServerSettings) -> None:
        options = connection_options(settings)
        self.protocol = options["http"]
        self.config = uvicorn.Config(_ok, log_level="warning", lifespan="off", **options)
        self.state = ServerState()
        self.open: list[HttpToolsProtocol] = []

    def connect(self) -> tuple[HttpToolsProtocol, _Transport]:
        protocol = self.protocol(config=self.config, server_state=self.state, app_state={})
        transport = _Transport()
        protocol.connection_made(transport)
        self.open.append(protocol)
        return protocol, transport

    async def get(self, protocol: HttpToolsProtocol, transport: _Transport) -> bytes:
        """One GET on the connection; the response's head, lowercased."""
        transport.written.clear()
        protocol.data_received(_GET)
        await asyncio.gather(*self.state.tasks)
        head = bytes(transport.written).split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200 "), head
        return head

    def close(self) -> None:
        for protocol in self.open:
            protocol.connection_lost(None)


async def _connection(settings: ServerSettings, requests: int) -> tuple[list[bool], bool]:
    """Send ``requests`` GETs one after another on one connection (fewer if it closes).

    Returns whether each response said ``Connection: close``, and whether the
    connection was closed at the end.
    """
    server = _Server(settings)
    protocol, transport = server.connect()
    closes = []
    try:
        for _ in range(requests):
            if transport.closed:
                break
            head = await server.get(protocol, transport)
            closes.append(re.search(rb"\r\nconnection: close(\r\n|$)", head) is not None)
        return closes, transport.closed
    finally:
        server.close()


def test_with_workers_a_connection_closes_after_keepalive_requests() -> None:
    settings = ServerSettings(workers=2, keepalive_requests=3)
    closes, closed = asyncio.run(_connection(settings, 5))
    assert closes == [False, False, True]
    assert closed
    # Each connection is counted on its own.
    assert asyncio.run(_connection(settings, 2)) == ([False, False], False)


def test_a_limit_of_one_closes_every_connection_after_its_response() -> None:
    settings = ServerSettings(workers=2, keepalive_requests=1)
    assert asyncio.run(_connection(settings, 2)) == ([True], True)


def test_a_single_worker_keeps_connections_open() -> None:
    settings = ServerSettings(workers=1, keepalive_requests=1)
    assert asyncio.run(_connection(settings, 4)) == ([False] * 4, False)


async def _make_room() -> None:
    server = _Server(ServerSettings(max_connections=2))
    try:
        first, first_transport = server.connect()
        _, second_transport = server.connect()
        # The first waits for a request again only from its answer on: later than the second.
        await server.get(first, first_transport)
        server.connect()
        assert second_transport.closed
        assert second_transport.written.startswith(b"HTTP/1.1 503 ")
        assert b"the server is at its limit of 2 connections" in second_transport.written
        assert not first_transport.closed
        first_transport.written.clear()
        server.connect()
        # Idle between requests, it was owed nothing, and is told nothing.
        assert first_transport.closed
        assert first_transport.written == b""
        assert len(server.state.connections) == 2
    finally:
        server.close()


def test_past_the_cap_the_connection_waiting_longest_for_a_request_makes_room() -> None:
    asyncio.run(_make_room())


def test_the_files_a_connection_cap_needs_are_asked_for_up_to_the_hard_limit() -> None:
    unlimited = resource.RLIM_INFINITY
    spare = SPARE_FILES
    assert files_fit(1024, 1024, 524_288) == (1024 + spare, 1024)
    assert files_fit(1024, 1024, unlimited) == (1024 + spare, 1024)
    assert files_fit(1024, 20_000, 20_000) == (None, 1024)
    assert files_fit(1024, unlimited, unlimited) == (None, 1024)
    # Capped by the hard limit: as many connections as fit beside the spare files.
    assert files_fit(1024, 1024, 1024) == (None, 1024 - spare)
    assert files_fit(1024, 512, 1024) == (1024, 1024 - spare)
    assert files_fit(16, 64, 64) == (None, 1)


@pytest.fixture
def low_soft_limit() -> Iterator[tuple[int, int]]:
    """This process's soft limit of open files at 256 (restored after); the limits then."""
    before = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, before[1]))
    try:
        yield resource.getrlimit(resource.RLIMIT_NOFILE)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, before)


def test_the_options_raise_the_soft_limit_to_fit_the_connections(
    low_soft_limit: tuple[int, int],
) -> None:
    hard = low_soft_limit[1]
    if hard != resource.RLIM_INFINITY and hard < 200 + SPARE_FILES:
        pytest.skip(f"the hard limit of open files ({hard}) is below what the test asks")
    options = connection_options(ServerSettings(max_connections=200))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == 200 + SPARE_FILES
    assert options["limit_concurrency"] == 201


def test_the_options_lower_a_cap_the_hard_limit_cannot_hold(
    low_soft_limit: tuple[int, int], caplog: pytest.LogCaptureFixture
) -> None:
    hard = low_soft_limit[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no hard limit of open files to lower the cap to")
    options = connection_options(ServerSettings(max_connections=hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] == hard
    assert options["limit_concurrency"] == hard - SPARE_FILES + 1
    assert f"only {hard - SPARE_FILES} connections fit" in caplog.text
