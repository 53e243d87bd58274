"""The house's floors: no import circle between modules or packages, and no module past 500 lines.

Every ``import`` counts, inside functions too; only those under
``if TYPE_CHECKING:`` are exempt (they never run). A package is a first-level
subpackage of ``aimass`` (``aimass.serving``); a top-level module
(``aimass.errors``) is a package of its own.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).parents[2] / "src" / "aimass"
MAX_LINES = 500


def _module(path: Path) -> str:
    parts = ["aimass", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(path): path for path in sorted(SRC.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Every module name an import in ``tree`` reaches, the bodies of TYPE_CHECKING blocks aside."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))


def _graph() -> dict[str, set[str]]:
    """Module -> the aimass modules it imports (an imported name that is a module counts too)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        reached = set(_imports(tree, name, path.name == "__init__.py"))
        graph[name] = {target for target in reached if target in modules and target != name}
    return graph


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph``, as the nodes around it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_is_read_whole() -> None:
    graph = _graph()
    # A few arrows the layout rests on, so a reader that found nothing cannot pass.
    assert "aimass.contract.runtime" in graph["aimass.runtimes.sklearn"]
    assert "aimass.serving.engine" in graph["aimass.app"]
    assert "aimass.registry.tables" in graph["aimass.migrations.env"]


def test_no_module_imports_itself_round_a_circle() -> None:
    assert _cycle(_graph()) is None


def test_no_package_imports_itself_round_a_circle() -> None:
    packages: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        own = _package(module)
        packages.setdefault(own, set()).update(
            _package(target) for target in targets if _package(target) != own
        )
    assert _cycle(packages) is None


@pytest.mark.parametrize("path", sorted(SRC.rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_passes_500_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines; split it"
