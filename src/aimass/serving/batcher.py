"""Dynamic batching: many concurrent requests to one model become one model call.

A :class:`Batcher` serves one loaded model version. Requests join a bounded
queue; a single worker task takes the oldest request, waits up to
``max_delay`` (measured from when that request arrived) for others to join
until ``max_batch_size`` rows are queued, has the backend merge their inputs
along the batch dimension and run the model once
(:func:`~aimass.serving.backend.run_batch`), and hands each request back
exactly its own rows.

The wait only happens under concurrent load: when the queue already holds
more than one request or the previous call served several. A lone request
on an idle model runs at once, so one client sees the model's own latency
rather than the model's plus ``max_delay``.

Under load a model that just finished a call also waits, from that moment,
up to ``fill_fraction`` of the call's duration for the clients it answered
to come back. Without it a slow model settles into alternating full and
nearly empty calls: the few requests that queued during a long call run
alone the moment it ends, and the many that come back a few milliseconds
later wait for that small call (seen with MiniLM: calls of 28 and 4 rows at
half the throughput of 32). Waiting a tenth of a 100 ms call to run full
batches costs little latency; for a fast model the wait is negligible.

``max_batch_size`` counts rows, not requests, because rows are what cost
memory and time in the model; a single request larger than the limit runs
alone rather than failing. Requests whose inputs cannot be concatenated with
the oldest one (different trailing dimensions, such as another sequence
length) stay queued, in order, for a later batch.

A request that finds the queue full waits up to ``admission_wait`` for a
slot before it is refused: slots free each time a call starts, and without
the wait admission depended on how requests arrived within one event-loop
turn (256 connections arriving together against a queue of 16 had 240
refused although the next call would take 32, and the refused clients,
retrying at once, took the event loop from the model). Waiting requests join
the batch being assembled as the queued ones do, oldest first, and take the
slots that free in order of arrival.

A request that times out or is cancelled (its client went away) leaves the
queue at once, so its slot is free for the next arrival and it never runs. A
call still running when every request in it has timed out is abandoned: the
worker stops waiting, the call's result is dropped whenever it comes, and the
call counts in :attr:`Batcher.overruns`. The backend bounds how many calls of
one model may run at once, so a hung model holds its own threads, not
another's; after :data:`STALLED_AFTER` overruns in a row the batcher reports
itself :attr:`~Batcher.stalled` (the model shows as not ready) until a call
answers in time again or :data:`STALLED_FOR` seconds pass without an overrun.

The batcher validates nothing: callers check inputs against the signature
before :meth:`Batcher.submit` so that one bad request fails alone instead of
taking its batch-mates down with it. It is the engine's scheduler for every
capability a version has today (see :mod:`aimass.serving.scheduler`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from aimass.contract.request import InferRequest
from aimass.contract.runtime import Arrays
from aimass.errors import AimassError, ErrorCode
from aimass.runtimes.model import LoadedModel
from aimass.serving.backend import Backend
from aimass.serving.observer import NULL_OBSERVER, Observer, hooks

__all__ = ["STALLED_AFTER", "STALLED_FOR", "Batcher"]

STALLED_AFTER = 3
"""Calls in a row that overran every deadline in them before a model counts as stalled."""

STALLED_FOR = 30.0
"""Seconds a stalled model stays not ready after its last overrun, with no call answered.

