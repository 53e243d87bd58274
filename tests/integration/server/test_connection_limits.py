"""``aimass serve`` under hostile connections: huge heads, slow clients, too many connections.

Each test talks to the real server process over raw sockets where HTTP
clients would refuse to misbehave.
"""

from __future__ import annotations

import os
import re
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import orjson
import pytest

from aimass.testing.server import ServeProcess, serve_in_process

TIMEOUT_S = 1.0
MAX_CONNECTIONS = 16


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {
        **os.environ,
        "AIMASS_HOME": str(tmp_path_factory.mktemp("limits-home")),
        "AIMASS_SERVER__HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "AIMASS_SERVER__BODY_TIMEOUT_S": str(TIMEOUT_S),
        "AIMASS_SERVER__MAX_CONNECTIONS": str(MAX_CONNECTIONS),
    }
    with serve_in_process(env=env) as process:
        yield process


def _connect(served: ServeProcess) -> socket.socket:
    address = urlsplit(served.url)
    assert address.hostname is not None and address.port is not None
    sock = socket.create_connection((address.hostname, address.port), timeout=10)
    return sock


def _answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes (or resets) the connection."""
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except ConnectionResetError:
        pass
    return b"".join(chunks)


def _closed_after(sock: socket.socket) -> tuple[float, bytes]:
    """How long until the server answers and closes (at most 6 s), and what it said."""
    started = time.monotonic()
    readable = select.select([sock], [], [], 6)[0]
    return time.monotonic() - started, _answer(sock) if readable else b""


def _rss(pid: int) -> int:
    """The resident memory of process ``pid``, in bytes (Linux)."""
    pages = int(Path(f"/proc/{pid}/statm").read_text(encoding="ascii").split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _json_body(answer: bytes) -> object:
    return orjson.loads(answer.split(b"\r\n\r\n", 1)[1])


def _serves(served: ServeProcess) -> bool:
    return httpx.get(f"{served.url}/v2/health/live", timeout=10).status_code == 200


def _header_of(size: int) -> bytes:
    return b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n"


def test_a_head_past_64_kib_is_431_and_the_server_keeps_serving(served: ServeProcess) -> None:
    with _connect(served) as sock:
        sock.sendall(_header_of(100_000))
        answer = _answer(sock)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert _json_body(answer) == {"error": "request line and headers exceed 65536 bytes"}
    assert _serves(served)


def test_heads_within_the_limit_are_served_whatever_follows_them(served: ServeProcess) -> None:
    body = b"x" * 200_000
    post = (
        b"POST /v2/models/nope/infer HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 60_000
    ) + b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
    last = _header_of(60_000).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n")
    with _connect(served) as sock:
        # In one write: the head's end and a body past the limit share the server's reads,
        # and every request on a kept-alive connection gets the whole limit.
        sock.sendall(post + body + _header_of(60_000) + last)
        answer = _answer(sock)
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", answer) == [b"404", b"200", b"200"], answer[:300]


def test_oversized_heads_leave_the_server_memory_bounded(served: ServeProcess) -> None:
    before = _rss(served.process.pid)
    chunk = b"a" * (1024 * 1024)
    held = []
    for _ in range(10):
        sock = _connect(served)
        held.append(sock)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ")
        try:
            for _ in range(20):  # 20 MB of one header, never finished
                sock.sendall(chunk)
        except OSError:  # the server refused the head and closed
            pass
    try:
        grown = _rss(served.process.pid) - before
    finally:
        for sock in held:
            sock.close()
    assert grown < 32 * 1024 * 1024, f"the server grew by {grown / 2**20:.0f} MiB"
    assert _serves(served)


def test_a_head_that_trickles_in_is_closed_with_408_within_the_timeout(
    served: ServeProcess,
) -> None:
    with _connect(served) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        started = time.monotonic()
        # One byte every 0.2 s, for at most 6 s: slowloris.
        while time.monotonic() - started < 6 and not select.select([sock], [], [], 0.2)[0]:
            sock.sendall(b"a")
        closed_after = time.monotonic() - started
        answer = _answer(sock) if closed_after < 6 else b""
    assert closed_after < TIMEOUT_S + 1.5, f"still open after {closed_after:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert _json_body(answer) == {"error": "request headers did not arrive within 1s"}


def test_a_connection_that_sends_nothing_is_closed_within_the_timeout(
    served: ServeProcess,
) -> None:
    with _connect(served) as sock:
        closed_after, answer = _closed_after(sock)
    assert closed_after < TIMEOUT_S + 1.5, f"still open after {closed_after:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_a_body_that_stalls_is_closed_with_408_within_the_timeout(served: ServeProcess) -> None:
    with _connect(served) as sock:
        sock.sendall(
            b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
            b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"inputs": '
        )
        closed_after, answer = _closed_after(sock)
    # A stall is seen between one and two timeouts after the last byte, plus a tick.
    assert closed_after < 2 * TIMEOUT_S + 1.5, f"still open after {closed_after:.1f}s"
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert _json_body(answer) == {"error": "request body stalled for more than 1s"}


_LIVE = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def test_past_the_connection_cap_the_connection_waiting_longest_makes_room(
    served: ServeProcess,
) -> None:
    slow = [_connect(served) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in slow:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        # The cap is full of heads trickling in: a newcomer takes the oldest one's place.
        with _connect(served) as sock:
            sock.sendall(_LIVE)
            assert _answer(sock).startswith(b"HTTP/1.1 200 ")
        closed_after, answer = _closed_after(slow[0])
        assert closed_after < TIMEOUT_S / 2, "the oldest slow head was not closed at once"
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:200]
        assert _json_body(answer) == {
            "error": f"the server is at its limit of {MAX_CONNECTIONS} connections"
        }
        assert not select.select(slow[1:], [], [], 0)[0], "a newer connection was closed"
    finally:
        for sock in slow:
            sock.close()
    assert _serves(served)


def test_past_the_connection_cap_with_every_connection_busy_a_request_is_503(
    served: ServeProcess,
) -> None:
    busy = [_connect(served) for _ in range(MAX_CONNECTIONS)]
    try:
        for sock in busy:  # a request under way on each: its body is still to come
            sock.sendall(
                b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\n"
                b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"
            )
        with _connect(served) as sock:
            sock.sendall(_LIVE)
            assert _answer(sock).startswith(b"HTTP/1.1 503 ")
    finally:
        for sock in busy:
            sock.close()
    assert _serves(served)


def test_a_client_request_id_is_echoed_only_when_short_and_plain(tmp_path: Path) -> None:
    env = {**os.environ, "AIMASS_HOME": str(tmp_path / "home")}
    with serve_in_process(env=env) as process:
        url = f"{process.url}/v2/models/nope"
        infer = f"{url}/infer"
        for sent in ("r-5", "trace:0a1b.C_2-x", "a" * 128):
            assert httpx.get(url, headers={"x-request-id": sent}).headers["x-request-id"] == sent
            assert (
                httpx.post(infer, json={}, headers={"x-request-id": sent}).headers["x-request-id"]
                == sent
            )
        unsafe = [b"a" * 129, b"a" * 60_000, b"two words", b"<script>", b"id\xe9", b"a\tb"]
        for sent_bytes in unsafe:
            for answer in (
                httpx.get(url, headers={b"x-request-id": sent_bytes}),
                httpx.post(infer, json={}, headers={b"x-request-id": sent_bytes}),
            ):
                assert answer.status_code == 404
                echoed = answer.headers["x-request-id"]
                # A fresh id instead: 32 hex digits.
                assert echoed.encode() != sent_bytes and len(echoed) == 32 and int(echoed, 16) >= 0
