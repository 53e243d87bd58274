"""A closed-loop HTTP/1.1 client on raw asyncio streams that records every request.

bench/deploy.py needs what wrk does not give: each request's start and end,
its status and the version that answered (the ``x-aimass-version`` header).
httpx tops out near 1k requests/s on one core; this client writes a
pre-encoded request and parses only the status line, two headers and the
body's length, so one core drives several thousand.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Record", "Stream", "quantile", "request_bytes", "run_streams"]

_VERSION = b"x-aimass-version:"
_LENGTH = b"content-length:"


@dataclass(frozen=True)
class Record:
    """One request: when it started and ended (``perf_counter``), its status and version.

    ``status`` 0 is a socket error; ``version`` is the header's value, "" without one.
    """

    start: float
    end: float
    status: int
    version: str


@dataclass
class Stream:
    """``connections`` closed-loop clients POSTing ``body`` to ``path``; what they recorded."""

    name: str
    path: str
    body: bytes
    connections: int
    records: list[Record] = field(default_factory=list)
    seen: dict[str, asyncio.Event] = field(default_factory=dict)
    """Events set when an answer first comes from a version (``model:version``) named here."""


def request_bytes(host: str, path: str, body: bytes, method: str = "POST") -> bytes:
    """A complete keep-alive request with a JSON ``body``."""
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, str]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, version = 0, ""
    for line in head.split(b"\r\n")[1:]:
        lower = line.lower()
        if lower.startswith(_LENGTH):
            length = int(line[len(_LENGTH) :])
        elif lower.startswith(_VERSION):
            version = line[len(_VERSION) :].strip().decode()
    await reader.readexactly(length)
    return status, version


async def _client(host: str, port: int, stream: Stream, stop: asyncio.Event) -> None:
    request = request_bytes(f"{host}:{port}", stream.path, stream.body)
    records, seen = stream.records, stream.seen
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                status, version = await _exchange(reader, writer, request)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status, version = 0, ""
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
            records.append(Record(start, time.perf_counter(), status, version))
            event = seen.get(version)
            if event is not None and status == 200:
                event.set()
    finally:
        writer.close()


async def run_streams(
    host: str, port: int, streams: list[Stream], stop: asyncio.Event, warm_s: float = 0.3
) -> float:
    """Drive every stream until ``stop`` is set; returns when the recorded part began.

    The first ``warm_s`` seconds (connections opening, caches warming) are not recorded.
    """
    tasks = [
        asyncio.create_task(_client(host, port, s, stop))
        for s in streams
        for _ in range(s.connections)
    ]
    await asyncio.sleep(warm_s)
    began = time.perf_counter()
    for s in streams:
        s.records.clear()
    await asyncio.gather(*tasks)
    return began


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (seconds) in milliseconds; NaN when there are none."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def summary(records: list[Record], seconds: float) -> dict[str, Any]:
    """Requests/s, p50 and p99 (ms) of the 200s, and the count of everything else."""
    ok = [r.end - r.start for r in records if r.status == 200]
    return {
        "requests": len(records),
        "rps": len(ok) / seconds if seconds > 0 else float("nan"),
        "p50_ms": quantile(ok, 0.5),
        "p99_ms": quantile(ok, 0.99),
        "failed": len(records) - len(ok),
    }
