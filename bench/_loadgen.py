"""Load generators for bench/serve.py: wrk (preferred) and an asyncio+httpx fallback.

Both return the same figures for one run: ``rps``, ``p50_ms``, ``p99_ms``,
``errors`` (non-2xx answers plus socket errors) and ``requests``.

The fallback runs as ``python bench/_loadgen.py URL BODY_FILE CONNECTIONS DURATION``
in its own process (so it can be pinned to its own core) and prints one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

__all__ = ["parse_wrk", "run_loadgen", "run_wrk", "wrk_script"]

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def wrk_script(body: bytes) -> str:
    """A wrk Lua script that POSTs ``body`` as JSON."""
    text = body.decode()
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = [{eq}[{text}]{eq}]\n"
    )


def run_wrk(
    url: str, script: Path, connections: int, duration: float, prefix: list[str]
) -> dict[str, Any]:
    """One wrk run (``prefix`` pins it, e.g. ``taskset -c 1``); its parsed figures."""
    argv = [
        *prefix,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "30s",
        "-s",
        str(script),
        "--latency",
        url,
    ]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    return parse_wrk(done.stdout)


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, p50 and p99 (ms) and error counts from ``wrk --latency`` output."""
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if rps is None:
        raise ValueError(f"no Requests/sec in wrk output:\n{output}")
    quantiles = {
        q: float(v) * _UNITS[u]
        for q, v, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    }
    total = re.search(r"^\s*(\d+) requests in", output, re.M)
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if sockets:
        errors += sum(int(x) for x in sockets.groups())
    return {
        "rps": float(rps.group(1)),
        "p50_ms": quantiles["50"],
        "p99_ms": quantiles["99"],
        "requests": int(total.group(1)) if total else 0,
        "errors": errors,
    }


def run_loadgen(
    url: str, body: bytes, connections: int, duration: float, prefix: list[str]
) -> dict[str, Any]:
    """One fallback run in a separate (pinned) process."""
    with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        argv = [*prefix, sys.executable, __file__, url, body_file.name, str(connections)]
        done = subprocess.run([*argv, str(duration)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed: {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


async def _drive(url: str, body: bytes, connections: int, duration: float) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    errors = 0
    headers = {"content-type": "application/json"}
    # One client per connection: a shared pool serialises on its lock at high concurrency.
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    clients = [httpx.AsyncClient(limits=limits, timeout=30.0) for _ in range(connections)]

    async def worker(client: httpx.AsyncClient, deadline: float) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:
                answer = await client.post(url, content=body, headers=headers)
                ok = answer.status_code < 400
            except httpx.HTTPError:
                ok = False
            if ok:
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1

    try:
        # Open the connections first so the timed part is steady state.
        warm = time.perf_counter() + 0.2
        await asyncio.gather(*(worker(c, warm) for c in clients))
        latencies.clear()
        errors = 0
        start = time.perf_counter()
        await asyncio.gather(*(worker(c, start + duration) for c in clients))
        elapsed = time.perf_counter() - start
    finally:
        for c in clients:
            await c.aclose()
    latencies.sort()

    def q(p: float) -> float:
        return 1000 * latencies[min(len(latencies) - 1, int(p * len(latencies)))]

    return {
        "rps": len(latencies) / elapsed,
        "p50_ms": q(0.50),
        "p99_ms": q(0.99),
        "requests": len(latencies),
        "errors": errors,
    }


if __name__ == "__main__":
    _url, _body, _conns, _duration = sys.argv[1:5]
    figures = asyncio.run(_drive(_url, Path(_body).read_bytes(), int(_conns), float(_duration)))
    print(json.dumps(figures), flush=True)
