"""A load generator for rate-limit tests: many clients, one key, counted answers."""

from __future__ import annotations

import threading
import time

import httpx

__all__ = ["hammer"]


def hammer(urls: list[str], secret: str, clients: int, seconds: float) -> tuple[int, int, float]:
    """``clients`` threads calling ``GET /v2`` round-robin over ``urls`` for ``seconds``.

    Returns (admitted, refused, elapsed), elapsed running from before the
    first request to after the last answer, so every admission lies inside it;
    the clients push for ``seconds`` after the first calls are answered.
    The window starts with one call per server, which also makes it read its
    key table (a first read is slower than the limit's period).
    """
    counts = {200: 0, 429: 0}
    lock = threading.Lock()
    barrier = threading.Barrier(clients + 1)
    stop_at = [0.0]

    def run(index: int) -> None:
        url = urls[index % len(urls)]
        with httpx.Client(base_url=url, headers={"x-api-key": secret}, timeout=30) as client:
            client.get("/v2/health/live")  # connect outside the measured window
            barrier.wait()
            while time.monotonic() < stop_at[0]:
                status = client.get("/v2").status_code
                with lock:
                    counts[status] = counts.get(status, 0) + 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    # One admitted call first, so each server has read its key table before the clock runs.
    for url in urls:
        with httpx.Client(base_url=url, headers={"x-api-key": secret}, timeout=30) as client:
            counts[client.get("/v2").status_code] += 1
    # The window runs from here: on a loaded machine the first calls can take
    # a good part of ``seconds``, and the limit is only pushed once they are done.
    stop_at[0] = time.monotonic() + seconds
    barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    assert set(counts) == {200, 429}, counts
    return counts[200], counts[429], elapsed
