"""The protocol adapters over the serving engine: OIP REST, OpenAI-compatible, runs, OpenAPI.

Each adapter declares its routes (:mod:`aimass.http.routes`); the composition
root, :mod:`aimass.app`, puts them in one table and assembles the server.
"""
