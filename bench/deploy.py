"""Deployments under load: hot swaps, what a shadow costs the live path, what routing costs.

One run, on a fresh temporary ``AIMASS_HOME`` holding the demo models, a second
version of iris and of digits-mlp (something to swap to) and ``sleepy``, a
custom model that answers iris's requests ten times slower than iris:

1. **hot swaps**: ``aimass serve --port 0`` (core 0) serves the deployments
   ``iris-web`` (iris:1) and ``digits-web`` (digits-mlp:1); a closed-loop
   client (core 1, 16 connections on each) runs while ``--swaps`` changes
   (``POST /v1/deployments/{name}/set``, the deployments in turn, each to its
   other version) are each waited for until an answer comes from the new
   version. Every request is checked: failed ones, and ones answered by a
   version outside the deployment at that moment (``x-aimass-version``); p99
   inside the swap windows against the steady p99 (see ``_drive.py``);
2. **shadow cost**: the deployment ``shadowed`` (iris:1) with no shadow, with
   iris:2 as a shadow at sample 1.0 (as fast as the live version) and with
   ``sleepy`` at sample 1.0 (it sleeps ten times the live p50 of a sequential
   client, per row; it falls behind, its copies dropped and counted), at 1 connection (a
   sequential client) and at ``--connections``; the three interleaved, each
   ``--repeats`` times, medians quoted; then the shadows' counts from
   ``GET /v1/deployments/shadowed``;
3. **routing cost**: ``bench/instructions.py`` (callgrind; needs valgrind),
   whose routing stage counts a deployment's request against the same version
   called directly.

    python bench/deploy.py --quick   # 20 swaps, 3 s runs, fewer counted requests: ~5 minutes
    python bench/deploy.py           # 100 swaps, 10 s runs: ~11 minutes

Never run by the test suite. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _process import Child, aimass_executable, register_demo, wait_ready, workdir
from _workloads import WORKLOADS

HERE = Path(__file__).resolve()
SWAPPED = {"iris-web": ("iris:1", "iris:2"), "digits-web": ("digits-mlp:1", "digits-mlp:2")}
SHADOWED = "shadowed"
SLOW_FACTOR = 10
SHADOWS = {"none": None, "as fast": "iris:2", f"{SLOW_FACTOR}x slower": "sleepy:1"}
BODIES = {w.model: w.body.decode() for w in WORKLOADS}
T_WINDOW_P99 = 2.0
T_SHADOW = 0.05  # as fast: at most 5%; 10x slower: nothing measurable, so within it too
T_ROUTING = 0.02
PARTS = ("swaps", "shadows", "routing")
_SLEEPY_MODULE = """
import time

import numpy as np

from aimass import PythonModel

DELAY_S = {delay!r}


class Sleepy(PythonModel):
    code_paths = [__file__]

    def predict(self, inputs):
        n = len(inputs["input"])
        time.sleep(DELAY_S * n)  # per row: batching its copies does not make it keep up
        return {{"label": np.zeros(n, dtype=np.int64), "probabilities": np.full((n, 3), 1 / 3)}}
