"""Roles, the endpoint classes they may use, and per-key model scopes.

Roles are ranked: ``invoker`` < ``deployer`` < ``admin``, and each may do what
the roles below it may. :func:`classify` names, for a method and a path, the
least role it needs (``None``: open to anyone, like health checks) and the
model it touches, if any. A path nobody has classified needs ``admin``: an
endpoint added later is closed until it is placed in this table, never open by
omission.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Requirement", "Role", "base_model_name", "classify", "in_scope"]


class Role(StrEnum):
    """What a key may do; each role includes the ones below it."""

    INVOKER = "invoker"
    DEPLOYER = "deployer"
    ADMIN = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may use an endpoint that needs ``needed``."""
        return _RANK[self] >= _RANK[needed]


_RANK = {Role.INVOKER: 1, Role.DEPLOYER: 2, Role.ADMIN: 3}


@dataclass(frozen=True, slots=True)
class Requirement:
    """What one request needs: a role (``None`` when open) and the model it names."""

    role: Role | None
    model: str | None = None
    model_in_body: bool = False
    """The model is named in the JSON body (``/v1/embeddings``), not the path."""
    management: bool = False
    """A change to the server's state: recorded in the audit log."""


_OPEN = Requirement(None)
_INVOKE = Requirement(Role.INVOKER)
_DEPLOY = Requirement(Role.DEPLOYER)
_ADMIN = Requirement(Role.ADMIN)
_OPEN_PATHS = frozenset({"/v2/health/live", "/v2/health/ready", "/openapi.json"})


def classify(method: str, path: str) -> Requirement:
    """The role ``method path`` needs and the model it names."""
    if path in _OPEN_PATHS:
        return _OPEN
    if path.startswith("/v2/models/"):
        # metadata, readiness and inference of one model (or one of its versions)
        return Requirement(Role.INVOKER, _segment(path, 3))
    if path == "/v2" or path == "/v1/models":
        return _INVOKE
    if path.startswith("/v1/models/"):
        return Requirement(Role.INVOKER, _segment(path, 3))
    if path == "/v1/embeddings":
        return Requirement(Role.INVOKER, model_in_body=method == "POST")
    if path == "/v2/repository/index":
        return _DEPLOY
    if path.startswith("/v2/repository/models/"):
        return Requirement(Role.DEPLOYER, _segment(path, 4), management=method != "GET")
    if path == "/metrics" or path == "/v1/runs" or path.startswith("/v1/runs/"):
        # operational data: metrics and training runs are for whoever deploys
        return _DEPLOY
    if path.startswith("/admin/"):
        # the admin API records its own, richer, audit entries
        return _ADMIN
    return Requirement(Role.ADMIN, management=method not in ("GET", "HEAD"))


def _segment(path: str, index: int) -> str | None:
    parts = path.split("/")
    return parts[index] if len(parts) > index and parts[index] else None


def base_model_name(reference: str) -> str:
    """The model name in a reference: ``iris`` for ``iris``, ``iris:2`` and ``iris@production``."""
    for separator in ("@", ":"):
        reference = reference.split(separator, 1)[0]
    return reference


def in_scope(patterns: Sequence[str], reference: str) -> bool:
    """Whether a key limited to ``patterns`` (names or globs; empty: all) may use ``reference``."""
    if not patterns:
        return True
    name = base_model_name(reference)
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
