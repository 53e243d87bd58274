"""Staging directories: where a registration saves a model's files before uploading them.

Each lives under the registry's ``staging/`` directory (not the system's temp
directory, so that the debris of a killed registration can be found) and holds
a ``lock`` file, locked for as long as the registration runs, beside the
``files/`` the runtime writes. The lock is the operating system's
(``flock``), released when the process ends however it ends, so a staging
directory whose lock can be taken belongs to no live registration.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["abandoned_staging", "remove_staging", "staging_directory", "tree_size"]

_PREFIX = "register-"
_LOCK = "lock"


@contextmanager
def staging_directory(root: Path) -> Iterator[Path]:
    """A fresh, locked directory for a registration's files, removed afterwards either way."""
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root, prefix=_PREFIX))
    try:
        with (staging / _LOCK).open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            files = staging / "files"
            files.mkdir()
            yield files
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def abandoned_staging(root: Path, cutoff: float) -> Iterator[Path]:
    """Staging directories last changed before ``cutoff`` that no live registration holds."""
    if not root.is_dir():
        return
    for staging in root.glob(f"{_PREFIX}*"):
        try:
            if staging.stat().st_mtime >= cutoff or _held(staging):
                continue
        except FileNotFoundError:
            continue  # its registration finished meanwhile
        yield staging


def remove_staging(staging: Path) -> bool:
    """Remove an abandoned staging directory, unless a registration holds it after all."""
    try:
        if _held(staging):
            return False
    except FileNotFoundError:
        return False
    shutil.rmtree(staging, ignore_errors=True)
    return True


def tree_size(root: Path) -> int:
    """The bytes of the files under ``root``."""
    total = 0
    for path in root.rglob("*"):
        try:
            if path.is_file():
                total += path.stat().st_size
        except FileNotFoundError:
            continue
    return total


def _held(staging: Path) -> bool:
    lock_path = staging / _LOCK
    if not lock_path.exists():
        return False  # killed before it locked (or the directory is not one of ours)
    fd = os.open(lock_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
