"""What bench/serve.py runs in its child processes (``serve.py --child ROLE``).

Each role runs in its own process so the parent can pin it to a core and read
its memory: ``raw`` times the models in-process, ``plain`` loads them and
waits, ``floor`` serves a constant-JSON ASGI app with uvicorn.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from _workloads import MODELS, WORKLOADS, raw_inputs

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def child_raw(budget_s: float, repeats: int) -> None:
    """Time each model's ``predict_named`` (the call the engine makes) in-process.

    Every figure is the median of ``repeats`` timings of at least ``budget_s``.
    """
    import gc

    import aimass

    result: dict[str, Any] = {}
    try:
        import torch

        result["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    for w in WORKLOADS:
        model = aimass.load(w.model)
        one = raw_inputs(w.key, 1)
        for _ in range(20):
            model.predict_named(one)
        one_row = _median_timing(partial(model.predict_named, one), budget_s, repeats)
        batches: dict[str, float] = {}
        for size in BATCH_SIZES:
            x = raw_inputs(w.key, size)
            for _ in range(3):
                model.predict_named(x)
            timed = _median_timing(partial(model.predict_named, x), budget_s, repeats)
            batches[str(size)] = timed["calls_per_s"] * size
        best = max(batches, key=lambda s: batches[s])
        result[w.key] = {
            "one_row": one_row,
            "rows_per_s_by_batch": batches,
            "best_batch": int(best),
            "best_rows_per_s": batches[best],
        }
        del model
        gc.collect()
    print(json.dumps(result), flush=True)


def child_raw_batch(budget_s: float, repeats: int) -> None:
    """Keep the embedding models loaded; time batch 32 each time the parent asks.

    The parent asks between its server runs, so the raw figure an embedding
    ratio divides by is taken in the same minutes as the server's, not
    minutes earlier on a machine whose speed drifts.
    """
    import aimass

    models = {w.key: aimass.load(w.model) for w in WORKLOADS if w.kind == "embedding"}
    batches = {key: raw_inputs(key, 32) for key in models}
    for key, model in models.items():
        for _ in range(3):
            model.predict_named(batches[key])
    print("ready", flush=True)
    for line in sys.stdin:
        key = line.strip()
        timed = _median_timing(partial(models[key].predict_named, batches[key]), budget_s, repeats)
        print(json.dumps({"rows_per_s": timed["calls_per_s"] * 32}), flush=True)


def _median_timing(fn: Callable[[], object], budget_s: float, repeats: int) -> dict[str, float]:
    import gc

    timings = []
    for _ in range(repeats):
        gc.collect()
        timings.append(_time_calls(fn, budget_s))
    return {key: statistics.median(t[key] for t in timings) for key in timings[0]}


def _time_calls(fn: Callable[[], object], budget_s: float, min_calls: int = 5) -> dict[str, float]:
    latencies: list[float] = []
    start = time.perf_counter()
    while True:
        t = time.perf_counter()
        fn()
        now = time.perf_counter()
        latencies.append(now - t)
        if now - start >= budget_s and len(latencies) >= min_calls:
            break
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "calls": len(latencies),
        "calls_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * _quantile(latencies, 0.50),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
    }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def child_plain() -> None:
    """Load the models like a user would, then wait so the parent can read our PSS."""
    import aimass

    models = {name: aimass.load(name) for name in MODELS}
    print("loaded", flush=True)
    sys.stdin.readline()
    for w in WORKLOADS:
        models[w.model].predict_named(raw_inputs(w.key, 1))
    print("predicted", flush=True)
    sys.stdin.readline()


async def _floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The least an ASGI server can do: read the request, answer a constant JSON body."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b'{"model_name":"floor","outputs":[]}'
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def child_floor() -> None:
    """Serve ``_floor_app`` the way ``aimass.cli.serve`` serves the real app.

    Same uvicorn flags: loop and http left at "auto" (uvloop and httptools when
    installed), lifespan on, access log off at the default "warning" level,
    a pre-bound socket.
    """
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(_floor_app, log_level="warning", access_log=False, lifespan="on")
    config.load()
    impl = {
        "http": config.http_protocol_class.__name__,
        "loop": _loop_name(),
    }
    port = sock.getsockname()[1]
    print(f"floor serving on http://127.0.0.1:{port} {json.dumps(impl)}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


def _loop_name() -> str:
    import importlib.util

    return "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