"""


class Bench:
    """The server, its REST API and the pinned load driver of one run."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.home = work / "home"
        self.env = {
            **os.environ,
            "AIMASS_HOME": str(self.home),
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(work)])),
        }
        self.server_env = {**self.env, **dict(item.split("=", 1) for item in args.server_env)}
        cpus = sorted(os.sched_getaffinity(0))
        self.pinned = len(cpus) >= 2 and shutil.which("taskset") is not None
        self.server_core = cpus[0] if self.pinned else None
        self.load_core = cpus[1] if self.pinned else None
        self.server: Child | None = None
        self.base = ""
        self.http = httpx.Client(timeout=60.0)
        self.runs = 0

    def pin(self, core: int | None, argv: list[str]) -> list[str]:
        return ["taskset", "-c", str(core), *argv] if core is not None else argv

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    # -- the registry and the server

    def register(self) -> None:
        self.log(f"registering the demo models and second versions in {self.home}")
        register_demo(aimass_executable(), self.env)
        from aimass.registry import Registry
        from aimass.settings import Settings
        from aimass.testing.models import iris_classifier
        from aimass.testing.torch_models import train_digits_mlp

        registry = Registry.from_settings(Settings(home=self.home))
        try:
            clf, x = iris_classifier()
            registry.register(clf, "iris", sample_input=x[:2])
            model, digits = train_digits_mlp()
            registry.register(model, "digits-mlp", sample_input=digits[:2], task="classification")
        finally:
            registry.close()

    def register_sleepy(self, delay_s: float) -> None:
        """``sleepy``: iris's signature, a ``delay_s`` sleep per call (it passes the warm-up)."""
        import importlib.util

        import numpy as np

        from aimass.registry import Registry
        from aimass.settings import Settings

        source = self.work / "aimass_bench_sleepy.py"
        source.write_text(_SLEEPY_MODULE.format(delay=delay_s))
        spec = importlib.util.spec_from_file_location(source.stem, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[source.stem] = module
        spec.loader.exec_module(module)
        registry = Registry.from_settings(Settings(home=self.home))
        try:
            registry.register(module.Sleepy(), "sleepy", sample_input={"input": np.zeros((1, 4))})
        finally:
            registry.close()

    def start_server(self) -> None:
        argv = self.pin(self.server_core, [str(aimass_executable()), "serve", "--port", "0"])
        self.log(f"starting {' '.join(argv)}")
        self.server = Child(argv, self.server_env, self.work / "server.stderr")
        self.base = self.server.wait_line("aimass serving on ").split()[-1]
        wait_ready(self.server, self.base + "/v2/health/ready")

    def stop_server(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.http.close()

    def rest(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        answer = self.http.request(method, self.base + path, json=body)
        if answer.status_code >= 300:
            raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()

    def converge(self, name: str, revision: int, timeout: float = 30.0) -> None:
        """Poll until this server serves ``revision`` of ``name``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            assert self.server is not None
            self.server.check_alive()
            status = self.rest("GET", f"/v1/deployments/{name}")["status"]
            if status and status["converged"] and status["revision"] == revision:
                return
            time.sleep(0.05)  # poll interval
        raise TimeoutError(f"{name} revision {revision} not served after {timeout:.0f} s")

    def create(self, name: str, ref: str) -> None:
        made = self.rest("POST", "/v1/deployments", {"name": name, "ref": ref})
        self.converge(name, made["revision"])

    def drive(self, plan: dict[str, Any]) -> dict[str, Any]:
        """One run of the load driver on the load core; its JSON figures."""
        assert self.server is not None
        self.runs += 1
        plan_file = self.work / f"plan{self.runs}.json"
        host, port = self.base.removeprefix("http://").split(":")
        plan_file.write_text(json.dumps({"host": host, "port": int(port), **plan}))
        argv = self.pin(self.load_core, [sys.executable, str(HERE.with_name("_drive.py"))])
        done = subprocess.run(
            [*argv, str(plan_file)], env=self.env, capture_output=True, text=True, check=False
        )
        self.server.check_alive()
        if done.returncode != 0:
            raise SystemExit(f"the load driver failed:\n{done.stderr[-3000:]}")
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    # -- the three parts

    def swaps(self) -> dict[str, Any]:
        for name, (first, _) in SWAPPED.items():
            self.create(name, first)
        per = self.args.connections // len(SWAPPED)
        streams = [
            {
                "name": name,
                "path": f"/v2/models/{name}/infer",
                "body": BODIES[first.split(":")[0]],
                "connections": per,
            }
            for name, (first, _) in SWAPPED.items()
        ]
        self.log(f"hot swaps: {self.args.swaps} changes under {per * len(streams)} connections")
        plan = {
            "streams": streams,
            "swaps": {
                "count": self.args.swaps,
                "settle": self.args.settle,
                "steady": self.args.steady,
                "deployments": {name: list(pair) for name, pair in SWAPPED.items()},
            },
        }
        return self.drive(plan)

    def shadow_to(self, ref: str | None) -> None:
        path = f"/v1/deployments/{SHADOWED}/shadow"
        changed = self.rest("POST", path, {"off": True})
        if ref is not None:
            changed = self.rest("POST", path, {"ref": ref, "sample": 1.0})
        self.converge(SHADOWED, changed["revision"])

    def shadow_run(self, connections: int, duration: float) -> dict[str, Any]:
        stream = {
            "name": SHADOWED,
            "path": f"/v2/models/{SHADOWED}/infer",
            "body": BODIES["iris"],
            "connections": connections,
        }
        return self.drive({"streams": [stream], "duration": duration})["all"]

    def live_p50_s(self) -> float:
        """What a sequential client waits for the live version (no shadow), in seconds.

        Not the server's own statistics: they time on the event loop's clock,
        which under uvloop moves in whole milliseconds, coarser than iris.
        """
        return float(self.shadow_run(1, 2.0)["p50_ms"]) / 1000

    def shadows(self) -> dict[str, Any]:
        self.create(SHADOWED, "iris:1")
        live_s = self.live_p50_s()
        delay = SLOW_FACTOR * live_s
        self.log(f"iris:1 p50 {live_s * 1000:.2f} ms: sleepy sleeps {delay * 1000:.1f} ms a row")
        self.register_sleepy(delay)
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {
            str(c): {mode: [] for mode in SHADOWS} for c in (1, self.args.connections)
        }
        for repeat in range(self.args.repeats):
            for c in runs:
                for mode, ref in SHADOWS.items():
                    self.shadow_to(ref)
                    figures = self.shadow_run(int(c), self.args.duration)
                    runs[c][mode].append(figures)
                    self.log(
                        f"  run {repeat + 1} c={c:<3} shadow {mode:11} {figures['rps']:8.0f} req/s "
                        f"p50 {figures['p50_ms']:6.2f} ms p99 {figures['p99_ms']:6.2f} ms "
                        f"failed {figures['failed']}"
                    )
        self.shadow_to(None)
        shown = self.rest("GET", f"/v1/deployments/{SHADOWED}?window_s=86400")
        return {
            "runs": runs,
            "stats": shown["stats"],
            "delay_ms": delay * 1000,
            "live_ms": live_s * 1000,
        }

    def instructions(self) -> dict[str, Any]:
        if shutil.which("valgrind") is None:
            return {"skipped": "valgrind is not installed (apt-get install valgrind)"}
        requests = 480 if self.args.quick else 1600
        argv = [sys.executable, str(HERE.with_name("instructions.py")), "--requests", str(requests)]
        self.log(f"routing cost: {' '.join(argv[1:])} (callgrind, a few minutes)")
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True, check=False)
        if done.returncode != 0:  # the load figures are still worth printing
            return {"skipped": f"instructions.py failed:\n{done.stderr[-2000:]}"}
        found = re.search(r"= ([\d.]+)\s*$", done.stdout, re.M)
        ratio = float(found.group(1)) if found else float("nan")
        return {"output": done.stdout.strip(), "ratio": ratio, "requests": requests}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


Target = tuple[str, float, str, bool]


def _swap_lines(s: dict[str, Any], args: argparse.Namespace) -> tuple[list[str], list[Target]]:
    ratio = s["window_p99_ms"] / s["steady_p99_ms"]
    lines = [
        f"Hot swaps: {s['changes']} version changes (REST set, each waited for until the new "
        f"version answered) under {args.connections} closed-loop connections "
        f"(iris-web and digits-web, {args.connections // 2} each)",
        f"  requests {s['requests']:,}; failed {s['failed']}; answered by a version outside the "
        f"deployment {s['outside']}",
        f"  change to first answer from the new version: median {s['swap_s_median']:.2f} s, max "
        f"{s['swap_s_max']:.2f} s (the set request itself, which loads and warms it: median "
        f"{s['set_s_median']:.2f} s)",
        f"  steady:      {s['steady_requests']:>8,} requests  p50 {s['steady_p50_ms']:6.2f} ms  "
        f"p99 {s['steady_p99_ms']:6.2f} ms",
        f"  swap window: {s['window_requests']:>8,} requests  p50 {s['window_p50_ms']:6.2f} ms  "
        f"p99 {s['window_p99_ms']:6.2f} ms  (change sent to first new answer + {args.settle:g} s)",
        *(f"    outside: {example}" for example in s["outside_examples"]),
    ]
    targets = [
        ("hot swaps: failed requests", s["failed"], "== 0", s["failed"] == 0),
        ("hot swaps: answers from outside the deployment", s["outside"], "== 0", s["outside"] == 0),
        (
            "hot swaps: window p99 / steady p99",
            ratio,
            f"<= {T_WINDOW_P99:g}",
            ratio <= T_WINDOW_P99,
        ),
    ]
    return lines, targets


def _shadow_lines(sh: dict[str, Any], args: argparse.Namespace) -> tuple[list[str], list[Target]]:
    lines = [
        f"Shadow cost: deployment {SHADOWED} (iris:1); shadow at sample 1.0 as fast (iris:2) or "
        f"{SLOW_FACTOR}x slower (sleepy:1, {sh['delay_ms']:.1f} ms a row; iris:1 p50 "
        f"{sh['live_ms']:.2f} ms at 1 connection); medians of {args.repeats} interleaved "
        f"{args.duration:g} s runs",
        f"  {'conns':>5} {'shadow':12}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'p50 cost':>10}"
        f"{'req/s cost':>11}{'failed':>7}  runs p50",
    ]
    targets: list[Target] = []
    for c, modes in sh["runs"].items():
        base_p50, base_rps = _median(modes["none"], "p50_ms"), _median(modes["none"], "rps")
        for mode, runs in modes.items():
            p50, rps = _median(runs, "p50_ms"), _median(runs, "rps")
            cost = p50 / base_p50 - 1
            if mode != "none":
                targets.append(
                    (
                        f"shadow {mode}, {c} conn: p50 cost",
                        cost,
                        f"<= {T_SHADOW:.0%}",
                        cost <= T_SHADOW,
                    )
                )
            lines.append(
                f"  {c:>5} {mode:12}{rps:9.0f}{p50:9.2f}{_median(runs, 'p99_ms'):9.2f}"
                f"{cost:+10.1%}{1 - rps / base_rps:+11.1%}{sum(r['failed'] for r in runs):7}  "
                + ", ".join(f"{r['p50_ms']:.2f}" for r in runs)
            )
    for ref in ("iris:2", "sleepy:1"):
        entry = sh["stats"].get(ref, {})
        comparison = entry.get("comparison", {})
        lines.append(
            f"  shadow {ref}: {entry.get('requests', 0):,} copies answered, "
            f"{comparison.get('dropped', 0):,} dropped, {comparison.get('compared', 0):,} compared"
        )
    return lines, targets


def _routing_lines(ins: dict[str, Any]) -> tuple[list[str], list[Target]]:
    lines = ["Routing cost (bench/instructions.py, callgrind)"]
    if "skipped" in ins:
        return [*lines, f"  skipped: {ins['skipped']}"], []
    lines += [f"  {line}" for line in ins["output"].splitlines() if line.strip()]
    cost = ins["ratio"] - 1
    return lines, [
        ("routing: instructions over direct", cost, f"<= {T_ROUTING:.0%}", cost <= T_ROUTING)
    ]


def report(results: dict[str, Any], args: argparse.Namespace) -> str:
    """The figures of every part that ran, then the targets."""
    lines: list[str] = []
    targets: list[Target] = []
    for key, part in (
        ("swaps", lambda r: _swap_lines(r, args)),
        ("shadows", lambda r: _shadow_lines(r, args)),
        ("instructions", _routing_lines),
    ):
        if key in results:
            more, met = part(results[key])
            lines += ["", *more]
            targets += met
    lines += ["", "Targets"]
    for name, value, target, ok in targets:
        shown = f"{value:+.1%}" if "cost" in name else f"{value:g}"
        lines.append(f"  {'ok  ' if ok else 'MISS'} {name:48} {shown:>10}  (target {target})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 swaps, 3 s runs")
    parser.add_argument("--swaps", type=int, help="version changes (default 100, quick 20)")
    parser.add_argument("--connections", type=int, default=32, help="of the loaded runs")
    parser.add_argument("--duration", type=float, help="seconds per shadow run (10, quick 3)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per shadow figure (median)")
    parser.add_argument("--settle", type=float, default=0.5, help="a swap window's tail, seconds")
    parser.add_argument("--steady", type=float, default=0.5, help="steady seconds between swaps")
    parser.add_argument(
        "--only",
        action="append",
        choices=PARTS,
        help="run only this part (repeatable; default: all three)",
    )
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="environment for aimass serve only, e.g. AIMASS_DEPLOYMENTS__SHADOW_HOLD_MS=0",
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary home and logs")
    args = parser.parse_args(argv)
    args.swaps = args.swaps or (20 if args.quick else 100)
    args.duration = args.duration or (3.0 if args.quick else 10.0)
    with workdir("aimass-bench-deploy-", args.keep) as work:
        bench = Bench(args, work)
        load = os.getloadavg()
        bench.log(
            f"{'pinned: server core 0, load core 1' if bench.pinned else 'NOT pinned'}, "
            f"load average {load[0]:.2f}"
        )
        results: dict[str, Any] = {}
        started = time.perf_counter()
        parts = args.only or PARTS
        try:
            bench.register()
            bench.start_server()
            if "swaps" in parts:
                results["swaps"] = bench.swaps()
            if "shadows" in parts:
                results["shadows"] = bench.shadows()
        finally:
            bench.stop_server()
        if "routing" in parts:
            results["instructions"] = bench.instructions()
        results["meta"] = {
            "seconds": time.perf_counter() - started,
            "loadavg_1m_start_end": [load[0], os.getloadavg()[0]],
            "pinned": bench.pinned,
        }
        print(report(results, args))
        print(
            f"\n{results['meta']['seconds']:.0f} s; load average {load[0]:.2f} at the start, "
            f"{os.getloadavg()[0]:.2f} at the end"
        )
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
        if args.keep:
            bench.log(f"home and logs kept in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
