"""A loaded model version: a runtime plus the manifest it is checked against.

This is what ``aimass.load`` returns and what the serving engine holds in its
cache. ``predict`` takes what the original object's predict took and returns
the primary output; ``predict_named`` is the engine's batch call on named
arrays, with the signature enforced before the runtime sees the data and the
batch size checked after.
"""

from __future__ import annotations

from typing import Any

from aimass.errors import AimassError, ErrorCode
from aimass.registry.manifest import Manifest
from aimass.runtimes.base import Arrays, Capability, Runtime

__all__ = ["LoadedModel"]


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
    def capabilities(self) -> frozenset[Capability]:
        """What this model can do."""
        return self.runtime.capabilities

    def predict_named(self, inputs: Arrays) -> Arrays:
        """Validate named inputs against the signature, predict, check the batch size."""
        checked = self.manifest.signature.validate_inputs(inputs)
        outputs = self.runtime.predict(checked)
        rows = len(next(iter(checked.values()))) if checked else 0
        for out_name, value in outputs.items():
            if value.ndim == 0 or len(value) != rows:
                raise AimassError(
                    ErrorCode.INTERNAL,
                    f"model {self.name}:{self.version} returned {out_name!r} with "
                    f"{'no batch dimension' if value.ndim == 0 else len(value)} rows "
                    f"for {rows} inputs",
                )
        return outputs

    def predict(self, value: Any) -> Any:
        """Predict like the original object: its input in, its primary output out."""
        outputs = self.predict_named(self.runtime.to_inputs(value))
        return outputs[self.manifest.signature.outputs[0].name]

    def predict_proba(self, value: Any) -> Any:
        """Class probabilities, for models that have them."""
        outputs = self.predict_named(self.runtime.to_inputs(value))
        if "probabilities" not in outputs:
            raise AimassError(
                ErrorCode.UNSUPPORTED, f"model {self.name}:{self.version} has no probabilities"
            )
        return outputs["probabilities"]

    def __repr__(self) -> str:
        return f"LoadedModel({self.name!r}, version={self.version}, runtime={self.runtime.name!r})"
