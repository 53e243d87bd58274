"""Garbage collection: remove what killed registrations and deletions left behind.

Debris is: artifact objects no version references, partial ``.incoming-*``
uploads, staging directories no live registration holds, partial downloads in
the load cache, and models with no version (a registration killed between
creating the model and adding its version). :func:`collect_garbage` lists it
and, asked to, removes it.

Safe while servers run and registrations are in flight, because only debris
older than a grace period (``registry.gc_grace_minutes``, an hour by default)
is touched, and:

- Every object a registration uses was put, or refreshed by putting it again,
  after it started, so an in-flight registration's objects are never old; the
  stores re-check the age just before deleting.
- The references are read in one transaction *after* the objects are listed:
  a version written before that read keeps its objects.
- A registration checks after writing its version that its objects are still
  there and puts back any that a collection (or a deletion) removed meanwhile.
- A staging directory is removed only when its lock can be taken (the live
  registration's process holds it until it ends), and a model only if it still
  has no version with its row locked (see :meth:`MetadataStore.delete_empty_model`).
"""

from __future__ import annotations

import shutil
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from aimass.registry.registry import Registry
from aimass.registry.staging import abandoned_staging, remove_staging, tree_size

__all__ = ["Debris", "GcReport", "collect_garbage"]

Kind = Literal["object", "partial", "staging", "cache", "model"]


class Debris(BaseModel):
    """One thing garbage collection found: what it is, where, and its bytes."""

    kind: Kind
    name: str
    bytes: int


class GcReport(BaseModel):
    """What a collection found and whether it removed it."""

    removed: bool
    grace_minutes: float
    items: list[Debris]
    bytes: int


def collect_garbage(registry: Registry, *, grace_minutes: float, remove: bool) -> GcReport:
    """List the registry's debris older than ``grace_minutes``; with ``remove``, remove it.

    With ``remove``, the report holds only what was removed: an item that was
    used again meanwhile (put again, locked, given a version) is kept.
    """
    cutoff = time.time() - grace_minutes * 60
    stored = [item for item in registry.artifacts.objects() if item.modified < cutoff]
    referenced = {f.sha256 for m in registry.store.all_manifests() for f in m.files}
    objects = [item for item in stored if item.partial or item.name not in referenced]
    staging = list(abandoned_staging(registry.staging_dir, cutoff))
    cache = _partial_downloads(registry.cache_dir, cutoff)
    models = registry.store.empty_models(datetime.fromtimestamp(cutoff, UTC))

    found: list[tuple[Debris, bool]] = []
    for item in objects:
        kept = remove and not registry.artifacts.delete_if_older(item, cutoff)
        kind: Kind = "partial" if item.partial else "object"
        found.append((Debris(kind=kind, name=item.name, bytes=item.size), kept))
    for path in staging:
        debris = Debris(kind="staging", name=str(path), bytes=tree_size(path))
        found.append((debris, remove and not remove_staging(path)))
    for path in cache:
        debris = Debris(kind="cache", name=str(path), bytes=tree_size(path))
        if remove:
            shutil.rmtree(path, ignore_errors=True)
        found.append((debris, False))
    for name in models:
        removed = remove and registry.store.delete_empty_model(
            name, datetime.fromtimestamp(cutoff, UTC)
        )
        found.append((Debris(kind="model", name=name, bytes=0), remove and not removed))
    items = [debris for debris, kept in found if not kept]
    return GcReport(
        removed=remove,
        grace_minutes=grace_minutes,
        items=items,
        bytes=sum(d.bytes for d in items),
    )


def _partial_downloads(cache_dir: Path, cutoff: float) -> list[Path]:
    if not cache_dir.is_dir():
        return []
    found = []
    for path in cache_dir.glob(".incoming-*"):
        try:
            if path.stat().st_mtime < cutoff:
                found.append(path)
        except FileNotFoundError:
            continue
    return found
