"""The Runtime contract: the one interface every framework implements.

A runtime saves a trained object into a directory, loads it back, and predicts
on a batch of named numpy arrays. Runtime code is plain synchronous Python; the
serving engine decides threads or processes. Framework imports happen inside
methods (:func:`aimass.runtimes.loading.require`) so importing a runtime module
is cheap and a missing framework names the extra to install.

Besides ``predict``, a runtime states, per version and without loading it:

* its :class:`Capability` set (:meth:`Runtime.capabilities_for`), which the
  engine and the protocol adapters dispatch on;
* its :class:`ForkPolicy` (:meth:`Runtime.fork_policy`): whether a server may
  load the version once before forking its workers, and what that takes;
* its typed save options (:attr:`Runtime.Options`), which refuse unknown keys.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from aimass.contract.manifest import ArtifactFile, Lineage, Manifest
from aimass.contract.signature import Datatype, Signature, Task, as_array
from aimass.errors import AimassError, ErrorCode

__all__ = [
    "Arrays",
    "Capability",
    "ForkPolicy",
    "LoadOptions",
    "Predictor",
    "Runtime",
    "SaveOptions",
    "Saved",
    "embedding_tensors",
]

Arrays = dict[str, np.ndarray[Any, Any]]
"""Named arrays, batch dimension first: what runtimes take and return."""


class Capability(StrEnum):
    """What a version can be asked to do; a request names one, the engine checks it.

    ``predict`` is every version's; ``predict_proba`` is a predictor whose
    outputs include ``probabilities``; ``embed`` is a predictor that turns one
    text input into an embedding (the OpenAI embeddings API asks for it).
    """

    PREDICT = "predict"
    PREDICT_PROBA = "predict_proba"
    EMBED = "embed"

    # Enum hashes members in Python; these are strings equal to their values,
    # so str's C hash agrees with it and keeps per-request lookups cheap.
    __hash__ = str.__hash__


def embedding_tensors(signature: Signature) -> tuple[str, str]:
    """The text input and the embedding output of an embedder's signature.

    The output is the one named ``embedding``, else the first.
    """
    names = [spec.name for spec in signature.outputs]
    return signature.inputs[0].name, "embedding" if "embedding" in names else names[0]


class Predictor(Protocol):
    """What a scheduler runs: one call on a merged batch (every capability above is one)."""

    def predict(self, inputs: Arrays) -> Arrays:
        """Named arrays in, named arrays with as many rows out."""


@dataclass(frozen=True)
class Saved:
    """What :meth:`Runtime.save` wrote, for the manifest."""

    framework: str
    framework_version: str
    format: str
    signature: Signature
    task: Task = Task.CUSTOM
    unsafe: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def to_manifest(
        self,
        runtime: str,
        *,
        files: tuple[ArtifactFile, ...] = (),
        task: Task | None = None,
        signature: Signature | None = None,
        lineage: Lineage | None = None,
    ) -> Manifest:
        """The manifest of what was saved; ``task`` and ``signature`` override the inferred."""
        return Manifest(
            runtime=runtime,
            framework=self.framework,
            framework_version=self.framework_version,
            format=self.format,
            unsafe=self.unsafe,
            task=task or self.task,
            signature=signature or self.signature,
            files=files,
            lineage=lineage or Lineage(),
            options=self.options,
        )


@dataclass(frozen=True)
class LoadOptions:
    """Policy the loader applies; set from :class:`aimass.settings.RegistrySettings`."""

    allow_pickle: bool = True


class SaveOptions(BaseModel):
    """A runtime's save options: each runtime subclasses this with its own fields.

    Unknown keys are refused, so a misspelt option is an error, never silently
    ignored.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@dataclass(frozen=True)
class ForkPolicy:
    """Whether a server may load a version before it forks its workers, and what that takes.

    A shared version is loaded once, in the supervisor, and its memory is shared
    copy-on-write by every worker; one that is not (``reason`` says why) is
    loaded by each worker. ``prepare`` runs in the supervisor before the first
    version that names it loads, given the worker count, and returns what each
    worker runs right after the fork; ``before_fork`` runs once all loads are
    done. Each distinct callable runs once, however many versions name it.
    """

    shared: bool = True
    reason: str = ""
    prepare: Callable[[int], Callable[[], None]] | None = None
    before_fork: Callable[[], None] | None = None


