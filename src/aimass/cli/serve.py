"""``aimass serve``: the HTTP server over the registry the settings describe.

Binds its socket before starting uvicorn so that ``--port 0`` can print the
port the OS chose (one flushed line: ``aimass serving on http://HOST:PORT``, or
``{"url": "http://HOST:PORT"}`` with ``--json``), and prints it only once the
server accepts connections with its start-up models loaded: the line means
"connect now". A start-up model that does not resolve or load stops the start
(unless ``--allow-missing``), and so does an address beyond loopback with no
API key to close it (unless ``--insecure``).
uvicorn handles SIGTERM and SIGINT; the app's lifespan then closes the
engine, letting requests in flight finish.

With ``--workers N`` (N > 1) this process becomes a supervisor
(:mod:`aimass.serving.supervisor`): it loads the start-up models
(:mod:`aimass.serving.prefork`), forks N workers that share them and the
socket (each answers with an ``x-aimass-worker`` header), announces the
address once every worker serves, replaces a worker that dies, and on SIGTERM
drains them all.
"""

from __future__ import annotations

import math
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, error_console
from aimass.errors import AimassError, ErrorCode
from aimass.settings import Settings, load_settings

if TYPE_CHECKING:
    import uvicorn

    from aimass.gateway.ratelimit import Limiter
    from aimass.registry import Registry
    from aimass.registry.records import VersionInfo
    from aimass.runtimes.model import LoadedModel

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
    config: Path | None,
    host: str | None,
    port: int | None,
    models: list[str],
    workers: int | None,
    tls: tuple[Path | None, Path | None],
    switches: dict[str, bool],
) -> Settings:
    """The settings, built once: the file, then the environment, then the flags."""
    flags: dict[str, dict[str, Any]] = {}
    server = {"workers": workers, "host": host, "port": port, "models": models or None}
    # A switch given on the command line turns its setting on; absent, the setting decides.
    server.update({name: True for name, given in switches.items() if given})
    if any(value is not None for value in server.values()):
        flags["server"] = {key: value for key, value in server.items() if value is not None}
    if tls != (None, None):
        flags["gateway"] = {"tls_certfile": tls[0], "tls_keyfile": tls[1]}
    return load_settings(config, **flags)


def _tls_files(settings: Settings) -> tuple[str, str] | None:
    cert, key = settings.gateway.tls_certfile, settings.gateway.tls_keyfile
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise AimassError(ErrorCode.INVALID_INPUT, "TLS needs both a certificate and a key")
    for path in (cert, key):
        if not path.is_file():
            raise AimassError(ErrorCode.INVALID_INPUT, f"TLS file {path} does not exist")
    return str(cert), str(key)


def serve(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to bind [default: 127.0.0.1]")] = None,
    port: Annotated[
        int | None, typer.Option(help="Port; 0 lets the OS choose [default: 8000]")
    ] = None,
    model: Annotated[
        list[str] | None,
        typer.Option("--model", "-m", help="Model reference to load at start-up (repeatable)"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Worker processes sharing the port and the start-up models' memory [default: 1]"
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML settings file", exists=True, dir_okay=False)
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help="Register the demo models if missing and serve them")
    ] = False,
    tls_cert: Annotated[
        Path | None,
        typer.Option(help="PEM certificate: serve HTTPS (with --tls-key)", dir_okay=False),
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option(help="PEM private key of --tls-cert", dir_okay=False)
    ] = None,
    allow_missing: Annotated[
        bool,
        typer.Option(
            "--allow-missing",
            help="Serve even if a start-up model does not resolve or load (it is logged)",
        ),
    ] = False,
    insecure: Annotated[
        bool,
        typer.Option(
            "--insecure",
            help="Serve beyond loopback (e.g. --host 0.0.0.0) although no API key exists",
        ),
    ] = False,
    json: JsonFlag = False,
) -> None:
    """Serve the registry's models over HTTP: Open Inference Protocol and OpenAI-compatible."""
    from aimass.gateway.exposure import check_exposure
    from aimass.gateway.keys import KeyStore
    from aimass.registry import Registry

    settings = _settings(
        config or state(ctx).config,
        host,
        port,
        list(model or []),
        workers,
        (tls_cert, tls_key),
        {"allow_missing": allow_missing, "insecure": insecure},
    )
    tls = _tls_files(settings)
    registry = Registry.from_settings(settings)
    preload = list(settings.server.models)
    try:
        check_exposure(settings, KeyStore(registry.database))
        if demo:
            from aimass.cli.demo import register_demo_models

            report = register_demo_models(registry)
            if not preload:
                preload = [name for name, entry in report.items() if "version" in entry]
            for name, entry in report.items():
                if entry["status"] == "skipped":
                    error_console.print(f"demo model {name} skipped: {entry['reason']}")
        sock = _bind(settings.server.host, settings.server.port)
        url = _url(sock)
        if tls:
            url = "https" + url.removeprefix("http")

        def announce() -> None:
            line = orjson.dumps({"url": url}).decode() if json else f"aimass serving on {url}"
            sys.stdout.write(line + "\n")
            sys.stdout.flush()

        if settings.server.workers > 1:
            raise SystemExit(_supervise(settings, registry, preload, sock, tls, announce))
        _run(_server(settings, registry, tls, preload, on_started=announce), sock)
    finally:
        registry.close()


