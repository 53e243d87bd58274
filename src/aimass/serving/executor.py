"""A named, bounded thread pool awaited from asyncio: blocking work off the event loop.

Runtimes are synchronous and CPU-bound, but numpy, torch and onnxruntime
release the GIL while they compute, so threads give real parallelism without
the cost of copying tensors to another process. The thread backend keeps a
pool per loaded version for its calls and one for loads, and the router one
for registry reads, so neither a slow load nor a hung model starves
inference or lookups of threads.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar, TypeVarTuple

__all__ = ["Executor"]

_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")


class Executor:
    """A named, bounded thread pool awaited from asyncio."""

    def __init__(self, threads: int | None = None, *, name: str = "aimass-model") -> None:
        # The CPUs this process may run on (taskset, cgroups), not the machine's.
        self.threads = threads or len(os.sched_getaffinity(0)) or 1
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix=name)

    async def run(self, fn: Callable[[*_Ts], _T], *args: *_Ts) -> _T:
        """Run ``fn(*args)`` on a pool thread and await its result."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop the threads; calls already running finish first when ``wait``."""
        self._pool.shutdown(wait=wait, cancel_futures=not wait)
