"""``aimass runs list|show|compare``: the record of training, tuning and evaluation runs."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, show, table
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.runs import KINDS, RunStore

__all__ = ["app"]

app = typer.Typer(help="Training, tuning and evaluation runs.", no_args_is_help=True)


def _store(ctx: typer.Context) -> RunStore:
    return RunStore.of(state(ctx).registry)


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "" if value is None else str(value)


@app.command("list")
def list_runs(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model's runs")] = None,
    kind: Annotated[str | None, typer.Option(help=", ".join(KINDS))] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first")] = 50,
    json: JsonFlag = False,
) -> None:
    """List runs, newest first: parameters, every metric, data, duration and version."""
    show(
        _store(ctx).list(model=model, kind=kind, limit=limit),
        json,
        "runs",
        ["id", "kind", "status", "version", "took", "parameters", "metrics", "data"],
        lambda r: (
            r.id,
            r.kind,
            f"{r.status} {r.progress:.0%}" if r.status == "running" else r.status,
            r.ref or r.model,
            f"{r.duration_s:.1f}s" if r.duration_s is not None else "",
            "\n".join(f"{k}={_value(v)}" for k, v in r.params.items()),
            "\n".join(f"{k} {_value(v)}" for k, v in r.metrics.items()),
            f"{str(r.data.get('sha256', ''))[:8]} {r.data.get('rows', '')}x"
            f"{r.data.get('columns', '')}"
            if r.data
            else "",
        ),
        whole=("id",),
    )


@app.command("show")
def show_run(
    ctx: typer.Context,
    run_id: Annotated[int, typer.Argument(metavar="ID", help="Run id")],
    json: JsonFlag = False,
) -> None:
    """Show one run in full."""
    run = _store(ctx).get(run_id)
    if json:
        emit_json(run)
        return
    console.print(
        f"[bold]run {run.id}[/bold]  {run.kind}  {run.status}  {run.progress:.0%}  "
        f"{run.message}\nmodel {run.ref or run.model}  started {run.started_at:%Y-%m-%d %H:%M:%S}"
        + (f"  took {run.duration_s:.1f}s" if run.duration_s is not None else "")
        + f"  by {run.created_by}"
    )
    table("parameters", ["name", "value"], [(k, v) for k, v in run.params.items()])
    table("data", ["field", "value"], [(k, v) for k, v in run.data.items()])
    cv = (run.extra.get("cross_validation") or {}).get("metrics", {})
    table(
        "metrics",
        ["metric", "value", "cv mean", "cv std"],
        [
            (
                name,
                _value(value),
                _value(cv.get(name, {}).get("mean")),
                _value(cv.get(name, {}).get("std")),
            )
            for name, value in run.metrics.items()
        ],
    )
    study = run.extra.get("study")
    if study:
        console.print(
            f"study: {len(study['trials'])} trials, best {study['metric']} "
            f"{study['best_value']:.4f} with {study['best_params']}"
        )


@app.command()
def compare(
    ctx: typer.Context,
    run_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="Two or more run ids")],
    json: JsonFlag = False,
) -> None:
    """Compare two or more runs side by side: parameters, data and metrics."""
    if len(run_ids) < 2:
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"compare takes two or more run ids, got {len(run_ids)}"
        )
    store = _store(ctx)
    runs = [store.get(i) for i in run_ids]
    params = sorted({k for r in runs for k in r.params})
    metrics = sorted({k for r in runs for k in r.metrics})
    if json:
        emit_json(
            {
                "runs": [r.id for r in runs],
                "params": {k: [r.params.get(k) for r in runs] for k in params},
                "metrics": {k: [r.metrics.get(k) for r in runs] for k in metrics},
                "data": [r.data.get("sha256") for r in runs],
            }
        )
        return
    rows: list[list[Any]] = [["version", *[r.ref or "" for r in runs]]]
    rows.append(["data sha256", *[str(r.data.get("sha256", ""))[:12] for r in runs]])
    rows += [[f"param {k}", *[_value(r.params.get(k)) for r in runs]] for k in params]
    rows += [[k, *[_value(r.metrics.get(k)) for r in runs]] for k in metrics]
    table("comparison", ["", *[f"run {r.id} ({r.kind})" for r in runs]], rows)
