"""The shape of the ``aimass`` command: every command takes ``--json``, one command per job."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import typer.main

from aimass.cli.app import app


def _commands(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield " ".join(path), command
        return
    for name, sub in subcommands.items():
        yield from _commands(sub, (*path, name))


COMMANDS = dict(_commands(typer.main.get_command(app)))


def test_every_command_takes_json() -> None:
    assert len(COMMANDS) > 20
    missing = [
        path
        for path, command in COMMANDS.items()
        if "--json" not in {option for param in command.params for option in param.opts}
    ]
    assert missing == []


def test_one_command_per_job() -> None:
    assert sorted(path for path in COMMANDS if "alias" in path) == [
        "alias delete",
        "alias history",
        "alias set",
    ]
    assert [path for path in COMMANDS if "audit" in path] == ["audit"]


def test_deploy_has_the_commands_the_issue_names() -> None:
    verbs = ["create", "set", "canary", "promote", "rollback", "shadow"]
    verbs += ["list", "show", "history", "delete"]
    assert sorted(path for path in COMMANDS if path.startswith("deploy ")) == [
        f"deploy {verb}" for verb in sorted(verbs)
    ]
