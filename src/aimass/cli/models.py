"""``aimass models …``: list, show, register, tag, archive, delete (aliases: ``aimass alias``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, error_console, show, table
from aimass.contract.reference import ModelRef
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry, VersionInfo

__all__ = ["app"]

app = typer.Typer(help="Manage the model library.", no_args_is_help=True)


def _registry(ctx: typer.Context) -> Registry:
    return state(ctx).registry


def _audit(ctx: typer.Context, action: str, target: str, **detail: Any) -> None:
    from aimass.gateway.audit import record_cli_action

    record_cli_action(_registry(ctx), action, target, **detail)


def _pairs(items: list[str]) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise AimassError(ErrorCode.INVALID_INPUT, f"'{item}' is not KEY=VALUE")
        pairs[key] = value
    return pairs


@app.command("list")
def list_models(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Name glob or substring")] = None,
    tag: Annotated[str | None, typer.Option(help="KEY or KEY=VALUE")] = None,
    task: Annotated[str | None, typer.Option(help="classification, regression, …")] = None,
    json: JsonFlag = False,
) -> None:
    """List models."""
    show(
        _registry(ctx).list_models(name=name, tag=tag, task=task),
        json,
        "models",
        ["name", "task", "latest", "versions", "aliases", "tags"],
        lambda m: (
            m.name,
            m.task,
            m.latest_version,
            m.version_count,
            ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
            # The model's own tags, then its latest version's (which win).
            ", ".join(f"{k}={v}" for k, v in sorted((m.tags | m.latest_tags).items())),
        ),
    )


@app.command("show")
def show_model(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME, NAME:VERSION or NAME@ALIAS")],
    json: JsonFlag = False,
) -> None:
    """Show a model and its versions, or one version in full."""
    registry = _registry(ctx)
    name, version, alias = ModelRef.parse(ref)
    if version is None and alias is None:
        model = registry.get_model(name)
        versions = registry.list_versions(name, include_archived=True)
        if json:
            emit_json({"model": model, "versions": versions})
            return
        console.print(f"[bold]{model.name}[/bold]  task={model.task}  {model.description}")
        table(
            "versions",
            ["version", "status", "runtime", "format", "aliases", "created", "by"],
            [
                (
                    v.version,
                    v.status,
                    v.manifest.runtime,
                    v.manifest.format + (" (unsafe)" if v.manifest.unsafe else ""),
                    ", ".join(v.aliases),
                    f"{v.created_at:%Y-%m-%d %H:%M}",
                    v.created_by,
                )
                for v in versions
            ],
        )
        return
    info = registry.get_version(name, version, alias=alias)
    if json:
        emit_json(info)
        return
    _print_version(info)


def _print_version(info: VersionInfo) -> None:
    m = info.manifest
    console.print(
        f"[bold]{info.ref}[/bold]  status={info.status}  aliases={info.aliases or '-'}\n"
        f"runtime={m.runtime}  framework={m.framework} {m.framework_version}  "
        f"format={m.format}{' (unsafe: pickle)' if m.unsafe else ''}  task={m.task}\n"
        f"lineage: {m.lineage.method} from {list(m.lineage.parents) or '-'} "
        f"{m.lineage.params or ''}"
    )
    table(
        "signature",
        ["kind", "name", "datatype", "shape"],
        [("input", s.name, s.datatype, list(s.shape)) for s in m.signature.inputs]
        + [("output", s.name, s.datatype, list(s.shape)) for s in m.signature.outputs],
    )
    table("files", ["path", "sha256", "bytes"], [(f.path, f.sha256, f.size) for f in m.files])


@app.command()
def register(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Model name")],
    path: Annotated[
        Path, typer.Argument(help="A model file or directory (.onnx, .skops, .joblib, a HF dir…)")
    ],
    runtime: Annotated[str | None, typer.Option(help="Runtime name; detected if omitted")] = None,
    task: Annotated[str | None, typer.Option(help="Task, if not inferred")] = None,
    description: Annotated[str, typer.Option(help="Free text")] = "",
    tag: Annotated[list[str] | None, typer.Option(help="KEY=VALUE, repeatable")] = None,
    sample: Annotated[
        Path | None, typer.Option(help="Sample input (.npy or .csv) to infer the signature")
    ] = None,
    json: JsonFlag = False,
) -> None:
    """Register a model file or directory as a new version."""
    if not path.exists():
        raise AimassError(ErrorCode.NOT_FOUND, f"{path} does not exist")
    registry = _registry(ctx)
    model = _open_model(path, registry.load_options.allow_pickle)
    info = registry.register(
        model,
        name,
        runtime=runtime or _detect(model, path),
        task=task,
        description=description,
        tags=_pairs(tag or []),
        sample_input=_read_sample(sample) if sample else None,
    )
    _audit(ctx, "models.register", info.ref, runtime=info.manifest.runtime)
    if json:
        emit_json(info)
    else:
        console.print(f"registered [bold]{info.ref}[/bold] ({info.manifest.runtime})")


def _detect(model: Any, path: Path) -> str:
    """The runtime for ``model``, or an error naming ``--runtime`` and the runtimes there are."""
    from aimass.runtimes import RUNTIMES, detect_runtime

    try:
        return detect_runtime(model).name
    except AimassError:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"cannot tell which runtime reads {path}; pass --runtime "
            f"(one of: {', '.join(RUNTIMES)})",
        ) from None


def _open_model(path: Path, allow_pickle: bool) -> Any:
    """What to hand the runtimes: the path itself, or the object a pickle/skops file holds."""
    if path.suffix in (".joblib", ".pkl", ".pickle"):
        from aimass.runtimes.loading import refuse_pickle

        refuse_pickle(allow_pickle, path.name)
        import joblib

        error_console.print(
            f"[yellow]warning:[/yellow] {path.name} is a pickle; opening it runs its code. "
            "Only register files you trust."
        )
        return joblib.load(path)
    if path.suffix == ".skops":
        import skops.io

        return skops.io.load(path, trusted=skops.io.get_untrusted_types(file=path))
    return path


def _read_sample(path: Path) -> Any:
    if path.suffix == ".npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if path.suffix == ".csv":
        import pandas as pd

        return pd.read_csv(path)
    raise AimassError(ErrorCode.INVALID_INPUT, f"--sample must be .npy or .csv, not {path.suffix}")


@app.command()
def tag(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME or NAME:VERSION")],
    pairs: Annotated[list[str] | None, typer.Argument(help="KEY=VALUE …")] = None,
    remove: Annotated[list[str] | None, typer.Option(help="Tag KEY to remove, repeatable")] = None,
    json: JsonFlag = False,
) -> None:
    """Set or remove tags on a model or a version."""
    registry = _registry(ctx)
    name, version, alias = ModelRef.parse(ref)
    if alias is not None:
        version = registry.get_version(name, alias=alias).version
    if pairs:
        registry.set_tags(name, _pairs(pairs), version=version)
    for key in remove or []:
        registry.delete_tag(name, key, version=version)
    _audit(ctx, "models.tag", ref, set=_pairs(pairs or []), removed=remove or [])
    if json:
        tags = (
            registry.get_model(name).tags
            if version is None
            else registry.get_version(name, version).tags
        )
        emit_json({"model": name, "version": version, "tags": tags})
    else:
        console.print(f"tags of {ref} updated")


@app.command()
def archive(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME:VERSION")],
    restore: Annotated[bool, typer.Option("--restore", help="Undo an archive")] = False,
    json: JsonFlag = False,
) -> None:
    """Archive a version (hidden from latest and listings) or restore it."""
    name, version, _ = ModelRef.parse(ref)
    if version is None:
        raise AimassError(ErrorCode.INVALID_INPUT, "archive takes NAME:VERSION")
    registry = _registry(ctx)
    info = (
        registry.restore_version(name, version)
        if restore
        else registry.archive_version(name, version)
    )
    _audit(ctx, "models.restore" if restore else "models.archive", info.ref)
    if json:
        emit_json(info)
    else:
        console.print(f"{info.ref} is {info.status}")


@app.command()
def delete(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="NAME (all versions) or NAME:VERSION")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask")] = False,
    json: JsonFlag = False,
) -> None:
    """Delete a version, or a whole model; refused while an alias points at it."""
    name, version, _ = ModelRef.parse(ref)
    what = f"{name}:{version}" if version is not None else f"model {name} and all its versions"
    # Asked on stderr, so that stdout holds only the result.
    if not yes and not typer.confirm(f"delete {what}?", err=True):
        raise AimassError(ErrorCode.CONFLICT, f"{what} not deleted: not confirmed (--yes skips)")
    registry = _registry(ctx)
    if version is None:
        registry.delete_model(name)
    else:
        registry.delete_version(name, version)
    _audit(ctx, "models.delete", ref)
    if json:
        emit_json({"model": name, "version": version, "deleted": True})
    else:
        console.print(f"deleted {what}")
