"""HTTP adapters over the serving engine: OIP REST, OpenAI-compatible, one error mapping."""

from aimass.server.app import create_app

__all__ = ["create_app"]
