"""``x-aimass-worker``: which worker process answered, when several share one port.

With ``aimass serve --workers N`` the kernel hands each connection to one of
N processes; the header (the worker's process id) lets an operator or a test
tell them apart, e.g. to see that every worker serves every model or to
signal one of them.
"""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["WORKER_HEADER", "WorkerHeader"]

WORKER_HEADER = "x-aimass-worker"
"""The response header naming the process id of the worker that answered."""


class WorkerHeader:
    """ASGI middleware adding ``x-aimass-worker: <pid>`` to every HTTP response."""

    def __init__(self, app: ASGIApp, worker: int | None = None) -> None:
        self.app = app
        self._header = (WORKER_HEADER.encode(), str(worker or os.getpid()).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request through, adding the header to the response start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), self._header]
            await send(message)

        await self.app(scope, receive, send_with_header)
