"""The declarative base every package's tables share, and the one clock they stamp rows with.

One base, so one Alembic history (``aimass/migrations``) and one schema test
cover every table, whichever package declares it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base of the aimass schema."""
