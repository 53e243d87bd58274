"""The deployments' tables in the registry database: desired state, history, request stats.

They share the product's declarative ``Base`` so one Alembic history (and the
schema test) covers them; ``aimass/migrations/env.py`` imports this module so
autogenerate and the comparison see them. Events and stats name their
deployment by a string rather than a foreign key, so a deployment's history
outlives its deletion.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from aimass.db.base import Base, utcnow

__all__ = ["DeploymentEventRow", "DeploymentRow", "DeploymentStatsRow"]


class DeploymentRow(Base):
    """One deployment's desired state; ``revision`` counts its changes (compare-and-set)."""

    __tablename__ = "deployments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(255))


class DeploymentEventRow(Base):
    """One change of a deployment: who, when, what kind, why, and the spec before and after."""

    __tablename__ = "deployment_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(255), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    by: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text, default="")
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class DeploymentStatsRow(Base):
    """One process's counts for one version of a deployment over one time bucket.

    ``bucket`` is the bucket's start in seconds since the epoch (a multiple of
    ``stats_bucket_s``); each process writes only its own rows, so the totals
    across processes are sums over ``process``.
    """

    __tablename__ = "deployment_stats"
    __table_args__ = (UniqueConstraint("deployment", "ref", "role", "process", "bucket"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    deployment: Mapped[str] = mapped_column(String(255))
    ref: Mapped[str] = mapped_column(String(512))
    role: Mapped[str] = mapped_column(String(16))
    process: Mapped[str] = mapped_column(String(255))
    bucket: Mapped[int] = mapped_column(BigInteger, index=True)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[int] = mapped_column(Integer, default=0)
    latency: Mapped[list[int]] = mapped_column(JSON, default=list)
    comparison: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
