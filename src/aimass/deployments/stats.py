"""Per-version request counts, errors and latencies of deployments, and their summary.

Each server process counts, in memory, the requests every (deployment,
version, role) got in time buckets of ``stats_bucket_s`` wall-clock seconds:
how many, how many failed on the server's side, and a latency histogram in
the fixed log buckets of :mod:`~aimass.deployments.histogram`; a shadow's
cell also holds its :class:`~aimass.deployments.compare.Comparison`. Every
``stats_interval_s`` the guard loop has the recorder write the cells that
changed (``store.write_stats``, an upsert of the bucket's totals so far), so
canary guards on every server and ``deploy show`` see all servers' traffic:
:func:`summarize` merges the rows of a window by adding them.

An error is a failure on the server's side (a 5xx: the model raised, timed
out, was overloaded or is broken), not a request the client got wrong
(invalid input, not found, refused): a canary is judged by what it does, not
by its callers' mistakes.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from aimass.contract.request import InferRequest, InferResult
from aimass.deployments.compare import Comparison, merge, summary
from aimass.deployments.histogram import Histogram, add_lists, quantile
from aimass.deployments.records import StatsRow
from aimass.errors import AimassError
from aimass.serving.observer import Observer

__all__ = [
    "Role",
    "StatsObserver",
    "StatsRecorder",
    "Totals",
    "is_server_error",
    "process_name",
    "summarize",
    "totals",
]

_log = logging.getLogger(__name__)

Role = Literal["target", "shadow"]


def is_server_error(error: AimassError) -> bool:
    """Whether ``error`` counts against the version: a failure on the server's side (5xx)."""
    return error.spec.http_status >= 500


