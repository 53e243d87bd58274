from __future__ import annotations

import threading

import pytest

from aimass.serving.executor import Executor

pytestmark = pytest.mark.anyio


async def test_calls_run_on_the_pool_threads() -> None:
    pool = Executor(1, name="test-pool")
    try:
        name = await pool.run(lambda: threading.current_thread().name)
        assert name.startswith("test-pool")
        assert await pool.run(pow, 2, 10) == 1024
    finally:
        pool.shutdown()
