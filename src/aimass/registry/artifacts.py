"""Content-addressed artifact stores: a local directory, or S3-compatible storage.

An object's key is the sha256 of its bytes, so an upload can never overwrite a
different file, identical files are stored once, and every read can be
verified. Local writes go to a temporary file that is fsynced and renamed into
place, so a crash leaves either the whole object or nothing (and perhaps a
partial ``.incoming-*`` file, which :mod:`aimass.registry.gc` removes).

Putting an object that is already stored refreshes its modification time:
garbage collection only removes objects older than its grace period, so an
object a registration in flight has just put is never old, even when its bytes
were stored long ago.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typing_extensions import override

from aimass.contract.manifest import sha256_of
from aimass.errors import AimassError, ErrorCode

_log = logging.getLogger(__name__)

__all__ = [
    "ArtifactStore",
    "LocalArtifactStore",
    "S3ArtifactStore",
    "StoredObject",
    "open_artifact_store",
]

_CHUNK = 1 << 20
_PARTIAL = ".incoming-"


@dataclass(frozen=True)
class StoredObject:
    """One entry of a store: a complete object (named by its sha256) or a partial upload."""

    name: str
    """The sha256 of a complete object, the file name of a partial one."""
    key: str
    """Where it is inside the store."""
    size: int
    modified: float
    """POSIX time it was written or last put."""
    partial: bool = False


class ArtifactStore(ABC):
    """Where artifact bytes live, addressed by their sha256."""

    @abstractmethod
    def put(self, path: Path, sha256: str) -> None:
        """Store the file at ``path`` whose content hash is ``sha256`` (no-op if present)."""

    @abstractmethod
    def fetch(self, sha256: str, dest: Path) -> None:
        """Write the object to ``dest`` and verify it; INTEGRITY if missing or corrupted."""

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether the object is stored."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the object if present."""

    @abstractmethod
    def objects(self) -> Iterator[StoredObject]:
        """Everything stored, partial uploads included."""

    @abstractmethod
    def delete_if_older(self, item: StoredObject, cutoff: float) -> bool:
        """Remove ``item`` unless it was put at ``cutoff`` or later (checked just before)."""

    @property
    @abstractmethod
    def url(self) -> str:
        """Where this store is, for messages and ``aimass info``."""


def _verify(path: Path, sha256: str, where: str) -> None:
    actual = sha256_of(path)
    if actual != sha256:
        path.unlink(missing_ok=True)
        raise AimassError(
            ErrorCode.INTEGRITY,
            f"artifact {sha256[:12]}… in {where} is corrupted (its sha256 is now {actual[:12]}…); "
            "the model version cannot be trusted and was not loaded",
            sha256=sha256,
        )


def _missing(sha256: str, where: str) -> AimassError:
    return AimassError(
        ErrorCode.INTEGRITY,
        f"artifact {sha256[:12]}… is missing from {where}; the model version cannot be loaded",
        sha256=sha256,
    )


class LocalArtifactStore(ArtifactStore):
    """Objects as files under ``root/objects/ab/abcdef…``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        (root / "objects").mkdir(parents=True, exist_ok=True)

    @property
    @override
    def url(self) -> str:
        return str(self.root)

    def _object(self, sha256: str) -> Path:
        return self.root / "objects" / sha256[:2] / sha256

    @override
    def put(self, path: Path, sha256: str) -> None:
        target = self._object(sha256)
        if target.exists():
            try:
                os.utime(target)
                return
            except FileNotFoundError:
                pass  # garbage collection removed it just now: store it again
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=_PARTIAL)
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                shutil.copyfileobj(src, out, _CHUNK)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)

    @override
    def fetch(self, sha256: str, dest: Path) -> None:
        source = self._object(sha256)
        if not source.exists():
            raise _missing(sha256, self.url)
        shutil.copyfile(source, dest)
        _verify(dest, sha256, self.url)

    @override
    def exists(self, sha256: str) -> bool:
        return self._object(sha256).exists()

    @override
    def delete(self, sha256: str) -> None:
        self._object(sha256).unlink(missing_ok=True)

    @override
    def objects(self) -> Iterator[StoredObject]:
        objects = self.root / "objects"
        for path in objects.glob("*/*"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue  # removed while listing
            yield StoredObject(
                path.name,
                path.relative_to(objects).as_posix(),
                stat.st_size,
                stat.st_mtime,
                partial=path.name.startswith(_PARTIAL),
            )

    @override
    def delete_if_older(self, item: StoredObject, cutoff: float) -> bool:
        path = self.root / "objects" / item.key
        try:
            if path.stat().st_mtime >= cutoff:
                return False
            path.unlink()
        except FileNotFoundError:
            return False
        return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3ArtifactStore(ArtifactStore):
    """Objects under ``s3://bucket/prefix/objects/<sha256>`` on any S3-compatible server."""

    def __init__(self, bucket: str, prefix: str = "", *, endpoint_url: str | None = None) -> None:
        try:
            import boto3
        except ImportError as exc:
            raise AimassError(
                ErrorCode.MISSING_EXTRA,
                "S3 artifact storage needs boto3: pip install 'aimass[s3]'",
                extra="s3",
            ) from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client: Any = boto3.client("s3", endpoint_url=endpoint_url)

    @property
    @override
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")

    def _key(self, sha256: str) -> str:
        return "/".join(p for p in (self.prefix, "objects", sha256) if p)

    @override
    def put(self, path: Path, sha256: str) -> None:
        if self.exists(sha256):
            # Copied onto itself to refresh its LastModified (see the module's docstring).
            key = self._key(sha256)
            try:
                self._client.copy_object(
                    Bucket=self.bucket,
                    Key=key,
                    CopySource={"Bucket": self.bucket, "Key": key},
                    MetadataDirective="REPLACE",
                )
                return
            except Exception:  # removed between the check and the copy: upload it again
                _log.debug("refreshing %s failed; uploading it again", key, exc_info=True)
        # S3 makes an object visible only once its upload completed: no partial objects.
        self._client.upload_file(str(path), self.bucket, self._key(sha256))

    @override
    def fetch(self, sha256: str, dest: Path) -> None:
        from botocore.exceptions import ClientError

        try:
            self._client.download_file(self.bucket, self._key(sha256), str(dest))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                raise _missing(sha256, self.url) from None
            raise
        _verify(dest, sha256, self.url)

    @override
    def exists(self, sha256: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.head_object(Bucket=self.bucket, Key=self._key(sha256))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    @override
    def delete(self, sha256: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(sha256))

    @override
    def objects(self) -> Iterator[StoredObject]:
        # S3 shows an object only once its upload completed: there are no partial ones.
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key("") + "/"
        )
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"].rsplit("/", 1)[-1]
                yield StoredObject(
                    name, item["Key"], int(item["Size"]), item["LastModified"].timestamp()
                )

    @override
    def delete_if_older(self, item: StoredObject, cutoff: float) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self._client.head_object(Bucket=self.bucket, Key=item.key)
        except ClientError:
            return False
        if head["LastModified"].timestamp() >= cutoff:
            return False
        self._client.delete_object(Bucket=self.bucket, Key=item.key)
        return True


def open_artifact_store(url: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """The store for ``url``: ``s3://bucket/prefix``, ``file:///path`` or a plain path."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3ArtifactStore(bucket, prefix, endpoint_url=s3_endpoint_url)
    if url.startswith("file://"):
        url = url[len("file://") :]
    return LocalArtifactStore(Path(url).expanduser())
