"""Helpers of the deployment surface tests: a registry of versions to deploy, the CLI in-process."""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from aimass import PythonModel
from aimass.contract.runtime import Arrays
from aimass.registry import Registry
from aimass.settings import Settings
from aimass.testing.models import iris_classifier


class Broken(PythonModel):
    """Registers, then (once :func:`fill` arms it) fails to load: never to be deployed."""

    code_paths = (__file__,)
    armed: ClassVar[bool] = False

    def load(self, artifacts: Path) -> None:
        if Broken.armed:
            raise RuntimeError("this version is broken")

    def predict(self, inputs: Arrays) -> Arrays:
        return {"y": inputs["x"]}


def fill(registry: Registry) -> None:
    """``iris:1`` (aliased ``production``), ``iris:2``, and ``broken:1``, which fails its calls."""
    clf, x = iris_classifier()
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    registry.register(clf, "iris", sample_input=x[:2], task="classification")
    registry.set_alias("iris", "production", 1)
    Broken.armed = False
    registry.register(Broken(), "broken", sample_input={"x": np.ones((1, 4))})
    Broken.armed = True  # in this process: the in-process CLI and in-thread servers load it here


@dataclass
class Ran:
    """What one in-process ``aimass`` call printed, and its exit status."""

    code: int
    stdout: str
    stderr: str


class InProcessCli:
    """``aimass ARGS`` run by :func:`aimass.cli.app.main` in this process, on ``home``.

    Much faster than a subprocess per command; the settings still come from
    the environment, as a user's would (``AIMASS_HOME``, ``AIMASS_USER``).
    """

    def __init__(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in [k for k in os.environ if k.startswith("AIMASS_")]:
            monkeypatch.delenv(name)
        monkeypatch.setenv("AIMASS_HOME", str(home))
        monkeypatch.setenv("AIMASS_USER", "ana")
        monkeypatch.setenv("COLUMNS", "200")  # a wide table: rows are not wrapped

    def run(self, *args: str, ok: bool = True) -> Ran:
        """Run ``aimass ARGS``; unless ``ok=False``, assert it exited 0."""
        from aimass.cli.app import main

        out, err = io.StringIO(), io.StringIO()
        argv = sys.argv
        sys.argv = ["aimass", *args]
        code = 0
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            sys.argv = argv
        ran = Ran(code, out.getvalue(), err.getvalue())
        assert "Traceback" not in ran.stderr, ran.stderr
        if ok:
            assert ran.code == 0, ran.stderr or ran.stdout
        return ran

    def json(self, *args: str) -> Any:
        """Run ``aimass ARGS --json`` and parse what it printed."""
        return json.loads(self.run(*args, "--json").stdout)


def deploy_home(root: Path) -> Path:
    """``root``, as a home whose registry :func:`fill` filled."""
    registry = Registry.from_settings(Settings(home=root))
    try:
        fill(registry)
    finally:
        registry.close()
    return root
