"""Whether a server may start where it listens: an open gateway stays on loopback.

With ``gateway.enabled=auto`` and no key ever made, every request is
admitted, which is right for a demo on one's own machine and wrong on an
address others reach. :func:`check_exposure` refuses the second unless the
gateway is switched off (``enabled=off``) or ``server.insecure`` says so on
purpose.
"""

from __future__ import annotations

import ipaddress

from aimass.errors import AimassError, ErrorCode
from aimass.gateway.keys import KeyStore
from aimass.settings import Settings

__all__ = ["check_exposure", "is_loopback"]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable only from this machine: 127.0.0.0/8, ::1, localhost."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name other than localhost may be any address
        return False


def check_exposure(settings: Settings, keys: KeyStore) -> None:
    """Raise INVALID_INPUT if the server would listen beyond loopback admitting everyone."""
    host = settings.server.host
    if (
        is_loopback(host)
        or settings.server.insecure
        or settings.gateway.enabled != "auto"
        or keys.snapshot()[1]
    ):
        return
    raise AimassError(
        ErrorCode.INVALID_INPUT,
        f"refusing to serve on {host} with no API key: anyone who reaches it could use every "
        "model. Create a key first (aimass keys create --name NAME --role invoker), or pass "
        "--insecure (AIMASS_SERVER__INSECURE=true) to serve it open on purpose",
    )
