"""A supervisor of pre-fork worker processes that share one listening socket.

:class:`WorkerPool` forks ``workers`` processes that each run a callable
(typically a uvicorn server on the socket the supervisor bound), replaces one
that dies (backing off if it keeps dying at start-up), says when every
worker of the first round serves (each calls the ``ready`` it is given), stops
them all if one of those exits before it served, and on SIGTERM or
SIGINT forwards SIGTERM to every worker and waits for them to drain; a second
signal kills them. It knows nothing of HTTP or models (what the workers share
is :mod:`aimass.serving.prefork`'s). Workers run in their own process group (a
terminal's Ctrl-C reaches only the supervisor, which stops them in order)
and, on Linux, receive SIGTERM if the supervisor dies, so no worker outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import select
import signal
import struct
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

__all__ = ["RunWorker", "WorkerPool"]

_log = logging.getLogger(__name__)

RunWorker = Callable[[int, Callable[[], None]], int]
"""Runs one worker in the forked process; returns its exit code.

It is given its slot number and ``ready``, to call once it serves.
"""

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float
    ready: bool = False


class WorkerPool:
    """A supervisor of ``workers`` forked processes, each running ``run_worker(slot, ready)``.

    A worker that exits while the pool is running is replaced in its slot;
    one that lived less than ``min_uptime`` seconds is replaced after a
    delay that doubles from ``restart_delay`` up to ``max_restart_delay``,
    so a worker that cannot start does not spin the CPU. ``on_stop`` runs
    once when the first stop signal arrives, before the workers are told:
    closing the supervisor's copy of the listening socket there makes new
    connections fail at once instead of waiting in the backlog. ``on_started``
    runs once every worker of the first round has called its ``ready``; if
    one of them exits before that, the pool stops every worker and
    :meth:`run` returns 1 (a worker that cannot start would fail again).
    """

    def __init__(
        self,
        run_worker: RunWorker,
        workers: int,
        *,
        min_uptime: float = 5.0,
        restart_delay: float = 0.1,
        max_restart_delay: float = 30.0,
        on_started: Callable[[], object] | None = None,
        on_stop: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self.min_uptime = min_uptime
        self.restart_delay = restart_delay
        self.max_restart_delay = max_restart_delay
        self._run_worker = run_worker
        self._on_started = on_started
        self._on_stop = on_stop
        self._clock = clock
        self._live: dict[int, _Worker] = {}
        self._due: dict[int, float] = {}  # slot -> when its replacement starts
        self._failures: dict[int, int] = {}  # slot -> quick deaths in a row
        self._signals: list[int] = []
        self._stopping = False
        self._clean_stop = True
        self._wakeup = (-1, -1)
        self._ready_pipe = (-1, -1)
        self._up = False  # every worker of the first round has served

    @property
    def pids(self) -> list[int]:
        """The process ids of the live workers."""
        return [worker.pid for worker in self._live.values()]

    def run(self) -> int:
        """Fork the workers and supervise them until a stop signal; returns the exit code.

        0 once every worker has exited cleanly after SIGTERM or SIGINT,
        1 if any of them failed to.
        """
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._wakeup = (read_fd, write_fd)
        handled = (*_STOP_SIGNALS, signal.SIGCHLD)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in handled}
        # A signal writes a byte here, waking select() however the race falls.
        previous_fd = signal.set_wakeup_fd(write_fd)
        ready_read, ready_write = os.pipe()
        os.set_blocking(ready_read, False)
        self._ready_pipe = (ready_read, ready_write)
        try:
            for slot in range(self.workers):
                self._spawn(slot)
            while self._live or (self._due and not self._stopping):
                self._wait()
                self._handle_signals()
                self._collect_ready()
                self._reap()
                self._respawn_due()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for fd in (read_fd, write_fd, ready_read, ready_write):
                os.close(fd)
        return 0 if self._clean_stop else 1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _wait(self) -> None:
        timeout = None
        if self._due and not self._stopping:
            timeout = max(0.0, min(self._due.values()) - self._clock())
        select.select([self._wakeup[0], self._ready_pipe[0]], [], [], timeout)
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wakeup[0], 512):
                pass

    def _handle_signals(self) -> None:
        signals, self._signals = self._signals, []
        for signum in signals:
            if signum == signal.SIGCHLD:
                continue
            if self._stopping:
                _log.warning("second stop signal: killing %d worker(s)", len(self._live))
                self._signal_all(signal.SIGKILL)
                self._clean_stop = False
            else:
                _log.info("stopping %d worker(s) after their requests finish", len(self._live))
                self._stop()

    def _stop(self) -> None:
        self._stopping = True
        self._due.clear()
        if self._on_stop is not None:
            self._on_stop()
        self._signal_all(signal.SIGTERM)

    def _collect_ready(self) -> None:
        """Mark the workers that said they serve; the first time all have, say so."""
        with contextlib.suppress(BlockingIOError):
            while data := os.read(self._ready_pipe[0], 4096):
                # Each worker writes its pid in one write, smaller than PIPE_BUF: never split.
                for (pid,) in struct.iter_unpack("=i", data):
                    if pid in self._live:
                        self._live[pid].ready = True
        if (
            not self._up
            and not self._stopping
            and len(self._live) == self.workers
            and all(worker.ready for worker in self._live.values())
        ):
            self._up = True
            if self._on_started is not None:
                self._on_started()

    def _signal_all(self, signum: int) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def _reap(self) -> None:
        while self._live:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = self._live.pop(pid, None)
            if worker is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            if not self._up and not worker.ready and not self._stopping:
                _log.error(
                    "worker %d exited with %s before it served; stopping", pid, _describe(code)
                )
                self._clean_stop = False
                self._stop()
                continue
            if self._stopping:
                if code != 0:
                    self._clean_stop = False
                    _log.warning("worker %d exited with %s while stopping", pid, _describe(code))
                continue
            lived = self._clock() - worker.started
            failures = self._failures.get(worker.slot, 0) + 1 if lived < self.min_uptime else 0
            self._failures[worker.slot] = failures
            delay = (
                0.0
                if failures == 0
                else min(self.max_restart_delay, self.restart_delay * 2 ** (failures - 1))
            )
            _log.warning(
                "worker %d exited with %s after %.1fs; replacing it in %.1fs",
                pid,
                _describe(code),
                lived,
                delay,
            )
            self._due[worker.slot] = self._clock() + delay

    def _respawn_due(self) -> None:
        if self._stopping:
            return
        now = self._clock()
        for slot, due in sorted(self._due.items()):
            if due <= now:
                del self._due[slot]
                self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        supervisor = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            os._exit(self._child(slot, supervisor))
        self._live[pid] = _Worker(slot, pid, self._clock())
        _log.info("worker %d started (slot %d)", pid, slot)

    def _child(self, slot: int, supervisor: int) -> int:
        """Everything a forked worker does; never returns into the supervisor's loop."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            for fd in (*self._wakeup, self._ready_pipe[0]):
                os.close(fd)
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.setpgid(0, 0)
            _die_with(supervisor)
            code = self._run_worker(slot, self._ready)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        return code

    def _ready(self) -> None:
        """Tell the supervisor, from a worker, that this worker serves."""
        os.write(self._ready_pipe[1], struct.pack("=i", os.getpid()))


def _die_with(supervisor: int) -> None:
    """Ask Linux to SIGTERM this process when the supervisor dies (elsewhere, a no-op)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != supervisor:  # it died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _describe(code: int) -> str:
    if code < 0:
        return f"signal {signal.Signals(-code).name}"
    return f"code {code}"
