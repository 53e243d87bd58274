"""The worker pool's start: it says so once every worker serves, and stops if one cannot start."""

from __future__ import annotations

import signal
from collections.abc import Callable

from aimass.serving.supervisor import WorkerPool


def _serve_until_stopped(slot: int, ready: Callable[[], None]) -> int:
    """A worker that serves at once and exits 0 on SIGTERM."""
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM])
    ready()
    signal.sigwait([signal.SIGTERM])
    return 0


def test_started_is_called_once_every_worker_is_ready() -> None:
    calls: list[int] = []
    pool: WorkerPool

    def started() -> None:
        calls.append(len(pool.pids))
        signal.raise_signal(signal.SIGTERM)  # the supervisor's own handler: stop the pool

    pool = WorkerPool(_serve_until_stopped, 3, on_started=started)
    assert pool.run() == 0
    assert calls == [3]


def test_a_worker_that_exits_before_it_serves_stops_the_pool() -> None:
    calls: list[str] = []

    def run(slot: int, ready: Callable[[], None]) -> int:
        if slot == 1:
            return 3  # what uvicorn exits with when the app's start-up fails
        return _serve_until_stopped(slot, ready)

    pool = WorkerPool(run, 2, on_started=lambda: calls.append("started"))
    assert pool.run() == 1
    assert calls == []
