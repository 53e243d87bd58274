"""The product database: engine set-up and schema migrations.

SQLite (the default, one file under ``AIMASS_HOME``) runs in WAL mode with a
busy timeout so several processes can register at once; PostgreSQL is used
as is. Migrations run on open under a lock (an advisory lock on PostgreSQL, a
lock file beside an SQLite database) so two processes opening a fresh
registry at the same moment do not race to create the schema.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from filelock import FileLock
from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from aimass.errors import AimassError, ErrorCode

__all__ = ["HEAD_REVISION", "SqlStore", "open_engine"]

# The newest migration; a test checks it is Alembic's head. Knowing it here lets
# an up-to-date database open without importing Alembic (most of a CLI call's start-up).
HEAD_REVISION = "0004"

_MIGRATIONS = Path(__file__).parents[1] / "migrations"
# Any fixed number works; it only has to be the same in every aimass process.
_PG_MIGRATION_LOCK = 0x41494D41


def open_engine(url: str) -> Engine:
    """Create an engine for ``url`` and bring its schema up to date."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        # The URL may hold a password: it is not repeated.
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            "registry.database_url (AIMASS_REGISTRY__DATABASE_URL) is not a database URL, "
            "e.g. sqlite:///path/registry.db or postgresql+psycopg://user@host/db",
        ) from None
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        # psycopg 3 is the driver we ship in the postgres extra.
        parsed = parsed.set(drivername="postgresql+psycopg")
    connect_args: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        connect_args["timeout"] = 60
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = create_engine(parsed, connect_args=connect_args, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise AimassError(
            ErrorCode.MISSING_EXTRA,
            f"the database driver for {parsed.drivername} is not installed "
            "(PostgreSQL: pip install 'aimass[postgres]')",
        ) from exc
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    _migrate(engine)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        revision: str | None = conn.execute(
            text("SELECT version_num FROM alembic_version")
        ).scalar()
        return revision


def _migrate(engine: Engine) -> None:
    if _current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    if engine.dialect.name == "sqlite":
        database = engine.url.database
        lock_path = f"{database}.lock" if database and database != ":memory:" else None
        if lock_path:
            with FileLock(lock_path):
                _upgrade(engine, config)
            return
        _upgrade(engine, config)
        return
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def _upgrade(engine: Engine, config: Any) -> None:
    from alembic import command

    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


class SqlStore:
    """Tables on the product database, with one way to run a transaction.

    The registry's metadata, API keys, the audit log and training runs all
    live in the one database; each store subclasses this.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def _tx(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on error."""
        with self._sessions.begin() as session:
            yield session
