"""Keys made and revoked with the CLI reach a running server at once, on SQLite and PostgreSQL.

The server trusts its copy of the key table for a minute here, so only the
re-read on an unknown key and the change notification can explain a new key
working at once and a revoked one being refused within a second.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from aimass.testing.cli import Cli
from aimass.testing.server import serve_in_process

pytestmark = pytest.mark.slow  # every test runs the aimass command and a server

REVOCATION_BOUND_S = 1.0

Status = Callable[[str], int]
"""The status of ``GET /v2`` with a key."""


@pytest.fixture(params=["sqlite", "postgres"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Cli:
    cli = Cli(tmp_path)
    if request.param == "postgres":
        create: Callable[[], str] = request.getfixturevalue("postgres_database")
        cli.env["AIMASS_REGISTRY__DATABASE_URL"] = create()
    return cli


@contextlib.contextmanager
def _served(cli: Cli) -> Iterator[Status]:
    env = {**cli.env, "AIMASS_GATEWAY__KEY_REFRESH_S": "60"}
    with (
        serve_in_process([], env=env) as served,
        httpx.Client(base_url=served.url, timeout=30) as client,
    ):

        def status(secret: str) -> int:
            return client.get("/v2", headers={"authorization": f"Bearer {secret}"}).status_code

        yield status


def _make(cli: Cli, name: str) -> tuple[str, str]:
    made = cli.json("keys", "create", "--name", name, "--role", "invoker")
    return made["key"]["id"], made["secret"]


def test_a_key_made_by_the_cli_works_at_once(cli: Cli) -> None:
    _, first = _make(cli, "first")
    with _served(cli) as status:
        assert status(first) == 200  # the server has read its key table
        assert status("aimass_not-a-key") == 401
        _, second = _make(cli, "second")
        assert status(second) == 200, "a key made by the CLI was refused"


def test_a_key_revoked_by_the_cli_is_refused_within_a_second(cli: Cli) -> None:
    _, first = _make(cli, "first")
    key_id, second = _make(cli, "second")
    with _served(cli) as status:
        assert status(second) == 200
        cli.run("keys", "revoke", key_id)
        revoked_at = time.monotonic()
        while status(second) == 200:
            assert time.monotonic() - revoked_at < REVOCATION_BOUND_S, (
                "a key revoked by the CLI kept working"
            )
        assert status(first) == 200
