"""The warm-up request: one call a version must answer before it takes a deployment's traffic.

Built from the version's signature alone, so any version can be warmed
without sample data: each input at its shape with every variable dimension
(``-1``) as 1, filled with zeros (empty strings for BYTES), asking for the
version's first capability. The CLI's check of a new version and the
server's controller send the same request, so a version the CLI accepted
warms the same way in the server.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from aimass.contract.request import InferRequest
from aimass.contract.runtime import Capability
from aimass.contract.signature import Datatype, TensorSpec
from aimass.registry.records import VersionInfo
from aimass.runtimes import runtime_class

__all__ = ["warmup_request"]


def warmup_request(info: VersionInfo) -> InferRequest:
    """A request ``info`` can answer, built from its signature (see the module docstring)."""
    manifest = info.manifest
    declared = runtime_class(manifest.runtime).capabilities_for(manifest)
    capability = next(c for c in Capability if c in declared)
    return InferRequest(
        model=info.model,
        version=info.version,
        inputs={spec.name: _zeros(spec) for spec in manifest.signature.inputs},
        capability=capability,
        request_id=f"warmup-{info.ref}",
    )


def _zeros(spec: TensorSpec) -> np.ndarray[Any, Any]:
    shape = tuple(1 if size == -1 else size for size in spec.shape)
    if spec.datatype is Datatype.BYTES:
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.datatype.numpy)
