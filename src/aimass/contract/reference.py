"""Model references: how every caller names a model version, parsed in one place.

``iris`` means the latest ready version, ``iris:3`` version 3 and
``iris@production`` whatever the alias points at. The OIP path may also carry
a version beside the name (``/v2/models/iris/versions/3``); :meth:`ModelRef.parse`
takes it and refuses one that contradicts the reference.
"""

from __future__ import annotations

from typing import NamedTuple

from aimass.errors import AimassError, ErrorCode

__all__ = ["MAX_NUMBER", "NAME_PATTERN", "REFERENCE_PATTERN", "ModelRef"]

MAX_NUMBER = 2**63 - 1
"""The largest version number or id a registry database holds (a signed 64-bit integer)."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""A model name: a letter or digit, then letters, digits, '.', '_' and '-' (at most 128)."""

REFERENCE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(:[0-9]{1,18}|@[^/]+)?$"
"""A reference as a URL or a body may carry it: a name, then ``:VERSION`` or ``@ALIAS``."""


class ModelRef(NamedTuple):
    """A parsed reference: a name and at most one of a version and an alias."""

    name: str
    version: int | None = None
    alias: str | None = None

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> ModelRef:
        """The reference ``text`` names, or the model ``text`` at an explicit ``version``.

        INVALID_INPUT when the version after ``:`` is not a number in range,
        or when ``version`` is given beside a reference that names a version
        or an alias already.
        """
        name, alias, number = text, None, None
        if "@" in text:
            name, _, alias = text.partition("@")
        elif ":" in text:
            name, _, digits = text.rpartition(":")
            if not digits.isdigit() or int(digits) > MAX_NUMBER:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"'{text}': the version after ':' must be a number from 0 to {MAX_NUMBER}",
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
