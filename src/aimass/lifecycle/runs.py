"""Run tracking: the record of every training, tuning and evaluation job.

A :class:`RunStore` writes to the ``runs`` table of the registry database. A
job starts a run (status ``running``), reports progress as it goes, and ends
it ``succeeded`` (with metrics and the version it produced) or ``failed``
(with the reason). Readers — ``aimass runs``, ``GET /v1/runs/{id}`` — see each
update as soon as it is committed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from aimass.contract.reference import MAX_NUMBER
from aimass.db.base import utcnow
from aimass.db.database import SqlStore
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.tables import RunRow
from aimass.registry import Registry

__all__ = [
    "FAILED",
    "KINDS",
    "RUNNING",
    "STATUSES",
    "SUCCEEDED",
    "Progress",
    "RunRecord",
    "RunStore",
    "TrackedJob",
]

RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
STATUSES = (RUNNING, SUCCEEDED, FAILED)
"""Where a run stands."""
KINDS = ("train", "tune", "evaluate")
"""What a run did."""

Progress = Callable[[str, float], None]
"""Told what a run is doing and the fraction done (0 to 1) after every step."""


class RunRecord(BaseModel):
    """One run, as stored."""

    model_config = ConfigDict(frozen=True)

    id: int
    kind: str
    status: str
    model: str
    version: int | None
    progress: float
    message: str
    params: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime
    finished_at: datetime | None
    duration_s: float | None
    created_by: str

    @property
    def ref(self) -> str | None:
        """``model:version`` of the version this run produced or evaluated, if any."""
        return f"{self.model}:{self.version}" if self.version is not None else None


def _record(row: RunRow) -> RunRecord:
    return RunRecord(
        id=row.id,
        kind=row.kind,
        status=row.status,
        model=row.model,
        version=row.version,
        progress=row.progress,
        message=row.message,
        params=row.params,
        metrics=row.metrics,
        data=row.data,
        extra=row.extra,
        started_at=row.started_at,
        finished_at=row.finished_at,
        duration_s=row.duration_s,
        created_by=row.created_by,
    )


class RunStore(SqlStore):
    """Reads and writes runs on the registry's database engine."""

    @classmethod
    def of(cls, registry: Registry) -> RunStore:
        """The runs kept in ``registry``'s database."""
        return cls(registry.database)

    def start(
        self,
        kind: str,
        model: str,
        *,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | None = None,
        version: int | None = None,
        created_by: str = "local",
    ) -> RunRecord:
        """Record a run that has just begun."""
        with self._tx() as session:
            row = RunRow(
                kind=kind,
                status=RUNNING,
                model=model,
                version=version,
                progress=0.0,
                message="started",
                params=dict(params or {}),
                metrics={},
                data=dict(data or {}),
                extra={},
                created_by=created_by,
            )
            session.add(row)
            session.flush()
            return _record(row)

    def update(
        self,
        run_id: int,
        *,
        progress: float | None = None,
        message: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        """Report progress (0 to 1) and what the run is doing now."""
        with self._tx() as session:
            row = self._row(session, run_id)
            if progress is not None:
                row.progress = max(0.0, min(1.0, progress))
            if message is not None:
                row.message = message
            if data is not None:
                row.data = dict(data)

    def finish(
        self,
        run_id: int,
        *,
        metrics: Mapping[str, Any],
        version: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> RunRecord:
        """Mark a run succeeded, with its metrics and the version it produced."""
        return self._end(run_id, SUCCEEDED, "done", metrics, version, extra)

    def fail(self, run_id: int, reason: str) -> RunRecord:
        """Mark a run failed, keeping the reason."""
        return self._end(run_id, FAILED, reason, None, None, None)

    def _end(
        self,
        run_id: int,
        status: str,
        message: str,
        metrics: Mapping[str, Any] | None,
        version: int | None,
        extra: Mapping[str, Any] | None,
    ) -> RunRecord:
        with self._tx() as session:
            row = self._row(session, run_id)
            now = utcnow()
            row.status, row.message, row.finished_at = status, message, now
            started = row.started_at
            if started.tzinfo is None:  # SQLite returns naive datetimes
                started = started.replace(tzinfo=now.tzinfo)
            row.duration_s = (now - started).total_seconds()
            if status == SUCCEEDED:
                row.progress = 1.0
            if metrics is not None:
                row.metrics = dict(metrics)
            if version is not None:
                row.version = version
            if extra is not None:
                row.extra = dict(extra)
            session.flush()
            return _record(row)

    def get(self, run_id: int) -> RunRecord:
        """One run; NOT_FOUND if there is none with that id."""
        with self._tx() as session:
            return _record(self._row(session, run_id))

    def list(
        self,
        *,
        model: str | None = None,
        kind: str | None = None,
        version: int | None = None,
        status: str | None = None,
        limit: int = 50,
    ) -> list[RunRecord]:
        """Runs, newest first, filtered by model, kind, version and status.

        INVALID_INPUT for a kind or status no run can have: a typo would
        otherwise look like an empty record.
        """
        for field, value, valid in (("kind", kind, KINDS), ("status", status, STATUSES)):
            if value is not None and value not in valid:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"{field} must be one of {', '.join(valid)}, not {value!r}",
                    field=field,
                )
        query = select(RunRow).order_by(RunRow.id.desc()).limit(limit)
        if model is not None:
            query = query.where(RunRow.model == model)
        if kind is not None:
            query = query.where(RunRow.kind == kind)
        if version is not None:
            if not 1 <= version <= MAX_NUMBER:
                return []  # no run is of a version that cannot exist
            query = query.where(RunRow.version == version)
        if status is not None:
            query = query.where(RunRow.status == status)
        with self._tx() as session:
            return [_record(row) for row in session.scalars(query)]

    @staticmethod
    def _row(session: Any, run_id: int) -> RunRow:
        # Past MAX_NUMBER the database would refuse the lookup (500), not find nothing.
        row: RunRow | None = session.get(RunRow, run_id) if 1 <= run_id <= MAX_NUMBER else None
        if row is None:
            raise AimassError(ErrorCode.NOT_FOUND, f"run {run_id} not found")
        return row


class TrackedJob:
    """A job against a registry, recorded as a run whose progress it reports as it goes."""

    def __init__(
        self, registry: Registry, runs: RunStore, *, progress: Progress | None = None
    ) -> None:
        self.registry = registry
        self.runs = runs
        self.progress = progress

    def report(self, run_id: int, message: str, fraction: float) -> None:
        """Record what the run is doing and how far along it is, and tell ``progress``."""
        self.runs.update(run_id, progress=fraction, message=message)
        if self.progress is not None:
            self.progress(message, fraction)
