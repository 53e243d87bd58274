"""The environment a subprocess needs to open the registry a test's settings describe."""

from __future__ import annotations

import os

from aimass.settings import Settings

__all__ = ["registry_env"]


def registry_env(settings: Settings) -> dict[str, str]:
    """This process's environment plus the AIMASS_ variables that name ``settings``' registry."""
    env = dict(os.environ, AIMASS_HOME=str(settings.home))
    if settings.registry.database_url:
        env["AIMASS_REGISTRY__DATABASE_URL"] = settings.database_url()
    if settings.registry.artifact_url:
        env["AIMASS_REGISTRY__ARTIFACT_URL"] = settings.registry.artifact_url
    if settings.registry.s3_endpoint_url:
        env["AIMASS_REGISTRY__S3_ENDPOINT_URL"] = settings.registry.s3_endpoint_url
    return env
