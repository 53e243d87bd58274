"""The observer: told of each step of serving, so monitoring never edits the engine.

The engine, the cache and the batcher call an :class:`Observer` when a request
arrives, joins a queue, runs in a batch and is answered or fails, and when a
version loads or is evicted. The base class does nothing at every step, and
a component given the base class itself calls nothing at all (:func:`active`),
so an unobserved server pays one ``is None`` test per step.
"""

from __future__ import annotations

from aimass.contract.request import InferRequest, InferResult
from aimass.errors import AimassError
from aimass.registry.records import VersionInfo

__all__ = ["NULL_OBSERVER", "Observer", "active"]


class Observer:
    """Each serving step, as a method that does nothing; override the ones you need.

    Methods run on the event loop, in the middle of serving: they must be
    quick and must not raise.
    """

    def received(self, request: InferRequest) -> None:
        """A request arrived at the engine."""

    def queued(self, request: InferRequest, model: str, depth: int) -> None:
        """The request joined ``model``'s queue, which now holds ``depth`` requests."""

    def batched(self, model: str, requests: int, rows: int) -> None:
        """``model`` starts one call on ``requests`` requests merged into ``rows`` rows."""

    def computed(self, model: str, seconds: float, rows: int) -> None:
        """That call ended after ``seconds``."""

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """The engine answered the request."""

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        """A request (None: a load) failed with ``error``."""

    def loaded(self, info: VersionInfo, seconds: float) -> None:
        """A version finished loading after ``seconds``."""

    def evicted(self, info: VersionInfo) -> None:
        """A version left the cache (evicted for room, or unloaded)."""


NULL_OBSERVER = Observer()
"""The default: nothing is told anything."""


def active(observer: Observer) -> Observer | None:
    """``observer``, or None when it would do nothing (so the hot path skips the calls)."""
    return None if type(observer) is Observer else observer
