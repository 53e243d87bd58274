"""Test doubles for the serving engine: scripted models and a counting registry.

Scripted models are versions written straight into the registry with a
hand-made manifest (so a test picks their artifact size) and served by
:class:`ScriptedRuntime`, whose predict a test can gate, fail or count.
Real scikit-learn versions load through the ordinary path; every loaded
model is wrapped so the test can see how many calls and rows it got.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from typing_extensions import override

from aimass.contract.manifest import ArtifactFile, Manifest
from aimass.contract.request import InferRequest, InferResult, RequestedOutput
from aimass.contract.runtime import Arrays, LoadOptions, Runtime, Saved
from aimass.contract.signature import Datatype, Signature, TensorSpec
from aimass.registry import Registry
from aimass.registry.records import VersionInfo
from aimass.runtimes.model import LoadedModel
from aimass.serving.engine import Engine

WAIT = 10.0


def ask(
    engine: Engine,
    model: str,
    version: int | None,
    inputs: Arrays,
    *,
    outputs: Sequence[str] | None = None,
    timeout: float | None = None,
) -> Coroutine[Any, Any, InferResult]:
    """``engine.infer`` on the request these arguments describe."""
    requested = None if outputs is None else tuple(RequestedOutput(name) for name in outputs)
    return engine.infer(InferRequest(model, inputs, version, outputs=requested, timeout=timeout))


def double(inputs: Arrays) -> Arrays:
    return {"output": inputs["x"] * 2}


@dataclass
class Script:
    """What a scripted model does when called."""

    fn: Callable[[Arrays], Arrays] = double
    gate: threading.Event | None = None
    entered: threading.Event = field(default_factory=threading.Event)
    error: Exception | None = None
    load_error: Exception | None = None
    load_gate: threading.Event | None = None


_X = TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1, -1))


def _manifest(signature: Signature, size: int = 0) -> Manifest:
    return Manifest(
        runtime="python",
        framework="python",
        framework_version="3",
        format="scripted",
        signature=signature,
        files=(ArtifactFile(path="weights", sha256="0" * 64, size=size),),
    )


class _InMemoryRuntime(Runtime):
    """A runtime built in the test around a model in memory: it never saves or loads files."""

    @override
    @classmethod
    def handles(cls, obj: Any) -> bool:
        return False

    @override
    @classmethod
    def write(cls, obj: Any, directory: Path, *, sample_input: Any, options: Any) -> Saved:
        raise NotImplementedError

    @override
    @classmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> Runtime:
        raise NotImplementedError


class FunctionRuntime(_InMemoryRuntime):
    """A plain function as a model (its manifest declares one input ``x``)."""

    name = "function"
    extra = "none"

    def __init__(self, fn: Callable[[Arrays], Arrays]) -> None:
        super().__init__(_manifest(Signature(inputs=(_X,), outputs=())))
        self.fn = fn

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        return self.fn(inputs)


def function_model(fn: Callable[[Arrays], Arrays], name: str = "fn") -> LoadedModel:
    """``fn`` as version 1 of a loaded model called ``name``."""
    return LoadedModel(name, 1, FunctionRuntime(fn))


def no_loads(name: str, version: int) -> LoadedModel:
    """A backend's loader for tests that never load a model."""
    raise AssertionError(f"the test loaded {name}:{version}")


class ScriptedRuntime(_InMemoryRuntime):
    name = "scripted"
    extra = "none"

    def __init__(self, manifest: Manifest, script: Script) -> None:
        super().__init__(manifest)
        self.script = script

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        self.script.entered.set()
        if self.script.gate is not None and not self.script.gate.wait(WAIT):
            raise RuntimeError("the test never opened the gate")
        if self.script.error is not None:
            raise self.script.error
        return self.script.fn(inputs)


class CountingRuntime(_InMemoryRuntime):
    """Delegates to another runtime, recording the rows of every call."""

    name = "counting"
    extra = "none"

    def __init__(self, inner: Runtime, calls: list[int]) -> None:
        super().__init__(inner.manifest)
        self.inner = inner
        self.calls = calls

    @override
    def predict(self, inputs: Arrays) -> Arrays:
        self.calls.append(len(next(iter(inputs.values()))))
        return self.inner.predict(inputs)


class SpyRegistry(Registry):
    """A real registry whose loads can be scripted and are counted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scripts: dict[str, Script] = {}
        self.calls: dict[str, list[int]] = {}
        self.loads: dict[str, int] = {}

    def add_scripted(
        self,
        name: str,
        script: Script | None = None,
        *,
        size: int = 1000,
        signature: Signature | None = None,
    ) -> VersionInfo:
        """Register a version of ``name`` served by ``script``."""
        manifest = _manifest(
            signature
            or Signature(
                inputs=(TensorSpec(name="x", datatype=Datatype.FP64, shape=(-1, 2)),),
                outputs=(TensorSpec(name="output", datatype=Datatype.FP64, shape=(-1, 2)),),
            ),
            size,
        )
        self.scripts[name] = script or Script()
        self.store.ensure_model(name, task="custom", description="", created_by="test")
        return self.store.add_version(
            name, manifest, description="", metadata={}, tags={}, created_by="test"
        )

    @override
    def load(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> LoadedModel:
        self.loads[name] = self.loads.get(name, 0) + 1
        script = self.scripts.get(name)
        if script is None:
            loaded = super().load(name, version, alias=alias)
            runtime: Runtime = loaded.runtime
            number = loaded.version
        else:
            if script.load_gate is not None and not script.load_gate.wait(WAIT):
                raise RuntimeError("the test never opened the load gate")
            if script.load_error is not None:
                raise script.load_error
            info = self.get_version(name, version, alias=alias)
            runtime, number = ScriptedRuntime(info.manifest, script), info.version
        return LoadedModel(name, number, CountingRuntime(runtime, self.calls.setdefault(name, [])))
