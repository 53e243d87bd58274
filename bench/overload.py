"""Overload: with a queue of 16 and 256 connections, how much completes, how fast refusals come.

One run, on a fresh temporary ``AIMASS_HOME`` holding iris alone: two
``aimass serve --model iris``, one with ``AIMASS_SERVING__QUEUE_SIZE=16`` and one with the
default queue (both on core 0; only the one under load is busy), and wrk (core 1) running, in
turn and close in time: the **unloaded** figure, the default-queue server at 256 connections
(room for every request, nothing refused); the **loaded** one, the queue-16 server at 256
connections; and the queue-16 server at 16 connections (as many as its slots). Last, the
queue-16 server also serves ``slow``, a model whose every call sleeps 50 ms, so most of 256
connections are refused: a probe sends one request at a time and times the refusals (503).

Figures: completed (2xx) requests/s of each run; loaded / unloaded (the median of run-by-run
ratios; target ≥ 0.8), loaded / 16 connections beside it; the refusal latency p50/p99 of the
probes to ``slow``. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _loadgen import run_wrk, wrk_script
from _process import Child, aimass_executable, wait_ready
from _workloads import WORKLOADS

TARGET = 0.8
IRIS = next(w for w in WORKLOADS if w.key == "iris")
SLOW_PATH = "/v2/models/slow/infer"
SLOW_BODY = b'{"inputs":[{"name":"x","datatype":"FP64","shape":[1,1],"data":[1]}]}'
_SLOW_MODULE = """
import time

from aimass import PythonModel


class Slow(PythonModel):
    code_paths = [__file__]

    def predict(self, inputs):
        time.sleep(0.05)
        return {"y": inputs["x"]}
"""


def _register(home: Path, work: Path) -> None:
    import importlib.util

    import numpy as np

    from aimass.registry import Registry
    from aimass.settings import Settings
    from aimass.testing.models import iris_classifier

    source = work / "aimass_bench_slow.py"
    source.write_text(_SLOW_MODULE)
    spec = importlib.util.spec_from_file_location(source.stem, source)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[source.stem] = module
    spec.loader.exec_module(module)
    registry = Registry.from_settings(Settings(home=home))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
        registry.register(module.Slow(), "slow", sample_input={"x": np.ones((1, 1))})
    finally:
        registry.close()


def _pin(core: int | None, argv: list[str]) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if core is not None else argv


def _wrk_run(url: str, script: Path, connections: int, duration: float, core: int | None) -> Any:
    figures = run_wrk(url, script, connections, duration, _pin(core, []))
    figures["completed_rps"] = (figures["requests"] - figures["errors"]) / duration
    return figures


class _Probe:
    """One request at a time against ``url`` while it runs; the latencies of the 503s."""

    def __init__(self, url: str, body: bytes) -> None:
        self.body = body
        self.url = url
        self.refused: list[float] = []
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> _Probe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        headers = {"content-type": "application/json"}
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                start = time.perf_counter()
                status = client.post(self.url, content=self.body, headers=headers).status_code
                took = time.perf_counter() - start
                if status == 503:
                    self.refused.append(took)
                else:
                    self.answered += 1
                self._stop.wait(0.01)  # a probe, not load


def _serving(child: Child) -> str:
    base = child.wait_line("aimass serving on ").split()[-1]
    wait_ready(child, f"{base}/v2/health/ready")
    return base


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="2 s per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--queue", type=int, default=16, help="AIMASS_SERVING__QUEUE_SIZE")
    parser.add_argument("--connections", type=int, default=256, help="of the loaded run")
    args = parser.parse_args(argv)
    duration = 2.0 if args.quick else args.duration
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    cpus = sorted(os.sched_getaffinity(0))
    pinned = len(cpus) >= 2 and shutil.which("taskset") is not None
    server_core, load_core = (cpus[0], cpus[1]) if pinned else (None, None)
    work = Path(tempfile.mkdtemp(prefix="aimass-bench-overload-"))
    try:
        home = work / "home"
        _register(home, work)
        env = {
            **os.environ,
            "AIMASS_HOME": str(home),
            "AIMASS_SERVING__QUEUE_SIZE": str(args.queue),
        }
        aimass = str(aimass_executable())
        argv = _pin(server_core, [aimass, "serve", "--port", "0", "--model", "iris"])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [env.get("PYTHONPATH"), str(work)]))
        server = Child(argv, env, work / "server.log")
        roomy_env = {k: v for k, v in env.items() if k != "AIMASS_SERVING__QUEUE_SIZE"}
        roomy = Child(argv, roomy_env, work / "roomy.log")
        try:
            url, roomy_url = (_serving(child) + IRIS.path for child in (server, roomy))
            script = work / "iris.lua"
            script.write_text(wrk_script(IRIS.body))
            slow_script = work / "slow.lua"
            slow_script.write_text(wrk_script(SLOW_BODY))
            slow_url = url.replace(IRIS.path, SLOW_PATH)
            load = os.getloadavg()
            print(
                f"queue {args.queue}, {args.connections} connections, {duration:g} s runs, "
                f"{'pinned' if pinned else 'NOT pinned'}, load average {load[0]:.2f}",
                flush=True,
            )
            ratios: list[float] = []
            per_slot: list[float] = []
            refused: list[float] = []
            for repeat in range(args.repeats):
                unloaded = _wrk_run(roomy_url, script, args.connections, duration, load_core)
                loaded = _wrk_run(url, script, args.connections, duration, load_core)
                with _Probe(slow_url, SLOW_BODY) as probe:
                    _wrk_run(slow_url, slow_script, args.connections, duration, load_core)
                slots = _wrk_run(url, script, args.queue, duration, load_core)
                server.check_alive()
                roomy.check_alive()
                ratio = loaded["completed_rps"] / unloaded["completed_rps"]
                ratios.append(ratio)
                per_slot.append(loaded["completed_rps"] / slots["completed_rps"])
                refused += probe.refused
                print(
                    f"run {repeat + 1}: unloaded {unloaded['completed_rps']:,.0f}/s, loaded "
                    f"{loaded['completed_rps']:,.0f}/s completed + "
                    f"{loaded['errors'] / duration:,.0f}/s refused (ratio {ratio:.2f}), "
                    f"{args.queue} connections {slots['completed_rps']:,.0f}/s; "
                    f"slow: probe {len(probe.refused)} refused, {probe.answered} answered",
                    flush=True,
                )
        finally:
            server.stop()
            roomy.stop()
        ratio = statistics.median(ratios)
        verdict = "ok" if ratio >= TARGET else "MISSED"
        print(
            f"completed at {args.connections} connections, queue {args.queue} / default queue: "
            f"{ratio:.2f} (target >= {TARGET}: {verdict}; runs "
            f"{', '.join(f'{r:.2f}' for r in ratios)}); / {args.queue} connections: "
            f"{statistics.median(per_slot):.2f}"
        )
        print(
            f"refusal latency: p50 {_quantile(refused, 0.5):.1f} ms, "
            f"p99 {_quantile(refused, 0.99):.1f} ms ({len(refused)} probes refused)"
        )
        return 0 if ratio >= TARGET else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
