"""Helpers of the gateway tests: a fake clock, a served gateway and its clients."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from aimass.gateway.gateway import Gateway
from aimass.gateway.keys import KeyStore
from aimass.roles import Role

IRIS_ROW = {
    "inputs": [{"name": "input", "datatype": "FP64", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}]
}


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Served:
    """A running gateway-fronted server: its URL, gateway and key store."""

    url: str
    gateway: Gateway
    keys: KeyStore

    def key(self, role: Role = Role.INVOKER, **options: Any) -> str:
        """A new key's secret (the server sees it on its next request)."""
        secret = self.keys.create(
            name=f"test-{role.value}", role=role, created_by="test", **options
        )
        self.gateway.invalidate()
        return secret.secret

    def client(self, secret: str | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTP client for the server, sending ``secret`` as a bearer token."""
        headers = {"authorization": f"Bearer {secret}"} if secret else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kwargs)


ServeFactory = Callable[..., contextlib.AbstractContextManager[Served]]
"""``serve(clock=None, **gateway_settings)``, the fixture's type."""
