"""Serving benchmark: the aimass server against the limits it cannot beat.

One run, on a fresh temporary ``AIMASS_HOME``:

1. registers the demo models (``aimass demo``);
2. measures the limits: each raw model in-process (one row per call, and
   rows/s at batch sizes 1..64), and the HTTP floor (a constant-JSON ASGI app
   served by uvicorn exactly as ``aimass serve`` serves, driven by the same
   load generator with the same request bodies);
3. serves iris, digits-mlp and minilm with ``aimass serve`` pinned to one core
   and drives each workload with ``wrk`` pinned to another, at 1 and 32
   connections, each measurement repeated (median of N runs);
4. measures idle memory (PSS of the server vs a plain process that only
   ``aimass.load``\\ s the same models) and cold start (spawn to first iris
   answer);
5. prints one table of ratios with the targets next to them.

    python bench/serve.py --quick            # 2 s per load run
    python bench/serve.py --json out.json    # 10 s per load run, figures to a file

Never run by the test suite. The numbers are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _loadgen import run_loadgen, run_wrk, wrk_script
from _process import (
    READY_TIMEOUT_S,
    Child,
    aimass_executable,
    pss_kb,
    register_demo,
    wait_ready,
    workdir,
)
from _report import evaluate, report
from _roles import child_floor, child_plain, child_raw, child_raw_batch
from _workloads import CONNECTIONS, MODELS, WORKLOADS, Workload

HERE = Path(__file__).resolve()


class Bench:
    def __init__(self, args: argparse.Namespace, home: Path, work: Path) -> None:
        self.args = args
        self.home = home
        self.work = work
        self.env = {**os.environ, "AIMASS_HOME": str(home), "PYTHONUNBUFFERED": "1"}
        extra = dict(item.split("=", 1) for item in args.server_env)
        self.server_env = {**self.env, **extra}
        self.children: list[Child] = []
        cpus = sorted(os.sched_getaffinity(0))
        have_taskset = shutil.which("taskset") is not None
        self.pinned = len(cpus) >= 2 and have_taskset
        self.server_core: int | None = cpus[0] if self.pinned else None
        self.load_core: int | None = cpus[1] if self.pinned else None
        self.aimass_bin = aimass_executable()
        use_wrk = args.loadgen == "wrk" or (args.loadgen == "auto" and shutil.which("wrk"))
        if args.loadgen == "wrk" and not shutil.which("wrk"):
            raise SystemExit("--loadgen wrk: wrk is not installed (apt-get install wrk)")
        self.loadgen = "wrk" if use_wrk else "httpx"
        self.results: dict[str, Any] = {}

    def pin(self, core: int | None, argv: list[str]) -> list[str]:
        return ["taskset", "-c", str(core), *argv] if core is not None else argv

    def spawn(
        self,
        name: str,
        argv: list[str],
        core: int | None,
        stdin: bool = False,
        env: dict[str, str] | None = None,
    ) -> Child:
        log = self.work / f"{name}.stderr"
        child = Child(self.pin(core, argv), env or self.env, log, stdin)
        self.children.append(child)
        return child

    def self_argv(self, role: str, *extra: str) -> list[str]:
        return [sys.executable, str(HERE), "--child", role, *extra]

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # -- steps

    def register(self) -> None:
        self.log(f"registering the demo models in {self.home}")
        register_demo(self.aimass_bin, self.env)

    def raw_budget(self) -> float:
        return 0.3 if self.args.quick else 1.0

    def raw(self) -> None:
        budget = self.raw_budget()
        self.log(f"raw models in-process (core {self.server_core}, {budget} s per timing)")
        argv = self.self_argv("raw", "--budget", str(budget), "--repeats", str(self.args.repeats))
        child = self.spawn("raw", argv, self.server_core)
        line = child.wait_line("{", timeout=600)
        child.stop()
        self.results["raw"] = json.loads(line)

    def memory_plain(self) -> None:
        self.log("memory of a plain process that aimass.load()s the three models")
        child = self.spawn("plain", self.self_argv("plain"), self.server_core, stdin=True)
        child.wait_line("loaded")
        loaded = pss_kb(child.pid)
        child.send("go")
        child.wait_line("predicted")
        predicted = pss_kb(child.pid)
        child.stop()
        self.results["memory"] = {"plain_loaded": loaded, "plain_after_predict": predicted}

    def serve_argv(self, *models: str) -> list[str]:
        argv = [str(self.aimass_bin), "serve", "--port", "0"]
        for m in models:
            argv += ["--model", m]
        return argv

    def cold_start(self) -> None:
        iris = WORKLOADS[0]
        runs, to_address = [], []
        for i in range(self.args.repeats):
            self.log(f"cold start {i + 1}/{self.args.repeats}: aimass serve --model iris")
            start = time.perf_counter()
            child = self.spawn(
                f"cold{i}", self.serve_argv(iris.model), self.server_core, env=self.server_env
            )
            url = child.wait_line("aimass serving on ").split()[-1]
            to_address.append(time.perf_counter() - start)
            with httpx.Client(timeout=10.0) as client:
                while True:
                    child.check_alive()
                    with contextlib.suppress(httpx.TransportError):
                        answer = client.post(
                            url + iris.path,
                            content=iris.body,
                            headers={"content-type": "application/json"},
                        )
                        if answer.status_code == 200:
                            break
                    if time.perf_counter() - start > READY_TIMEOUT_S:
                        raise TimeoutError("iris never answered")
                    time.sleep(0.005)  # poll interval
            runs.append(time.perf_counter() - start)
            child.stop()
        self.results["cold_start_s"] = {
            "runs": runs,
            "median": statistics.median(runs),
            "to_address_line_median": statistics.median(to_address),
        }

    def serve_and_floor(self) -> None:
        """The server and the floor side by side, their runs interleaved.

        On a shared machine the load drifts over minutes; alternating floor
        and server runs keeps each ratio's two figures close in time. The idle
        one of the two sleeps in epoll, on the same core.
        """
        argv = self.serve_argv(*MODELS)
        self.log(f"starting {' '.join(argv)} on core {self.server_core}")
        server = self.spawn("server", argv, self.server_core, env=self.server_env)
        url = server.wait_line("aimass serving on ").split()[-1]
        wait_ready(server, url + "/v2/health/ready")
        # Before anything else of ours maps the same libraries (PSS splits shared pages).
        self.results["memory"]["server_idle"] = pss_kb(server.pid)
        self.check_answers(url)

        self.log("HTTP floor: constant-JSON ASGI app under the same uvicorn, same core")
        floor = self.spawn("floor", self.self_argv("floor"), self.server_core)
        line = floor.wait_line("floor serving on ")
        floor_url, impl = line.split()[3], json.loads(line.split(" ", 4)[4])
        wait_ready(floor, floor_url + "/")
        self.results["uvicorn"] = impl

        raw = self.spawn(
            "raw-batch",
            self.self_argv("raw-batch", "--budget", str(self.raw_budget()), "--repeats", "1"),
            self.server_core,
            stdin=True,
        )
        raw.wait_line("ready", timeout=600)

        self.results["floor"], self.results["server"] = {}, {}
        self.results["raw_b32_between_runs"] = {}
        for w in WORKLOADS:
            floor_runs, server_runs = {}, {}
            for c in CONNECTIONS:
                f_runs, s_runs, r_runs = [], [], []
                for _ in range(self.args.repeats):
                    f_runs.append(self.one_run(floor_url + w.path, w, c))
                    if w.kind == "embedding" and c == 32:
                        raw.send(w.key)
                        r_runs.append(json.loads(raw.wait_line("{"))["rows_per_s"])
                    s_runs.append(self.one_run(url + w.path, w, c))
                    server.check_alive()
                if r_runs:
                    self.results["raw_b32_between_runs"][w.key] = statistics.median(r_runs)
                floor_runs[str(c)] = _median_runs(f_runs)
                server_runs[str(c)] = _median_runs(s_runs)
                self._log_run(w.key, c, "floor", floor_runs[str(c)])
                self._log_run(w.key, c, "aimass", server_runs[str(c)])
            self.results["floor"][w.key] = floor_runs
            self.results["server"][w.key] = server_runs
        floor.stop()
        raw.stop()
        self.results["memory"]["server_after_load"] = pss_kb(server.pid)
        self.results["server_shutdown_s"] = server.stop()

    def _log_run(self, key: str, c: int, what: str, m: dict[str, Any]) -> None:
        self.log(
            f"  {key:10} c={c:<2} {what:6} {m['rps']:9.1f} req/s  p50 {m['p50_ms']:7.2f} ms  "
            f"p99 {m['p99_ms']:7.2f} ms  errors {m['errors']}"
        )

    def check_answers(self, url: str) -> None:
        """Every workload answers 200 with the right shape, and warms up, before timing it."""
        with httpx.Client(timeout=30.0) as client:
            for w in WORKLOADS:
                for _ in range(20):
                    r = client.post(
                        url + w.path, content=w.body, headers={"content-type": "application/json"}
                    )
                    if r.status_code != 200:
                        raise SystemExit(f"{w.key}: HTTP {r.status_code}: {r.text[:500]}")
                body = r.json()
                ok = (
                    len(body["data"][0]["embedding"]) == 384
                    if w.kind == "embedding"
                    else body["outputs"][0]["shape"][0] == 1
                )
                if not ok:
                    raise SystemExit(f"{w.key}: unexpected answer {r.text[:500]}")

    def one_run(self, url: str, w: Workload, connections: int) -> dict[str, Any]:
        if self.loadgen == "wrk":
            script = self.work / f"post-{w.key}.lua"
            if not script.exists():
                script.write_text(wrk_script(w.body))
            return run_wrk(
                url, script, connections, self.args.duration, self.pin(self.load_core, [])
            )
        return run_loadgen(
            url, w.body, connections, self.args.duration, self.pin(self.load_core, [])
        )

    def stop_all(self) -> None:
        for child in self.children:
            with contextlib.suppress(Exception):
                child.stop(timeout=10)


def _median_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rps": statistics.median(r["rps"] for r in runs),
        "p50_ms": statistics.median(r["p50_ms"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "errors": sum(r["errors"] for r in runs),
        "runs": runs,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load run")
    parser.add_argument("--quick", action="store_true", help="2 s per load run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per load figure (median)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument(
        "--loadgen",
        choices=("auto", "wrk", "httpx"),
        default="auto",
        help="wrk if installed (auto), or the asyncio+httpx fallback",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for aimass serve only, e.g. AIMASS_SERVING__MAX_DELAY_MS=0",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and logs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--budget", type=float, default=2.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child == "raw":
        child_raw(args.budget, args.repeats)
        return 0
    if args.child == "raw-batch":
        child_raw_batch(args.budget, args.repeats)
        return 0
    if args.child == "plain":
        child_plain()
        return 0
    if args.child == "floor":
        child_floor()
        return 0
    if args.quick:
        args.duration = 2.0

    with workdir("aimass-bench-", args.keep) as work:
        home = work / "home"
        bench = Bench(args, home, work)
        note = (
            "load generator wrk (-t1, --latency)"
            if bench.loadgen == "wrk"
            else "wrk NOT available: fallback asyncio+httpx load generator (one process, closed "
            "loop, one client per connection; it tops out near 1k req/s on one core, so fast "
            "workloads and the floor measure the client, not the server)"
        )
        if not bench.pinned:
            note += "; NOT pinned (needs taskset and 2 CPUs)"
        bench.log(note)
        load_before = os.getloadavg()
        try:
            bench.register()
            bench.raw()
            bench.memory_plain()
            bench.cold_start()
            bench.serve_and_floor()
        finally:
            bench.stop_all()
        results = bench.results
        results["meta"] = {
            "duration_s": args.duration,
            "repeats": args.repeats,
            "loadgen": bench.loadgen,
            "loadgen_note": note,
            "server_core": bench.server_core,
            "load_core": bench.load_core,
            "uvicorn": results.get("uvicorn"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "loadavg_1m_start_end": [load_before[0], os.getloadavg()[0]],
            "server_env": args.server_env,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        results["targets"] = evaluate(results)
        print(report(results))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
            bench.log(f"figures written to {args.json}")
        if args.keep:
            bench.log(f"home and logs kept in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
