"""``aimass deploy …`` as a user runs it (in-process): JSON for scripts, tables, one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tests.integration.deployments.surfaces import InProcessCli, deploy_home


@pytest.fixture(scope="module")
def cli(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessCli]:
    home = deploy_home(tmp_path_factory.mktemp("deploy-cli"))
    with pytest.MonkeyPatch.context() as patch:
        yield InProcessCli(home, patch)


def _split(deployment: dict[str, Any]) -> dict[str, float]:
    return {t["ref"]: t["weight"] for t in deployment["targets"]}


def test_create_split_canary_promote_and_rollback(cli: InProcessCli) -> None:
    made = cli.json("deploy", "create", "web", "iris@production")
    assert _split(made) == {"iris@production": 100.0} and made["created_by"] == "cli:ana"
    split = cli.json("deploy", "set", "web", "iris:1=87.5", "iris:2=12.5")
    assert _split(split) == {"iris:1": 87.5, "iris:2": 12.5}
    assert split["revision"] == made["revision"] + 1
    canary = cli.json(
        "deploy", "canary", "web", "iris@production", "--weight", "20",
        "--max-error-rate", "0.02", "--max-p99-ratio", "1.5", "--window", "30s",
        "--min-requests", "10", "--step", "10", "--interval", "1m", "--max-weight", "50",
    )  # fmt: skip
    assert _split(canary)["iris@production"] == 20.0
    assert sum(_split(canary).values()) == 100.0
    assert canary["canary"]["ref"] == "iris@production"
    assert canary["canary"]["guard"] == {
        "max_error_rate": 0.02,
        "max_p99_ratio": 1.5,
        "window_s": 30.0,
        "min_requests": 10,
    }
    assert canary["canary"]["progression"] == {"step": 10.0, "interval_s": 60.0, "max_weight": 50.0}
    promoted = cli.json("deploy", "promote", "web")
    assert _split(promoted) == {"iris@production": 100.0} and promoted["canary"] is None
    back = cli.json("deploy", "rollback", "web")
    assert _split(back) == _split(canary) and back["canary"]["ref"] == "iris@production"
    again = cli.json("deploy", "rollback", "web")  # one change further back
    assert _split(again) == _split(split)
    kinds = [e["kind"] for e in cli.json("deploy", "history", "web")]
    assert kinds[:5] == ["create", "set", "canary", "promote", "rollback"]
    assert all(e["by"] == "cli:ana" for e in cli.json("deploy", "history", "web"))
    assert "web" in [d["name"] for d in cli.json("deploy", "list")]


def test_shadow_on_and_off(cli: InProcessCli) -> None:
    cli.run("deploy", "create", "shadowed", "iris:1")
    on = cli.json("deploy", "shadow", "shadowed", "iris:2", "--sample", "0.25")
    assert on["shadows"] == [{"ref": "iris:2", "sample": 0.25}]
    shown = cli.json("deploy", "show", "shadowed", "--window", "10m")
    assert shown["window_s"] == 600.0 and shown["shadows"] == on["shadows"]
    assert isinstance(shown["stats"], dict)
    off = cli.json("deploy", "shadow", "shadowed", "--off")
    assert off["shadows"] == []


def test_tables_for_people(cli: InProcessCli) -> None:
    cli.run("deploy", "create", "people", "iris:1")
    said = cli.run("deploy", "set", "people", "iris:1=90", "iris:2=10").stdout
    assert "people set: iris:1=90%, iris:2=10%" in said
    shown = cli.run("deploy", "show", "people").stdout
    assert "last 300s" in shown and "iris:1=90%, iris:2=10%" in shown and "p99 ms" in shown
    history = cli.run("deploy", "history", "people").stdout
    assert "history of people" in history and "iris:1=90%, iris:2=10%" in history
    listed = cli.run("deploy", "list").stdout
    assert "people" in listed and "iris:2 10%" in listed
    assert "people deleted" in cli.run("deploy", "delete", "people").stdout
    assert "people" not in [d["name"] for d in cli.json("deploy", "list")]


def test_a_version_that_fails_its_warm_up_is_refused_and_nothing_changes(
    cli: InProcessCli,
) -> None:
    before = cli.json("deploy", "create", "guarded", "iris:1")
    refused = cli.run("deploy", "set", "guarded", "broken:1=100", ok=False)
    assert refused.code == 1
    message = " ".join(refused.stderr.split())
    assert "broken:1 was refused: it failed to load or warm up" in message
    assert "the deployment is unchanged" in message
    after = cli.json("deploy", "show", "guarded")
    assert (after["revision"], _split(after)) == (before["revision"], {"iris:1": 100.0})


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["create", "bad", "iris"], "must name a version (NAME:VERSION) or an alias"),
        (["create", "iris", "iris:1"], "iris"),  # a model's name is not a deployment's
        (["create", "nowhere", "iris:99"], "no version 99"),
        (["create", "sticky", "iris:1", "--sticky", "cookie"], "must be 'header:NAME'"),
        (["set", "web", "iris:1=50"], "the weights must sum to 100, not 50"),
        (["set", "web", "iris:1=abc"], "weight 'abc' must be a percentage"),
        (["set", "web", "iris:1=1e308"], "weight '1e308' must be a percentage"),
        (["set", "web", "iris:1"], "'iris:1' must be REF=WEIGHT"),
        (["set", "web", "iris:1=50", "iris:1=50"], "iris:1 is given twice"),
        (["canary", "web", "iris:2", "--weight", "10", "--window", "soon"], "window 'soon'"),
        (["canary", "web", "iris:2", "--weight", "10", "--step", "5"], "needs both a step"),
        (["canary", "web", "iris:2", "--weight", "100"], "above 0 and below 100"),
        (["shadow", "web"], "give the shadow's REF, or --off"),
        (["shadow", "web", "iris:2", "--sample", "2"], "sample must be a fraction"),
        (["show", "no-such"], "no-such"),
        (["rollback", "no-such"], "no-such"),
    ],
)
def test_mistakes_are_one_line_errors(cli: InProcessCli, args: list[str], message: str) -> None:
    cli.run("deploy", "create", "web", "iris:1", ok=False)  # there, whichever test ran first
    done = cli.run("deploy", *args, ok=False)
    assert done.code == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line, line
    as_json = cli.run("deploy", *args, "--json", ok=False)
    error = json.loads(as_json.stdout)["error"]
    assert message in error["message"] and error["code"] in (
        "invalid_input",
        "not_found",
        "conflict",
        "already_exists",
    )


def test_every_change_is_audited_as_the_cli_user(cli: InProcessCli) -> None:
    cli.run("deploy", "create", "audited", "iris:1")
    cli.run("deploy", "set", "audited", "iris:2=100")
    cli.run("deploy", "delete", "audited")
    events = [e for e in cli.json("audit") if "audited" in e["target"]]
    assert len(events) == 3 and all(e["actor"] == "cli:ana" for e in events)
