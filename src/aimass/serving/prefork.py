"""Models loaded once, before a fork, and shared by every worker the supervisor forks.

:class:`SharedModels` loads the start-up models in the supervisor, *before* it
forks (what gunicorn calls ``--preload``). Each worker then builds its engine
around those objects (``build_engine(..., preloaded=shared.models)``), so the
weights — numpy arrays, torch tensors, onnxruntime sessions — are the
supervisor's pages, shared copy-on-write and never written, and memory does
not multiply by workers. ``gc.freeze()`` before forking keeps the collector
from touching (and so copying) the pages of the objects that hold them.

Forking a process that has started threads is only safe if the libraries
that own those threads expect it, so each runtime says what loading one of
its versions before a fork takes (its
:class:`~aimass.contract.runtime.ForkPolicy`): whether it may be shared at
all (an onnxruntime session with its own thread pool may not: each worker
loads its own copy, and it is logged), what to do before it loads (torch
keeps its OpenMP pool unstarted) and after each fork, and what to stop once
every load is done. numpy's OpenBLAS and jemalloc threads are fork-aware
(``pthread_atfork``) and need nothing; numpy's global generator, which a
fork copies into every worker alike, is re-seeded in each.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
from collections.abc import Callable, Sequence

from aimass.contract.reference import ModelRef
from aimass.errors import AimassError
from aimass.registry.records import VersionInfo
from aimass.registry.registry import Registry
from aimass.runtimes import runtime_class
from aimass.runtimes.model import LoadedModel
from aimass.serving.engine import startup_error

__all__ = ["SharedModels"]

_log = logging.getLogger(__name__)


class SharedModels:
    """Models loaded in the supervisor before it forks, shared by every worker it forks."""

    def __init__(
        self,
        models: Sequence[tuple[VersionInfo, LoadedModel]],
        after_fork: Sequence[Callable[[], None]] = (),
    ) -> None:
        self.models = list(models)
        self._after_fork = list(after_fork)

    @classmethod
    def load(
        cls, registry: Registry, refs: Sequence[str], *, workers: int, allow_missing: bool = True
    ) -> SharedModels:
        """Load ``refs`` now, in a way that is safe to fork afterwards.

        A reference that fails to resolve or load raises the engine's
        :func:`~aimass.serving.engine.startup_error`; with ``allow_missing``
        it is logged and left out instead (each worker then tries it again,
        and shows it UNAVAILABLE if it fails there too). Versions whose
        runtime says they cannot be shared are left out, for the workers
        to load themselves. Call it once, from the process that will fork,
        with no other threads of its own running.
        """
        loader = _Preloader(workers, allow_missing)
        models: list[tuple[VersionInfo, LoadedModel]] = []
        for ref in refs:
            try:
                info = registry.resolve(ModelRef.parse(ref))
            except AimassError as exc:
                if not allow_missing:
                    raise startup_error(ref, exc) from exc
                _log.warning("could not preload model %s: %s", ref, exc.message)
                continue
            loaded = loader.load(registry, info, ref)
            if loaded is not None:
                models.append((info, loaded))
        for before_fork in loader.before_fork:
            before_fork()
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if others:
            _log.warning("threads %s are running before the fork; workers may deadlock", others)
        # Objects that exist now are shared with the workers; keeping the
        # collector away from them keeps their pages shared.
        gc.collect()
        gc.freeze()
        return cls(models, loader.after_fork)

    def after_fork(self) -> None:
        """Prepare a freshly forked worker: its own random seeds, its frameworks' threads."""
        if "numpy" in sys.modules:
            import numpy as np

            # The legacy global generator is the state a fork copies.
            np.random.seed()
        for hook in self._after_fork:
            hook()


class _Preloader:
    """Loads versions before a fork, running each fork policy's hooks once."""

    def __init__(self, workers: int, allow_missing: bool) -> None:
        self.workers = workers
        self.allow_missing = allow_missing
        self.after_fork: list[Callable[[], None]] = []
        self.before_fork: list[Callable[[], None]] = []
        self._prepared: set[Callable[[int], Callable[[], None]]] = set()

    def load(self, registry: Registry, info: VersionInfo, ref: str) -> LoadedModel | None:
        """The version loaded here, or None (logged) when it may not be or, if allowed, fails."""
        runtime = runtime_class(info.manifest.runtime)
        policy = runtime.fork_policy(info.manifest)
        if not policy.shared:
            _log.warning(
                "model %s is loaded by each worker, not shared: %s", info.ref, policy.reason
            )
            return None
        self._prepare(policy.prepare)
        try:
            loaded = registry.load(info.model, info.version)
        except AimassError as exc:
            if not self.allow_missing:
                raise startup_error(ref, exc) from exc
            _log.warning("could not preload model %s: %s", info.ref, exc.message)
            return None
        except Exception as exc:
            _log.exception("could not preload model %s", info.ref)
            if not self.allow_missing:
                raise startup_error(ref, exc) from exc
            return None
        # Asked again now that it is loaded: a plan that did not open means
        # the framework itself serves, with what that takes.
        after = runtime.fork_policy(info.manifest, loaded.runtime)
        if after.prepare is not None and after.prepare not in self._prepared:
            _log.warning("model %s is served by its framework, not its ONNX plan", info.ref)
            self._prepare(after.prepare)
        for hook in (policy.before_fork, after.before_fork):
            if hook is not None and hook not in self.before_fork:
                self.before_fork.append(hook)
        return loaded

    def _prepare(self, prepare: Callable[[int], Callable[[], None]] | None) -> None:
        if prepare is not None and prepare not in self._prepared:
            self._prepared.add(prepare)
            self.after_fork.append(prepare(self.workers))
