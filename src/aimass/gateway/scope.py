"""Per-key model scopes: which models a key limited with ``--models`` may use."""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence

from aimass.contract.reference import ModelRef

__all__ = ["in_scope"]


def in_scope(patterns: Sequence[str], reference: str) -> bool:
    """Whether a key limited to ``patterns`` (names or globs; empty: all) may use ``reference``.

    The reference's model name is what counts: ``iris:2`` and
    ``iris@production`` are ``iris``. A malformed reference is INVALID_INPUT.
    """
    if not patterns:
        return True
    name = ModelRef.parse(reference).name
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
