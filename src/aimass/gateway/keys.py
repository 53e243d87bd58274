"""API keys: made once, shown once, stored only as a sha256 digest.

A key is ``aimass_`` plus 43 random URL-safe characters (256 bits), so a
plain sha256 is enough to store it (a slow hash protects guessable
passwords, not random keys). A presented key is hashed before anything else
happens and looked up by its digest, so the time taken depends on the digest
alone, which a caller cannot steer towards a stored one: a guessed key and an
unknown key are indistinguishable, in time as in message.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from aimass.db.base import utcnow
from aimass.db.database import SqlStore
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.tables import ApiKeyRow
from aimass.roles import Role

__all__ = [
    "KEY_CHANNEL",
    "KEY_PREFIX",
    "MAX_QUOTA",
    "ApiKey",
    "KeyStore",
    "NewKey",
    "digest",
    "parse_expiry",
    "parse_quota",
    "parse_role",
]

KEY_PREFIX = "aimass_"
"""Every key starts with this, so secret scanners and people can recognise one."""

KEY_CHANNEL = "aimass_keys"
"""The PostgreSQL ``NOTIFY`` channel told of every key made or revoked."""

MAX_QUOTA = 1_000_000_000
"""The most requests a quota may allow per period (the database keeps a 32-bit count)."""

_PERIODS = ("day", "month")
_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def digest(secret: str) -> str:
    """The stored form of a key: its sha256, hex."""
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True, slots=True)
class ApiKey:
    """A key's public record: everything but the secret."""

    id: str
    name: str
    prefix: str
    digest: str
    role: Role
    models: tuple[str, ...]
    rate: float | None
    burst: int | None
    per_model: bool
    quota: int | None
    quota_period: str | None
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def matches(self, presented_digest: str) -> bool:
        """Whether ``presented_digest`` is this key's, compared in constant time."""
        return hmac.compare_digest(self.digest, presented_digest)

    def usable(self, now: datetime) -> bool:
        """Not revoked and not expired at ``now``."""
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or now < self.expires_at

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked``."""
        if self.revoked_at is not None:
            return "revoked"
        return "active" if self.usable(now) else "expired"

    def public(self, now: datetime | None = None) -> dict[str, Any]:
        """The record as JSON-ready data (no digest, no secret)."""
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "role": self.role.value,
            "models": list(self.models),
            "rate": self.rate,
            "burst": self.burst,
            "per_model": self.per_model,
            "quota": None if self.quota is None else f"{self.quota}/{self.quota_period}",
            "created_at": self.created_at.isoformat(),
            "created_by": self.created_by,
            "expires_at": None if self.expires_at is None else self.expires_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
            "status": self.status(now or datetime.now(UTC)),
        }


@dataclass(frozen=True, slots=True)
class NewKey:
    """A key just made: its record and the secret, which is never available again."""

    key: ApiKey
    secret: str


def parse_role(value: str) -> Role:
    """A role from its name; INVALID_INPUT naming the choices otherwise."""
    try:
        return Role(value.strip().lower())
    except ValueError:
        choices = ", ".join(r.value for r in Role)
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"role must be one of {choices}, got {value!r}", field="role"
        ) from None


def parse_quota(value: str) -> tuple[int, str]:
    """``"1000/day"`` or ``"50000/month"`` as ``(1000, "day")``."""
    count, _, period = value.strip().partition("/")
    period = period.strip().lower() or "day"
    digits = count.strip()
    if not digits.isdigit() or not 1 <= int(digits) <= MAX_QUOTA or period not in _PERIODS:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"quota must look like 1000/day or 50000/month (at most {MAX_QUOTA:,}), got {value!r}",
            field="quota",
        )
    return int(digits), period


def parse_expiry(value: str, now: datetime | None = None) -> datetime:
    """When a key expires: a duration from now (``30d``, ``12h``, ``2w``) or an ISO date/time."""
    now = now or datetime.now(UTC)
    text = value.strip().lower()
    match = _DURATION.match(text)
    if match:
        try:
            at = now + timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
        except OverflowError:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"expiry {value!r} is too far away", field="expires"
            ) from None
    else:
        try:
            at = datetime.fromisoformat(value.strip())
        except ValueError:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"expiry must be a duration (30d, 12h, 2w) or an ISO date, got {value!r}",
                field="expires",
            ) from None
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
    if at <= now:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"expiry {value!r} is in the past", field="expires"
        )
    return at


def _aware(at: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every time aimass stores is UTC.
    if at is None or at.tzinfo is not None:
        return at
    return at.replace(tzinfo=UTC)


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        digest=row.digest,
        role=Role(row.role),
        models=tuple(row.models or ()),
        rate=row.rate,
        burst=row.burst,
        per_model=row.per_model,
        quota=row.quota,
        quota_period=row.quota_period,
        created_at=_aware(row.created_at) or row.created_at,
        created_by=row.created_by,
        expires_at=_aware(row.expires_at),
        revoked_at=_aware(row.revoked_at),
    )


class KeyStore(SqlStore):
    """The ``api_keys`` table: create, list, revoke, and the usable keys by digest."""

    def create(
        self,
        *,
        name: str,
        role: Role,
        created_by: str,
        models: Sequence[str] = (),
        rate: float | None = None,
        burst: int | None = None,
        per_model: bool = False,
        quota: tuple[int, str] | None = None,
        expires_at: datetime | None = None,
    ) -> NewKey:
        """Make a key; the returned secret is the only copy there will ever be."""
        name = name.strip()
        if not name or len(name) > 255:
            raise AimassError(
                ErrorCode.INVALID_INPUT, "name must be 1 to 255 characters", field="name"
            )
        patterns = [m.strip() for m in models]
        if any(not p or len(p) > 255 for p in patterns):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                "model patterns must be 1 to 255 characters",
                field="models",
            )
        if burst is not None and rate is None:
            raise AimassError(ErrorCode.INVALID_INPUT, "burst needs a rate", field="burst")
        if rate is not None:
            if not rate > 0 or rate > 1e9:
                raise AimassError(
                    ErrorCode.INVALID_INPUT, "rate must be a positive number", field="rate"
                )
            burst = max(1, round(rate)) if burst is None else burst
            if not 1 <= burst <= 1_000_000_000:
                raise AimassError(
                    ErrorCode.INVALID_INPUT, "burst must be at least 1", field="burst"
                )
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = ApiKeyRow(
            id="key_" + secrets.token_hex(6),
            name=name,
            prefix=secret[: len(KEY_PREFIX) + 4],
            digest=digest(secret),
            role=role.value,
            models=patterns,
            rate=rate,
            burst=burst,
            per_model=per_model,
            quota=None if quota is None else quota[0],
            quota_period=None if quota is None else quota[1],
            created_at=utcnow(),
            created_by=created_by,
            expires_at=expires_at,
        )
        with self._tx() as session:
            session.add(row)
            _announce(session)
        return NewKey(_record(row), secret)

    def list(self) -> list[ApiKey]:
        """Every key, revoked and expired ones included, oldest first."""
        with self._tx() as session:
            rows = session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at)).all()
            return [_record(row) for row in rows]

    def get(self, key_id: str) -> ApiKey:
        """One key by id; NOT_FOUND if there is none."""
        with self._tx() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise AimassError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}")
            return _record(row)

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key for good (revoking twice keeps the first time)."""
        with self._tx() as session:
            row = session.get(ApiKeyRow, key_id)
            if row is None:
                raise AimassError(ErrorCode.NOT_FOUND, f"no API key {key_id!r}")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                _announce(session)
            return _record(row)

    def snapshot(self) -> tuple[dict[str, ApiKey], bool]:
        """The usable keys by digest, and whether any key was ever made.

        Usable means not revoked (expiry is checked per request); revoked keys
        still count as made, so revoking every key does not reopen a server.
        """
        with self._tx() as session:
            rows = session.scalars(select(ApiKeyRow)).all()
            usable = {row.digest: _record(row) for row in rows if row.revoked_at is None}
            return usable, bool(rows)

    def mark(self) -> tuple[int, int]:
        """How many keys were made and how many revoked: it changes whenever the table does.

        Keys are never deleted and a revocation is final, so the two counts
        only grow, and any change to the table grows one of them.
        """
        with self._tx() as session:
            made, revoked = session.execute(
                select(func.count(), func.count(ApiKeyRow.revoked_at))
            ).one()
            return made, revoked


def _announce(session: Session) -> None:
    """On PostgreSQL, tell listening servers that the key table changed (sent on commit)."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        session.execute(text("SELECT pg_notify(:channel, '')"), {"channel": KEY_CHANNEL})
