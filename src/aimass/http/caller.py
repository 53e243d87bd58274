"""Where the gateway leaves the caller of a request, for the endpoints to read.

The gateway layer authenticates a request and puts its
:class:`~aimass.contract.request.Caller` in the ASGI scope; the protocol
adapters copy it into the request object and the admin API checks it. A
request the gateway let through without a key (an open server) has none.
"""

from __future__ import annotations

from starlette.types import Scope

from aimass.contract.request import Caller

__all__ = ["CALLER", "caller_of"]

CALLER = "aimass.caller"
"""The ASGI scope key of the request's :class:`~aimass.contract.request.Caller`."""


def caller_of(scope: Scope) -> Caller | None:
    """The caller the gateway authenticated for this request, if it did."""
    caller = scope.get(CALLER)
    return caller if isinstance(caller, Caller) else None
