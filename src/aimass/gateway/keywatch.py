"""Tells a server soon after another process makes or revokes a key.

On PostgreSQL a thread ``LISTEN``s on :data:`~aimass.gateway.keys.KEY_CHANNEL`,
which :class:`~aimass.gateway.keys.KeyStore` notifies in the transaction that
changes a key, so a revocation reaches every server as it commits. SQLite has
no notifications: the thread compares :meth:`KeyStore.mark` (two counts over
the small key table) every ``interval`` seconds instead. Either way the thread
only calls ``on_change``; the server re-reads its table on the next request,
off the event loop.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from aimass.gateway.keys import KEY_CHANNEL, KeyStore

__all__ = ["KeyWatcher"]

logger = logging.getLogger("aimass.gateway")


class KeyWatcher:
    """A daemon thread calling ``on_change`` when the key table of ``keys`` changes."""

    def __init__(self, keys: KeyStore, on_change: Callable[[], None], *, interval: float) -> None:
        self.keys = keys
        self.interval = interval
        self._on_change = on_change
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start watching (once; a second call does nothing)."""
        if self._thread is not None:
            return
        postgres = self.keys.engine.dialect.name == "postgresql"
        self._thread = threading.Thread(
            target=self._listen if postgres else self._poll, name="aimass-key-watch", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop watching and wait for the thread (at most about ``interval``)."""
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(self.interval + 5)
            self._thread = None

    def _poll(self) -> None:
        last: tuple[int, int] | None = None
        while not self._stopped.is_set():
            try:
                mark = self.keys.mark()
            except Exception:
                logger.warning("could not check the API key table for changes", exc_info=True)
            else:
                if mark != last:
                    # The first mark too: the table may have changed before it was taken.
                    self._on_change()
                last = mark
            self._stopped.wait(self.interval)

    def _listen(self) -> None:
        import psycopg

        url = self.keys.engine.url.set(drivername="postgresql")
        dsn = url.render_as_string(hide_password=False)
        while not self._stopped.is_set():
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {KEY_CHANNEL}")
                    # Whatever changed while nobody listened is read again.
                    self._on_change()
                    while not self._stopped.is_set():
                        # Returns after ``interval`` to look at the stop flag.
                        for _ in conn.notifies(timeout=self.interval):
                            self._on_change()
            except psycopg.Error:
                logger.warning("lost the API key notifications; reconnecting", exc_info=True)
                self._stopped.wait(self.interval)
