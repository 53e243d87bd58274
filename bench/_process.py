"""Child processes for the bench scripts: the aimass command, the demo models, spawn, wait, stop."""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from _workloads import MODELS

READY_TIMEOUT_S = 180.0


class Child:
    """A subprocess with its stdout read into a queue, so we can wait and check liveness."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, stdin: bool = False):
        self.argv = argv
        self.log = log
        self.started = time.perf_counter()
        self._err = log.open("wb")
        self.proc = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._err,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(
                f"{' '.join(self.argv)} exited with {self.proc.returncode}:\n{self.stderr_tail()}"
            )

    def stderr_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace")
        return "\n".join(text.replace("\r", "\n").splitlines()[-lines:])

    def wait_line(self, prefix: str, timeout: float = READY_TIMEOUT_S) -> str:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            try:
                line = self.lines.get(timeout=0.05)
            except queue.Empty:
                self.check_alive()
                continue
            if line.startswith(prefix):
                return line
        raise TimeoutError(f"no line starting {prefix!r} from {self.argv} in {timeout:.0f} s")

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self, timeout: float = 30.0) -> float | None:
        """SIGTERM, wait; SIGKILL if it will not go. Returns the seconds it took, None if killed."""
        self._err.close()
        if self.proc.poll() is not None:
            return 0.0
        start = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None
        return time.perf_counter() - start


def wait_ready(child: Child, url: str, timeout: float = READY_TIMEOUT_S) -> None:
    """Poll ``url`` until it answers 200, failing fast if the process died."""
    deadline = time.perf_counter() + timeout
    with httpx.Client(timeout=5.0) as client:
        while time.perf_counter() < deadline:
            child.check_alive()
            with contextlib.suppress(httpx.TransportError):
                if client.get(url).status_code == 200:
                    return
            time.sleep(0.02)  # poll interval, not a wait for something
    raise TimeoutError(f"{url} not ready after {timeout:.0f} s")


def pss_kb(pid: int) -> dict[str, int]:
    """PSS and RSS of a process and its descendants, from smaps_rollup."""
    totals = {"pss_kb": 0, "rss_kb": 0}
    for p in _tree(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                field, _, rest = line.partition(":")
                if field in ("Pss", "Rss"):
                    totals[f"{field.lower()}_kb"] += int(rest.split()[0])
    return totals


def _tree(pid: int) -> list[int]:
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError):
            for child in (task / "children").read_text().split():
                found.extend(_tree(int(child)))
    return found


def aimass_executable() -> Path:
    """The ``aimass`` command of the Python running the bench."""
    beside = Path(sys.executable).with_name("aimass")
    if beside.exists():
        return beside
    found = shutil.which("aimass")
    if found is None:
        raise SystemExit("the aimass command is not installed (pip install -e '.[all]')")
    return Path(found)


def register_demo(aimass_bin: Path, env: dict[str, str]) -> None:
    """``aimass demo`` in the ``AIMASS_HOME`` of ``env``; exits unless every bench model is in."""
    done = subprocess.run(
        [str(aimass_bin), "demo", "--json"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"aimass demo failed:\n{done.stdout}\n{done.stderr}")
    report = json.loads(done.stdout)
    missing = [m for m in MODELS if report.get(m, {}).get("status") != "registered"]
    if missing:
        raise SystemExit(f"demo models not registered: {missing}: {report}")


@contextlib.contextmanager
def workdir(prefix: str, keep: bool) -> Iterator[Path]:
    """A fresh temporary directory for one run, removed afterwards unless ``keep``."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if not keep:
            shutil.rmtree(path, ignore_errors=True)
