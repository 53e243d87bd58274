"""The deployments on SQL: desired state with a revision, every change, per-process stats.

Every change writes the new spec and an event holding the spec before and
after in one transaction, so the history is complete and a rollback can read
the state it goes back to. A change's first statement bumps the row's
revision, so the database's row lock (PostgreSQL) or write lock (SQLite)
orders concurrent changers before either reads the spec it replaces: with
``expect_revision`` one of two servers acting on the same canary gets
CONFLICT instead of both writing.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aimass.db.base import utcnow
from aimass.db.database import SqlStore
from aimass.deployments.records import Deployment, DeploymentEvent, StatsRow
from aimass.deployments.spec import DeploymentSpec
from aimass.deployments.tables import DeploymentEventRow, DeploymentRow, DeploymentStatsRow
from aimass.errors import AimassError, ErrorCode
from aimass.registry.tables import AliasEventRow
from aimass.settings import DeploymentSettings

__all__ = ["DeploymentStore"]

_DEFAULT_BUCKET_S: int = DeploymentSettings.model_fields["stats_bucket_s"].default


class DeploymentStore(SqlStore):
    """All deployment reads and writes that touch the database.

    ``bucket_s`` is the width of the stats buckets
    (``settings.deployments.stats_bucket_s``), so :meth:`read_stats` can
    include the bucket a window starts in.
    """

    def __init__(self, engine: Engine, *, bucket_s: int = _DEFAULT_BUCKET_S) -> None:
        super().__init__(engine)
        self.bucket_s = bucket_s

    # -- desired state -------------------------------------------------------------

    def create(self, name: str, spec: DeploymentSpec, *, by: str, reason: str = "") -> Deployment:
        """Store a new deployment at revision 1; ALREADY_EXISTS if the name is taken."""
        now = utcnow()
        row = DeploymentRow(
            name=name,
            spec=_dump(spec),
            revision=1,
            created_at=now,
            created_by=by,
            updated_at=now,
            updated_by=by,
        )
        try:
            with self._tx() as session:
                session.add(row)
                session.flush()
                _record(session, name, by, "create", reason, None, row.spec, now)
        except IntegrityError:
            raise AimassError(
                ErrorCode.ALREADY_EXISTS, f"deployment '{name}' already exists"
            ) from None
        return _deployment(row)

    def get(self, name: str) -> Deployment:
        """One deployment; NOT_FOUND if there is none of that name."""
        with self._tx() as session:
            return _deployment(_row(session, name))

    def list(self) -> list[Deployment]:
        """Every deployment, by name."""
        with self._tx() as session:
            rows = session.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [_deployment(row) for row in rows]

    def change(
        self,
        name: str,
        spec: DeploymentSpec,
        *,
        by: str,
        kind: str,
        reason: str = "",
        expect_revision: int | None = None,
    ) -> Deployment:
        """Replace a deployment's spec, bump its revision and record the change.

        CONFLICT if ``expect_revision`` is given and the deployment has moved on
        from it (someone else changed it meanwhile); NOT_FOUND if it is gone.
        """
        now = utcnow()
        with self._tx() as session:
            row = _locked(session, name, expect_revision)
            before = row.spec
            row.spec, row.updated_at, row.updated_by = _dump(spec), now, by
            _record(session, name, by, kind, reason, before, row.spec, now)
            session.flush()
            return _deployment(row)

    def delete(self, name: str, *, by: str, reason: str = "") -> None:
        """Remove a deployment, keeping its history (an event of kind ``delete``)."""
        now = utcnow()
        with self._tx() as session:
            row = _locked(session, name, None)
            _record(session, name, by, "delete", reason, row.spec, None, now)
            session.delete(row)

    def events(self, name: str, limit: int | None = 100) -> builtins.list[DeploymentEvent]:
        """The newest ``limit`` changes of the deployment ``name`` (None: all), oldest first.

        Deleted deployments keep their events, and a name used again shows
        every incarnation's.
        """
        query = (
            select(DeploymentEventRow)
            .where(DeploymentEventRow.deployment == name)
            .order_by(DeploymentEventRow.id.desc())
        )
        if limit is not None:
            query = query.limit(limit)
        with self._tx() as session:
            rows = list(session.scalars(query))
        return [_event(row) for row in reversed(rows)]

    def mark(self) -> tuple[int, int]:
        """The newest deployment event id and the newest alias event id (0 when none).

        Two cheap reads a watcher compares with what it saw last: a deployment
        changed, or an alias a deployment may follow moved, exactly when one grew.
        """
        with self._tx() as session:
            changes = session.scalar(select(func.max(DeploymentEventRow.id)))
            moves = session.scalar(select(func.max(AliasEventRow.id)))
        return changes or 0, moves or 0

    # -- stats ---------------------------------------------------------------------

    def write_stats(self, rows: Iterable[StatsRow]) -> None:
        """Insert or replace each row, keyed by (deployment, ref, role, process, bucket).

        A process writes the running totals of its open buckets each time, so
        a row is replaced rather than added to; a write repeated after a lost
        answer changes nothing.
        """
        values = [_stats_values(row) for row in rows]
        if not values:
            return
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(DeploymentStatsRow)
        upsert = statement.on_conflict_do_update(
            index_elements=["deployment", "ref", "role", "process", "bucket"],
            set_={
                "requests": statement.excluded.requests,
                "errors": statement.excluded.errors,
                "latency": statement.excluded.latency,
                "comparison": statement.excluded.comparison,
            },
        )
        with self._tx() as session:
            session.execute(upsert, values)

    def read_stats(self, name: str, since: float) -> builtins.list[StatsRow]:
        """Every process's rows for ``name`` from the bucket holding ``since`` on, oldest first."""
        query = (
            select(DeploymentStatsRow)
            .where(
                DeploymentStatsRow.deployment == name,
                DeploymentStatsRow.bucket > since - self.bucket_s,
            )
            .order_by(DeploymentStatsRow.bucket, DeploymentStatsRow.id)
        )
        with self._tx() as session:
            return [_stats(row) for row in session.scalars(query)]

    def prune_stats(self, before: float) -> int:
        """Delete the rows of buckets that started before ``before``; how many went."""
        with self._tx() as session:
            gone = session.execute(
                delete(DeploymentStatsRow).where(DeploymentStatsRow.bucket < before)
            )
            return int(gone.rowcount)  # type: ignore[attr-defined]


