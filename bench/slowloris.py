"""Slowloris: how normal requests fare while N connections trickle their headers in.

One run, on a fresh temporary ``AIMASS_HOME`` holding iris alone: ``aimass serve --model iris``
with its default settings (so the code before the connection limits starts it the same way),
its soft limit of open files set to ``--server-nofile`` (1,024, the usual ``ulimit -n``; 0 keeps
this shell's) and its hard one to ``--server-nofile-hard`` (0 keeps this shell's). Two phases of
``--duration`` seconds each, one after the other:

1. **quiet**: ``--clients`` probes, each sending iris infer requests one after another, each on
   a new connection (as a new visitor's would be), each failed after ``--timeout`` seconds;
2. **attack**: the same probes while ``--connections`` connections (1,100) each send a request
   line and then one header byte every ``--interval`` seconds (2), never ending the head; one
   the server closes is opened again an interval later, so about N stay open (slowloris).
   Probing starts once all N are open together.

Figures, per phase: probes sent, the share answered 200, and the latency (connect to the end of
the answer) median and p99 of those answered; the attack's over the quiet's; and how often the
server closed an attacking connection. The probe and attack sockets are asyncio streams in this
one process, whose own soft limit of open files is raised to hold them. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from _process import Child, wait_ready
from _workloads import WORKLOADS

IRIS = next(w for w in WORKLOADS if w.key == "iris")
# The server, with its soft and hard limits of open files set first (argv[1:3]; 0: as it is).
_SERVE = (
    "import resource, sys\n"
    "soft, hard = (int(sys.argv.pop(1)) for _ in range(2))\n"
    "now = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
    "resource.setrlimit(resource.RLIMIT_NOFILE, (soft or now[0], hard or now[1]))\n"
    "from aimass.cli.app import main\n"
    "main()\n"
)
_HEAD = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: "


def _register(home: Path) -> None:
    from aimass.registry import Registry
    from aimass.settings import Settings
    from aimass.testing.models import iris_classifier

    registry = Registry.from_settings(Settings(home=home))
    try:
        clf, x = iris_classifier()
        registry.register(clf, "iris", sample_input=x[:2])
    finally:
        registry.close()


def _raise_own_nofile(wanted: int) -> int:
    """Raise this process's soft limit of open files to ``wanted`` (at most the hard one)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class _Phase:
    """What the probes saw in one phase."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # of the 200s, seconds
    failures: dict[str, int] = field(default_factory=dict)

    def fail(self, why: str) -> None:
        self.failures[why] = self.failures.get(why, 0) + 1

    @property
    def ok_share(self) -> float:
        return len(self.latencies) / self.sent if self.sent else float("nan")

    def quantile_ms(self, q: float) -> float:
        ordered = sorted(self.latencies)
        if not ordered:
            return float("nan")
        if q == 0.5:
            return 1000 * statistics.median(ordered)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def line(self, name: str) -> str:
        failed = ", ".join(f"{n} {why}" for why, n in sorted(self.failures.items())) or "none"
        return (
            f"{name:7} {self.sent:6} probes, {self.ok_share:7.1%} answered 200, "
            f"p50 {self.quantile_ms(0.5):8.1f} ms, p99 {self.quantile_ms(0.99):8.1f} ms; "
            f"failed: {failed}"
        )


async def _probe(host: str, port: int, request: bytes, timeout: float) -> str | float:
    """One request on a new connection: its latency in seconds if 200, else why it failed."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            answer = await reader.read()  # the server closes after it (Connection: close)
    except TimeoutError:
        return f"timeout ({timeout:g} s)"
    except OSError as exc:
        return type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    if not answer:
        return "closed unanswered"
    status = answer.split(b" ", 2)[1].decode(errors="replace") if b" " in answer else "?"
    return loop.time() - started if status == "200" else f"status {status}"


async def _probes(host: str, port: int, clients: int, duration: float, timeout: float) -> _Phase:
    request = (
        f"POST {IRIS.path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(IRIS.body)}\r\nConnection: close\r\n\r\n"
    ).encode() + IRIS.body
    phase = _Phase()
    loop = asyncio.get_running_loop()
    end = loop.time() + duration

    async def client() -> None:
        while loop.time() < end:
            phase.sent += 1
            outcome = await _probe(host, port, request, timeout)
            if isinstance(outcome, float):
                phase.latencies.append(outcome)
            else:
                phase.fail(outcome)

    await asyncio.gather(*(client() for _ in range(clients)))
    return phase


