"""What the registry returns: plain, serialisable descriptions of models and versions."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from aimass.contract.manifest import Manifest

__all__ = ["AliasEvent", "ModelInfo", "VersionInfo"]


class VersionInfo(BaseModel):
    """One immutable version of a model."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: int
    status: str
    description: str = ""
    manifest: Manifest
    tags: dict[str, str] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    aliases: list[str] = Field(default_factory=list)
    created_at: datetime
    created_by: str

    @property
    def ref(self) -> str:
        """``name:version``, the form lineage records and the CLI accepts."""
        return f"{self.model}:{self.version}"


class ModelInfo(BaseModel):
    """A model: its versions are listed separately."""

    model_config = ConfigDict(frozen=True)

    name: str
    description: str
    task: str
    tags: dict[str, str] = Field(default_factory=dict)
    latest_tags: dict[str, str] = Field(default_factory=dict)
    """The tags of the latest ready version (those given when it was registered)."""
    aliases: dict[str, int] = Field(default_factory=dict)
    latest_version: int | None
    version_count: int
    created_at: datetime
    created_by: str


class AliasEvent(BaseModel):
    """One move of an alias: from which version to which, by whom, when."""

    model_config = ConfigDict(frozen=True)

    alias: str
    from_version: int | None
    to_version: int | None
    at: datetime
    by: str
