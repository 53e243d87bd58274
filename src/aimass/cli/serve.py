"""``aimass serve``: the HTTP server over the registry the settings describe.

Binds its socket before starting uvicorn so that ``--port 0`` can print the
port the OS chose (one flushed line: ``aimass serving on http://HOST:PORT``).
uvicorn handles SIGTERM and SIGINT; the app's lifespan then closes the
engine, letting requests in flight finish.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.output import error_console
from aimass.errors import AimassError, ErrorCode
from aimass.settings import Settings, load_settings

__all__ = ["serve"]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    return sock


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _settings(
    config: Path | None, host: str | None, port: int | None, models: list[str]
) -> Settings:
    server: dict[str, Any] = {}
    if host is not None:
        server["host"] = host
    if port is not None:
        server["port"] = port
    if models:
        server["models"] = models
    return load_settings(config, **({"server": server} if server else {}))


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port; 0 lets the OS choose [default: 8000]")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model reference to load at start-up (repeatable)"),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file", exists=True, dir_okay=False)
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Register the demo models if missing and serve them")
    ] = False,
) -> None:
    """Serve the registry's models over HTTP: Open Inference Protocol and OpenAI-compatible."""
    import uvicorn

    from aimass.registry import Registry
    from aimass.server import create_app
    from aimass.serving import Engine

    settings = _settings(config, host, port, list(model or []))
    if settings.server.workers != 1:
        raise AimassError(
            ErrorCode.UNSUPPORTED, "workers > 1 is not supported yet; run one process per port"
        )
    registry = Registry.from_settings(settings)
    try:
        if demo:
            from aimass.cli.demo import register_demo_models

            report = register_demo_models(registry)
            if not settings.server.models:
                served = [name for name, entry in report.items() if "version" in entry]
                settings.server.models = served
            for name, entry in report.items():
                if entry["status"] == "skipped":
                    error_console.print(f"demo model {name} skipped: {entry['reason']}")
        engine = Engine(registry, settings.serving)
        app = create_app(settings, engine=engine, registry=registry)
        sock = _bind(settings.server.host, settings.server.port)
        log_level = settings.server.log_level
        uv_config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=log_level in ("debug", "trace", "info"),
            lifespan="on",
            timeout_graceful_shutdown=math.ceil(settings.serving.request_timeout_s),
        )
        sys.stdout.write(f"aimass serving on {_url(sock)}\n")
        sys.stdout.flush()
        # uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut
        # down gracefully; by then exiting 0 is the truth, not a crash.
        for handled in (signal.SIGTERM, signal.SIGINT):
            signal.signal(handled, _exit_after_shutdown)
        uvicorn.Server(uv_config).run(sockets=[sock])
    finally:
        registry.close()
