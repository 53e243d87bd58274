"""Serve on a loopback port chosen by the OS, in a thread or as a process, for tests.

In a thread, the socket is bound before the server starts, so the port is
known without a race, and the caller waits on uvicorn's own ``started`` flag
(while checking the thread is alive) rather than sleeping. As a process,
``aimass serve --port 0`` prints the address it bound once it serves with its
start-up models loaded, so the caller waits for that line and nothing else.
"""

from __future__ import annotations

import contextlib
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ServeProcess", "serve_in_process", "serve_in_thread"]


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


@dataclass
class ServeProcess:
    """A running ``aimass serve`` process and the base URL it printed."""

    url: str
    process: subprocess.Popen[str]

    def stop(self, timeout: float = 60.0) -> tuple[int, str]:
        """SIGTERM (a graceful drain), then wait; returns the exit code and stderr."""
        self.process.send_signal(signal.SIGTERM)
        _, stderr = self.process.communicate(timeout=timeout)
        return self.process.returncode, stderr


@contextlib.contextmanager
def serve_in_process(
    args: Sequence[str] = (),
    *,
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 300.0,
    stop_timeout: float = 10.0,
) -> Iterator[ServeProcess]:
    """Start ``aimass serve --port 0 ARGS``, wait for its address line, yield it, stop it.

    The line comes once the server accepts connections with its start-up
    models loaded. Raises ``RuntimeError`` with the process's stderr if it
    exits before that or does not print it within ``startup_timeout`` seconds.

    A process still running at the end is stopped as :meth:`ServeProcess.stop`
    does, and killed only if it has not exited within ``stop_timeout``
    seconds: a killed process never runs its exit handlers, so a coverage
    run would lose everything it measured there.
    """
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from aimass.cli.app import main; main()",
            "serve",
            "--port",
            "0",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        text=True,
    )
    try:
        assert process.stdout is not None
        # The address line is flushed; "" means the process died first.
        if not select.select([process.stdout], [], [], startup_timeout)[0]:
            process.kill()
            raise RuntimeError(
                f"aimass serve did not start within {startup_timeout:g}s: "
                f"{process.communicate(timeout=30)[1]}"
            )
        line = process.stdout.readline()
        if not line.startswith("aimass serving on "):
            process.kill()
            raise RuntimeError(
                f"aimass serve did not start: {line}{process.communicate(timeout=30)[1]}"
            )
        yield ServeProcess(line.split()[-1], process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.communicate(timeout=stop_timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
