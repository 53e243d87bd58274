"""Pre-fork worker processes that share one listening socket and one copy of the models.

:class:`SharedModels` loads the start-up models in the supervisor, *before*
it forks (what gunicorn calls ``--preload``). Each worker then builds its
:class:`~aimass.serving.engine.Engine` around those objects
(``Engine(..., preloaded=shared.models)``), so the weights — numpy arrays,
torch tensors, onnxruntime sessions — are the supervisor's pages, shared
copy-on-write and never written, and memory does not multiply by workers.
``gc.freeze()`` before forking keeps the collector from touching (and so
copying) the pages of the objects that hold them.

Forking a process that has started threads is only safe if the libraries
that own those threads expect it, so loading before a fork is done with care:

* torch runs its intra-op work on an OpenMP pool that a forked child
  inherits as a pool of threads that do not exist: the child's first
  parallel op hangs. The supervisor therefore sets torch to one thread
  before loading (so the pool is never started) and each worker restores
  ``max(1, threads // workers)`` after the fork, where it starts its own pool.
* onnxruntime sessions with one intra-op thread (the aimass default) start
  no threads; a model saved with more, or a torch model that sets its own
  thread count, would start them in the supervisor, so such a model is not
  loaded before the fork: each worker loads its own copy, and it is logged.
* tqdm's monitor thread (started by transformers' progress bars) is stopped
  before forking so no lock it holds is copied into a worker.
* numpy's OpenBLAS and jemalloc threads are fork-aware (they register
  ``pthread_atfork`` handlers) and need nothing.
* every worker re-seeds numpy's and torch's global generators, which a fork
  would otherwise copy into every worker identically.

:class:`WorkerPool` is the supervisor: it forks ``workers`` processes that
each run a callable (typically a uvicorn server on the socket the supervisor
bound), replaces one that dies (backing off if it keeps dying at start-up),
and on SIGTERM or SIGINT forwards SIGTERM to every worker and waits for them
to drain; a second signal kills them. It knows nothing of HTTP. Workers run
in their own process group (a terminal's Ctrl-C reaches only the supervisor,
which stops them in order) and, on Linux, receive SIGTERM if the supervisor
dies, so no worker outlives it.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import importlib.util
import logging
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import FrameType

from aimass.errors import AimassError
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.runtimes.model import LoadedModel
from aimass.serving.resolver import split_ref

__all__ = ["SharedModels", "WorkerPool"]

_log = logging.getLogger(__name__)

RunWorker = Callable[[int], int]
"""Runs one worker in the forked process, given its slot number; returns its exit code."""

_TORCH_RUNTIMES = frozenset({"torch", "transformers"})
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_PR_SET_PDEATHSIG = 1


class SharedModels:
    """Models loaded in the supervisor before it forks, shared by every worker it forks."""

    def __init__(
        self, models: Sequence[tuple[VersionInfo, LoadedModel]], *, torch_threads: int | None
    ) -> None:
        self.models = list(models)
        self._torch_threads = torch_threads

    @classmethod
    def load(cls, registry: Registry, refs: Sequence[str], *, workers: int) -> SharedModels:
        """Load ``refs`` now, in a way that is safe to fork afterwards.

        A reference that fails to resolve or load is logged and left out
        (each worker then tries it again, and shows it UNAVAILABLE if it
        fails there too): one bad model never stops the server. Models that
        cannot be loaded before a fork (see the module docstring) are left
        out too, for the workers to load themselves. Call it once, from the
        process that will fork, with no other threads of its own running.
        """
        models: list[tuple[VersionInfo, LoadedModel]] = []
        torch_threads: int | None = None
        for ref in refs:
            try:
                name, version, alias = split_ref(ref)
                info = registry.get_version(name, version, alias=alias)
            except AimassError as exc:
                _log.warning("could not preload model %s: %s", ref, exc.message)
                continue
            unsafe = _fork_unsafe(info)
            if unsafe:
                _log.warning("model %s is loaded by each worker, not shared: %s", info.ref, unsafe)
                continue
            # A torch model served by its ONNX plan never imports torch; one
            # without a plan must keep torch's pool from starting before the fork.
            torch_backed = info.manifest.runtime in _TORCH_RUNTIMES
            planned = torch_backed and _plan_serves(info)
            if torch_backed and not planned and torch_threads is None:
                torch_threads = _single_threaded_torch(workers)
            try:
                loaded = registry.load(info.model, info.version)
                if planned and getattr(loaded.runtime, "plan", None) is None:
                    # The plan did not open and torch loaded the module instead.
                    _log.warning("model %s is served by torch, not its ONNX plan", info.ref)
                    if torch_threads is None:
                        torch_threads = _single_threaded_torch(workers)
                models.append((info, loaded))
            except AimassError as exc:
                _log.warning("could not preload model %s: %s", info.ref, exc.message)
            except Exception:
                _log.exception("could not preload model %s", info.ref)
        _stop_tqdm_monitors()
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if others:
            _log.warning("threads %s are running before the fork; workers may deadlock", others)
        # Objects that exist now are shared with the workers; keeping the
        # collector away from them keeps their pages shared.
        gc.collect()
        gc.freeze()
        return cls(models, torch_threads=torch_threads)

    def after_fork(self) -> None:
        """Prepare a freshly forked worker: its torch threads and its own random seeds."""
        if "numpy" in sys.modules:
            import numpy as np

            # The legacy global generator is the state a fork copies.
            np.random.seed()
        if "torch" in sys.modules:
            import torch

            torch.seed()
            if self._torch_threads is not None:
                torch.set_num_threads(self._torch_threads)


def _fork_unsafe(info: VersionInfo) -> str:
    """Why the version cannot be loaded before a fork, or ``""`` if it can."""
    manifest = info.manifest
    if manifest.runtime == "onnx" and int(manifest.options.get("intra_op_threads", 1)) > 1:
        return "its onnxruntime session starts a thread pool, which does not survive a fork"
    if manifest.runtime == "torch" and manifest.options.get("threads") not in (None, 1):
        return "it sets torch's thread count, which starts a pool that does not survive a fork"
    return ""


def _plan_serves(info: VersionInfo) -> bool:
    """Whether the version has an ONNX serving plan that onnxruntime, installed here, can run."""
    return (
        "onnx_plan" in info.manifest.options and importlib.util.find_spec("onnxruntime") is not None
    )


def _single_threaded_torch(workers: int) -> int | None:
    """Keep torch's OpenMP pool from starting here; the thread count for each worker."""
    try:
        import torch
    except ImportError:  # the load will report the missing extra
        return None
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # Workers share the CPUs: without a split, each would start a full pool.
    return max(1, threads // workers)


def _stop_tqdm_monitors() -> None:
    if "tqdm" not in sys.modules:
        return
    from tqdm import TMonitor

    for thread in threading.enumerate():
        if isinstance(thread, TMonitor):
            thread.exit()  # tqdm starts a new one when a later bar needs it


@dataclass
class _Worker:
    slot: int
    pid: int
    started: float


class WorkerPool:
    """A supervisor of ``workers`` forked processes, each running ``run_worker(slot)``.

    A worker that exits while the pool is running is replaced in its slot;
    one that lived less than ``min_uptime`` seconds is replaced after a
    delay that doubles from ``restart_delay`` up to ``max_restart_delay``,
    so a worker that cannot start does not spin the CPU. ``on_stop`` runs
    once when the first stop signal arrives, before the workers are told:
    closing the supervisor's copy of the listening socket there makes new
    connections fail at once instead of waiting in the backlog. ``on_started``
    runs once every worker of the first round is forked.
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
        try:
            for slot in range(self.workers):
                self._spawn(slot)
            if self._on_started is not None:
                self._on_started()
            while self._live or (self._due and not self._stopping):
                self._wait()
                self._handle_signals()
                self._reap()
                self._respawn_due()
        finally:
            signal.set_wakeup_fd(previous_fd)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(read_fd)
            os.close(write_fd)
        return 0 if self._clean_stop else 1

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._signals.append(signum)

    def _wait(self) -> None:
        timeout = None
        if self._due and not self._stopping:
            timeout = max(0.0, min(self._due.values()) - self._clock())
        select.select([self._wakeup[0]], [], [], timeout)
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
                self._stopping = True
                self._due.clear()
                if self._on_stop is not None:
                    self._on_stop()
                self._signal_all(signal.SIGTERM)

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
            for fd in self._wakeup:
                os.close(fd)
            for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.setpgid(0, 0)
            _die_with(supervisor)
            code = self._run_worker(slot)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
        return code


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
