"""The worker layer: every response names its worker."""

from __future__ import annotations

import asyncio

from starlette.types import Message, Receive, Scope, Send

from aimass.server.identity import WORKER_HEADER, WorkerHeader


async def _ok(scope: Scope, receive: Receive, send: Send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _headers(layer: WorkerHeader) -> dict[bytes, bytes]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b""}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {"type": "http", "method": "GET", "path": "/"}
    asyncio.run(layer(scope, receive, send))
    return dict(sent[0]["headers"])


def test_every_response_names_its_worker() -> None:
    layer = WorkerHeader(_ok, worker=42)
    assert [_headers(layer)[WORKER_HEADER.encode()] for _ in range(3)] == [b"42"] * 3
    assert b"connection" not in _headers(layer)
