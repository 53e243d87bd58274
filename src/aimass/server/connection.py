"""HTTP/1.1 connections that bound a request's head, close on clients that stall, make room.

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
- past ``max_connections``, a new connection takes the place of the one that
  has waited longest for a request (its head trickling in, or idle between
  requests), which is answered 503 if it owed a head and closed; only when
  every connection has a request under way does the new one's request get
  uvicorn's own ``limit_concurrency`` 503. Refusing newcomers instead would
  let slow heads hold every slot for ``header_timeout_s`` at a time, again
  and again (slowloris): ``bench/slowloris.py`` measured 5-8% of probes
  answered under 1,100 such connections that way;
- the process's soft limit of open files is raised to fit ``max_connections``
  (up to the hard limit, else the cap is lowered to what fits): at the limit
  the event loop cannot accept, and uvloop then drops waiting connections
  unanswered, a slowloris' and everyone else's alike.

The 431, 408 and 503 come before there is a request to route, as uvicorn's
own 400 and 503 do, so they are written here rather than through the error
catalog, in the OIP body shape.

With ``aimass serve --workers N`` the kernel hands each connection to one of
N processes, and a keep-alive connection stays with the worker that accepted
it: once a worker is replaced its clients would stay on the survivors for
good, and the new worker would idle. So there, the ``keepalive_requests``-th
request on a connection is its last: uvicorn's response says
``Connection: close`` and closes the connection once it is out, and the
client's next connection goes to whichever worker accepts it first, so a
replaced worker gets its share back over time (the kernel favours a worker
already awake, so not at once).

The clocks are one sweep per event loop (every second, or a quarter of the
shorter timeout) over the open connections rather than a timer per request:
a request pays one clock read and a few attribute writes, and a connection
two dict writes for being idle and busy.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from http import HTTPStatus
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from aimass.settings import ServerSettings

__all__ = ["SPARE_FILES", "connection_options", "files_fit"]

logger = logging.getLogger("aimass.server")

SPARE_FILES = 128
"""Open files a server keeps for other than its connections (22 with the demo models)."""


def connection_options(settings: ServerSettings) -> dict[str, Any]:
    """The ``uvicorn.Config`` arguments that bound heads, slow clients and connections.

    Raises this process's soft limit of open files to fit ``max_connections``
    (see :func:`files_fit`). With more than one worker, connections also
    carry a bounded number of requests.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised, cap = files_fit(settings.max_connections, soft, hard)
    if raised is not None:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        except (OSError, ValueError):  # a platform's own ceiling (macOS's OPEN_MAX)
            cap = files_fit(settings.max_connections, soft, soft)[1]
    if cap < settings.max_connections:
        logger.warning(
            "only %d connections fit in this process's limit of open files (ulimit -n; "
            "%d spare for the rest): max_connections %d is lowered to it",
            cap,
            SPARE_FILES,
            settings.max_connections,
        )
    return {
        "http": _bounded_protocol(settings, cap),
        # uvicorn counts the connection asking among the open ones.
        "limit_concurrency": cap + 1,
    }


def files_fit(connections: int, soft: int, hard: int) -> tuple[int | None, int]:
    """The soft limit of open files to raise to (None: it fits) and the connections that fit.

    ``connections`` and :data:`SPARE_FILES` fit if the hard limit allows;
    otherwise as many connections as fit beside the spare (at least one).
    """
    wanted = connections + SPARE_FILES
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return None, connections
    raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    return (raised if raised > soft else None), max(1, min(connections, raised - SPARE_FILES))


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


class _Connections:
    """One server's open connections, checked by one timer per event loop each tick.

    Those waiting for a request are also kept in the order they began to wait.
    """

    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._watched: set[_Watched] = set()
        self._idle: dict[_Watched, None] = {}  # insertion order: waiting longest first
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, connection: _Watched) -> None:
        self._watched.add(connection)
        self._idle[connection] = None
        if self._timer is None:
            self._timer = connection.loop.call_later(self.tick, self._sweep, connection.loop)

    def forget(self, connection: _Watched) -> None:
        self._watched.discard(connection)
        self._idle.pop(connection, None)

    def idle(self, connection: _Watched) -> None:
        """``connection`` waits for a request from now."""
        self._idle.pop(connection, None)
        self._idle[connection] = None

    def busy(self, connection: _Watched) -> None:
        """``connection`` has a request under way."""
        self._idle.pop(connection, None)

    def idlest(self) -> _Watched | None:
        """The connection that has waited longest for a request, if any waits."""
        return next(iter(self._idle), None)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self._watched):
            connection.check(now)
        self._timer = loop.call_later(self.tick, self._sweep, loop) if self._watched else None


class _Watched(HttpToolsProtocol):
    """The httptools protocol with a bounded head, clocks on head and body, and maybe a request cap.

    ``max_requests`` (None: no cap) is the number of requests a connection
    carries; past ``max_connections`` open ones, a new one closes the idlest.
    """

    max_head: int
    header_timeout: float
    body_timeout: float
    max_requests: int | None
    max_connections: int
    clocks: _Connections

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
        if len(self.connections) > self.max_connections:
            idlest = self.clocks.idlest()
            if idlest is not None:
                idlest.make_room()
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
        self.clocks.busy(self)
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

    def on_response_complete(self) -> None:
        """The response is out: the connection waits for a request, unless one is queued."""
        pipelined = bool(self.pipeline)
        super().on_response_complete()
        if not pipelined and not self.transport.is_closing():
            self.clocks.idle(self)

    def make_room(self) -> None:
        """Close this connection, waiting for a request, for a new one past the connection cap."""
        self.clocks.busy(self)
        self.connections.discard(self)  # it counts no more, though its close is yet to come
        if self._head_since is None:  # idle between requests: owed nothing
            self.transport.close()
        else:
            self._refuse(503, f"the server is at its limit of {self.max_connections} connections")

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


def _bounded_protocol(settings: ServerSettings, cap: int) -> type[_Watched]:
    """A :class:`_Watched` with ``settings``' limits (``cap`` connections), for one server."""
    timeouts = (settings.header_timeout_s, settings.body_timeout_s)
    requests = settings.keepalive_requests if settings.workers > 1 else None

    class Bounded(_Watched):
        max_head = settings.max_header_bytes
        header_timeout, body_timeout = timeouts
        max_requests = requests
        max_connections = cap
        clocks = _Connections(min(1.0, min(timeouts) / 4))

    return Bounded
