"""Declared dependencies are the imported ones: nothing imported undeclared, nothing declared idle.

Every import in ``src/aimass`` (functions included, and the frameworks a
runtime imports through ``require("module", "extra")``) must come from the
standard library, from aimass, or from a distribution ``pyproject.toml``
declares (the core list or an extra); and every declared distribution must
be imported somewhere, or be named below with the reason it is declared.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Mapping
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).parents[2]
SRC = ROOT / "src" / "aimass"

DECLARED_FOR_OTHERS = {
    "psycopg": "SQLAlchemy's PostgreSQL driver, which it loads for a postgresql+psycopg URL",
    "onnxscript": "what torch.onnx needs to export a module (torch imports it)",
}
"""Distributions declared though no aimass module imports them, and why."""


def _project() -> dict[str, list[str]]:
    """Each extra's distributions (``core`` for the plain dependencies), ``dev`` left out."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    groups = {"core": project["dependencies"], **project["optional-dependencies"]}
    return {
        group: [
            canonicalize_name(Requirement(line).name)
            for line in lines
            if Requirement(line).name != "aimass"
        ]
        for group, lines in groups.items()
        if group != "dev"
    }


def _imported() -> set[str]:
    """The top-level modules ``src/aimass`` imports, ``require(...)`` calls included."""
    found: set[str] = set()
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module.split(".")[0])
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "require"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.add(node.args[0].value.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"aimass", "__future__"}


@cache
def _installed() -> Mapping[str, list[str]]:
    return packages_distributions()


def _distributions(module: str) -> set[str]:
    return {canonicalize_name(d) for d in _installed().get(module, [])}


def test_every_imported_module_comes_from_a_declared_distribution() -> None:
    declared = {name for names in _project().values() for name in names}
    undeclared = {
        module: sorted(_distributions(module))
        for module in sorted(_imported())
        if not _distributions(module) & declared
    }
    assert undeclared == {}


def test_every_declared_distribution_is_imported_or_says_why() -> None:
    imported = {dist for module in _imported() for dist in _distributions(module)}
    idle = {
        (group, name)
        for group, names in _project().items()
        for name in names
        if name not in imported and name not in DECLARED_FOR_OTHERS
    }
    assert idle == set()
    assert set(DECLARED_FOR_OTHERS) <= {name for names in _project().values() for name in names}


def test_the_reader_sees_the_imports() -> None:
    # A reader that found nothing would pass the tests above.
    assert {"starlette", "sqlalchemy", "torch", "sklearn"} <= _imported()