def _server(
    settings: Settings,
    registry: Registry,
    tls: tuple[str, str] | None,
    preload: Sequence[str],
    *,
    on_started: Callable[[], object],
    preloaded: Sequence[tuple[VersionInfo, LoadedModel]] = (),
    limiter: Limiter | None = None,
    worker_header: bool = False,
) -> uvicorn.Server:
    import uvicorn

    from aimass.app import build_server_engine, create_app
    from aimass.gateway.gateway import Gateway
    from aimass.server.announcing import AnnouncingServer
    from aimass.server.connection import connection_options

    engine, deployments = build_server_engine(registry, settings, preloaded=preloaded)
    app = create_app(
        settings,
        registry=registry,
        engine=engine,
        deployments=deployments,
        gateway=Gateway.from_settings(settings, registry.database, limiter=limiter),
        preload=preload,
        worker_header=worker_header,
    )
    log_level = settings.server.log_level
    uv_config = uvicorn.Config(
        app,
        log_level=log_level,
        access_log=log_level in ("debug", "trace", "info"),
        lifespan="on",
        timeout_graceful_shutdown=math.ceil(settings.serving.request_timeout_s),
        ssl_certfile=tls[0] if tls else None,
        ssl_keyfile=tls[1] if tls else None,
        **connection_options(settings.server),
    )
    return AnnouncingServer(uv_config, on_started)


def _run(server: uvicorn.Server, sock: socket.socket) -> None:
    # uvicorn re-raises the SIGTERM/SIGINT it handled once it has shut
    # down gracefully; by then exiting 0 is the truth, not a crash.
    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, _exit_after_shutdown)
    server.run(sockets=[sock])


def _supervise(
    settings: Settings,
    registry: Registry,
    preload: Sequence[str],
    sock: socket.socket,
    tls: tuple[str, str] | None,
    on_started: Callable[[], object],
) -> int:
    """Load the start-up models once, then fork workers that share them and the socket."""
    from aimass.gateway.ratelimit import MemoryLimiter
    from aimass.registry import Registry
    from aimass.serving.backend import keep_out_of_collections
    from aimass.serving.prefork import SharedModels
    from aimass.serving.supervisor import WorkerPool

    workers = settings.server.workers
    # Imported before the fork, so that their memory is shared by the workers too.
    import uvicorn.loops.auto
    import uvicorn.protocols.http.auto
    import uvicorn.protocols.websockets.auto  # noqa: F401

    import aimass.app  # noqa: F401

    shared = SharedModels.load(
        registry, preload, workers=workers, allow_missing=settings.server.allow_missing
    )
    # Made before the fork, so that every worker takes from the same counts.
    limiter = MemoryLimiter() if settings.gateway.rate_limit_backend == "memory" else None
    # Connections must not cross a fork: each worker opens its own registry.
    registry.close()
    keep_out_of_collections()

    def run_worker(slot: int, ready: Callable[[], None]) -> int:
        shared.after_fork()
        own = Registry.from_settings(settings)
        try:
            server = _server(
                settings,
                own,
                tls,
                preload,
                on_started=ready,
                preloaded=shared.models,
                limiter=limiter,
                worker_header=True,
            )
            _run(server, sock)
        finally:
            own.close()
        return 0

    return WorkerPool(run_worker, workers, on_started=on_started, on_stop=sock.close).run()
