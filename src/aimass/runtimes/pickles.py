"""Pickles: which files are (or hold) one, and whether an object pickles to something portable.

A version is ``unsafe`` when any of its files is a pickle, whatever runtime or
import path wrote it, so the registry asks :func:`pickled_files` of what was
actually stored rather than trusting each writer to say so. A file is found
by its bytes, never by unpickling it: a pickle stream of protocol 2 or later
(joblib, cloudpickle, torch's legacy format), the same compressed the way
joblib compresses, a NumPy array of Python objects, or a zip archive (torch
``.pt``/``.pt2``/TorchScript, ``.npz``) with such a member.

:func:`refuse_unportable` walks an object the way pickle would, without
writing anything, and refuses references that only the registering process
can resolve: functions and classes of ``__main__``, lambdas, and anything
defined inside a function.
"""

from __future__ import annotations

import bz2
import lzma
import pickle
import pickletools
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from aimass.errors import AimassError, ErrorCode

__all__ = ["is_pickled", "pickled_files", "refuse_unportable"]

_HEAD = 16
_OPCODES = frozenset(op.code for op in pickletools.opcodes)
_NPY_MAGIC = b"\x93NUMPY"
# Compressed streams joblib writes, by their magic bytes: each gives the first
# bytes of what it holds.
_DECOMPRESSORS: dict[bytes, Callable[[bytes], bytes]] = {
    b"\x1f\x8b": lambda data: zlib.decompressobj(wbits=31).decompress(data, _HEAD),
    b"BZh": lambda data: bz2.BZ2Decompressor().decompress(data, _HEAD),
    b"\xfd7zXZ\x00": lambda data: lzma.LZMADecompressor().decompress(data, _HEAD),
    b"\x5d\x00\x00": lambda data: lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(data, _HEAD),
}


def _is_pickle_head(head: bytes) -> bool:
    # Protocol 2+ streams open with PROTO, their protocol number and another
    # opcode; the opcode tells them from a safetensors file, whose little-endian
    # header length can begin with the same two bytes but goes on with zeros.
    return (
        len(head) >= 3
        and head[0] == 0x80
        and 2 <= head[1] <= pickle.HIGHEST_PROTOCOL
        and chr(head[2]) in _OPCODES
        and not _is_safetensors(head)
    )


def _is_safetensors(head: bytes) -> bool:
    return len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 32


def _is_object_npy(head: bytes) -> bool:
    return head.startswith(_NPY_MAGIC) and b"'descr': '|O'" in head


def _stream_holds_pickle(stream: IO[bytes]) -> bool:
    head = stream.read(256)
    if _is_pickle_head(head) or _is_object_npy(head):
        return True
    for magic, decompress in _DECOMPRESSORS.items():
        if head.startswith(magic):
            try:
                return _is_pickle_head(decompress(head + stream.read(1 << 16)))
            except (OSError, EOFError, lzma.LZMAError, zlib.error):
                return False
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        try:
            return _is_pickle_head(zlib.decompressobj().decompress(head, _HEAD))
        except zlib.error:
            return False
    return False


def is_pickled(path: Path) -> bool:
    """Whether the file at ``path`` is a pickle or an archive holding one (read, not loaded)."""
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                for member in archive.infolist():
                    if member.filename.endswith((".pkl", ".pickle")):
                        return True
                    with archive.open(member) as stream:
                        if _stream_holds_pickle(stream):
                            return True
        except (zipfile.BadZipFile, OSError, NotImplementedError):
            return False
        return False
    with path.open("rb") as stream:
        return _stream_holds_pickle(stream)


def pickled_files(root: Path) -> list[str]:
    """The files under ``root`` (a file or a directory) that are or hold pickles, relative."""
    if root.is_file():
        return [root.name] if is_pickled(root) else []
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and is_pickled(p)
    )


class _Discard:
    def write(self, data: bytes) -> int:
        return len(data)


def _where(obj: Any) -> str | None:
    """Why ``obj`` (a function or class) cannot be imported by another process, or None."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(qualname, str) or not (isinstance(obj, type) or callable(obj)):
        return None
    kind = "class" if isinstance(obj, type) else "function"
    if qualname == "<lambda>" or qualname.endswith(".<lambda>"):
        return f"a lambda (in {module})"
    if module == "__main__":
        return f"{kind} {qualname} of __main__"
    if "<locals>" in qualname:
        return f"{kind} {qualname}, defined inside a function"
    return None


class _Walker(pickle.Pickler):
    """Pickles into nothing, stopping at the first reference another process cannot import."""

    def reducer_override(self, obj: Any) -> Any:
        problem = _where(obj)
        if problem is not None:
            raise _Unportable(problem)
        return NotImplemented


class _Unportable(Exception):
    pass


def refuse_unportable(obj: Any, hint: str) -> None:
    """UNSUPPORTED if ``obj`` refers to code only this process can import; ``hint`` ends it."""
    try:
        # Protocol 5 hands large buffers (arrays) to the callback instead of copying them.
        _Walker(_Discard(), protocol=5, buffer_callback=lambda _: None).dump(obj)
    except _Unportable as exc:
        raise AimassError(
            ErrorCode.UNSUPPORTED,
            f"the model refers to {exc}, which no other process can import: {hint}",
        ) from None
    except (pickle.PicklingError, TypeError, AttributeError) as exc:
        raise AimassError(ErrorCode.UNSUPPORTED, f"the model cannot be saved: {exc}") from None
