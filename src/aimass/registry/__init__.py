"""The model library: versions, aliases, tags, lineage and checksummed artifacts.

:class:`Registry` is imported on first use: it depends on the runtimes, which
themselves use this package's manifest and signature types.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from aimass.registry.manifest import ArtifactFile, Lineage, LineageMethod, Manifest
from aimass.registry.records import AliasEvent, ModelInfo, VersionInfo
from aimass.registry.signature import Datatype, Signature, Task, TensorSpec

if TYPE_CHECKING:
    from aimass.registry.registry import Registry, parse_ref

__all__ = [
    "AliasEvent",
    "ArtifactFile",
    "Datatype",
    "Lineage",
    "LineageMethod",
    "Manifest",
    "ModelInfo",
    "Registry",
    "Signature",
    "Task",
    "TensorSpec",
    "VersionInfo",
    "parse_ref",
]


def __getattr__(name: str) -> Any:
    if name in ("Registry", "parse_ref"):
        return getattr(importlib.import_module("aimass.registry.registry"), name)
    raise AttributeError(f"module 'aimass.registry' has no attribute {name!r}")
