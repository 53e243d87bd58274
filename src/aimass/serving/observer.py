"""The observer: told of each step of serving, so monitoring never edits the engine.

The engine, the cache and the batcher call an :class:`Observer` when a request
arrives, joins a queue, runs in a batch and is answered or fails, and when a
version loads or is evicted. The base class does nothing at every step. A
component calls only the steps an observer overrides (:func:`hooks`): the
others cost one ``is None`` test, as does every step of an unobserved
server. Several observers (per-version statistics, shadow traffic,
monitoring) share the one seat through :func:`fan_out`, and each step calls
only the observers that override it: deployments' statistics, which watch
answers, add nothing to a request's queueing or batching.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aimass.contract.request import InferRequest, InferResult
from aimass.errors import AimassError
from aimass.registry.records import VersionInfo

__all__ = ["NULL_OBSERVER", "Hooks", "Observer", "Observers", "fan_out", "hooks"]


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
    doing = [o for o in observers if type(o) is not Observer]
    if not doing:
        return NULL_OBSERVER
    return doing[0] if len(doing) == 1 else Observers(doing)


Step = Callable[..., None]


@dataclass(frozen=True, slots=True)
class Hooks:
    """What a component calls at each step: None where no observer does anything."""

    received: Callable[[InferRequest], None] | None
    queued: Callable[[InferRequest, str, int], None] | None
    batched: Callable[[str, int, int], None] | None
    computed: Callable[[str, float, int], None] | None
    responded: Callable[[InferRequest, InferResult], None] | None
    failed: Callable[[InferRequest | None, AimassError], None] | None
    loaded: Callable[[VersionInfo, float], None] | None
    evicted: Callable[[VersionInfo], None] | None


def hooks(observer: Observer) -> Hooks:
    """The steps of ``observer`` that do something, each to call as it is.

    A step one observer overrides is that observer's own method, with no loop
    around it; a step several override calls each in turn.
    """
    members = _members(observer)
    return Hooks(**{name: _step(members, name) for name in Hooks.__slots__})


def _members(observer: Observer) -> list[Observer]:
    if isinstance(observer, Observers):
        return [m for o in observer.observers for m in _members(o)]
    return [observer]


def _step(members: list[Observer], name: str) -> Step | None:
    base = getattr(Observer, name)
    calls: list[Step] = [getattr(m, name) for m in members if getattr(type(m), name) is not base]
    if not calls:
        return None
    if len(calls) == 1:
        return calls[0]
    chain = tuple(calls)

    def tell(*args: object) -> None:
        for call in chain:
            call(*args)

    return tell
