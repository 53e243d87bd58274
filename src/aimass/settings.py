"""All configuration, in one typed tree: the only module that reads the environment.

Settings are built once (``Settings()`` reads ``AIMASS_*`` variables, nested
sections with ``__``: ``AIMASS_REGISTRY__DATABASE_URL``) and passed down to
whatever needs them; nothing else looks at ``os.environ``. Unknown keys are
errors so a typo in a variable name or a config file is never silently ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["RegistrySettings", "ServerSettings", "Settings", "load_settings"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegistrySettings(_Section):
    """Where the model library keeps its metadata and artifacts."""

    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///$AIMASS_HOME/registry.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    artifact_url: str | None = Field(
        default=None,
        description="Artifact store: a directory path or file:// URL (default "
        "$AIMASS_HOME/artifacts), or s3://bucket/prefix",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible server (MinIO, moto, Ceph)"
    )
    allow_pickle: bool = Field(
        default=True,
        description="Load pickle/joblib artifacts (they run code when loaded; only "
        "ever after their sha256 is verified). False refuses them.",
    )
    prefer_safe_formats: bool = Field(
        default=True,
        description="Save scikit-learn models with skops instead of pickle when it round-trips",
    )


class ServerSettings(_Section):
    """How ``aimass serve`` listens and how many processes it runs."""

    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    models: list[str] = Field(default_factory=list, description="Models to load at start-up")


class Settings(BaseSettings):
    """The root of the configuration tree."""

    model_config = SettingsConfigDict(
        env_prefix="AIMASS_", env_nested_delimiter="__", extra="forbid"
    )

    home: Path = Field(
        default_factory=lambda: Path.home() / ".aimass",
        description="Directory for the default SQLite database and artifact store",
    )
    user: str = Field(default="local", description="Recorded as creator of what you register")
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    def database_url(self) -> str:
        """The registry database URL, defaulting to SQLite under ``home``."""
        return self.registry.database_url or f"sqlite:///{self.home / 'registry.db'}"

    def artifact_url(self) -> str:
        """The artifact store location, defaulting to a directory under ``home``."""
        return self.registry.artifact_url or str(self.home / "artifacts")


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build settings from a YAML file (optional), then the environment, then overrides.

    Environment variables win over the file so one file can serve several
    machines; explicit overrides (CLI flags) win over both.
    """
    from_file: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(config_file.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_file}: expected a mapping at the top level")
        from_file = loaded
    env_only = Settings().model_dump(exclude_unset=True)
    return Settings.model_validate(_deep_merge(_deep_merge(from_file, env_only), overrides))


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged
