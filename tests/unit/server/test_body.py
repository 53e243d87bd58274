"""Request bodies read straight from ASGI messages: whole, bounded, decompressed."""

from __future__ import annotations

import gzip
from typing import Any

import pytest
from starlette.requests import ClientDisconnect

from aimass.errors import AimassError, ErrorCode
from aimass.http.body import receive_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _messages(*chunks: bytes, disconnect: bool = False) -> Any:
    """An ASGI ``receive`` that hands out ``chunks`` as one body, then maybe a disconnect."""
    queue: list[dict[str, Any]] = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]
    if disconnect:
        queue[-1]["more_body"] = True
        queue.append({"type": "http.disconnect"})
    taken: list[int] = []

    async def receive() -> dict[str, Any]:
        taken.append(1)
        return queue.pop(0)

    receive.taken = taken  # type: ignore[attr-defined]
    return receive


async def test_a_body_in_many_messages_is_joined() -> None:
    receive = _messages(b'{"a":', b" 1", b"}")
    assert await receive_body(receive, [], 100) == b'{"a": 1}'


async def test_a_body_over_the_limit_is_413_after_draining_what_the_client_sends() -> None:
    receive = _messages(b"x" * 6, b"x" * 6, b"x" * 6)
    with pytest.raises(AimassError) as caught:
        await receive_body(receive, [], 10)
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
    assert len(receive.taken) == 3  # read to the end, so the client can read its 413


async def test_a_declared_length_over_the_limit_is_413() -> None:
    receive = _messages(b"x" * 5)
    with pytest.raises(AimassError) as caught:
        await receive_body(receive, [(b"content-length", b"50")], 10)
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE


async def test_a_client_that_leaves_mid_body_is_a_disconnect() -> None:
    with pytest.raises(ClientDisconnect):
        await receive_body(_messages(b"x", disconnect=True), [], 100)


async def test_gzip_bodies_are_inflated_and_bounded_after_inflation() -> None:
    packed = gzip.compress(b"y" * 50)
    headers = [(b"content-encoding", b"gzip")]
    assert await receive_body(_messages(packed), headers, 100) == b"y" * 50
    with pytest.raises(AimassError) as caught:
        await receive_body(_messages(packed), headers, 20)
    assert caught.value.code is ErrorCode.PAYLOAD_TOO_LARGE
