"""Run the ``aimass`` command as a user does: a subprocess on its own home directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["Cli"]


class Cli:
    """Runs ``aimass`` in ``root`` with ``AIMASS_HOME=root/home`` and no other AIMASS_ setting.

    Every call asserts that no traceback reached stderr (a user's mistake must
    give a one-line error) and, unless ``ok=False``, that it exited 0.
    """

    def __init__(self, root: Path) -> None:
        self.cwd = root
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("AIMASS_")}
        self.env["AIMASS_HOME"] = str(root / "home")
        self.command = str(Path(sys.executable).with_name("aimass"))

    def run(
        self, *args: str, ok: bool = True, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run ``aimass ARGS``, ``env`` added to its environment, and return what it printed."""
        done = subprocess.run(
            [self.command, *args],
            env={**self.env, **(env or {})},
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert "Traceback" not in done.stderr, done.stderr
        if ok:
            assert done.returncode == 0, done.stderr
        return done

    def json(self, *args: str) -> Any:
        """Run ``aimass ARGS --json`` and parse its output."""
        return json.loads(self.run(*args, "--json").stdout)
