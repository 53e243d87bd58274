"""The model library: versions, aliases, tags, lineage and checksummed artifacts."""

from aimass.registry.manifest import ArtifactFile, Lineage, LineageMethod, Manifest
from aimass.registry.records import AliasEvent, ModelInfo, VersionInfo
from aimass.registry.registry import Registry, parse_ref
from aimass.registry.signature import Datatype, Signature, Task, TensorSpec

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
