"""A loaded model version: a runtime plus the manifest it is checked against.

This is what ``aimass.load`` returns and what the serving engine holds in its
cache. ``predict`` takes what the original object's predict took and returns
the primary output; ``predict_named`` takes and returns named arrays, with the
signature enforced before the runtime sees the data and the batch size
checked after. ``predict_proba`` and ``embed`` are there for versions with
those capabilities.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from aimass.contract.manifest import Manifest
from aimass.contract.runtime import Arrays, Capability, Runtime, embedding_tensors
from aimass.errors import AimassError, ErrorCode

__all__ = ["LoadedModel", "check_rows"]


def check_rows(model: str, outputs: Arrays, rows: int) -> None:
    """INTERNAL unless every output has ``rows`` rows: a model must answer each row it got."""
    for name, value in outputs.items():
        got = len(value) if getattr(value, "ndim", 0) else None
        if got != rows:
            raise AimassError(
                ErrorCode.INTERNAL,
                f"model {model} returned {name!r} with "
                f"{'no batch dimension' if got is None else f'{got} rows'} for {rows} inputs",
            )


class LoadedModel:
    """One version of one model, ready to predict."""

    def __init__(self, name: str, version: int, runtime: Runtime) -> None:
        self.name = name
        self.version = version
        self.runtime = runtime

    @property
    def manifest(self) -> Manifest:
        """The version's manifest (signature, framework, lineage)."""
        return self.runtime.manifest

    @property
    def ref(self) -> str:
        """``name:version``."""
        return f"{self.name}:{self.version}"

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What this version can do (its runtime says, from the manifest)."""
        return type(self.runtime).capabilities_for(self.manifest)

    def predict_named(self, inputs: Arrays) -> Arrays:
        """Validate named inputs against the signature, predict, check the batch size."""
        checked = self.manifest.signature.validate_inputs(inputs)
        outputs = self.runtime.predict(checked)
        check_rows(self.ref, outputs, len(next(iter(checked.values()))) if checked else 0)
        return outputs

    def inputs_of(self, value: Any) -> Arrays:
        """Named arrays from what the original object's predict took (a list, a data frame).

        Numbers whose dtype numpy or pandas guessed are converted to the
        signature's datatypes where no value changes (integers read from a
        CSV for a floating input); see :meth:`Signature.conform`.
        """
        return self.manifest.signature.conform(self.runtime.to_inputs(value))

    def predict(self, value: Any) -> Any:
        """Predict like the original object: its input in, its primary output out."""
        outputs = self.predict_named(self.inputs_of(value))
        return outputs[self.manifest.signature.outputs[0].name]

    def predict_proba(self, value: Any) -> Any:
        """Class probabilities, for versions that predict them."""
        self._require(Capability.PREDICT_PROBA, "has no probabilities")
        return self.predict_named(self.inputs_of(value))["probabilities"]

    def embed(self, texts: str | Sequence[str]) -> np.ndarray[Any, Any]:
        """One embedding per text, for versions that embed."""
        self._require(Capability.EMBED, "is not an embedding model")
        text, embedding = embedding_tensors(self.manifest.signature)
        batch = [texts] if isinstance(texts, str) else list(texts)
        return self.predict_named({text: np.array(batch, dtype=object)})[embedding]

    def _require(self, capability: Capability, otherwise: str) -> None:
        if capability not in self.capabilities:
            raise AimassError(ErrorCode.UNSUPPORTED, f"model {self.ref} {otherwise}")

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, version={self.version}, runtime={self.runtime.name!r})"