Then it shows ready again, so a load balancer that stopped sending it traffic
(which alone could clear the state) tries it once more.
"""

_log = logging.getLogger(__name__)


class _Request:
    __slots__ = ("admit_by", "deadline", "enqueued", "future", "inputs", "key", "rows")

    def __init__(
        self, inputs: Arrays, future: asyncio.Future[Arrays], enqueued: float, deadline: float
    ) -> None:
        self.inputs = inputs
        self.future = future
        self.enqueued = enqueued
        self.deadline = deadline  # on the event loop's clock
        self.admit_by = math.inf  # while waiting for a slot: when it is refused
        first = next(iter(inputs.values()), None)
        self.rows = 0 if first is None else len(first)
        # Only arrays that agree on everything but the batch dimension concatenate.
        self.key: Hashable = (
            first.shape[1:]
            if len(inputs) == 1 and first is not None
            else tuple(sorted((name, value.shape[1:]) for name, value in inputs.items()))
        )


class Batcher:
    """Queue, merge and run requests for one loaded version; see the module docstring."""

    def __init__(
        self,
        model: LoadedModel,
        backend: Backend,
        *,
        max_batch_size: int = 32,
        max_delay: float = 0.002,
        fill_fraction: float = 0.1,
        queue_size: int = 1024,
        admission_wait: float = 0.0,
        observer: Observer = NULL_OBSERVER,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            max_batch_size < 1
            or queue_size < 1
            or min(max_delay, fill_fraction, admission_wait) < 0
        ):
            raise ValueError(
                "max_batch_size and queue_size must be >= 1, "
                "max_delay, fill_fraction and admission_wait >= 0"
            )
        self.name = model.ref
        self.max_batch_size = max_batch_size
        self.max_delay = max_delay
        self.fill_fraction = fill_fraction
        self.queue_size = queue_size
        self.admission_wait = admission_wait
        self._model = model
        self._backend = backend
        told = hooks(observer)
        self._queued, self._batched, self._computed = told.queued, told.batched, told.computed
        self._clock = clock
        self._queue: deque[_Request] = deque()
        # Requests waiting for a slot, oldest first; non-empty only while the queue is full.
        self._room: deque[_Request] = deque()
        self._queued_rows = 0  # of the queue and the waiting room
        self._worker: asyncio.Task[None] | None = None
        self._waiter: asyncio.Future[None] | None = None
        # True while the worker idles on an empty queue: any arrival wakes it.
        # False while it waits out max_delay: only a full batch wakes it early.
        self._waiting_for_any = False
        self._closed = False
        self._last_batch_requests = 0
        self._free_since = 0.0  # when the last call ended, and how long it took
        self._last_call = 0.0
        self._running: list[_Request] = []
        self._abandoning = False
        self.overruns = 0
        self._overrun_streak = 0
        self._overran_at = -math.inf
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        # The loop of the first request, which the worker task lives on too;
        # kept because CPython 3.11's get_running_loop() is a system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, request: InferRequest) -> Arrays:
        """Queue one request's (validated) inputs and await its own rows of the outputs.

        Raises OVERLOADED when the queue stays full for ``admission_wait``, NOT_READY once
        closing, TIMEOUT at the request's deadline (the request is then
        dropped from the queue, or its rows discarded if already running),
        and whatever the model raised for the batch it ran in.
        """
        if self._closed:
            raise AimassError(ErrorCode.NOT_READY, f"model {self.name} is shutting down")
        full = len(self._queue) >= self.queue_size
        if full and not self.admission_wait:
            raise self._overloaded()
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Arrays] = loop.create_future()
        deadline = request.deadline
        queued = _Request(request.inputs, future, self._clock(), deadline)
        if full:
            queued.admit_by = loop.time() + self.admission_wait
            self._room.append(queued)
        else:
            self._queue.append(queued)
        self._queued_rows += queued.rows
        if self._worker is None:
            self._worker = loop.create_task(self._run(), name=f"aimass-batcher-{self.name}")
        elif self._waiting_for_any or self._queued_rows >= self.max_batch_size:
            self._wake()
        due = min(deadline, queued.admit_by)
        if due < self._sweep_at:
            self._arm(loop, due)
        queued_hook = self._queued
        if queued_hook is not None:
            queued_hook(request, self.name, len(self._queue))
        try:
            return await future
        except asyncio.CancelledError:
            # The caller left (client gone, server deadline): free its slot now.
            self._drop(queued)
            raise

    @property
    def stalled(self) -> bool:
        """Whether the last :data:`STALLED_AFTER` calls all overran, the last one recently.

        Recently: within :data:`STALLED_FOR` seconds.
        """
        return (
            self._overrun_streak >= STALLED_AFTER and self._clock() - self._overran_at < STALLED_FOR
        )

    def _overloaded(self) -> AimassError:
        return AimassError(
            ErrorCode.OVERLOADED,
            f"model {self.name} has {self.queue_size} requests queued; retry shortly",
        )

    def _drop(self, request: _Request) -> None:
        for line in (self._queue, self._room):
            try:
                line.remove(request)
            except ValueError:
                continue
            self._queued_rows -= request.rows
            self._admit()
            return
        # Otherwise already taken into a batch, or swept.

    def _admit(self) -> None:
        """Move the oldest requests waiting for a slot into the queue's free slots."""
        room, queue = self._room, self._queue
        while room and len(queue) < self.queue_size:
            queue.append(room.popleft())

    # -- deadlines --------------------------------------------------------------
    # One timer per batcher, due at the earliest deadline of a waiting request,
    # instead of a timer per request: creating and cancelling one costs about
    # 2 us, an eighth of everything else the engine does for a small request.

    def _arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_at = when
        self._sweeper = loop.call_at(when, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._sweeper, self._sweep_at = None, math.inf
        now = loop.time()
        earliest = math.inf
        kept: deque[_Request] = deque()
        rows = 0
        for request in self._queue:
            if self._expire(request, now):
                continue
            kept.append(request)
            rows += request.rows
            earliest = min(earliest, request.deadline)
        waiting: deque[_Request] = deque()
        for request in self._room:
            if self._expire(request, now):
                continue
            if request.admit_by <= now:
                request.future.set_exception(self._overloaded())
                continue
            waiting.append(request)
            rows += request.rows
            earliest = min(earliest, request.deadline, request.admit_by)
        # Timed-out requests leave the queue now, not when the worker next gets to them.
        self._queue, self._room, self._queued_rows = kept, waiting, rows
        self._admit()
        running = self._running
        for request in running:
            if not self._expire(request, now):
                earliest = min(earliest, request.deadline)
        if running and not self._abandoning and all(r.future.done() for r in running):
            self._abandon()
        if earliest < math.inf:
            self._arm(loop, earliest)

    def _expire(self, request: _Request, now: float) -> bool:
        """Whether ``request`` is over: answered, gone, or past its deadline (then TIMEOUT)."""
        if request.future.done():
            return True
        if request.deadline <= now:
            request.future.set_exception(
                AimassError(ErrorCode.TIMEOUT, f"model {self.name} did not answer in time")
            )
            return True
        return False

    def _abandon(self) -> None:
        """Stop waiting for the running call: every request in it has timed out."""
        worker = self._worker
        if worker is None:
            return
        _log.warning(
            "model %s overran the deadline of every request in a call; abandoning it", self.name
        )
        self._abandoning = True
        self.overruns += 1
        self._overrun_streak += 1
        self._overran_at = self._clock()
        worker.cancel()

    async def close(self) -> None:
        """Stop accepting requests, run everything already queued, then stop the worker."""
        self._closed = True
        worker = self._worker
        if worker is None:
            return
        self._wake()
        await asyncio.shield(worker)
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper, self._sweep_at = None, math.inf

    # -- the worker -----------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _sleep(self, delay: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiter = waiter
        timer = None if delay is None else loop.call_later(delay, _resolve, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    async def _run(self) -> None:
        while True:
            if not self._queue and not self._room:
                if self._closed:
                    return
                self._waiting_for_any = True
                try:
                    await self._sleep(None)
                finally:
                    self._waiting_for_any = False
                continue
            if (
                self.max_delay > 0
                and not self._closed
                and self._queued_rows < self.max_batch_size
                and (len(self._queue) > 1 or self._last_batch_requests > 1)
            ):
                until = max(
                    self._queue[0].enqueued + self.max_delay,
                    self._free_since + self._last_call * self.fill_fraction,
                )
                remaining = until - self._clock()
                if remaining > 0:
                    await self._sleep(remaining)
            batch = self._take()
            if batch:
                self._last_batch_requests = len(batch)
                await self._execute(batch)

    def _take(self) -> list[_Request]:
        """Pop the oldest live request and those that fit in one call with it.

        Requests waiting for a slot join the call too, after the queued ones;
        those left over fill the slots the call freed.
        """
        queue = self._queue
        if self._room:
            queue.extend(self._room)
            self._room.clear()
            try:
                return self._take_from(queue)
            finally:
                while len(queue) > self.queue_size:
                    self._room.appendleft(queue.pop())
        return self._take_from(queue)

    def _take_from(self, queue: deque[_Request]) -> list[_Request]:
        first: _Request | None = None
        while queue and first is None:
            candidate = queue.popleft()
            self._queued_rows -= candidate.rows
            # A request whose caller gave up (timeout, disconnect) is not worth running.
            if not candidate.future.done():
                first = candidate
        if first is None:
            return []
        batch = [first]
        rows = first.rows
        skipped: list[_Request] = []
        while queue and rows < self.max_batch_size:
            candidate = queue.popleft()
            if candidate.future.done():
                self._queued_rows -= candidate.rows
            elif candidate.key == first.key and rows + candidate.rows <= self.max_batch_size:
                self._queued_rows -= candidate.rows
                batch.append(candidate)
                rows += candidate.rows
            elif candidate.key == first.key:
                # Too big for what is left: keep order and leave it for the next call.
                queue.appendleft(candidate)
                break
            else:
                skipped.append(candidate)
        queue.extendleft(reversed(skipped))
        return batch

    async def _execute(self, batch: list[_Request]) -> None:
        self._running = batch
        rows = [request.rows for request in batch]
        batched, computed = self._batched, self._computed
        if batched is not None:
            batched(self.name, len(batch), sum(rows))
        started = self._clock()
        try:
            results = await self._backend.run(
                self._model, [request.inputs for request in batch], rows
            )
        except asyncio.CancelledError:
            if self._abandoning:
                # Our own sweep gave up on the call; the worker carries on.
                self._abandoning = False
                assert self._worker is not None
                self._worker.uncancel()
                return
            for request in batch:
                request.future.cancel()
            raise
        except AimassError as exc:
            _fail(batch, exc)
        except Exception:
            _log.exception("model %s failed on a batch of %d requests", self.name, len(batch))
            _fail(
                batch,
                AimassError(
                    ErrorCode.INTERNAL,
                    f"model {self.name} failed while predicting; the server log has details",
                ),
            )
        else:
            answered = False
            for request, result in zip(batch, results, strict=True):
                if not request.future.done():
                    request.future.set_result(result)
                    answered = True
            if answered:
                self._overrun_streak = 0
        finally:
            self._running = []
            self._free_since = self._clock()
            self._last_call = self._free_since - started
            if computed is not None:
                computed(self.name, self._last_call, sum(rows))


def _resolve(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _fail(batch: list[_Request], error: AimassError) -> None:
    for request in batch:
        if not request.future.done():
            # One exception object per request: raising the same one in many
            # tasks would grow a shared traceback.
            request.future.set_exception(error.copy())
