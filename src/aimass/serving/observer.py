"""The observer: told of each step of serving, so monitoring never edits the engine.

The engine, the cache and the batcher call an :class:`Observer` when a request
arrives, joins a queue, runs in a batch and is answered or fails, and when a
version loads or is evicted. The base class does nothing at every step, and
a component given the base class itself calls nothing at all (:func:`active`),
so an unobserved server pays one ``is None`` test per step. Several observers
(per-version statistics, shadow traffic, monitoring) share the one seat
through :func:`fan_out`.
"""

from __future__ import annotations

from collections.abc import Iterable

from aimass.contract.request import InferRequest, InferResult
from aimass.errors import AimassError
from aimass.registry.records import VersionInfo

__all__ = ["NULL_OBSERVER", "Observer", "Observers", "active", "fan_out"]


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


class Observers(Observer):
    """Several observers told of every step, in order (build one with :func:`fan_out`)."""

    def __init__(self, observers: Iterable[Observer]) -> None:
        self.observers = tuple(observers)

    def received(self, request: InferRequest) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.received(request)

    def queued(self, request: InferRequest, model: str, depth: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.queued(request, model, depth)

    def batched(self, model: str, requests: int, rows: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.batched(model, requests, rows)

    def computed(self, model: str, seconds: float, rows: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.computed(model, seconds, rows)

    def responded(self, request: InferRequest, result: InferResult) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.responded(request, result)

    def failed(self, request: InferRequest | None, error: AimassError) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.failed(request, error)

    def loaded(self, info: VersionInfo, seconds: float) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.loaded(info, seconds)

    def evicted(self, info: VersionInfo) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.evicted(info)


def fan_out(*observers: Observer) -> Observer:
    """One observer telling all of ``observers`` (the do-nothing ones left out).

    None that does anything gives :data:`NULL_OBSERVER`, so the engine still
    skips the calls; a single one is returned as it is, with no loop around it.
    """
    doing = [o for o in observers if active(o) is not None]
    if not doing:
        return NULL_OBSERVER
    return doing[0] if len(doing) == 1 else Observers(doing)
