"""``aimass keys`` and ``aimass audit`` as a user runs them: JSON for scripts, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test runs the aimass command


def _aimass(
    home: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")} | (env or {})
    env |= {"AIMASS_HOME": str(home), "AIMASS_USER": "ana"}
    return subprocess.run(
        [sys.executable, "-c", "from aimass.cli.app import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_keys_lifecycle_from_the_cli(tmp_path: Path) -> None:
    made = _aimass(tmp_path, "keys", "create", "--name", "a", "--role", "deployer", "--json")
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["secret"].startswith("aimass_") and created["key"]["role"] == "deployer"
    plain = _aimass(tmp_path, "keys", "create", "--name", "b", "--role", "invoker")
    assert plain.stdout.strip().startswith("aimass_") and "not shown again" in plain.stderr
    listed = json.loads(_aimass(tmp_path, "keys", "list", "--json").stdout)
    assert [k["name"] for k in listed] == ["a", "b"]
    assert created["secret"] not in json.dumps(listed)
    assert _aimass(tmp_path, "keys", "revoke", created["key"]["id"]).returncode == 0
    listed = json.loads(_aimass(tmp_path, "keys", "list", "--json").stdout)
    assert [k["status"] for k in listed] == ["revoked", "active"]
    events = json.loads(_aimass(tmp_path, "audit", "--json").stdout)
    assert [(e["actor"], e["action"]) for e in events] == [
        ("cli:ana", "keys.revoke"),
        ("cli:ana", "keys.create"),
        ("cli:ana", "keys.create"),
    ]
    assert events[0]["source"].startswith("cli@")
    assert json.loads(_aimass(tmp_path, "audit", "--json", "--limit", "1").stdout)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "role must be one of invoker, deployer, admin"),
        (["--role", "admin", "--quota", "lots"], "quota must look like 1000/day"),
        (["--role", "admin", "--expires", "yesterday"], "expiry must be a duration"),
        (["--role", "admin", "--burst", "3"], "burst needs a rate"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = _aimass(tmp_path, "keys", "create", "--name", "x", *args)
    assert done.returncode == 1
    assert message in done.stderr and "Traceback" not in done.stderr


def test_revoking_an_unknown_key_says_so(tmp_path: Path) -> None:
    done = _aimass(tmp_path, "keys", "revoke", "key_missing")
    assert done.returncode == 1 and "no API key 'key_missing'" in done.stderr


def test_revoking_a_revoked_key_says_so_and_succeeds(tmp_path: Path) -> None:
    made = json.loads(
        _aimass(tmp_path, "keys", "create", "--name", "old", "--role", "invoker", "--json").stdout
    )
    key_id = made["key"]["id"]
    first = _aimass(tmp_path, "keys", "revoke", "old", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["already_revoked"] is False
    for target in (key_id, "old"):  # by id, and by the name only a revoked key holds
        again = _aimass(tmp_path, "keys", "revoke", target)
        assert again.returncode == 0, again.stderr
        assert f"{key_id} (old) was already revoked at " in again.stderr
    assert json.loads(_aimass(tmp_path, "keys", "revoke", key_id, "--json").stdout) == {
        "key": json.loads(_aimass(tmp_path, "keys", "list", "--json").stdout)[0],
        "already_revoked": True,
    }
    events = json.loads(_aimass(tmp_path, "audit", "--json").stdout)
    assert [e["action"] for e in events] == ["keys.revoke", "keys.create"]  # revoked once


def test_keys_list_shows_whole_ids_at_80_columns(tmp_path: Path) -> None:
    args = ["--rate", "10", "--burst", "20", "--quota", "10000/day", "--expires", "90d"]
    for name in ("web-app", "ops"):
        made = _aimass(tmp_path, "keys", "create", "--name", name, "--role", "invoker", *args)
        assert made.returncode == 0, made.stderr
    ids = [k["id"] for k in json.loads(_aimass(tmp_path, "keys", "list", "--json").stdout)]
    table = _aimass(tmp_path, "keys", "list", env={"COLUMNS": "80"}).stdout
    assert max(len(line) for line in table.splitlines()) <= 80
    assert all(key_id in table for key_id in ids)
    assert "10/s, burst 20" in table and "10000/day" in table
