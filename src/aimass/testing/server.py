"""Serve an ASGI app on a loopback port chosen by the OS, in a thread, for tests.

The socket is bound before the server starts, so the port is known without a
race, and the caller waits on uvicorn's own ``started`` flag (while checking
the thread is alive) rather than sleeping.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["serve_in_thread"]


@contextlib.contextmanager
def serve_in_thread(
    app: Any, *, startup_timeout: float = 60.0, log_level: str = "warning"
) -> Iterator[str]:
    """Run ``app`` with uvicorn on ``127.0.0.1:0``; yields its base URL, stops it on exit.

    Raises ``RuntimeError`` if the server stops (its lifespan failed, say)
    or does not start within ``startup_timeout`` seconds.
    """
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=30)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="aimass-test-server", daemon=True
    )
    thread.start()
    try:
        waited = 0.0
        # uvicorn exposes a flag, not an event: join() gives the thread a
        # short chance to finish, so a crashed start-up is seen at once.
        while not server.started:
            thread.join(0.01)
            waited += 0.01
            if not thread.is_alive():
                raise RuntimeError("the server stopped during start-up (see its log)")
            if waited > startup_timeout:
                raise RuntimeError(f"the server did not start within {startup_timeout:g}s")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(startup_timeout)
        sock.close()
