"""Roles: what a caller may do, ranked, each including the ones below it.

The vocabulary every layer shares: routes declare the least role they need,
the gateway checks a key's role against it, and a request carries its
caller's. ``invoker`` < ``deployer`` < ``admin``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    """What a key may do; each role includes the ones below it."""

    INVOKER = "invoker"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may use an endpoint that needs ``needed``."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.INVOKER: 1, Role.DEPLOYER: 2, Role.ADMIN: 3}
