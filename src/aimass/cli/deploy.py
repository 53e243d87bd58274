"""``aimass deploy …``: named endpoints over versions, split, canaried, shadowed and rolled back.

Each change goes to the database the servers watch, so every server follows
it within a couple of seconds; before anything is written, each version the
change adds is loaded here and answers one warm-up request, so a version
that cannot serve is refused and the deployment stays as it was. Every
change is in the deployment's history and the audit log as ``cli:<user>``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, show, table
from aimass.errors import AimassError, ErrorCode

if TYPE_CHECKING:
    from aimass.deployments.manager import DeploymentManager
    from aimass.deployments.records import Deployment

__all__ = ["app"]

app = typer.Typer(
    help="Deployments: traffic splits, guarded canaries, shadows, rollbacks.",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="Deployment name (clients call it like a model)")]


def _manager(ctx: typer.Context) -> DeploymentManager:
    from aimass.deployments.manager import DeploymentManager
    from aimass.gateway.audit import cli_actor

    cli = state(ctx)
    by, source = cli_actor(cli.settings.user)
    return DeploymentManager.local(cli.registry, cli.settings, by=by, source=source)


def _split(deployment: Deployment) -> str:
    return ", ".join(f"{t.ref}={t.percent:g}%" for t in deployment.spec.targets)


def _changed(deployment: Deployment, json: bool, said: str) -> None:
    if json:
        emit_json(deployment.public())
        return
    shadows = ", ".join(f"{s.ref} ({s.sample:g})" for s in deployment.spec.shadows)
    console.print(
        f"{deployment.name} {said}: {_split(deployment)}"
        + (f"; shadows {shadows}" if shadows else "")
        + f" (revision {deployment.revision})"
    )


@app.command("create")
def create(
    ctx: typer.Context,
    name: Name,
    ref: Annotated[str, typer.Argument(metavar="MODEL_REF", help="NAME:VERSION or NAME@ALIAS")],
    sticky: Annotated[
        str | None,
        typer.Option(help="Keep each caller on one version: header:NAME, or key (the API key)"),
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Create a deployment sending 100% of its traffic to MODEL_REF."""
    _changed(_manager(ctx).create(name, ref, sticky=sticky), json, "created")


@app.command("set")
def set_split(
    ctx: typer.Context,
    name: Name,
    split: Annotated[
        list[str],
        typer.Argument(
            metavar="REF=WEIGHT...", help="Weights in percent, 0.1 steps, summing to 100"
        ),
    ],
    json: JsonFlag = False,
) -> None:
    """Set the traffic split: aimass deploy set NAME iris:3=90 iris:4=10 (a swap: iris:4=100)."""
    pairs: dict[str, str] = {}
    for pair in split:
        ref, sep, weight = pair.rpartition("=")
        if not sep or not ref:
            raise AimassError(
                ErrorCode.INVALID_INPUT, f"'{pair}' must be REF=WEIGHT, e.g. iris:4=10"
            )
        if ref in pairs:
            raise AimassError(ErrorCode.INVALID_INPUT, f"{ref} is given twice")
        pairs[ref] = weight
    _changed(_manager(ctx).set(name, pairs), json, "set")