class Runtime(ABC):
    """A loaded model of one framework, plus the class-level save and load steps.

    Subclasses set :attr:`name` (the key in the runtime table, recorded in the
    manifest), :attr:`extra` (the pip extra that installs the framework) and,
    when they take save options, :attr:`Options`.
    """

    name: ClassVar[str]
    extra: ClassVar[str]
    Options: ClassVar[type[SaveOptions]] = SaveOptions

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    @classmethod
    @abstractmethod
    def handles(cls, obj: Any) -> bool:
        """Whether ``obj`` is something this runtime saves; must not import the framework."""

    @classmethod
    def save(
        cls,
        obj: Any,
        directory: Path,
        *,
        sample_input: Any = None,
        defaults: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> Saved:
        """Write ``obj`` into the empty ``directory`` and describe what was written.

        ``options`` are this runtime's save options (:attr:`Options`; an
        unknown one is INVALID_INPUT); ``defaults`` fill those this runtime has
        and the caller did not give (the registry's settings). ``sample_input``
        (what the object's own predict takes) is run through the object to
        infer the signature when the runtime cannot read it from the object.
        """
        return cls.write(
            obj, directory, sample_input=sample_input, options=cls.save_options(options, defaults)
        )

    @classmethod
    @abstractmethod
    def write(cls, obj: Any, directory: Path, *, sample_input: Any, options: Any) -> Saved:
        """:meth:`save`'s work, with ``options`` already an instance of :attr:`Options`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path, manifest: Manifest, options: LoadOptions) -> Runtime:
        """Load a version whose files are in ``directory`` (already verified)."""

    @abstractmethod
    def predict(self, inputs: Arrays) -> Arrays:
        """Predict on a batch: named arrays in, named arrays out, batch dimension first."""

    @classmethod
    def save_options(
        cls, given: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> SaveOptions:
        """:attr:`Options` from ``given``; ``defaults`` fill only the fields this runtime has.

        INVALID_INPUT names an option this runtime does not take, or one of the
        wrong type.
        """
        fields = cls.Options.model_fields
        unknown = sorted(set(given) - set(fields))
        if unknown:
            takes = ", ".join(sorted(fields)) or "none"
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"the {cls.name} runtime has no save option {', '.join(map(repr, unknown))} "
                f"(it takes: {takes})",
                field=unknown[0],
            )
        values = {k: v for k, v in (defaults or {}).items() if k in fields}
        values.update(given)
        try:
            return cls.Options.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"])
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"save option {where!r} of the {cls.name} runtime: {error['msg']}",
                field=where,
            ) from None

    @classmethod
    def capabilities_for(cls, manifest: Manifest) -> frozenset[Capability]:
        """What a version of this runtime can do, read from its manifest alone.

        Every version predicts; one whose outputs include ``probabilities``
        predicts them; one whose task is ``embedding`` and that takes a single
        text input embeds.
        """
        signature = manifest.signature
        found = {Capability.PREDICT}
        if any(spec.name == "probabilities" for spec in signature.outputs):
            found.add(Capability.PREDICT_PROBA)
        if (
            manifest.task is Task.EMBEDDING
            and len(signature.inputs) == 1
            and signature.inputs[0].datatype is Datatype.BYTES
            and signature.outputs
        ):
            found.add(Capability.EMBED)
        return frozenset(found)

    @classmethod
    def unpickles_on_load(cls, manifest: Manifest) -> bool:
        """Whether loading a version whose files hold a pickle unpickles one.

        The default says yes, so the registry refuses such a version while
        pickles are off. A runtime that serves without opening its pickle (an
        ONNX serving plan) says no and refuses the pickle where it reads it.
        """
        return True

    @classmethod
    def fork_policy(cls, manifest: Manifest, loaded: Runtime | None = None) -> ForkPolicy:
        """How a version may be loaded before a fork; asked again once it is ``loaded``.

        The default shares it and needs nothing: code that starts no threads
        while loading.
        """
        return ForkPolicy()

    def labels(self) -> list[Any] | None:
        """A classifier's class labels, in the order of its probability columns, if known."""
        classes = self.manifest.options.get("classes")
        return None if classes is None else list(classes)

    def to_inputs(self, value: Any) -> Arrays:
        """Turn what the original object's predict took into named arrays.

        The default maps a mapping by name and anything else to the single
        declared input; runtimes with richer inputs (data frames) override it.
        """
        inputs = self.manifest.signature.inputs
        if isinstance(value, Mapping):
            return {str(k): as_array(v) for k, v in value.items()}
        if len(inputs) != 1:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"this model takes {len(inputs)} inputs {[s.name for s in inputs]}: "
                "pass a mapping of name to value",
            )
        return {inputs[0].name: as_array(value)}
