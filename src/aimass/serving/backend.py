"""The backend: where versions are loaded and their batches run.

:class:`Backend` is the seam between the engine and the place models live;
:class:`ThreadBackend` is the local one: versions load from the registry into
this process and batches run on threads. Runtimes are synchronous and
CPU-bound, but numpy, torch and onnxruntime release the GIL while they
compute, so threads give real parallelism without copying tensors to another
process. Every loaded version has a bounded pool of its own: a call that
overruns its deadline is abandoned by its scheduler but keeps its thread
until it returns (Python cannot stop a thread), so with one pool for all
models two slow or hung ones held every thread and starved the rest; now a
hung model holds its own threads only. Loads have a pool of their own too,
so a slow load never starves inference of threads.

A batch travels as the requests' own inputs; :func:`run_batch` merges them,
makes the one model call and splits the outputs back, wherever the model is,
so a backend that runs models elsewhere calls it there.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.registry.records import VersionInfo
from aimass.runtimes.model import LoadedModel, check_rows
from aimass.serving.executor import Executor

__all__ = ["Backend", "ThreadBackend", "run_batch"]


class Backend(Protocol):
    """Loads versions and runs batches on them."""

    async def load(self, info: VersionInfo) -> LoadedModel:
        """The version, loaded and ready to run; its load's error otherwise."""

    async def run(
        self, model: LoadedModel, parts: Sequence[Arrays], rows: Sequence[int]
    ) -> list[Arrays]:
        """One call of ``model`` on the merged ``parts``; each part's own rows of the outputs."""

    def release(self, model: LoadedModel) -> None:
        """``model`` is no longer served: whatever holds it may let it go."""

    def close(self) -> None:
        """Stop; every call has returned by now."""


def run_batch(model: LoadedModel, parts: Sequence[Arrays], rows: Sequence[int]) -> list[Arrays]:
    """Merge, predict, check and split: one call of ``model`` for several requests.

    ``rows[i]`` is how many rows ``parts[i]`` holds; a model that answers
    another number of rows is an INTERNAL error for the whole batch.
    """
    if len(parts) == 1:
        merged = parts[0]
    else:
        merged = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    outputs = model.runtime.predict(merged)
    check_rows(model.ref, outputs, sum(rows))
    if len(parts) == 1:
        return [outputs]
    results: list[Arrays] = []
    named = list(outputs.items())
    start = 0
    for count in rows:
        stop = start + count
        # A loop, not a comprehension: in Python 3.11 that is a function call per request.
        part: Arrays = {}
        for name, value in named:
            part[name] = value[start:stop]
        results.append(part)
        start = stop
    return results


class ThreadBackend:
    """Versions loaded into this process by ``loader`` (:meth:`Registry.load`); calls on threads.

    ``threads`` bounds the calls of one version running at once (default: one
    per CPU); each version's pool starts with its first call.
    """

    def __init__(
        self,
        loader: Callable[[str, int], LoadedModel],
        *,
        threads: int | None,
        load_threads: int,
    ) -> None:
        self._loader = loader
        self._threads = threads
        self._calls: dict[int, Executor] = {}  # by id() of the loaded model
        self._loads = Executor(load_threads, name="aimass-load")

    async def load(self, info: VersionInfo) -> LoadedModel:
        """Load on the load threads, then keep the new objects out of the collector's way."""
        model = await self._loads.run(self._loader, info.model, info.version)
        keep_out_of_collections()
        return model

    async def run(
        self, model: LoadedModel, parts: Sequence[Arrays], rows: Sequence[int]
    ) -> list[Arrays]:
        """:func:`run_batch` on one of ``model``'s own call threads."""
        calls = self._calls.get(id(model))
        if calls is None:
            calls = self._calls[id(model)] = Executor(self._threads, name=f"aimass-{model.ref}")
        return await calls.run(run_batch, model, parts, rows)

    def release(self, model: LoadedModel) -> None:
        """Stop the model's threads; let the collector see the objects again (to free cycles)."""
        calls = self._calls.pop(id(model), None)
        if calls is not None:
            calls.shutdown(wait=False)  # a call still running (abandoned) ends on its own
        # The next load freezes what is still alive.
        gc.unfreeze()

    def close(self) -> None:
        """Stop the threads (every call has returned by now)."""
        for calls in self._calls.values():
            calls.shutdown(wait=False)
        self._calls.clear()
        self._loads.shutdown(wait=False)


def keep_out_of_collections() -> None:
    """Move every object alive now, loaded models included, out of the cyclic collector's reach.

    A loaded transformer and its framework are hundreds of thousands of
    objects; a full collection walks them all (about 300 ms with the three
    demo models loaded), and under load one comes every few seconds, which
    showed as a p99 a hundred times the median. Frozen objects are still
    freed by reference counting; only cycles among them wait for
    :func:`gc.unfreeze` (done when a model is released). Before a fork it also
    keeps the collector from writing to, and so copying, pages the workers share.
    """
    gc.freeze()
