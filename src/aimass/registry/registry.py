"""The model library: register, find, alias, tag, load and delete model versions.

:class:`Registry` joins three collaborators it is given: the metadata store
(SQL), the artifact store (local or S3) and the runtimes. Registering saves
through the runtime into a staging directory, hashes every file, uploads the
files, and only then writes the version row, so a version visible in the
database always has complete artifacts behind it. The staging directory is
under the registry's home (``staging/``), removed when registration ends
either way, and locked while it runs, so that :mod:`aimass.registry.gc` can
remove the ones a killed registration left and never a live one's. Loading fetches files into a
local cache keyed by their content, verifies every sha256, and only then lets
the runtime open them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from aimass.contract.manifest import ArtifactFile, Lineage, Manifest, sha256_of
from aimass.contract.reference import ModelRef, check_model_name
from aimass.contract.runtime import LoadOptions
from aimass.contract.signature import Signature, Task
from aimass.db.database import open_engine
from aimass.errors import AimassError, ErrorCode
from aimass.registry.artifacts import ArtifactStore, open_artifact_store
from aimass.registry.records import AliasEvent, ModelInfo, VersionInfo
from aimass.registry.staging import staging_directory
from aimass.registry.store import ARCHIVED, READY, MetadataStore
from aimass.runtimes import detect_runtime, runtime_class
from aimass.runtimes.loading import refuse_pickle
from aimass.runtimes.model import LoadedModel
from aimass.runtimes.pickles import is_pickled, pickled_files
from aimass.settings import Settings

__all__ = ["Registry"]


class Registry:
    """The model library over a metadata store and an artifact store."""

    def __init__(
        self,
        store: MetadataStore,
        artifacts: ArtifactStore,
        *,
        cache_dir: Path,
        staging_dir: Path | None = None,
        user: str = "local",
        load_options: LoadOptions | None = None,
        prefer_safe_formats: bool = True,
        onnx_serving_plans: bool = True,
    ) -> None:
        self.store = store
        self.artifacts = artifacts
        self.cache_dir = cache_dir
        self.staging_dir = staging_dir or cache_dir.parent / "staging"
        self.user = user
        self.load_options = load_options or LoadOptions()
        self.prefer_safe_formats = prefer_safe_formats
        self.onnx_serving_plans = onnx_serving_plans

    @classmethod
    def from_settings(cls, settings: Settings) -> Registry:
        """Open the registry the settings describe (creating or migrating its schema)."""
        return cls(
            MetadataStore(open_engine(settings.database_url())),
            open_artifact_store(
                settings.artifact_url(), s3_endpoint_url=settings.registry.s3_endpoint_url
            ),
            cache_dir=settings.home / "cache",
            staging_dir=settings.home / "staging",
            user=settings.user,
            load_options=LoadOptions(allow_pickle=settings.registry.allow_pickle),
            prefer_safe_formats=settings.registry.prefer_safe_formats,
            onnx_serving_plans=settings.registry.onnx_serving_plans,
        )

    @property
    def database(self) -> Engine:
        """The product database the registry's metadata lives in; other stores open on it too."""
        return self.store.engine

    def close(self) -> None:
        """Release database connections; the registry must not be used afterwards."""
        self.store.engine.dispose()

    # -- registering ----------------------------------------------------------

    def register(
        self,
        obj: Any,
        name: str,
        *,
        sample_input: Any = None,
        runtime: str | None = None,
        signature: Signature | None = None,
        task: Task | str | None = None,
        description: str = "",
        tags: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        lineage: Lineage | None = None,
        created_by: str | None = None,
        **save_options: Any,
    ) -> VersionInfo:
        """Save ``obj`` as the next version of model ``name`` and return that version.

        The runtime is detected from the object unless named; the signature
        is inferred from ``sample_input`` unless given; extra keyword
        arguments are the runtime's save options (an unknown one is refused);
        the registry's settings give the defaults of ``prefer_safe``,
        ``onnx_serving_plan`` and ``allow_pickle`` to the runtimes that take them.

        The version is ``unsafe`` when any file the runtime stored is or holds
        a pickle, whatever the runtime said. With pickles off, a file given as
        ``obj`` that is a pickle is refused before anything reads it.
        """
        check_model_name(name)
        if isinstance(obj, os.PathLike):
            path = Path(obj)
            if path.is_file() and is_pickled(path):
                refuse_pickle(self.load_options.allow_pickle, str(path))
        cls = runtime_class(runtime) if runtime else detect_runtime(obj)
        if runtime and isinstance(obj, os.PathLike) and not cls.handles(obj):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"{obj} is not a model file or directory the {cls.name} runtime reads",
            )
        defaults = {
            "prefer_safe": self.prefer_safe_formats,
            "onnx_serving_plan": self.onnx_serving_plans,
            "allow_pickle": self.load_options.allow_pickle,
        }
        with staging_directory(self.staging_dir) as files_dir:
            saved = cls.save(
                obj, files_dir, sample_input=sample_input, defaults=defaults, **save_options
            )
            files = _hash_tree(files_dir)
            if pickled_files(files_dir):
                saved = dataclasses.replace(saved, unsafe=True)
            manifest = saved.to_manifest(
                cls.name,
                files=files,
                task=Task(task) if task else None,
                signature=signature,
                lineage=lineage,
            )
            for file in files:
                self.artifacts.put(files_dir / file.path, file.sha256)
            creator = created_by or self.user
            info = self._add_version(
                name,
                manifest,
                description=description,
                metadata=metadata or {},
                tags=tags or {},
                created_by=creator,
            )
            # Garbage collection, or a deletion, may have removed an object this
            # version shares after it was put and before the row was written:
            # put it back from the staged file while there is one.
            for file in files:
                if not self.artifacts.exists(file.sha256):
                    self.artifacts.put(files_dir / file.path, file.sha256)
        return info

    def _add_version(self, name: str, manifest: Manifest, **fields: Any) -> VersionInfo:
        # A second try if garbage collection removed the model (it had no version
        # yet and was old) between creating it and adding this version.
        for attempt in (1, 2):
            self.store.ensure_model(
                name,
                task=manifest.task.value,
                description=fields["description"],
                created_by=fields["created_by"],
            )
            try:
                return self.store.add_version(name, manifest, **fields)
            except AimassError as exc:
                if exc.code is not ErrorCode.NOT_FOUND or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def copy_version(self, source: Registry, info: VersionInfo) -> VersionInfo:
        """Copy a version of ``source`` here under its own number, with its files and aliases.

        CONFLICT if this registry already has a version with that number.
        """
        files = source.materialize(info)
        for file in info.manifest.files:
            self.artifacts.put(files / file.path, file.sha256)
        model = source.get_model(info.model)
        self.store.ensure_model(
            info.model, task=model.task, description=model.description, created_by=model.created_by
        )
        copied = self.store.add_version(
            info.model,
            info.manifest,
            description=info.description,
            metadata=info.metadata,
            tags=info.tags,
            created_by=info.created_by,
            number=info.version,
        )
        for alias in info.aliases:
            self.set_alias(info.model, alias, info.version)
        return copied

    # -- finding --------------------------------------------------------------

    def get_model(self, name: str) -> ModelInfo:
        """A model's description."""
        return self.store.model(name)

    def list_models(
        self, *, name: str | None = None, tag: str | None = None, task: str | None = None
    ) -> list[ModelInfo]:
        """Models by name (glob or substring), tag (``key`` or ``key=value``) and task.

        INVALID_INPUT for a task that is not one of :class:`Task`'s.
        """
        if task is not None and task not in set(Task):
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"task must be one of {', '.join(Task)}, not {task!r}",
                field="task",
            )
        return self.store.models(name=name, tag=tag, task=task)

    def list_versions(self, name: str, *, include_archived: bool = False) -> list[VersionInfo]:
        """A model's versions, oldest first."""
        return self.store.versions(name, include_archived=include_archived)

    def get_version(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> VersionInfo:
        """A version by number, by alias, or (neither given) the latest ready one."""
        if version is not None and alias is not None:
            raise AimassError(ErrorCode.INVALID_INPUT, "give a version or an alias, not both")
        if alias is not None:
            version = self.store.alias_target(name, alias)
        if version is None:
            return self.store.latest(name)
        return self.store.version(name, version)

    def resolve(self, ref: str | ModelRef) -> VersionInfo:
        """The version a reference names: ``name``, ``name:3`` or ``name@alias``."""
        name, version, alias = ModelRef.parse(ref) if isinstance(ref, str) else ref
        return self.get_version(name, version, alias=alias)

    # -- changing -------------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: int) -> int | None:
        """Move ``alias`` to ``version`` atomically; returns where it pointed before."""
        return self.store.set_alias(name, alias, version, by=self.user)

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove an alias."""
        self.store.delete_alias(name, alias, by=self.user)

    def alias_history(self, name: str) -> list[AliasEvent]:
        """Every alias move of a model."""
        return self.store.alias_history(name)

    def set_tags(self, name: str, tags: Mapping[str, str], *, version: int | None = None) -> None:
        """Tag a model, or one of its versions."""
        self.store.set_tags(name, tags, version=version or 0)

    def delete_tag(self, name: str, key: str, *, version: int | None = None) -> None:
        """Remove a tag from a model or a version."""
        self.store.delete_tag(name, key, version=version or 0)

    def archive_version(self, name: str, version: int) -> VersionInfo:
        """Hide a version from ``latest`` and listings; refused while aliased."""
        return self.store.set_status(name, version, ARCHIVED)

    def restore_version(self, name: str, version: int) -> VersionInfo:
        """Undo :meth:`archive_version`."""
        return self.store.set_status(name, version, READY)

    def delete_version(self, name: str, version: int) -> None:
        """Delete a version and the artifacts no other version shares; refused while aliased."""
        self._collect(self.store.delete_version(name, version))

    def delete_model(self, name: str) -> None:
        """Delete a model and all its versions; refused while it has aliases."""
        self._collect(*self.store.delete_model(name))

    def _collect(self, *removed: Manifest) -> None:
        # A registration that puts one of these objects meanwhile puts it back
        # after writing its version (see register).
        remaining = self.store.all_manifests()
        still_used = {f.sha256 for m in remaining for f in m.files}
        cached = {_cache_key(m.files) for m in remaining}
        for manifest in removed:
            if _cache_key(manifest.files) not in cached:
                shutil.rmtree(self.cache_dir / _cache_key(manifest.files), ignore_errors=True)
            for file in manifest.files:
                if file.sha256 not in still_used:
                    self.artifacts.delete(file.sha256)

    # -- loading --------------------------------------------------------------

    def load(
        self, name: str, version: int | None = None, *, alias: str | None = None
    ) -> LoadedModel:
        """Load a version (by number, alias, or the latest) ready to predict.

        With pickles off, a version whose files hold a pickle is refused before
        its runtime opens anything, unless the runtime says it serves without
        unpickling (an ONNX serving plan) and guards the pickle itself.
        """
        info = self.get_version(name, version, alias=alias)
        cls = runtime_class(info.manifest.runtime)
        directory = self.materialize(info)
        if not self.load_options.allow_pickle and cls.unpickles_on_load(info.manifest):
            # The files, not only the manifest: versions saved before the
            # manifest said so may hold pickles it does not mention.
            found = pickled_files(directory)
            if found or info.manifest.unsafe:
                what = f"{found[0]} of model {info.ref}" if found else f"model {info.ref}"
                refuse_pickle(self.load_options.allow_pickle, what)
        runtime = cls.load(directory, info.manifest, self.load_options)
        return LoadedModel(info.model, info.version, runtime)

    def materialize(self, info: VersionInfo) -> Path:
        """A local directory holding the version's files, every sha256 verified."""
        files = info.manifest.files
        target = self.cache_dir / _cache_key(files)
        if target.is_dir() and all(
            (target / f.path).is_file() and sha256_of(target / f.path) == f.sha256 for f in files
        ):
            return target
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=self.cache_dir, prefix=".incoming-"))
        try:
            for file in files:
                dest = staging / file.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                self.artifacts.fetch(file.sha256, dest)
            shutil.rmtree(target, ignore_errors=True)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return target


def _cache_key(files: tuple[ArtifactFile, ...]) -> str:
    return hashlib.sha256("".join(f"{f.path}\0{f.sha256}\n" for f in files).encode()).hexdigest()


def _hash_tree(root: Path) -> tuple[ArtifactFile, ...]:
    files = sorted(p for p in root.rglob("*") if p.is_file())
    if not files:
        raise AimassError(ErrorCode.INTERNAL, "the runtime saved no files")
    return tuple(
        ArtifactFile(
            path=p.relative_to(root).as_posix(), sha256=sha256_of(p), size=p.stat().st_size
        )
        for p in files
    )
