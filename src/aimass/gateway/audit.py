"""The audit log: every management action, who (a key id), what, on what, when, from where."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from aimass.db.base import utcnow
from aimass.db.database import SqlStore
from aimass.gateway.tables import AuditEventRow

if TYPE_CHECKING:
    from aimass.registry.registry import Registry

__all__ = ["AuditEvent", "AuditLog", "cli_actor", "record_cli_action"]


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One recorded action."""

    id: int
    at: datetime
    actor: str
    action: str
    target: str
    source: str
    status: int | None
    detail: dict[str, Any]

    def public(self) -> dict[str, Any]:
        """The event as JSON-ready data."""
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "source": self.source,
            "status": self.status,
            "detail": self.detail,
        }


class AuditLog(SqlStore):
    """The ``audit_events`` table: append and read, never change."""

    def record(
        self,
        *,
        actor: str,
        action: str,
        target: str = "",
        source: str = "",
        status: int | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Append one event, stamped now."""
        row = AuditEventRow(
            at=utcnow(),
            actor=actor[:255],
            action=action[:64],
            target=target[:1024],
            source=source[:255],
            status=status,
            detail=detail or {},
        )
        with self._tx() as session:
            session.add(row)

    def list(
        self, *, limit: int = 100, actor: str | None = None, action: str | None = None
    ) -> list[AuditEvent]:
        """The newest ``limit`` events, newest first, optionally of one actor or action."""
        query = select(AuditEventRow).order_by(AuditEventRow.id.desc()).limit(limit)
        if actor is not None:
            query = query.where(AuditEventRow.actor == actor)
        if action is not None:
            query = query.where(AuditEventRow.action == action)
        with self._tx() as session:
            return [_event(row) for row in session.scalars(query).all()]


def cli_actor(user: str) -> tuple[str, str]:
    """Who and where, for an action taken with the CLI: ``cli:<user>`` from ``cli@<host>``."""
    return f"cli:{user}", f"cli@{socket.gethostname()}"


def record_cli_action(registry: Registry, action: str, target: str, **detail: Any) -> None:
    """Audit a management action taken with the CLI on ``registry``, as HTTP ones are."""
    actor, source = cli_actor(registry.user)
    AuditLog(registry.database).record(
        actor=actor, action=action, target=target, source=source, detail=detail
    )


def _event(row: AuditEventRow) -> AuditEvent:
    at = row.at if row.at.tzinfo is not None else row.at.replace(tzinfo=UTC)
    return AuditEvent(
        id=row.id,
        at=at,
        actor=row.actor,
        action=row.action,
        target=row.target,
        source=row.source,
        status=row.status,
        detail=dict(row.detail or {}),
    )
