"""``aimass keys …`` and ``aimass audit``: API keys and the audit log, straight from the database.

Whoever can open the product database is its administrator, so these
commands need no key; they are how the first admin key is made. Each change
is written to the audit log as ``cli:<user>`` from ``cli@<host>``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, emit_json, error_console, show
from aimass.errors import AimassError, ErrorCode
from aimass.gateway.audit import AuditLog, cli_actor
from aimass.gateway.keys import KeyStore, parse_expiry, parse_quota, parse_role

__all__ = ["app", "audit"]

app = typer.Typer(help="Manage API keys (shown once, stored as a hash).", no_args_is_help=True)


def _stores(ctx: typer.Context) -> tuple[str, KeyStore, AuditLog]:
    """The CLI user, and the key table and audit log of the product database."""
    cli = state(ctx)
    database = cli.registry.database
    return cli.settings.user, KeyStore(database), AuditLog(database)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Option(help="What the key is for (shown in lists and logs)")],
    role: Annotated[str, typer.Option(help="invoker, deployer or admin")],
    models: Annotated[
        list[str] | None,
        typer.Option(
            "--models", help="Model name or glob the key may use (repeatable; default all)"
        ),
    ] = None,
    rate: Annotated[float | None, typer.Option(help="Requests per second (token bucket)")] = None,
    burst: Annotated[
        int | None, typer.Option(help="Requests allowed at once [default: the rate, at least 1]")
    ] = None,
    per_model: Annotated[
        bool, typer.Option("--per-model", help="Separate rate and quota for each model")
    ] = False,
    quota: Annotated[str | None, typer.Option(help="Requests per day or month: 1000/day")] = None,
    expires: Annotated[
        str | None, typer.Option(help="A duration (30d, 12h, 2w) or an ISO date")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Create a key and print it: the only time it is ever shown."""
    parsed_role = parse_role(role)
    parsed_quota = None if quota is None else parse_quota(quota)
    expires_at = None if expires is None else parse_expiry(expires)
    user, keys, audit = _stores(ctx)
    actor, source = cli_actor(user)
    new = keys.create(
        name=name,
        role=parsed_role,
        created_by=actor,
        models=models or [],
        rate=rate,
        burst=burst,
        per_model=per_model,
        quota=parsed_quota,
        expires_at=expires_at,
    )
    audit.record(
        actor=actor,
        action="keys.create",
        target=new.key.id,
        source=source,
        detail={"name": new.key.name, "role": new.key.role.value},
    )
    if json:
        emit_json({"key": new.key.public(), "secret": new.secret})
        return
    error_console.print(
        f"created {new.key.id} ({new.key.name}, {new.key.role.value}); "
        "store the key now, it is not shown again:"
    )
    print(new.secret)


@app.command("list")
def list_keys(ctx: typer.Context, json: JsonFlag = False) -> None:
    """List keys (never their secrets), revoked and expired ones included."""
    show(
        [key.public() for key in _stores(ctx)[1].list()],
        json,
        "API keys",
        ["id", "name", "role", "models", "limits", "expires", "status"],
        lambda k: (
            k["id"],
            k["name"],
            k["role"],
            ", ".join(k["models"]) or "all",
            "\n".join(_limits(k)),
            None if k["expires_at"] is None else k["expires_at"][:10],
            k["status"],
        ),
        # The id is what revoke takes: whole at any width, and the columns
        # a key's role and state fit in without wrapping.
        whole=("id", "role", "expires", "status"),
    )


def _limits(key: dict[str, Any]) -> list[str]:
    limits = [] if key["rate"] is None else [f"{key['rate']:g}/s, burst {key['burst']}"]
    if key["quota"] is not None:
        limits.append(key["quota"])
    if key["per_model"]:
        limits.append("per model")
    return limits


@app.command("revoke")
def revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id (key_…) or its unique name")],
    json: JsonFlag = False,
) -> None:
    """Revoke a key; running servers stop accepting it within about a second.

    A key revoked already is left as it was, and said so: the command still
    succeeds, since the key is unusable either way, so a script may repeat it.
    """
    user, keys, audit = _stores(ctx)
    known = keys.list()
    key_id = key
    if not any(k.id == key for k in known):
        named = [k.id for k in known if k.name == key and k.revoked_at is None]
        if len(named) > 1:
            raise AimassError(
                ErrorCode.CONFLICT, f"{len(named)} keys are named {key!r}: give the id"
            )
        # A name held by revoked keys only: the newest of them, to say it is revoked.
        revoked_named = [k.id for k in known if k.name == key]
        key_id = named[0] if named else (revoked_named[-1] if revoked_named else key)
    before = next((k for k in known if k.id == key_id), None)
    if before is not None and before.revoked_at is not None:
        if json:
            emit_json({"key": before.public(), "already_revoked": True})
        else:
            error_console.print(
                f"{before.id} ({before.name}) was already revoked at "
                f"{before.revoked_at:%Y-%m-%d %H:%M:%S}"
            )
        return
    revoked = keys.revoke(key_id)
    actor, source = cli_actor(user)
    audit.record(actor=actor, action="keys.revoke", target=revoked.id, source=source)
    if json:
        emit_json({"key": revoked.public(), "already_revoked": False})
    else:
        error_console.print(f"revoked {revoked.id} ({revoked.name})")


def audit(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=100_000, help="Newest events to show")] = 50,
    actor: Annotated[str | None, typer.Option(help="Only this key id (or cli:USER)")] = None,
    action: Annotated[str | None, typer.Option(help="Only this action: keys.create, …")] = None,
    json: JsonFlag = False,
) -> None:
    """Show the audit log of management actions, newest first."""
    log = _stores(ctx)[2]
    show(
        [e.public() for e in log.list(limit=limit, actor=actor, action=action)],
        json,
        "audit log",
        ["at", "actor", "action", "target", "source", "status"],
        lambda e: (e["at"], e["actor"], e["action"], e["target"], e["source"], e["status"]),
    )
