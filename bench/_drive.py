"""The load side of bench/deploy.py, in a process of its own (pinned to the load core).

``python bench/_drive.py PLAN.json`` prints one JSON line. The plan names the
server (``host``, ``port``), the ``streams`` (deployment, path, body,
connections) and either a ``duration`` (a plain load run: each stream's
figures) or ``swaps`` (the hot-swap run): while the streams run, change the
deployments' version ``count`` times through ``POST /v1/deployments/{name}/set``,
taking the deployments in turn, each to the other of its two versions; wait
until an answer comes from the new version; then hold ``settle`` seconds (the
swap's window goes on while the server drains and releases the old version)
and ``steady`` seconds more, outside any window, before the next change.

The swap run checks every request: failed (not 200, or a socket error), and
answered by a version outside its deployment at that moment. Version ``v`` of
a deployment may answer from the moment the change that adds it is sent until
the first answer from the version that replaces it (a request routed before
the switch may finish after it, so a request counts by when it started and
ended: it must overlap that interval). Latency: p99 of the requests that
overlap a swap window against p99 of those that overlap none.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from _client import Record, Stream, quantile, run_streams, summary


@dataclass
class _Change:
    deployment: str
    version: str
    sent: float
    seen: float = float("nan")
    took_s: float = float("nan")  # the set request alone (it loads and warms the version)


async def _swap(plan: dict[str, Any], streams: list[Stream], stop: asyncio.Event) -> list[_Change]:
    import httpx

    spec = plan["swaps"]
    versions: dict[str, list[str]] = spec["deployments"]
    current = {name: 0 for name in versions}
    by_name = {s.name: s for s in streams}
    changes: list[_Change] = []
    base = f"http://{plan['host']}:{plan['port']}"
    names = list(versions)
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60.0) as client:
            await asyncio.sleep(spec["steady"] + 0.3)  # a steady stretch before the first change
            for k in range(spec["count"]):
                name = names[k % len(names)]
                current[name] = 1 - current[name]
                version = versions[name][current[name]]
                seen = asyncio.Event()
                watched = by_name[name].seen  # the clients hold this dict: change it in place
                watched.clear()
                watched[version] = seen
                change = _Change(name, version, time.perf_counter())
                changes.append(change)
                body = {"targets": [{"ref": version, "weight": 100}]}
                answer = await client.post(f"/v1/deployments/{name}/set", json=body)
                change.took_s = time.perf_counter() - change.sent
                if answer.status_code != 200:
                    raise RuntimeError(f"set {name} {version}: {answer.status_code} {answer.text}")
                await asyncio.wait_for(seen.wait(), timeout=30.0)
                change.seen = time.perf_counter()
                await asyncio.sleep(spec["settle"] + spec["steady"])
    finally:
        stop.set()
    return changes


def _allowed(
    initial: dict[str, str], changes: list[_Change]
) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    """Per (deployment, version): the sorted starts and ends of when it may answer."""
    spans: dict[tuple[str, str], tuple[list[float], list[float]]] = {}
    open_since = {name: (version, float("-inf")) for name, version in initial.items()}
    for change in changes:
        old, since = open_since[change.deployment]
        starts, ends = spans.setdefault((change.deployment, old), ([], []))
        starts.append(since)
        ends.append(change.seen)
        open_since[change.deployment] = (change.version, change.sent)
    for name, (version, since) in open_since.items():
        starts, ends = spans.setdefault((name, version), ([], []))
        starts.append(since)
        ends.append(float("inf"))
    return spans


def _outside(
    name: str, r: Record, spans: dict[tuple[str, str], tuple[list[float], list[float]]]
) -> bool:
    found = spans.get((name, r.version))
    if found is None:
        return True
    starts, ends = found
    i = bisect.bisect_left(starts, r.end) - 1  # the last span that began before r ended
    return i < 0 or ends[i] <= r.start


def _judge(
    plan: dict[str, Any], streams: list[Stream], changes: list[_Change], began: float
) -> dict[str, Any]:
    settle = plan["swaps"]["settle"]
    windows = sorted((c.sent, c.seen + settle) for c in changes)
    window_starts = [w[0] for w in windows]
    initial = {name: pair[0] for name, pair in plan["swaps"]["deployments"].items()}
    spans = _allowed(initial, changes)
    failed = outside = 0
    steady: list[float] = []
    swapping: list[float] = []
    examples: list[str] = []
    for s in streams:
        for r in s.records:
            if r.status != 200:
                failed += 1
                continue
            if _outside(s.name, r, spans):
                outside += 1
                if len(examples) < 5:
                    examples.append(f"{s.name} answered by {r.version} at {r.start - began:.3f}s")
            i = bisect.bisect_left(window_starts, r.end) - 1
            in_window = i >= 0 and windows[i][1] > r.start
            (swapping if in_window else steady).append(r.end - r.start)
    took = sorted(c.seen - c.sent for c in changes)
    sets = sorted(c.took_s for c in changes)
    requests = sum(len(s.records) for s in streams)
    return {
        "changes": len(changes),
        "requests": requests,
        "failed": failed,
        "outside": outside,
        "outside_examples": examples,
        "steady_requests": len(steady),
        "window_requests": len(swapping),
        "steady_p50_ms": quantile(steady, 0.5),
        "steady_p99_ms": quantile(steady, 0.99),
        "window_p50_ms": quantile(swapping, 0.5),
        "window_p99_ms": quantile(swapping, 0.99),
        "swap_s_median": took[len(took) // 2],
        "swap_s_max": took[-1],
        "set_s_median": sets[len(sets) // 2],
        "by_stream": {s.name: summary(s.records, time.perf_counter() - began) for s in streams},
    }


async def _main(plan: dict[str, Any]) -> dict[str, Any]:
    streams = [
        Stream(s["name"], s["path"], s["body"].encode(), s["connections"]) for s in plan["streams"]
    ]
    stop = asyncio.Event()
    host, port = plan["host"], plan["port"]
    if "swaps" in plan:
        load = asyncio.create_task(run_streams(host, port, streams, stop))
        changes = await _swap(plan, streams, stop)
        began = await load
        return _judge(plan, streams, changes, began)
    loop = asyncio.get_running_loop()
    loop.call_later(0.3 + plan["duration"], stop.set)
    began = await run_streams(host, port, streams, stop)
    seconds = time.perf_counter() - began
    records = [r for s in streams for r in s.records]
    return {
        "all": summary(records, seconds),
        **{s.name: summary(s.records, seconds) for s in streams},
    }


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_main(json.loads(Path(sys.argv[1]).read_text())))), flush=True)
