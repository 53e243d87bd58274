"""The connection protocol's request cap: every Nth request on a connection is its last.

The protocol is driven through a transport that records what it is given,
so no socket is opened.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.server import ServerState

from aimass.server.connection import connection_options
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


async def _connection(settings: ServerSettings, requests: int) -> tuple[list[bool], bool]:
    """Send ``requests`` GETs one after another on one connection.

    Returns whether each response said ``Connection: close``, and whether the
    connection was closed at the end.
    """
    options = connection_options(settings)
    config = uvicorn.Config(_ok, log_level="warning", lifespan="off", **options)
    state = ServerState()
    protocol = options["http"](config=config, server_state=state, app_state={})
    transport = _Transport()
    protocol.connection_made(transport)
    closes = []
    try:
        for _ in range(requests):
            if transport.closed:
                break
            transport.written.clear()
            protocol.data_received(_GET)
            await asyncio.gather(*state.tasks)
            head = bytes(transport.written).split(b"\r\n\r\n", 1)[0].lower()
            assert head.startswith(b"http/1.1 200 "), head
            closes.append(re.search(rb"\r\nconnection: close(\r\n|$)", head) is not None)
        return closes, transport.closed
    finally:
        protocol.connection_lost(None)


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