def process_name() -> str:
    """A name for this process among all servers': host, pid and a suffix no restart repeats."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class _Cell:
    __slots__ = ("comparison", "errors", "latency", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.latency = Histogram()
        self.comparison: Comparison | None = None


class StatsRecorder:
    """A process's counts, in time buckets, written to the store now and then.

    ``clock`` is the wall clock (buckets are shared by every server);
    latencies are measured by the caller on the event loop's clock.
    """

    def __init__(
        self,
        process: str,
        *,
        bucket_s: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.process = process
        self._bucket_s = bucket_s
        self._clock = clock
        self._cells: dict[tuple[str, str, str, int], _Cell] = {}
        self._dirty: set[tuple[str, str, str, int]] = set()
        self._writing = asyncio.Lock()

    def record(
        self, deployment: str, ref: str, role: Role, seconds: float, *, error: bool = False
    ) -> None:
        """Count one request ``ref`` answered (or failed) for ``deployment`` in ``seconds``."""
        # _cell() written out: this runs for every request a deployment answers.
        key = (deployment, ref, role, int(self._clock() // self._bucket_s) * self._bucket_s)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        self._dirty.add(key)
        cell.requests += 1
        if error:
            cell.errors += 1
        cell.latency.add(seconds)

    def comparison(self, deployment: str, ref: str) -> Comparison:
        """The shadow ``ref``'s comparison in the current bucket, to add to."""
        cell = self._cell(deployment, ref, "shadow")
        if cell.comparison is None:
            cell.comparison = Comparison()
        return cell.comparison

    def rows(self) -> list[StatsRow]:
        """The cells that changed since the last call, as rows; older buckets are forgotten."""
        dirty, self._dirty = self._dirty, set()
        rows = [self._row(key, self._cells[key]) for key in sorted(dirty)]
        current = self._bucket()
        # Kept until written (and rewritten, should that write fail).
        done = [
            k for k in self._cells if k[3] < current and k not in dirty and k not in self._dirty
        ]
        for key in done:
            del self._cells[key]
        return rows

    async def flush(self, write: Callable[[list[StatsRow]], None]) -> None:
        """Write the changed cells with ``write``, in a thread.

        A failed write is logged and its rows written next time.
        """
        # One write at a time: an older snapshot landing after a newer one
        # would replace a bucket's totals with smaller ones.
        async with self._writing:
            rows = self.rows()
            if not rows:
                return
            try:
                await asyncio.to_thread(write, rows)
            except Exception:
                _log.warning("could not write deployment statistics; retrying", exc_info=True)
                self._dirty.update((r.deployment, r.ref, r.role, r.bucket) for r in rows)

    def _bucket(self) -> int:
        return int(self._clock() // self._bucket_s) * self._bucket_s

    def _cell(self, deployment: str, ref: str, role: str) -> _Cell:
        key = (deployment, ref, role, self._bucket())
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Cell()
        self._dirty.add(key)
        return cell

    def _row(self, key: tuple[str, str, str, int], cell: _Cell) -> StatsRow:
        deployment, ref, role, bucket = key
        return StatsRow(
            deployment=deployment,
            ref=ref,
            role=role,
            process=self.process,
            bucket=bucket,
            requests=cell.requests,
            errors=cell.errors,
            latency=cell.latency.to_json(),
            comparison={} if cell.comparison is None else cell.comparison.to_json(),
        )


class StatsObserver(Observer):
    """Feeds a recorder with each answered or failed request to a deployment.

    The version counted is the one the engine routed the request to; ``now``
    is the clock ``request.started`` is on.
    """

    def __init__(
        self, recorder: StatsRecorder, now: Callable[[], float] = time.perf_counter
    ) -> None:
        self._recorder = recorder
        self._now = now

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """Count an answer."""
        deployment = request.deployment
        if deployment is not None:
            ref = f"{result.model_name}:{result.model_version}"
            self._recorder.record(deployment, ref, "target", self._now() - request.started)

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        """Count a failure against the version it was routed to (a client's mistake: no error)."""
        if request is None or request.deployment is None or request.served is None:
            return
        model, version = request.served
        self._recorder.record(
            request.deployment,
            f"{model}:{version}",
            "target",
            self._now() - request.started,
            error=is_server_error(error),
        )


@dataclass(slots=True)
class Totals:
    """The sum of some rows: requests, errors, the latency histogram, the comparison."""

    requests: int = 0
    errors: int = 0
    latency: list[int] = field(default_factory=list)
    comparison: dict[str, Any] = field(default_factory=dict)

    def add(self, row: StatsRow) -> None:
        """Add one row."""
        self.requests += row.requests
        self.errors += row.errors
        self.latency = add_lists(self.latency, row.latency)
        if row.comparison:
            self.comparison = merge(self.comparison, row.comparison)

    @property
    def error_rate(self) -> float:
        """Errors per request (0 with no requests)."""
        return self.errors / self.requests if self.requests else 0.0

    def latency_ms(self, q: float) -> float | None:
        """The ``q`` latency quantile in milliseconds (None with no requests)."""
        value = quantile(self.latency, q)
        return None if math.isnan(value) else value * 1000

    def public(self, role: str) -> dict[str, Any]:
        """JSON-ready: role, requests, errors, error rate, p50/p99 (ms), a shadow's comparison."""
        out: dict[str, Any] = {
            "role": role,
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": self.latency_ms(0.5),
            "p99_ms": self.latency_ms(0.99),
        }
        if role == "shadow":
            out["comparison"] = summary(self.comparison)
        return out


def totals(rows: Iterable[StatsRow]) -> dict[tuple[str, str], Totals]:
    """The rows added up per (ref, role)."""
    sums: dict[tuple[str, str], Totals] = {}
    for row in rows:
        key = (row.ref, row.role)
        total = sums.get(key)
        if total is None:
            total = sums[key] = Totals()
        total.add(row)
    return sums


def summarize(rows: Iterable[StatsRow]) -> dict[str, dict[str, Any]]:
    """Per version (``model:version``): role, requests, errors, error_rate, p50_ms, p99_ms.

    A shadow's entry adds its merged ``comparison``. A version that was both
    a target and a shadow in the rows (a shadow later made a target) shows
    as the target, its shadow figures under ``shadow``.
    """
    out: dict[str, dict[str, Any]] = {}
    sums = totals(rows)
    for (ref, role), total in sorted(
        sums.items(), key=lambda item: (item[0][1] != "target", item[0])
    ):
        entry = total.public(role)
        if ref in out:
            out[ref]["shadow"] = entry
        else:
            out[ref] = entry
    return out
