"""``x-aimass-worker``, and connections spread over the workers sharing one port.

With ``aimass serve --workers N`` the kernel hands each connection to one of
N processes; the header (the worker's process id) lets an operator or a test
tell them apart, e.g. to see that every worker serves every model or to
signal one of them.

A keep-alive connection stays with the worker that accepted it, so once a
worker is replaced its clients would stay on the survivors for good, and the
new worker would idle. Every ``keepalive_requests``-th response on a
connection therefore says ``Connection: close`` (uvicorn then closes it once
the response is out, and the client knows not to reuse it); the client's
next connection goes to whichever worker accepts it first, so a replaced
worker gets its share back over time (the kernel favours a worker already
awake, so not at once).
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WORKER_HEADER", "WorkerHeader"]

WORKER_HEADER = "x-aimass-worker"
"""The response header naming the process id of the worker that answered."""

_CLOSE = (b"connection", b"close")
_MAX_TRACKED = 4096
"""Connections counted at once; past it the counts start again (a connection's
count only decides when it is asked to reconnect, so losing one is harmless)."""


class WorkerHeader:
    """ASGI middleware adding ``x-aimass-worker: <pid>`` to every HTTP response.

    It also asks a connection to close after ``keepalive_requests`` requests.
    Connections are told apart by the client's address and port, unique
    among the open connections to one listening port; a count left by a
    connection that closed early only makes a later one from the same port
    reconnect sooner.
    """

    def __init__(
        self, app: ASGIApp, worker: int | None = None, *, keepalive_requests: int = 100
    ) -> None:
        self.app = app
        self._header = (WORKER_HEADER.encode(), str(worker or os.getpid()).encode())
        self._limit = keepalive_requests
        self._served: dict[tuple[str, int], int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, adding the header (and, at the limit, the close)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [self._header]
        client = scope.get("client")
        if client is not None:
            served = self._served
            count = served.pop(client, 0) + 1
            if count >= self._limit:
                extra.append(_CLOSE)
            else:
                if len(served) >= _MAX_TRACKED:
                    served.clear()
                served[client] = count

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_header)
