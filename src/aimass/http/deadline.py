"""Request deadlines with one timer for all requests, not one per request.

``asyncio.timeout`` costs a timer handle per request (several microseconds,
as much as the rest of an open gateway); here one sweep per tick cancels the
requests past their deadline, so a deadline costs a dict insert and delete.
A deadline fires within one tick (at most a second) after it is due.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["Deadlines", "current_request"]


def current_request(
    loop: asyncio.AbstractEventLoop | None,
) -> tuple[asyncio.AbstractEventLoop, asyncio.Task[Any], bool]:
    """The task running now, its loop, and whether that loop is not ``loop`` (a new one).

    Given the loop, current_task() skips get_running_loop(), which in CPython
    3.11 is a system call (getpid): a per-request watcher keeps the loop of
    its first request and passes it here.
    """
    task = None if loop is None else asyncio.current_task(loop)
    if loop is not None and task is not None:
        return loop, task, False
    loop = asyncio.get_running_loop()
    task = asyncio.current_task(loop)
    assert task is not None, "a request runs in a task"
    return loop, task, True


class Deadlines:
    """Cancels the request tasks that outlive ``timeout`` seconds."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._tick = min(1.0, timeout / 4)
        self._due: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._sweeper: asyncio.TimerHandle | None = None
        # The loop of the first request (see current_request).
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> asyncio.Task[Any]:
        """Start the current task's clock; pair with :meth:`finish`."""
        loop, task, new = current_request(self._loop)
        if new:
            self._loop = loop
            self._sweeper = None  # a timer on a previous loop never fires
        self._due[task] = loop.time() + self.timeout
        if self._sweeper is None:
            self._sweeper = loop.call_later(self._tick, self._sweep, loop)
        return task

    @property
    def watching(self) -> int:
        """How many requests are on the clock."""
        return len(self._due)

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop ``task``'s clock; True if its deadline cancelled it (now uncancelled)."""
        self._due.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()
            return True
        return False

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for task, due in list(self._due.items()):
            if due <= now and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        self._sweeper = loop.call_later(self._tick, self._sweep, loop) if self._due else None
