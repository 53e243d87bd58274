"""The request object: one inference request from the transport to the runtime and back.

A protocol adapter (the OIP codec, the OpenAI embeddings route) builds an
:class:`InferRequest`; the engine resolves its model reference, sets its
deadline and hands it to the version's scheduler, which merges the inputs of
many requests into one batch for the runtime; the answer is an
:class:`InferResult` naming the version that produced it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aimass.contract.runtime import Arrays, Capability
from aimass.roles import Role

__all__ = ["Caller", "InferRequest", "InferResult", "RequestedOutput"]


@dataclass(frozen=True, slots=True)
class RequestedOutput:
    """One output a request asks for, and whether the transport should send it as raw bytes."""

    name: str
    binary: bool = False


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the id and role of the API key it presented."""

    key_id: str
    role: Role


# Not frozen: one is built per request, and a frozen dataclass sets each field
# through object.__setattr__, which costs as much as decoding a small tensor.
@dataclass(slots=True)
class InferRequest:
    """One inference request.

    ``model`` is the reference as the client wrote it (``iris``, ``iris:2``,
    ``iris@production``) and ``version`` an explicit version beside it.
    ``outputs`` lists the outputs asked for (``None``: all of them);
    ``binary_output`` is the transport's default encoding for outputs not
    listed. ``id`` is the client's own identifier of this inference (echoed in
    the answer), ``request_id`` the transport's (``X-Request-ID``, which logs
    and error bodies quote). ``timeout`` is the client's limit in seconds; the
    engine turns it (or its default) into ``deadline``, on the event loop's
    clock, when the request arrives (infinity: none). ``missing`` names the
    inputs the transport found missing values in (JSON ``null``), which the
    engine accepts only for inputs whose signature says they may be missing.
    ``headers`` are the transport's request headers (lower-case names), which
    a router may read to keep a caller on one version or to pin one.
    The engine sets ``started`` (``time.perf_counter()`` when the request arrived) and
    ``served`` (the model and version it routed the request to), which
    observers read even when the request fails. A router that sent the
    request by a deployment's weights names the ``deployment`` (not for a
    version pinned by hand), which is what its statistics and shadows count.
    """

    model: str
    inputs: Arrays
    version: int | None = None
    outputs: tuple[RequestedOutput, ...] | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    request_id: str | None = None
    timeout: float | None = None
    caller: Caller | None = None
    capability: Capability = Capability.PREDICT
    binary_output: bool = False
    missing: frozenset[str] = frozenset()
    deadline: float = math.inf
    headers: Sequence[tuple[bytes, bytes]] = ()
    started: float = 0.0
    served: tuple[str, int] | None = None
    deployment: str | None = None

    @property
    def output_names(self) -> list[str] | None:
        """The names of the requested outputs, or ``None`` for all."""
        return None if self.outputs is None else [o.name for o in self.outputs]


@dataclass(slots=True)  # not frozen: one per request (see InferRequest)
class InferResult:
    """The outputs of one request and the version that produced them."""

    model_name: str
    model_version: int
    outputs: Arrays
