"""``x-aimass-worker``: which of the workers sharing one port answered.

With ``aimass serve --workers N`` the kernel hands each connection to one of
N processes; the header (the worker's process id) lets an operator or a test
tell them apart, e.g. to see that every worker serves every model or to
signal one of them. Spreading connections over the workers is the
connection's business (:mod:`aimass.server.connection`).
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
        """Pass the request through, adding the header."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = self._header

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        await self.app(scope, receive, send_with_header)
