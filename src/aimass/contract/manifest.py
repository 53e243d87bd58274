"""The manifest: everything needed to load, verify and serve one model version.

It travels with the version (stored in the registry database and written as
``manifest.json`` beside the files when a version is exported) and names the
runtime, the framework and its version, the Python that saved it, the
signature, the sha256 of every artifact file, and the lineage.
"""

from __future__ import annotations

import hashlib
import platform
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aimass.contract.signature import Signature, Task

__all__ = ["ArtifactFile", "Lineage", "LineageMethod", "Manifest", "sha256_of"]

_CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    """The hex sha256 of a file's bytes: how every artifact is named and checked."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class LineageMethod(StrEnum):
    """How a version came to be."""

    REGISTERED = "registered"
    TRAINED = "trained"
    IMPORTED = "imported"
    QUANTIZED = "quantized"
    PRUNED = "pruned"
    DISTILLED = "distilled"
    CONVERTED = "converted"
    FEDERATED = "federated"
    ONLINE_SNAPSHOT = "online-snapshot"
    TUNED = "tuned"


class Lineage(BaseModel):
    """Where a version came from: parent versions (``name:version``) and how."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: LineageMethod = LineageMethod.REGISTERED
    parents: tuple[str, ...] = ()
    params: dict[str, Any] = Field(default_factory=dict)


class ArtifactFile(BaseModel):
    """One file of a version: its path inside the version and its content hash."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str
    sha256: str
    size: int


class Manifest(BaseModel):
    """The self-description of a model version, enforced before predict."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: str
    framework: str
    framework_version: str
    python_version: str = Field(default_factory=platform.python_version)
    format: str = Field(description="How the artifact is stored: skops, pickle, onnx, torchscript…")
    unsafe: bool = Field(
        default=False, description="True when loading the artifact can run arbitrary code (pickle)"
    )
    task: Task = Task.CUSTOM
    signature: Signature
    files: tuple[ArtifactFile, ...] = ()
    lineage: Lineage = Field(default_factory=Lineage)
    options: dict[str, Any] = Field(
        default_factory=dict, description="Runtime-specific settings recorded at save time"
    )
