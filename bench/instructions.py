"""Instructions per request, counted by callgrind: a cost that a noisy machine cannot blur.

On a shared machine ``serve.py``'s requests per second move by a fifth from one minute to the
next, which hides any change smaller than that. The number of instructions the app runs for a
request does not move: callgrind (valgrind) counts them, the same count on every run whatever
else the machine is doing. This script counts them for the OIP workloads of ``serve.py`` and,
with ``--against REF``, for an earlier version of the code, and prints each as a ratio::

    apt-get install valgrind
    .venv/bin/python bench/instructions.py                   # this tree
    .venv/bin/python bench/instructions.py --against HEAD~3  # and HEAD~3, as a ratio

What is counted, in one process per version (``--child``), on a fresh ``AIMASS_HOME`` with the
demo models:

* **app**: the ASGI app as ``aimass serve`` builds it (open gateway included), driven in-process
  by 32 concurrent clients that each send the workload's request body, ``--requests`` in all;
* **harness**: the same clients driving ``serve.py``'s constant-JSON floor app, that is what
  the clients themselves cost; ``app - harness`` is aimass's own cost per request;
* **model**: the raw model (``predict_named``) at batch 32, per row: the part of aimass's cost
  that is the model's own work;
* **routing**: the iris request sent to version 1 directly (``/v2/models/iris/versions/1``) and
  to a deployment splitting its traffic 50/50 between ``iris:1`` and ``iris@bench`` (the same
  version, so only the routing differs); the ratio of aimass's own cost is what routing a
  deployment's request costs over calling its version directly.

Not counted: uvicorn, the kernel and the network, which ``serve.py`` measures. Three settings
make the count repeatable: batches form without the ``max_delay`` wait (32 requests per batch,
whatever the timing under valgrind); the model runs on the event loop's thread rather than
an executor thread, since callgrind's toggle counts only the thread that turned it on; and the
router trusts a resolved reference for an hour, since under valgrind's slowed clock its usual
two seconds would expire every few requests and count registry queries a real server makes
once in thousands.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _process import aimass_executable, register_demo
from _workloads import WORKLOADS, Workload, raw_inputs

HERE = Path(__file__).resolve()
CLIENTS = 32
# Only the work inside this C function is counted: the child runs each measured stage in it.
TOGGLE = "functools_reduce"
OIP = [w for w in WORKLOADS if w.path.startswith("/v2/")]
# The routing stages: the iris body, by version and by a deployment of it.
ROUTED = {"version": "/v2/models/iris/versions/1/infer", "deployment": "/v2/models/bench/infer"}


def _measured(stage: Callable[[], object]) -> None:
    functools.reduce(lambda _, __: stage(), [0, 1])


def _drive(app: Any, path: str, body: bytes, requests: int) -> Awaitable[None]:
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise SystemExit(f"{path} answered {message['status']}")

    async def client(count: int) -> None:
        for _ in range(count):
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "headers": headers,
                "client": ("127.0.0.1", 40000),
                "server": ("127.0.0.1", 8000),
                "root_path": "",
            }
            await app(scope, receive, send)

    async def clients() -> None:
        await asyncio.gather(*(client(requests // CLIENTS) for _ in range(CLIENTS)))

    return clients()


def child(requests: int) -> None:
    """Run each stage once to warm up, then once inside the toggle; print the stage names."""
    import uvloop
    from _roles import _floor_app

    import aimass
    from aimass.app import build_server_engine, create_app
    from aimass.contract.reference import ModelRef
    from aimass.deployments.router import RouteTable
    from aimass.deployments.spec import DeploymentSpec, Target
    from aimass.registry import Registry
    from aimass.serving.executor import Executor
    from aimass.settings import Settings

    async def inline(self: Executor, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    Executor.run = inline  # type: ignore[method-assign]  # see the module docstring

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    settings = Settings()
    registry = Registry.from_settings(settings)
    engine, served = build_server_engine(registry, settings)
    app = create_app(
        settings, engine=engine, deployments=served, registry=registry, manage_engine=False
    )
    loop.run_until_complete(engine.start([w.model for w in OIP]))
    # Installed as the controller would, which is not what is counted here.
    registry.set_alias("iris", "bench", 1)
    iris = registry.resolve(ModelRef("iris", 1))
    split = (Target(ref="iris:1", weight=500), Target(ref="iris@bench", weight=500))
    served.router.install(
        RouteTable.build(
            "bench", DeploymentSpec(targets=split), {"iris:1": iris, "iris@bench": iris}
        )
    )

    def served(target: Any, w: Workload, path: str | None = None) -> Callable[[], object]:
        return lambda: loop.run_until_complete(_drive(target, path or w.path, w.body, requests))

    def raw(w: Workload) -> Callable[[], object]:
        model, batch = aimass.load(w.model), raw_inputs(w.key, 32)
        return lambda: [model.predict_named(batch) for _ in range(requests // 32)]

    stages = [
        ("harness", served(_floor_app, OIP[0])),
        *((f"app {w.key}", served(app, w)) for w in OIP),
        *((f"model {w.key}", raw(w)) for w in OIP),
        *((f"routed {how}", served(app, OIP[0], path)) for how, path in ROUTED.items()),
    ]
    for _, stage in stages:
        stage()
    for _, stage in stages:
        _measured(stage)
    loop.run_until_complete(engine.close())
    print(json.dumps([name for name, _ in stages]), flush=True)


def _counted(out: Path) -> list[int]:
    """The instruction total of each dump callgrind wrote, in the order of the stages."""
    dumps = sorted(out.parent.glob(f"{out.name}.*"), key=lambda p: int(p.suffix[1:]))
    totals = []
    for dump in dumps:
        for line in dump.read_text().splitlines():
            if line.startswith(("summary:", "totals:")):
                totals.append(int(line.split()[1]))
                break
    return totals


def count(
    version: str, tree: Path | None, env: dict[str, str], work: Path, requests: int
) -> dict[str, float]:
    """Instructions per request (per row for the model) of each stage, for one version.

    An earlier version (``tree``, a checkout of it) is counted by its own
    child, which knows how to assemble that version's app.
    """
    out = work / f"callgrind.{version.replace('/', '_')}"
    script = HERE if tree is None else tree / "bench" / HERE.name
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=no",
        f"--toggle-collect={TOGGLE}",
        f"--dump-after={TOGGLE}",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(script),
        "--child",
        "--requests",
        str(requests),
    ]
    child_env = {
        **env,
        "AIMASS_SERVING__MAX_DELAY_MS": "0",
        "AIMASS_SERVING__RESOLVE_TTL_S": "3600",
    }
    if tree is not None:
        child_env["PYTHONPATH"] = str(tree / "src")
    done = subprocess.run(argv, env=child_env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{version}: the counting child failed:\n{done.stderr[-3000:]}")
    names = json.loads(done.stdout.strip().splitlines()[-1])
    totals = _counted(out)
    if len(totals) != len(names):
        raise SystemExit(f"{version}: {len(names)} stages but {len(totals)} callgrind dumps")
    return {name: total / requests for name, total in zip(names, totals, strict=True)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--against", metavar="REF", help="also count this git revision")
    parser.add_argument("--requests", type=int, default=1600, help="requests per stage")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.requests)
        return 0
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    repo = HERE.parent.parent
    with tempfile.TemporaryDirectory(prefix="aimass-instructions-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "AIMASS_HOME": str(work / "home"), "PYTHONUNBUFFERED": "1"}
        started = time.perf_counter()
        print(f"registering the demo models in {work / 'home'}", file=sys.stderr, flush=True)
        register_demo(aimass_executable(), env)
        versions: list[tuple[str, Path | None]] = [("this tree", None)]
        if args.against:
            tree = work / "against"
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(repo),
                    "worktree",
                    "add",
                    "--detach",
                    "-q",
                    str(tree),
                    args.against,
                ],
                check=True,
            )
            versions.append((args.against, tree))
        print(
            f"counting {len(versions)} version(s) under callgrind, a few minutes each",
            file=sys.stderr,
            flush=True,
        )
        try:
            # One version per core: each count is one single-threaded valgrind process.
            with ThreadPoolExecutor(max_workers=len(versions)) as pool:
                counts = {
                    name: pool.submit(count, name, checkout, env, work, args.requests)
                    for name, checkout in versions
                }
                results = {name: future.result() for name, future in counts.items()}
        finally:
            if args.against:
                subprocess.run(
                    ["git", "-C", str(repo), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )
        print(f"counted in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    _report(results, args.requests)
    return 0


def _report(results: dict[str, dict[str, float]], requests: int) -> None:
    print(f"\nInstructions per request (callgrind; {requests} requests, {CLIENTS} clients)")
    print("  app: as aimass serve builds it; aimass: app - harness; model: raw, batch 32, per row")
    columns = ("app", "harness", "aimass", "model", "aimass-model")
    print(f"  {'version':12} {'workload':11}" + "".join(f" {c:>12}" for c in columns))
    own: dict[tuple[str, str], float] = {}
    for version, stages in results.items():
        harness = stages["harness"]
        for w in OIP:
            app, model = stages[f"app {w.key}"], stages[f"model {w.key}"]
            own[version, w.key] = app - harness
            figures = (app, harness, app - harness, model, app - harness - model)
            print(f"  {version[:12]:12} {w.key:11}" + "".join(f" {f:12.0f}" for f in figures))
    for version, stages in results.items():
        if "routed deployment" in stages:
            direct, deployed = (stages[f"routed {how}"] - stages["harness"] for how in ROUTED)
            print(
                f"\n{version}: a deployment's request over its version's, called directly "
                f"(aimass's own instructions): {deployed:.0f} / {direct:.0f} = "
                f"{deployed / direct:.4f}"
            )
    if len(results) == 2:
        new, old = results
        print(f"\nThis tree over {old} (aimass's own instructions per request; lower is better)")
        for w in OIP:
            print(f"  {w.key:11} {own[new, w.key] / own[old, w.key]:.3f}")


if __name__ == "__main__":
    raise SystemExit(main())
