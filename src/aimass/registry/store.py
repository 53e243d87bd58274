"""The registry's metadata on SQL: models, versions, aliases, tags.

Version numbers come from a per-model counter bumped by an ``UPDATE`` that is
the first statement of the registering transaction, so the database's own row
(PostgreSQL) or write (SQLite) lock orders concurrent registrations and no two
ever get the same number, even across processes, and a deleted number is
never handed out again.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from aimass.contract.manifest import Manifest
from aimass.contract.reference import MAX_NUMBER, check_alias
from aimass.db.base import utcnow
from aimass.db.database import SqlStore
from aimass.errors import AimassError, ErrorCode
from aimass.registry.records import AliasEvent, ModelInfo, VersionInfo
from aimass.registry.tables import AliasEventRow, AliasRow, ModelRow, TagRow, VersionRow

__all__ = ["MetadataStore"]

READY = "ready"
ARCHIVED = "archived"


class MetadataStore(SqlStore):
    """All registry reads and writes that touch the database."""

    # -- models ---------------------------------------------------------------

    def ensure_model(self, name: str, *, task: str, description: str, created_by: str) -> None:
        """Create the model row unless it exists (a concurrent creator may win the race)."""
        try:
            with self._tx() as session:
                if session.scalar(select(ModelRow.id).where(ModelRow.name == name)) is not None:
                    return
                session.add(
                    ModelRow(name=name, task=task, description=description, created_by=created_by)
                )
        except IntegrityError:
            pass  # a concurrent creator won the race: the model exists, as wanted

    def model(self, name: str) -> ModelInfo:
        """One model's description; NOT_FOUND if there is no such model."""
        with self._tx() as session:
            return self._model_info(session, self._model_row(session, name))

    def models(
        self, *, name: str | None = None, tag: str | None = None, task: str | None = None
    ) -> list[ModelInfo]:
        """Models whose name matches a glob or substring, carrying a tag, of a task."""
        with self._tx() as session:
            query = select(ModelRow).order_by(ModelRow.name)
            if task:
                query = query.where(ModelRow.task == task)
            if tag:
                key, has_value, value = tag.partition("=")
                tagged = select(TagRow.model_id).where(TagRow.key == key)
                if has_value:
                    tagged = tagged.where(TagRow.value == value)
                query = query.where(ModelRow.id.in_(tagged))
            rows = list(session.scalars(query))
            if name:
                pattern = name if any(c in name for c in "*?[") else f"*{name}*"
                rows = [r for r in rows if fnmatch.fnmatchcase(r.name, pattern)]
            return [self._model_info(session, row) for row in rows]

    def delete_model(self, name: str) -> list[Manifest]:
        """Delete a model with all its versions; refused while an alias points into it."""
        with self._tx() as session:
            row = self._model_row(session, name)
            aliases = list(
                session.scalars(select(AliasRow.name).where(AliasRow.model_id == row.id))
            )
            if aliases:
                raise AimassError(
                    ErrorCode.CONFLICT,
                    f"model '{name}' still has aliases {sorted(aliases)}; remove them first",
                )
            manifests = [
                Manifest.model_validate(v.manifest)
                for v in session.scalars(select(VersionRow).where(VersionRow.model_id == row.id))
            ]
            for table in (TagRow, AliasEventRow, VersionRow):
                session.execute(delete(table).where(table.model_id == row.id))
            session.delete(row)
            return manifests

    def empty_models(self, created_before: datetime) -> list[str]:
        """Models created before ``created_before`` that have no version (a killed registration)."""
        with self._tx() as session:
            return list(
                session.scalars(
                    select(ModelRow.name)
                    .where(ModelRow.created_at < created_before, ~_has_versions())
                    .order_by(ModelRow.name)
                )
            )

    def delete_empty_model(self, name: str, created_before: datetime) -> bool:
        """Delete the model if it still has no version; whether it did, in one transaction."""
        with self._tx() as session:
            model_id = session.scalar(
                select(ModelRow.id)
                .where(
                    ModelRow.name == name, ModelRow.created_at < created_before, ~_has_versions()
                )
                .with_for_update()
            )
            if model_id is None:
                return False
            # The row is locked now, so this statement's fresh look at the versions
            # sees any version added before the lock; tags go with it (ON DELETE CASCADE).
            gone = session.execute(
                delete(ModelRow).where(ModelRow.id == model_id, ~_has_versions())
            )
            return bool(gone.rowcount)  # type: ignore[attr-defined]

    # -- versions -------------------------------------------------------------

    def add_version(
        self,
        name: str,
        manifest: Manifest,
        *,
        description: str,
        metadata: Mapping[str, Any],
        tags: Mapping[str, str],
        created_by: str,
        number: int | None = None,
    ) -> VersionInfo:
        """Append a version with the next number of its model, in one transaction.

        With ``number``, the version takes that number instead (a copy from
        another registry keeps its own) and later ones count on from it;
        CONFLICT if the model already has it.
        """
        counter = (
            ModelRow.last_version + 1
            if number is None
            else case((ModelRow.last_version < number, number), else_=ModelRow.last_version)
        )
        with self._tx() as session:
            bumped = session.execute(
                update(ModelRow).where(ModelRow.name == name).values(last_version=counter)
            )
            if bumped.rowcount != 1:  # type: ignore[attr-defined]
                raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' not found")
            model_id, last = session.execute(
                select(ModelRow.id, ModelRow.last_version).where(ModelRow.name == name)
            ).one()
            if number is None:
                number = last
            elif session.scalar(
                select(VersionRow.id).where(
                    VersionRow.model_id == model_id, VersionRow.number == number
                )
            ):
                raise AimassError(
                    ErrorCode.CONFLICT, f"model '{name}' already has a version {number}"
                )
            session.add(
                VersionRow(
                    model_id=model_id,
                    number=number,
                    status=READY,
                    description=description,
                    manifest=manifest.model_dump(mode="json"),
                    extra=dict(metadata),
                    created_by=created_by,
                )
            )
            for key, value in tags.items():
                session.add(TagRow(model_id=model_id, version=number, key=key, value=str(value)))
            session.flush()
            return self._version_info(
                session, name, self._version_row(session, model_id, name, number)
            )

    def version(self, name: str, number: int) -> VersionInfo:
        """One version; NOT_FOUND names the model or the version that is missing."""
        with self._tx() as session:
            model = self._model_row(session, name)
            return self._version_info(
                session, name, self._version_row(session, model.id, name, number)
            )

    def latest(self, name: str) -> VersionInfo:
        """The newest version that is not archived."""
        with self._tx() as session:
            model = self._model_row(session, name)
            row = session.scalar(
                select(VersionRow)
                .where(VersionRow.model_id == model.id, VersionRow.status == READY)
                .order_by(VersionRow.number.desc())
                .limit(1)
            )
            if row is None:
                raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' has no version to serve")
            return self._version_info(session, name, row)

    def versions(self, name: str, *, include_archived: bool = False) -> list[VersionInfo]:
        """All versions of a model, oldest first."""
        with self._tx() as session:
            model = self._model_row(session, name)
            query = select(VersionRow).where(VersionRow.model_id == model.id)
            if not include_archived:
                query = query.where(VersionRow.status == READY)
            rows = session.scalars(query.order_by(VersionRow.number))
            return [self._version_info(session, name, row) for row in rows]

    def all_manifests(self) -> list[Manifest]:
        """Every stored manifest, to tell which artifacts are still referenced."""
        with self._tx() as session:
            return [
                Manifest.model_validate(m) for m in session.scalars(select(VersionRow.manifest))
            ]

    def set_status(self, name: str, number: int, status: str) -> VersionInfo:
        """Archive (or restore) a version; archiving is refused while an alias points at it."""
        with self._tx() as session:
            model = self._model_row(session, name)
            row = self._version_row(session, model.id, name, number)
            if status == ARCHIVED:
                self._refuse_if_aliased(session, model.id, name, number, "archive")
            row.status = status
            return self._version_info(session, name, row)

    def delete_version(self, name: str, number: int) -> Manifest:
        """Delete a version's record; refused while an alias points at it."""
        with self._tx() as session:
            model = self._model_row(session, name)
            row = self._version_row(session, model.id, name, number)
            self._refuse_if_aliased(session, model.id, name, number, "delete")
            session.execute(
                delete(TagRow).where(TagRow.model_id == model.id, TagRow.version == number)
            )
            session.delete(row)
            return Manifest.model_validate(row.manifest)

    # -- aliases and tags -----------------------------------------------------

    def alias_target(self, name: str, alias: str) -> int:
        """The version number an alias points at."""
        with self._tx() as session:
            model = self._model_row(session, name)
            number = session.scalar(
                select(AliasRow.version).where(
                    AliasRow.model_id == model.id, AliasRow.name == alias
                )
            )
            if number is None:
                raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' has no alias '{alias}'")
            return number

    def set_alias(self, name: str, alias: str, number: int, *, by: str) -> int | None:
        """Point ``alias`` at a version and record the move; returns the previous target."""
        check_alias(alias)
        with self._tx() as session:
            model = self._model_row(session, name)
            if self._version_row(session, model.id, name, number).status != READY:
                raise AimassError(
                    ErrorCode.CONFLICT,
                    f"version {number} of '{name}' is archived; restore it first",
                )
            row = session.get(AliasRow, (model.id, alias), with_for_update=True)
            previous = row.version if row else None
            if row is None:
                session.add(AliasRow(model_id=model.id, name=alias, version=number, updated_by=by))
            else:
                row.version, row.updated_by, row.updated_at = number, by, utcnow()
            session.add(
                AliasEventRow(
                    model_id=model.id, alias=alias, from_version=previous, to_version=number, by=by
                )
            )
            return previous

    def delete_alias(self, name: str, alias: str, *, by: str) -> None:
        """Remove an alias and record it."""
        with self._tx() as session:
            model = self._model_row(session, name)
            row = session.get(AliasRow, (model.id, alias), with_for_update=True)
            if row is None:
                raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' has no alias '{alias}'")
            session.add(
                AliasEventRow(
                    model_id=model.id, alias=alias, from_version=row.version, to_version=None, by=by
                )
            )
            session.delete(row)

    def alias_history(self, name: str) -> list[AliasEvent]:
        """Every alias move of a model, oldest first."""
        with self._tx() as session:
            model = self._model_row(session, name)
            rows = session.scalars(
                select(AliasEventRow)
                .where(AliasEventRow.model_id == model.id)
                .order_by(AliasEventRow.id)
            )
            return [
                AliasEvent(
                    alias=r.alias,
                    from_version=r.from_version,
                    to_version=r.to_version,
                    at=r.at,
                    by=r.by,
                )
                for r in rows
            ]

    def set_tags(self, name: str, tags: Mapping[str, str], *, version: int = 0) -> None:
        """Set tags on a model (version 0) or a version; an empty value is kept as is."""
        with self._tx() as session:
            model = self._model_row(session, name)
            if version:
                self._version_row(session, model.id, name, version)
            for key, value in tags.items():
                row = session.scalar(
                    select(TagRow).where(
                        TagRow.model_id == model.id, TagRow.version == version, TagRow.key == key
                    )
                )
                if row is None:
                    session.add(TagRow(model_id=model.id, version=version, key=key, value=value))
                else:
                    row.value = value

    def delete_tag(self, name: str, key: str, *, version: int = 0) -> None:
        """Remove one tag; NOT_FOUND if it is not there."""
        with self._tx() as session:
            model = self._model_row(session, name)
            if not 0 <= version <= MAX_NUMBER:  # 0 is the model's own tags
                raise AimassError(ErrorCode.NOT_FOUND, f"no tag '{key}' on '{name}'")
            result = session.execute(
                delete(TagRow).where(
                    TagRow.model_id == model.id, TagRow.version == version, TagRow.key == key
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                raise AimassError(ErrorCode.NOT_FOUND, f"no tag '{key}' on '{name}'")

    # -- helpers --------------------------------------------------------------

    @staticmethod
    def _model_row(session: Session, name: str) -> ModelRow:
        row = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if row is None:
            raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' not found")
        return row

    @staticmethod
    def _version_row(session: Session, model_id: int, name: str, number: int) -> VersionRow:
        # Past MAX_NUMBER the database would refuse the comparison (500), not find nothing.
        row = (
            session.scalar(
                select(VersionRow).where(
                    VersionRow.model_id == model_id, VersionRow.number == number
                )
            )
            if 1 <= number <= MAX_NUMBER
            else None
        )
        if row is None:
            raise AimassError(ErrorCode.NOT_FOUND, f"model '{name}' has no version {number}")
        return row

    @staticmethod
    def _refuse_if_aliased(
        session: Session, model_id: int, name: str, number: int, action: str
    ) -> None:
        aliases = list(
            session.scalars(
                select(AliasRow.name).where(
                    AliasRow.model_id == model_id, AliasRow.version == number
                )
            )
        )
        if aliases:
            raise AimassError(
                ErrorCode.CONFLICT,
                f"cannot {action} {name}:{number}: aliases {sorted(aliases)} point at it",
            )

    @staticmethod
    def _tags(session: Session, model_id: int, version: int) -> dict[str, str]:
        rows = session.execute(
            select(TagRow.key, TagRow.value).where(
                TagRow.model_id == model_id, TagRow.version == version
            )
        )
        return {key: value for key, value in rows}

    def _model_info(self, session: Session, row: ModelRow) -> ModelInfo:
        aliases = session.execute(
            select(AliasRow.name, AliasRow.version).where(AliasRow.model_id == row.id)
        )
        latest, count = session.execute(
            select(func.max(VersionRow.number), func.count(VersionRow.id)).where(
                VersionRow.model_id == row.id, VersionRow.status == READY
            )
        ).one()
        return ModelInfo(
            name=row.name,
            description=row.description,
            task=row.task,
            tags=self._tags(session, row.id, 0),
            latest_tags={} if latest is None else self._tags(session, row.id, latest),
            aliases={a: v for a, v in aliases},
            latest_version=latest,
            version_count=count,
            created_at=row.created_at,
            created_by=row.created_by,
        )

    def _version_info(self, session: Session, name: str, row: VersionRow) -> VersionInfo:
        aliases = session.scalars(
            select(AliasRow.name).where(
                AliasRow.model_id == row.model_id, AliasRow.version == row.number
            )
        )
        return VersionInfo(
            model=name,
            version=row.number,
            status=row.status,
            description=row.description,
            manifest=Manifest.model_validate(row.manifest),
            tags=self._tags(session, row.model_id, row.number),
            metadata=row.extra,
            aliases=sorted(aliases),
            created_at=row.created_at,
            created_by=row.created_by,
        )


def _has_versions() -> Any:
    return select(VersionRow.id).where(VersionRow.model_id == ModelRow.id).exists()
