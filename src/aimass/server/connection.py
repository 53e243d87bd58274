"""HTTP/1.1 connections that bound a request's head and close on clients that stall.

uvicorn's default protocol (httptools, its fast parser) reads a request line
and headers without limit (httptools gathers a header's value in memory
however long it grows) and waits forever for a head or a body that trickles
in: ``timeout_keep_alive`` only covers the time between requests. uvicorn caps
a head only with its h11 protocol (``h11_max_incomplete_event_size``: a 400,
through a parser several times slower) and has no head or body timeout. So
:func:`connection_options` keeps httptools and adds what is missing in a
small subclass:

- a head (request line and headers) longer than ``max_header_bytes`` is
  answered 431 and the connection closed, counted on the bytes read before
  the parser has seen the head end, so nothing past the limit is buffered;
- a head that has not arrived ``header_timeout_s`` after the connection
  opened or the request's first byte, or a body that receives no byte for
  ``body_timeout_s``, is answered 408 and the connection closed;

and uvicorn's own ``limit_concurrency`` answers 503 past ``max_connections``.

With ``aimass serve --workers N`` the kernel hands each connection to one of
N processes, and a keep-alive connection stays with the worker that accepted
it: once a worker is replaced its clients would stay on the survivors for
good, and the new worker would idle. So there, the ``keepalive_requests``-th
request on a connection is its last: uvicorn's response says
``Connection: close`` and closes the connection once it is out, and the
client's next connection goes to whichever worker accepts it first, so a
replaced worker gets its share back over time (the kernel favours a worker
already awake, so not at once).
The 431 and 408 come before there is a request to route, as uvicorn's own 400
and 503 do, so they are written here rather than through the error catalog,
in the OIP body shape.

The clocks are one sweep per event loop (every second, or a quarter of the
shorter timeout) over the open connections rather than a timer per request:
a request pays one clock read and a few attribute writes.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aimass.settings import ServerSettings

__all__ = ["connection_options"]


def connection_options(settings: ServerSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments that bound heads, slow clients and connections.

    With more than one worker, connections also carry a bounded number of requests.
    """
    return {
        "http": _bounded_protocol(settings),
        # uvicorn counts the connection asking among the open ones.
        "limit_concurrency": settings.max_connections + 1,
    }


def _refusal(status: int, message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = orjson.dumps({"error": message})
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    lines += [
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class _Clocks:
    """One timer per event loop that checks every watched connection each tick."""

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._watched: set[_Watched] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: _Watched) -> None:
        self._watched.add(connection)
        if self._timer is None:
            self._timer = connection.loop.call_later(self.tick, self._sweep, connection.loop)

    def forget(self, connection: _Watched) -> None:
        self._watched.discard(connection)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self._watched):
            connection.check(now)
        self._timer = loop.call_later(self.tick, self._sweep, loop) if self._watched else None


class _Watched(HttpToolsProtocol):
    """The httptools protocol with a bounded head, clocks on head and body, and maybe a request cap.

    ``max_requests`` (None: no cap) is the number of requests a connection carries.
    """

    max_head: int
    header_timeout: float
    body_timeout: float
    max_requests: int | None
    clocks: _Clocks

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start the head's clock and its byte budget: the client owes a request."""
        super().connection_made(transport)
        self._head_left: int | None = self.max_head  # None: past the head
        self._head_since: float | None = self.loop.time()  # None: not waiting for a head
        self._in_body = False
        self._reads = 0
        self._reads_seen = 0
        self._stalled_since = 0.0
        self._draining = False
        self._requests = 0
        self.clocks.watch(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop watching the connection."""
        self.clocks.forget(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Parse ``data``, refusing a head that grows past ``max_head`` bytes."""
        if self._draining:
            return
        self._reads += 1
        left = self._head_left
        if left is None or len(data) <= left:
            if left is not None:
                self._head_left = left - len(data)
            super().data_received(data)
            return
        # The head's end and the body's start may share this read: the parser
        # gets what the head may still take and says whether the head ended there.
        self._head_left = 0
        if left:
            super().data_received(data[:left])
        if self.transport.is_closing():
            return
        if self._head_left == 0:
            self._refuse(431, f"request line and headers exceed {self.max_head} bytes", linger=True)
            return
        self.data_received(data[left:])

    def on_message_begin(self) -> None:
        """A request's first byte: its head's clock starts, unless the connection's already runs."""
        super().on_message_begin()
        if self._head_since is None:
            self._head_since = self.loop.time()

    def on_headers_complete(self) -> None:
        """The head is in: its clock and budget stop, the body's begin; maybe the last request."""
        self._head_left = None
        self._head_since = None
        self._in_body = True
        cycle = self.cycle
        super().on_headers_complete()
        if self.cycle is not cycle:  # a request to answer (not an upgrade)
            self._requests += 1
            if self._requests == self.max_requests:
                self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        """The body is in: the next request's head gets a full budget."""
        self._in_body = False
        self._head_left = self.max_head
        super().on_message_complete()

    def check(self, now: float) -> None:
        """Close the connection if its head is late or its body has stalled."""
        if self.transport.is_closing():
            return
        if self._draining:
            self.transport.close()
            return
        if self._head_since is not None:
            if now - self._head_since > self.header_timeout:
                self._refuse(408, f"request headers did not arrive within {self.header_timeout:g}s")
            return
        if not self._in_body:
            return
        # A read paused because the app has not taken the body yet is not the client's stall.
        if self._reads != self._reads_seen or self.flow.read_paused:
            self._reads_seen = self._reads
            self._stalled_since = now
        elif now - self._stalled_since > self.body_timeout:
            self._refuse(408, f"request body stalled for more than {self.body_timeout:g}s")

    def _refuse(self, status: int, message: str, *, linger: bool = False) -> None:
        cycle = self.cycle
        # Answer only where no response is under way (the app's, or a pipelined one's).
        if self._in_body:
            answer = not cycle.response_started
        else:
            answer = cycle is None or cycle.response_complete
        if answer:
            self.transport.write(_refusal(status, message, self.server_state.default_headers))
        if linger and answer and self.transport.can_write_eof():
            # Closing with unread bytes resets the connection, which can lose the
            # answer: half-close, drop what still comes, close at the next tick.
            self.transport.write_eof()
            self._draining = True
        else:
            self.transport.close()


def _bounded_protocol(settings: ServerSettings) -> type[_Watched]:
    """A :class:`_Watched` with ``settings``' limits, and clocks of its own server."""
    timeouts = (settings.header_timeout_s, settings.body_timeout_s)
    requests = settings.keepalive_requests if settings.workers > 1 else None

    class Bounded(_Watched):
        max_head = settings.max_header_bytes
        header_timeout, body_timeout = timeouts
        max_requests = requests
        clocks = _Clocks(min(1.0, min(timeouts) / 4))

    return Bounded
