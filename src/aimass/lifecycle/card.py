"""Model cards: one Markdown and one HTML page per version, with its plots as PNG files.

A card gathers what the registry knows about a version: the signature, the
lineage, the training data's fingerprint, the held-out metrics and their
cross-validation spread, every evaluation run recorded since, and the
intended-use fields from the training spec. The ROC curves and the confusion
matrix are drawn with matplotlib's Agg canvas (no display, no pyplot state)
into files beside the pages.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aimass.lifecycle.evaluate import CrossValidation, Evaluation
from aimass.lifecycle.runs import SUCCEEDED, RunStore
from aimass.registry import VersionInfo
from aimass.runtimes.loading import require

__all__ = ["CardFiles", "write_card"]

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.25rem .5rem}"
    "img{max-width:32rem}"
)


@dataclass(frozen=True)
class CardFiles:
    """The files a card was written to."""

    markdown: Path
    html: Path
    plots: tuple[Path, ...]


def _cell(value: Any) -> str:
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _plot_roc(evaluation: Evaluation, path: Path) -> Path | None:
    if not evaluation.roc:
        return None
    from matplotlib.figure import Figure

    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    for label, curve in evaluation.roc.items():
        axes.plot(curve["fpr"], curve["tpr"], label=f"class {label}")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1)
    axes.set_xlabel("false positive rate")
    axes.set_ylabel("true positive rate")
    auc = evaluation.metrics.get("roc_auc_ovr")
    axes.set_title("ROC (one-vs-rest)" + (f", AUC {auc:.3f}" if auc is not None else ""))
    axes.legend(loc="lower right")
    figure.savefig(path, dpi=100)
    return path


def _plot_confusion(evaluation: Evaluation, path: Path) -> Path | None:
    if evaluation.confusion_matrix is None:
        return None
    from matplotlib.figure import Figure

    matrix = evaluation.confusion_matrix
    labels = [str(label) for label in evaluation.labels]
    figure = Figure(figsize=(5, 5))
    axes = figure.add_subplot()
    axes.imshow(matrix, cmap="Blues")
    axes.set_xticks(range(len(labels)), labels)
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    peak = max((max(row) for row in matrix), default=0)
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            colour = "white" if count > peak / 2 else "black"
            axes.text(j, i, str(count), ha="center", va="center", color=colour)
    axes.set_title("confusion matrix (held-out split)")
    figure.savefig(path, dpi=100)
    return path


def _markdown(
    info: VersionInfo,
    evaluation: Evaluation | None,
    cv: CrossValidation | None,
    evaluations: list[Any],
    plots: list[Path],
) -> str:
    m = info.manifest
    training = info.metadata.get("training") or {}
    card = info.metadata.get("card") or {}
    lines = [f"# Model card: {info.ref}", ""]
    if info.description:
        lines += [info.description, ""]
    lines += _table(
        ["field", "value"],
        [
            ["task", m.task.value],
            ["runtime", f"{m.runtime} ({m.framework} {m.framework_version})"],
            ["format", m.format + (" (unsafe: pickle)" if m.unsafe else "")],
            ["created", f"{info.created_at:%Y-%m-%d %H:%M} by {info.created_by}"],
            ["aliases", ", ".join(info.aliases) or "-"],
            ["tags", ", ".join(f"{k}={v}" for k, v in sorted(info.tags.items())) or "-"],
        ],
    )
    lines += ["## Intended use", ""]
    lines += _table(
        ["field", "value"],
        [
            ["intended use", card.get("intended_use") or "not stated"],
            ["out of scope", card.get("out_of_scope") or "not stated"],
            ["limitations", card.get("limitations") or "not stated"],
            ["ethical considerations", card.get("ethical_considerations") or "not stated"],
            ["owners", ", ".join(card.get("owners") or []) or "not stated"],
        ],
    )
    lines += ["## Signature", ""]
    lines += _table(
        ["kind", "name", "datatype", "shape"],
        [["input", s.name, s.datatype.value, list(s.shape)] for s in m.signature.inputs]
        + [["output", s.name, s.datatype.value, list(s.shape)] for s in m.signature.outputs],
    )
    lines += ["## Lineage", ""]
    lines += _table(
        ["field", "value"],
        [
            ["method", m.lineage.method.value],
            ["parents", ", ".join(m.lineage.parents) or "-"],
            ["parameters", m.lineage.params or "-"],
            ["training run", training.get("run_id", "-")],
            ["training parameters", training.get("params") or "-"],
        ],
    )
    data = training.get("data")
    lines += ["## Training data", ""]
    if data:
        lines += _table(
            ["field", "value"],
            [
                ["source", data["source"]],
                ["sha256", data["sha256"]],
                ["shape", f"{data['rows']} rows x {data['columns']} columns"],
                ["target", training.get("target", "-")],
                ["held-out split", training.get("split", "-")],
            ],
        )
    else:
        lines += ["Not recorded: this version was not trained by aimass.", ""]
    lines += ["## Metrics", ""]
    if evaluation is not None:
        spread = cv.metrics if cv is not None else {}
        header = ["metric", "held-out"]
        if cv is not None:
            header += [f"{cv.scheme} mean", "std"]
        rows: list[list[Any]] = []
        for name, value in evaluation.metrics.items():
            row: list[Any] = [name, value]
            if cv is not None:
                row += [spread[name].mean, spread[name].std] if name in spread else ["-", "-"]
            rows.append(row)
        lines += [f"Evaluated on {evaluation.rows} rows.", "", *_table(header, rows)]
    else:
        lines += ["No evaluation recorded.", ""]
    if evaluations:
        lines += ["### Evaluation runs", ""]
        lines += _table(
            ["run", "when", "data", "metrics"],
            [
                [
                    r.id,
                    f"{r.started_at:%Y-%m-%d %H:%M}",
                    r.data.get("source", "-"),
                    ", ".join(f"{k}={v:.4f}" for k, v in r.metrics.items()),
                ]
                for r in evaluations
            ],
        )
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{p.stem.replace('_', ' ')}]({p.name})" for p in plots]
        lines.append("")
    return "\n".join(lines)


def write_card(runs: RunStore, info: VersionInfo, directory: Path) -> CardFiles:
    """Write ``card.md``, ``card.html`` and the plots for a version into ``directory``."""
    require("matplotlib", "lifecycle")
    directory.mkdir(parents=True, exist_ok=True)
    training = info.metadata.get("training") or {}
    evaluation = (
        Evaluation.model_validate(training["evaluation"]) if training.get("evaluation") else None
    )
    cv = (
        CrossValidation.model_validate(training["cross_validation"])
        if training.get("cross_validation")
        else None
    )
    evaluations = runs.list(
        model=info.model, kind="evaluate", version=info.version, status=SUCCEEDED
    )
    plots: list[Path] = []
    if evaluation is not None:
        for plot in (
            _plot_roc(evaluation, directory / "roc_curve.png"),
            _plot_confusion(evaluation, directory / "confusion_matrix.png"),
        ):
            if plot is not None:
                plots.append(plot)
    text = _markdown(info, evaluation, cv, evaluations, plots)
    markdown = directory / "card.md"
    markdown.write_text(text)
    page = directory / "card.html"
    page.write_text(_html(info.ref, text))
    return CardFiles(markdown=markdown, html=page, plots=tuple(plots))


def _html(title: str, markdown: str) -> str:
    from markdown_it import MarkdownIt

    # html=False: text from a spec is shown, never interpreted as markup.
    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(markdown)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Model card: {html.escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body>\n{body}</body></html>\n"
    )
