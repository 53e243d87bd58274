"""The model library: versions, aliases, tags, lineage and checksummed artifacts."""

from aimass.registry.records import AliasEvent, ModelInfo, VersionInfo
from aimass.registry.registry import Registry

__all__ = ["AliasEvent", "ModelInfo", "Registry", "VersionInfo"]
