"""The key table's change mark, and the watcher that tells a server it changed (SQLite)."""

from __future__ import annotations

import threading
from pathlib import Path

from aimass.db.database import open_engine
from aimass.gateway.keys import KeyStore
from aimass.gateway.keywatch import KeyWatcher
from aimass.roles import Role


def test_the_mark_changes_with_every_key_made_or_revoked(tmp_path: Path) -> None:
    keys = KeyStore(open_engine(f"sqlite:///{tmp_path / 'db.sqlite'}"))
    assert keys.mark() == (0, 0)
    made = keys.create(name="a", role=Role.INVOKER, created_by="test")
    assert keys.mark() == (1, 0)
    keys.revoke(made.key.id)
    keys.revoke(made.key.id)  # revoking again changes nothing
    assert keys.mark() == (1, 1)


def test_the_watcher_sees_a_revocation_made_through_another_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    server_side, cli_side = KeyStore(open_engine(url)), KeyStore(open_engine(url))
    made = cli_side.create(name="a", role=Role.INVOKER, created_by="test")
    changed = threading.Event()
    watcher = KeyWatcher(server_side, changed.set, interval=0.05)
    watcher.start()
    try:
        assert changed.wait(30), "the watcher did not report the table it started with"
        changed.clear()
        cli_side.revoke(made.key.id)
        assert changed.wait(30), "the watcher missed the revocation"
    finally:
        watcher.stop()
