"""Requests whose client went away while they waited: cancelled, so they leave the queue at once.

uvicorn does not cancel an ASGI app when its client disconnects; it only
answers the app's next ``receive()`` with ``http.disconnect``. A request
waiting in a model's queue never calls ``receive()`` again, so without this
it kept its slot (and later ran) until its deadline. Watching every request
would cost a task each; instead :class:`DisconnectWatch` notes each request
(a dict insert and delete) and, once per ``after`` seconds, gives the ones
still waiting a watcher task that awaits ``receive()`` and cancels the request
when it says the client left. Quick requests never get a watcher.

Every route that queues a request for a model awaits the engine through
:meth:`DisconnectWatch.watch`; the ClientDisconnect it raises for a client
that left is what the routes already answer (to nobody) when a client leaves
mid-body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

from aimass.http.deadline import current_request

__all__ = ["DisconnectWatch"]

_T = TypeVar("_T")


class DisconnectWatch:
    """Cancels the requests of clients that left once they have waited ``after`` seconds."""

    def __init__(self, after: float = 0.1) -> None:
        self.after = after
        # Noted since the last sweep, and before it (those have waited at least ``after``).
        self._fresh: dict[asyncio.Task[Any], Receive] = {}
        self._waiting: dict[asyncio.Task[Any], Receive] = {}
        self._watchers: dict[asyncio.Task[Any], asyncio.Task[None]] = {}
        self._left: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def watch(self, receive: Receive, call: Awaitable[_T]) -> _T:
        """Await ``call`` for the current request, whose body is read; ClientDisconnect if it left.

        The client left: its request was cancelled where it waited (in a
        queue, say), so ``call`` ends early and nothing of it is left behind.
        """
        task = self._start(receive)
        try:
            return await call
        except asyncio.CancelledError:
            if self._finish(task):
                raise ClientDisconnect from None
            raise  # a deadline, or the server stopping
        finally:
            self._finish(task)

    def _start(self, receive: Receive) -> asyncio.Task[Any]:
        loop, task, new = current_request(self._loop)
        if new:
            self._loop = loop
            self._sweeper = None  # a timer on a previous loop never fires
        self._fresh[task] = receive
        if self._sweeper is None:
            self._sweeper = loop.call_later(self.after, self._sweep, loop)
        return task

    def _finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True if its client left and so it was cancelled (now undone)."""
        if self._fresh.pop(task, None) is None:
            self._waiting.pop(task, None)
        watcher = self._watchers.pop(task, None)
        if watcher is not None:
            watcher.cancel()
        if task in self._left:
            self._left.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        for task, receive in self._waiting.items():
            if task not in self._watchers:
                self._watchers[task] = loop.create_task(self._watch(task, receive))
        self._waiting.update(self._fresh)
        self._fresh = {}
        waiting = len(self._waiting) > len(self._watchers)
        self._sweeper = loop.call_later(self.after, self._sweep, loop) if waiting else None

    async def _watch(self, task: asyncio.Task[Any], receive: Receive) -> None:
        message = await receive()
        while message["type"] == "http.request" and message.get("more_body", False):
            message = await receive()  # the rest of a body nobody reads
        if message["type"] == "http.disconnect" and task in self._waiting and not task.done():
            self._left.add(task)
            task.cancel()
