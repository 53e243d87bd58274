"""Request limits past the body size: elements per tensor and bytes per string."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from aimass.errors import AimassError, ErrorCode

__all__ = ["RequestLimits"]


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """The largest tensor and string one request may carry; larger is PAYLOAD_TOO_LARGE."""

    max_tensor_elements: int
    max_string_bytes: int

    @property
    def body_bytes_always_within(self) -> int:
        """A body of at most this many bytes holds no string past the limit.

        Every string byte takes at least one byte of the (decompressed) body,
        JSON or binary, and no JSON escape decodes to more bytes than it is
        written with, so the strings of a smaller body need no look.
        """
        return self.max_string_bytes

    def check_count(self, name: str, count: int) -> None:
        """Refuse a tensor of more elements than the limit (decoders ask before allocating)."""
        if count > self.max_tensor_elements:
            raise AimassError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"input '{name}' has {count} elements; the limit is {self.max_tensor_elements}",
                field=name,
            )

    def check_strings(self, inputs: Mapping[str, np.ndarray[Any, Any]]) -> None:
        """Refuse a decoded tensor holding a string element longer than the limit."""
        for name, array in inputs.items():
            if array.dtype.kind in "OSU":
                self._check_strings(name, array.ravel())

    def check_texts(self, texts: Iterable[str], field: str = "input") -> None:
        """Refuse a text longer than the string limit (counted in UTF-8 bytes)."""
        self._check_strings(field, texts)

    def _check_strings(self, name: str, values: Iterable[Any]) -> None:
        limit = self.max_string_bytes
        for value in values:
            if isinstance(value, bytes):
                size = len(value)
            elif isinstance(value, str):
                # UTF-8 takes at most 4 bytes a character: short strings need no encoding.
                size = len(value)
                if size * 4 > limit:
                    size = len(value.encode("utf-8", "surrogatepass"))
            else:
                continue
            if size > limit:
                raise AimassError(
                    ErrorCode.PAYLOAD_TOO_LARGE,
                    f"a string in '{name}' is {size} bytes long; the limit is {limit}",
                    field=name,
                )