def _row(session: Session, name: str) -> DeploymentRow:
    row = session.scalar(select(DeploymentRow).where(DeploymentRow.name == name))
    if row is None:
        raise AimassError(ErrorCode.NOT_FOUND, f"deployment '{name}' not found")
    return row


def _locked(session: Session, name: str, expect_revision: int | None) -> DeploymentRow:
    """The row, locked by bumping its revision first (see the module docstring)."""
    bumped = session.execute(
        update(DeploymentRow)
        .where(DeploymentRow.name == name)
        .values(revision=DeploymentRow.revision + 1)
    )
    if bumped.rowcount != 1:  # type: ignore[attr-defined]
        raise AimassError(ErrorCode.NOT_FOUND, f"deployment '{name}' not found")
    row = _row(session, name)
    session.refresh(row)
    if expect_revision is not None and row.revision - 1 != expect_revision:
        raise AimassError(
            ErrorCode.CONFLICT,
            f"deployment '{name}' changed meanwhile (revision {row.revision - 1}, "
            f"not {expect_revision}); look again and retry",
        )
    return row


def _record(
    session: Session,
    name: str,
    by: str,
    kind: str,
    reason: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    at: datetime,
) -> None:
    session.add(
        DeploymentEventRow(
            deployment=name,
            at=at,
            by=by[:255],
            kind=kind,
            reason=reason,
            before=before,
            after=after,
        )
    )


def _dump(spec: DeploymentSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json")


def _spec(data: dict[str, Any] | None) -> DeploymentSpec | None:
    return None if data is None else DeploymentSpec.model_validate(data)


def _aware(at: datetime) -> datetime:
    # SQLite hands back naive datetimes; they were written in UTC.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _deployment(row: DeploymentRow) -> Deployment:
    return Deployment(
        name=row.name,
        spec=DeploymentSpec.model_validate(row.spec),
        revision=row.revision,
        created_at=_aware(row.created_at),
        created_by=row.created_by,
        updated_at=_aware(row.updated_at),
        updated_by=row.updated_by,
    )


def _event(row: DeploymentEventRow) -> DeploymentEvent:
    return DeploymentEvent(
        id=row.id,
        deployment=row.deployment,
        at=_aware(row.at),
        by=row.by,
        kind=row.kind,
        reason=row.reason,
        before=_spec(row.before),
        after=_spec(row.after),
    )


def _stats_values(row: StatsRow) -> dict[str, Any]:
    return {
        "deployment": row.deployment,
        "ref": row.ref,
        "role": row.role,
        "process": row.process,
        "bucket": row.bucket,
        "requests": row.requests,
        "errors": row.errors,
        "latency": list(row.latency),
        "comparison": dict(row.comparison),
    }


def _stats(row: DeploymentStatsRow) -> StatsRow:
    return StatsRow(
        deployment=row.deployment,
        ref=row.ref,
        role=row.role,
        process=row.process,
        bucket=row.bucket,
        requests=row.requests,
        errors=row.errors,
        latency=list(row.latency),
        comparison=dict(row.comparison),
    )
