"""Keys made and revoked with the CLI reach a running server at once, on SQLite and PostgreSQL.

The server trusts its copy of the key table for a minute here, so only the
re-read on an unknown key and the change notification can explain a new key
working at once and a revoked one being refused within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from aimass.testing.cli import Cli
from aimass.testing.server import serve_in_process

REVOCATION_BOUND_S = 1.0


@pytest.fixture(params=["sqlite", "postgres"])
def database_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "sqlite":
        return {}
    create: Callable[[], str] = request.getfixturevalue("postgres_database")
    return {"AIMASS_REGISTRY__DATABASE_URL": create()}


def test_a_key_made_by_the_cli_works_at_once_and_a_revoked_one_stops_within_a_second(
    tmp_path: Path, database_env: dict[str, str]
) -> None:
    cli = Cli(tmp_path)
    cli.env.update(database_env)
    first = cli.json("keys", "create", "--name", "first", "--role", "invoker")["secret"]
    env = {**cli.env, "AIMASS_GATEWAY__KEY_REFRESH_S": "60"}
    with (
        serve_in_process([], env=env) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):

        def status(secret: str) -> int:
            return client.get("/v2", headers={"authorization": f"Bearer {secret}"}).status_code

        assert status(first) == 200  # the server has read its key table
        assert status("aimass_not-a-key") == 401
        made = cli.json("keys", "create", "--name", "second", "--role", "invoker")
        assert status(made["secret"]) == 200, "a key made by the CLI was refused"
        cli.run("keys", "revoke", made["key"]["id"])
        revoked_at = time.monotonic()
        while status(made["secret"]) == 200:
            assert time.monotonic() - revoked_at < REVOCATION_BOUND_S, (
                "a key revoked by the CLI kept working"
            )
        assert status(first) == 200
