"""The transport-agnostic serving engine: model cache, dynamic batcher, executor, infer()."""

from aimass.serving.batcher import Batcher
from aimass.serving.cache import CachedModel, ModelCache, ModelState, ModelStatus
from aimass.serving.engine import Engine, InferResult
from aimass.serving.executor import Executor
from aimass.serving.resolver import Resolver

__all__ = [
    "Batcher",
    "CachedModel",
    "Engine",
    "Executor",
    "InferResult",
    "ModelCache",
    "ModelState",
    "ModelStatus",
    "Resolver",
]
