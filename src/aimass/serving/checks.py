"""Checking a request against its version's signature before it joins a batch.

Validation happens per request, so one bad request fails alone with
INVALID_INPUT instead of taking its batch-mates down with it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Datatype
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import VersionInfo

__all__ = ["InputCheck", "select_outputs"]


class InputCheck:
    """:meth:`Signature.validate_inputs` with a fast path for requests that already conform.

    Most requests arrive with exactly the declared names, dtypes and fixed
    dimensions; checking that directly costs a fraction of the general
    validation, which still handles everything else (conversions and the
    error messages).
    """

    def __init__(self, info: VersionInfo) -> None:
        signature = info.manifest.signature
        self._signature = signature
        self._specs = {
            spec.name: (
                None if spec.datatype is Datatype.BYTES else spec.datatype.numpy,
                len(spec.shape),
                tuple((axis, size) for axis, size in enumerate(spec.shape) if size != -1),
            )
            for spec in signature.inputs
        }
        self._outputs = frozenset(spec.name for spec in signature.outputs)

    def check(
        self, inputs: Arrays, outputs: Sequence[str] | None, missing: Collection[str] = ()
    ) -> Arrays:
        """The inputs, converted where needed; INVALID_INPUT if they do not fit.

        ``outputs`` are the names asked for (None: all), refused when the
        signature has no such output; ``missing`` are the inputs the request
        marked as holding missing values, refused unless nullable.
        """
        rows = self._conforming_rows(inputs)
        if missing:
            self._signature.refuse_missing(missing)
        if rows is None:
            inputs = self._signature.validate_inputs(inputs)
            first = next(iter(inputs.values()), None)
            rows = 1 if first is None else len(first)
        if rows == 0:
            raise AimassError(ErrorCode.INVALID_INPUT, "the request has no rows")
        if outputs is not None and self._outputs:
            unknown = [name for name in outputs if name not in self._outputs]
            if unknown:
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"unknown output(s) {unknown}; the model returns {sorted(self._outputs)}",
                    field=unknown[0],
                )
        return inputs

    def _conforming_rows(self, inputs: Arrays) -> int | None:
        if len(inputs) != len(self._specs) or not inputs:
            return None
        rows = -1
        for name, value in inputs.items():
            spec = self._specs.get(name)
            if spec is None or not isinstance(value, np.ndarray):
                return None
            dtype, ndim, fixed = spec
            if dtype is None or value.dtype != dtype or value.ndim != ndim:
                return None
            shape = value.shape
            for axis, size in fixed:
                if shape[axis] != size:
                    return None
            if rows == -1:
                rows = shape[0]
            elif shape[0] != rows:
                return None
        return rows


def select_outputs(info: VersionInfo, result: Arrays, outputs: Sequence[str]) -> Arrays:
    """The outputs asked for, in the order asked."""
    try:
        return {name: result[name] for name in outputs}
    except KeyError as exc:
        # Only reachable for signatures that declare no outputs.
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"model {info.ref} returned no output {exc.args[0]!r}; it returned {sorted(result)}",
        ) from None
