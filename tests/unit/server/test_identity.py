"""The worker layer: every response names its worker; every Nth on a connection closes it."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from aimass.server.identity import WORKER_HEADER, WorkerHeader


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(layer: WorkerHeader, client: tuple[str, int]) -> dict[bytes, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/", "client": client}
    asyncio.run(layer(scope, receive, send))
    return dict(sent[0]["headers"])


def test_every_nth_response_on_a_connection_asks_the_client_to_reconnect() -> None:
    layer = WorkerHeader(_ok, worker=42, keepalive_requests=3)
    one, other = ("127.0.0.1", 5000), ("127.0.0.1", 5001)
    closes = [_headers(layer, one).get(b"connection") for _ in range(7)]
    assert closes == [None, None, b"close", None, None, b"close", None]
    # Connections are counted apart.
    assert _headers(layer, other).get(b"connection") is None
    assert _headers(layer, other)[WORKER_HEADER.encode()] == b"42"


def test_a_connection_limit_of_one_closes_every_connection_after_its_response() -> None:
    layer = WorkerHeader(_ok, worker=7, keepalive_requests=1)
    assert _headers(layer, ("::1", 1))[b"connection"] == b"close"
