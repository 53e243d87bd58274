"""uvicorn's server, calling back once it accepts connections.

uvicorn sets ``started`` after the app's lifespan start-up (which loads the
start-up models) and after its listeners accept; it offers no callback, so
:class:`AnnouncingServer` runs one right there. ``aimass serve`` prints its
address from it: the line means "connect now".
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import uvicorn

__all__ = ["AnnouncingServer"]


class AnnouncingServer(uvicorn.Server):
    """A :class:`uvicorn.Server` that calls ``on_started`` once it serves."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does (exiting if the lifespan fails), then call ``on_started``."""
        await super().startup(sockets)
        if self.started:
            self._on_started()
