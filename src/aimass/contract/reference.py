"""Model references: how every caller names a model version, parsed in one place.

``iris`` means the latest ready version, ``iris:3`` version 3 and
``iris@production`` whatever the alias points at. The OIP path may also carry
a version beside the name (``/v2/models/iris/versions/3``); :meth:`ModelRef.parse`
takes it and refuses one that contradicts the reference.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from aimass.errors import AimassError, ErrorCode

__all__ = [
    "MAX_NUMBER",
    "NAME_PATTERN",
    "REFERENCE_PATTERN",
    "RESERVED_ALIASES",
    "ModelRef",
    "check_alias",
    "check_model_name",
]

MAX_NUMBER = 2**31 - 1
"""The largest version number or id every registry database holds (PostgreSQL's INTEGER).

A larger number names nothing that can exist: the stores answer NOT_FOUND for
it rather than pass it to a database that refuses to compare it.
"""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A model name: a letter or digit, then letters, digits, '.', '_' and '-' (at most 128)."""

REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(:[0-9]{1,10}|@[^/]+)?$"
"""A reference as a URL or a body may carry it: a name, then ``:VERSION`` or ``@ALIAS``."""

RESERVED_ALIASES = frozenset({"latest"})
"""Alias names refused: ``latest`` reads as "the newest version", which a moved alias is not."""

_NAME = re.compile(NAME_PATTERN)
_DIGITS = re.compile(r"[0-9]+")  # str.isdigit() takes '²' and other digits int() refuses
_RULE = "start with a letter or digit and hold only letters, digits, '.', '_' and '-' (at most 128)"


def check_model_name(name: str) -> None:
    """INVALID_INPUT unless ``name`` follows :data:`NAME_PATTERN`."""
    if not _NAME.match(name):
        raise AimassError(ErrorCode.INVALID_INPUT, f"model name '{name}' must {_RULE}")


def check_alias(alias: str) -> None:
    """INVALID_INPUT unless ``alias`` follows the model names' rule, not a number, not reserved."""
    if not _NAME.match(alias):
        raise AimassError(ErrorCode.INVALID_INPUT, f"alias '{alias}' must {_RULE}", field="alias")
    if alias.isdigit():
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"alias '{alias}' must not be a number (NAME:{alias} names a version)",
            field="alias",
        )
    if alias in RESERVED_ALIASES:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"alias '{alias}' is reserved: a model's name alone means its latest version",
            field="alias",
        )


class ModelRef(NamedTuple):
    """A parsed reference: a name and at most one of a version and an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> ModelRef:
        """The reference ``text`` names, or the model ``text`` at an explicit ``version``.

        INVALID_INPUT when the version after ``:`` is not a number (one too
        large to exist is kept: looking it up finds nothing), or when
        ``version`` is given beside a reference that names a version or an
        alias already.
        """
        name, alias, number = text, None, None
        if "@" in text:
            name, _, alias = text.partition("@")
        elif ":" in text:
            name, _, digits = text.rpartition(":")
            if _DIGITS.fullmatch(digits) is None:
                raise AimassError(
                    ErrorCode.INVALID_INPUT, f"'{text}': the version after ':' must be a number"
                )
            number = int(digits)
        if version is None:
            return cls(name, number, alias)
        if alias is not None or number is not None:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"'{text}' names {'a version' if alias is None else 'an alias'} already; "
                f"give the model's name with version {version}",
            )
        return cls(name, version, None)

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.version is not None:
            return f"{self.name}:{self.version}"
        return self.name