@dataclass
class _Attack:
    """N connections trickling a never-ending head; counts of what the server did to them."""

    host: str
    port: int
    connections: int
    interval: float
    opened: int = 0
    open: int = 0
    closed_by_server: int = 0
    connect_failures: int = 0
    answers: dict[str, int] = field(default_factory=dict)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _all_open: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._one()) for _ in range(self.connections)]

    async def all_connected(self, timeout: float) -> bool:
        try:
            async with asyncio.timeout(timeout):
                await self._all_open.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    async def _one(self) -> None:
        while not self._stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                self.connect_failures += 1
                await self._pause()
                continue
            self.opened += 1
            self.open += 1
            if self.open == self.connections:
                self._all_open.set()
            try:
                writer.write(_HEAD)
                answer = b""
                while not self._stop.is_set():
                    try:
                        async with asyncio.timeout(self.interval):
                            chunk = await reader.read(4096)
                    except TimeoutError:
                        writer.write(b"a")  # one more byte of a header that never ends
                        continue
                    if not chunk:
                        self.closed_by_server += 1
                        status = answer.split(b" ", 2)[1].decode() if b" " in answer else "none"
                        self.answers[status] = self.answers.get(status, 0) + 1
                        break
                    answer += chunk
            except OSError:
                self.closed_by_server += 1
                self.answers["reset"] = self.answers.get("reset", 0) + 1
            finally:
                self.open -= 1
                writer.close()
            await self._pause()  # as slowloris does, opened again at its next round

    async def _pause(self) -> None:
        try:
            async with asyncio.timeout(self.interval):
                await self._stop.wait()
        except TimeoutError:
            pass


async def _measure(
    url: str, args: argparse.Namespace
) -> tuple[_Phase, _Phase, _Attack, float | None]:
    address = urlsplit(url)
    assert address.hostname is not None and address.port is not None
    host, port = address.hostname, address.port
    quiet = await _probes(host, port, args.clients, args.duration, args.timeout)
    attack = _Attack(host, port, args.connections, args.interval)
    started = time.perf_counter()
    attack.start()
    ramp = time.perf_counter() - started if await attack.all_connected(60.0) else None
    try:
        under = await _probes(host, port, args.clients, args.duration, args.timeout)
    finally:
        await attack.stop()
    return quiet, under, attack, ramp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1100, help="attacking connections")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between bytes")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=4, help="concurrent probes")
    parser.add_argument("--timeout", type=float, default=5.0, help="a probe's limit, seconds")
    parser.add_argument(
        "--server-nofile", type=int, default=1024, help="the server's ulimit -n (0: this shell's)"
    )
    parser.add_argument(
        "--server-nofile-hard",
        type=int,
        default=0,
        help="the server's ulimit -Hn (0: this shell's)",
    )
    args = parser.parse_args(argv)
    own = _raise_own_nofile(args.connections + args.clients + 256)
    if own < args.connections + args.clients + 64:
        raise SystemExit(f"this process may open only {own} files; raise the hard limit")
    work = Path(tempfile.mkdtemp(prefix="aimass-bench-slowloris-"))
    try:
        home = work / "home"
        _register(home)
        env = {**os.environ, "AIMASS_HOME": str(home)}
        nofile = [str(args.server_nofile), str(args.server_nofile_hard)]
        argv_ = [sys.executable, "-c", _SERVE, *nofile, "serve", "--port", "0", "--model", "iris"]
        server = Child(argv_, env, work / "server.log")
        try:
            url = server.wait_line("aimass serving on ").split()[-1]
            wait_ready(server, f"{url}/v2/health/ready")
            limits = Path(f"/proc/{server.pid}/limits").read_text()
            soft, hard = next(
                line.split()[3:5] for line in limits.splitlines() if "open files" in line
            )
            import aimass

            load = os.getloadavg()
            print(
                f"aimass from {Path(aimass.__file__).parent}; server started with ulimit -n "
                f"{args.server_nofile or 'as this shell'}, serving with {soft} (hard {hard}); "
                f"{args.connections} attacking connections, a header byte every "
                f"{args.interval:g} s; {args.clients} probes, {args.duration:g} s per phase, "
                f"{args.timeout:g} s probe timeout; load average {load[0]:.2f} on "
                f"{os.cpu_count()} CPUs",
                flush=True,
            )
            quiet, under, attack, ramp = asyncio.run(_measure(url, args))
            server.check_alive()
        finally:
            server.stop()
        answers = ", ".join(f"{n} {s}" for s, n in sorted(attack.answers.items())) or "none"
        print(quiet.line("quiet"))
        print(under.line("attack"))
        together = (
            f"all {args.connections} open together {ramp:.1f} s after the start"
            if ramp is not None
            else f"never all {args.connections} open together within 60 s"
        )
        print(
            f"attack: {attack.opened} connections opened ({together}), "
            f"{attack.closed_by_server} closed by the server (answers: {answers}), "
            f"{attack.connect_failures} connects failed"
        )
        print(
            f"attack / quiet: answered {under.ok_share / quiet.ok_share:.2f}, "
            f"p50 {under.quantile_ms(0.5) / quiet.quantile_ms(0.5):.1f}x, "
            f"p99 {under.quantile_ms(0.99) / quiet.quantile_ms(0.99):.1f}x"
        )
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
