"""The transport-agnostic engine: router, model cache, schedulers, backend, observer."""

from aimass.serving.cache import CachedModel, ModelCache, ModelState, ModelStatus
from aimass.serving.engine import Engine
from aimass.serving.factory import build_engine

__all__ = ["CachedModel", "Engine", "ModelCache", "ModelState", "ModelStatus", "build_engine"]