@app.command("canary")
def canary(
    ctx: typer.Context,
    name: Name,
    ref: Annotated[str, typer.Argument(help="The version on trial: NAME:VERSION or NAME@ALIAS")],
    weight: Annotated[str, typer.Option(help="Its share in percent, taken from the others")],
    max_error_rate: Annotated[
        float | None, typer.Option(help="Trip when its error rate passes this (0.02 = 2%)")
    ] = None,
    max_p99_ratio: Annotated[
        float | None, typer.Option(help="Trip when its p99 passes this many times the stable p99")
    ] = None,
    window: Annotated[str, typer.Option(help="The guard judges this recent stretch")] = "60s",
    min_requests: Annotated[
        int, typer.Option(help="Requests it must have had before the guard judges")
    ] = 50,
    step: Annotated[
        str | None, typer.Option(help="Grow by this many percent each --interval it passes")
    ] = None,
    interval: Annotated[str | None, typer.Option(help="Time between steps: 60s, 5m")] = None,
    max_weight: Annotated[
        str | None, typer.Option(help="Stop growing here (percent) and promote past it [100]")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Put REF on trial with --weight W; the guard sets it to 0 when it trips."""
    from aimass.deployments.manager import parse_duration

    deployment = _manager(ctx).canary(
        name,
        ref,
        weight,
        max_error_rate=max_error_rate,
        max_p99_ratio=max_p99_ratio,
        window_s=parse_duration(window, field="window"),
        min_requests=min_requests,
        step=step,
        interval_s=None if interval is None else parse_duration(interval, field="interval"),
        max_weight=max_weight,
    )
    _changed(deployment, json, "canary")


@app.command("promote")
def promote(ctx: typer.Context, name: Name, json: JsonFlag = False) -> None:
    """Send all the traffic to the canary."""
    _changed(_manager(ctx).promote(name), json, "promoted")


@app.command("rollback")
def rollback(ctx: typer.Context, name: Name, json: JsonFlag = False) -> None:
    """Back to the state before the last change (again: one change further back)."""
    _changed(_manager(ctx).rollback(name), json, "rolled back")


@app.command("shadow")
def shadow(
    ctx: typer.Context,
    name: Name,
    ref: Annotated[
        str | None, typer.Argument(help="The shadow version (with --off: only this one)")
    ] = None,
    sample: Annotated[
        float, typer.Option(help="The fraction of live requests it gets a copy of")
    ] = 1.0,
    off: Annotated[bool, typer.Option("--off", help="Stop shadowing")] = False,
    json: JsonFlag = False,
) -> None:
    """Copy a sample of live requests to REF and compare its answers; --off stops it."""
    manager = _manager(ctx)
    if off:
        _changed(manager.shadow_off(name, ref), json, "shadows off")
        return
    if ref is None:
        raise AimassError(
            ErrorCode.INVALID_INPUT, "give the shadow's REF, or --off to stop shadowing"
        )
    _changed(manager.shadow(name, ref, sample), json, "shadowed")


@app.command("list")
def list_deployments(ctx: typer.Context, json: JsonFlag = False) -> None:
    """Every deployment, its split and shadows."""
    show(
        [d.public() for d in _manager(ctx).list()],
        json,
        "deployments",
        ["name", "targets", "shadows", "canary", "revision", "updated"],
        lambda d: (
            d["name"],
            "\n".join(f"{t['ref']} {t['weight']:g}%" for t in d["targets"]),
            "\n".join(f"{s['ref']} ({s['sample']:g})" for s in d["shadows"]),
            None if d["canary"] is None else d["canary"]["ref"],
            d["revision"],
            f"{d['updated_at'][:19]} {d['updated_by']}",
        ),
        whole=("name",),
    )


def _ms(value: Any) -> str:
    return "" if value is None else f"{value:.1f}"


@app.command("show")
def show_deployment(
    ctx: typer.Context,
    name: Name,
    window: Annotated[str, typer.Option(help="Count requests over this recent stretch")] = "5m",
    json: JsonFlag = False,
) -> None:
    """Targets, weights, shadows and, per version, requests, errors, p50/p99, shadow comparison."""
    from aimass.deployments.manager import parse_duration

    shown = _manager(ctx).show(name, parse_duration(window, field="window"))
    if json:
        emit_json(shown)
        return
    canary = shown["canary"]
    console.print(
        f"[bold]{shown['name']}[/bold]  revision {shown['revision']}  "
        f"updated {shown['updated_at'][:19]} by {shown['updated_by']}"
        + (f"  sticky {shown['sticky']}" if shown["sticky"] else "")
    )
    if canary is not None:
        guard = canary["guard"]
        console.print(
            f"canary {canary['ref']}: max error rate {guard['max_error_rate']}, max p99 ratio "
            f"{guard['max_p99_ratio']}, window {guard['window_s']:g}s, min requests "
            f"{guard['min_requests']}"
            + (
                ""
                if canary["progression"] is None
                else f", +{canary['progression']['step']:g}% every "
                f"{canary['progression']['interval_s']:g}s up to "
                f"{canary['progression']['max_weight']:g}%"
            )
        )
    console.print(
        "targets: "
        + ", ".join(f"{t['ref']}={t['weight']:g}%" for t in shown["targets"])
        + "".join(f"\nshadow: {s['ref']} (sample {s['sample']:g})" for s in shown["shadows"])
    )
    # Measured per version served (an alias's target shows as the version it pointed at).
    stats: dict[str, Any] = shown["stats"]
    table(
        f"last {shown['window_s']:g}s, every server",
        ["version", "role", "requests", "errors", "error rate", "p50 ms", "p99 ms"],
        [
            (
                ref,
                entry["role"],
                entry["requests"],
                entry["errors"],
                f"{entry['error_rate'] or 0:.2%}",
                _ms(entry["p50_ms"]),
                _ms(entry["p99_ms"]),
            )
            for ref, entry in stats.items()
        ],
        whole=("version",),
    )
    for ref, entry in stats.items():
        if entry.get("comparison"):
            table(
                f"shadow {ref} against the live answers",
                ["measure", "value"],
                sorted(_flatten(entry["comparison"])),
            )


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """A nested comparison as ``a.b`` rows, numbers rounded for reading."""
    if isinstance(value, dict):
        return [row for key, item in value.items() for row in _flatten(item, f"{prefix}{key}.")]
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return [(prefix.rstrip("."), text)]


@app.command("history")
def history(ctx: typer.Context, name: Name, json: JsonFlag = False) -> None:
    """Every change, oldest first: when, who, what, why (manual, guard, alias move)."""
    show(
        _manager(ctx).history(name),
        json,
        f"history of {name}",
        ["at", "by", "kind", "what", "reason"],
        lambda e: (e["at"][:19], e["by"], e["kind"], _what(e), e["reason"]),
    )


def _what(event: dict[str, Any]) -> str:
    after = event["after"]
    if after is None:
        return "removed"
    if "targets" not in after:  # an alias move
        return f"{after['ref']} → {after['version']}"
    split = ", ".join(f"{t['ref']}={t['weight']:g}%" for t in after["targets"])
    shadows = ", ".join(s["ref"] for s in after["shadows"])
    return split + (f"; shadows {shadows}" if shadows else "")


@app.command("delete")
def delete(ctx: typer.Context, name: Name, json: JsonFlag = False) -> None:
    """Remove a deployment (its history stays); servers stop answering for it."""
    removed = _manager(ctx).delete(name)
    if json:
        emit_json({"deleted": removed.public()})
        return
    console.print(f"{name} deleted")
