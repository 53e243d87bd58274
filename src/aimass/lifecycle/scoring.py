"""Batch scoring: a data file through a registered version, as served, into a table of answers.

This is what ``aimass predict MODEL data.csv --out scored.parquet`` does. The
version is loaded as the server loads it (:meth:`Registry.load`), each chunk
of rows becomes the version's named inputs as evaluation makes them
(:func:`~aimass.lifecycle.evaluate.frame_inputs`), and the signature is
enforced before the runtime sees them. No target column is needed.

The answer is the input's columns, every one kept as it was (a target column
too: the model is not given it, so scores and truth sit side by side),
followed by the model's outputs: one column per output, a matrix output one
column per entry (``name_0``, ``name_1``…), and a classifier's probabilities
one column per class (``probability_<label>``). Rows stream through in
chunks, so a file larger than memory scores and progress can be told.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel, ConfigDict

from aimass.contract.runtime import Arrays
from aimass.contract.signature import Datatype
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.data import check_columns, read_chunks
from aimass.lifecycle.evaluate import frame_inputs
from aimass.registry import Registry
from aimass.runtimes.loading import require
from aimass.runtimes.model import LoadedModel

__all__ = ["BatchPrediction", "BatchScoring", "predict_file", "predict_frame"]

CHUNK_ROWS = 10_000
"""Rows scored at a time unless told otherwise."""

ProgressSink = Callable[[str, float], None]
"""Told, after each chunk, how many rows are done and the share of the file read."""


class BatchPrediction(BaseModel):
    """What a batch scoring did: the version, the rows, where they went and their columns."""

    model_config = ConfigDict(frozen=True)

    model: str
    rows: int
    out: str | None
    columns: list[str]


def predict_frame(model: LoadedModel, frame: Any, *, ignore: Sequence[str] = ()) -> Any:
    """``frame`` with the version's outputs after its own columns, one row of answers per row.

    A version that records its columns takes those and no others; one that
    takes a matrix takes every column but those in ``ignore`` (a target).
    """
    columns = model.manifest.options.get("columns")
    if columns is not None:
        check_columns(frame.columns, columns, "the data")
        features = frame
    else:
        features = frame.drop(columns=[c for c in ignore if c in frame.columns])
    scored = _output_columns(model, model.predict_named(frame_inputs(model, features)))
    taken = [name for name in scored if name in {str(c) for c in frame.columns}]
    if taken:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"the data already has column(s) {taken}, which the model's outputs are named; "
            "rename them",
        )
    return frame.assign(**scored)


def _output_columns(model: LoadedModel, outputs: Arrays) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for name, value in outputs.items():
        if value.ndim == 1 or (value.ndim == 2 and value.shape[1] == 1):
            columns[name] = value.reshape(len(value))
        elif value.ndim == 2:
            labels = model.runtime.labels() if name == "probabilities" else None
            if labels is not None and len(labels) == value.shape[1]:
                names = [f"probability_{label}" for label in labels]
            else:
                names = [f"{name}_{i}" for i in range(value.shape[1])]
            columns.update(zip(names, value.T, strict=True))
        else:
            raise AimassError(
                ErrorCode.UNSUPPORTED,
                f"{model.ref}'s output {name!r} has shape {list(value.shape)}; "
                "a table holds outputs of one or two dimensions",
            )
    return columns


def _csv_types(model: LoadedModel) -> dict[str, Any]:
    """Each named input's column type, so every chunk of a CSV reads it as the signature says."""
    if model.manifest.options.get("columns") is None:
        return {}
    return {
        spec.name: object if spec.datatype is Datatype.BYTES else spec.datatype.numpy
        for spec in model.manifest.signature.inputs
    }


class _Sink:
    """Where scored chunks go: a text stream (CSV), or a CSV or Parquet file.

    A file is written beside its destination and renamed when every row is in,
    so a failed run leaves no half-written answer under the asked-for name.
    """

    def __init__(self, out: Path | TextIO) -> None:
        self.out = out
        self.kind = "csv"
        self.partial: Path | None = None
        self._stream: TextIO | None = None
        self._started = False
        self._parquet: Any = None
        if not isinstance(out, Path):
            self._stream = out
        else:
            suffix = out.suffix.lower()
            if suffix not in (".csv", ".parquet", ".pq"):
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"{out}: scores are written as .csv or .parquet, not '{suffix}'",
                )
            self.kind = "csv" if suffix == ".csv" else "parquet"
            if self.kind == "parquet":
                require("pyarrow.parquet", "lifecycle")
            self.partial = out.with_name(out.name + ".partial")

    def write(self, frame: Any) -> None:
        """Append one chunk of scored rows."""
        if self.kind == "parquet":
            self._write_parquet(frame)
            return
        if self._stream is None:
            assert self.partial is not None  # no stream: a file
            self._stream = self.partial.open("w", encoding="utf-8", newline="")
        frame.to_csv(self._stream, header=not self._started, index=False)
        self._started = True

    def _write_parquet(self, frame: Any) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        if self._parquet is None:
            self._parquet = pq.ParquetWriter(self.partial, table.schema)
        else:
            try:
                table = table.cast(self._parquet.schema)
            except (ValueError, TypeError) as exc:  # pyarrow's ArrowInvalid, ArrowTypeError
                raise AimassError(
                    ErrorCode.INVALID_INPUT,
                    f"a column changed type between chunks, which Parquet cannot hold: {exc}",
                ) from None
        self._parquet.write_table(table)

    def close(self, *, keep: bool) -> None:
        """Finish the file and give it its name (``keep``), or remove what was written."""
        if self._parquet is not None:
            self._parquet.close()
        if self.partial is None:
            if self._stream is not None:
                self._stream.flush()
            return
        if self._stream is not None:
            self._stream.close()
        assert isinstance(self.out, Path)
        if not keep:
            self.partial.unlink(missing_ok=True)
        elif self.partial.exists():
            self.partial.replace(self.out)
        else:  # no rows at all: an empty file says so
            self.out.write_bytes(b"")


class BatchScoring:
    """One scoring of a file, checked before any row is scored, then run.

    Opening it resolves and loads the version, checks where the scores go
    and reads the first chunk, so that an unknown model, a missing file or
    missing columns are told before a progress bar starts.
    """

    def __init__(
        self,
        registry: Registry,
        ref: str,
        data: Path,
        out: Path | TextIO,
        *,
        chunk_rows: int = CHUNK_ROWS,
    ) -> None:
        info = registry.resolve(ref)
        self._sink = _Sink(out)
        self.model = registry.load(info.model, info.version)
        self.out = out
        target = (info.metadata.get("training") or {}).get("target")
        self._ignore = [target] if target else []
        self._chunks = read_chunks(data, chunk_rows, dtypes=_csv_types(self.model))
        self._first = next(self._chunks, None)
        columns = self.model.manifest.options.get("columns")
        if self._first is not None and columns is not None:
            check_columns(self._first[0].columns, columns, str(data))

    def run(self, progress: ProgressSink | None = None) -> BatchPrediction:
        """Score every chunk into the output; told to ``progress`` after each."""
        rows, columns = 0, []
        chunks = chain([self._first] if self._first is not None else [], self._chunks)
        try:
            for chunk, share in chunks:
                if len(chunk) == 0:
                    continue
                scored = predict_frame(self.model, chunk, ignore=self._ignore)
                self._sink.write(scored)
                rows += len(scored)
                columns = [str(c) for c in scored.columns]
                if progress is not None:
                    progress(f"{rows} rows", share)
        except BaseException:
            self._sink.close(keep=False)
            raise
        self._sink.close(keep=True)
        return BatchPrediction(
            model=self.model.ref,
            rows=rows,
            out=str(self.out) if isinstance(self.out, Path) else None,
            columns=columns,
        )


def predict_file(
    registry: Registry,
    ref: str,
    data: Path,
    out: Path | TextIO,
    *,
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressSink | None = None,
) -> BatchPrediction:
    """Score every row of the file ``data`` with the version ``ref`` names, into ``out``.

    ``out`` is a ``.csv`` or ``.parquet`` path, or a text stream that gets CSV.
    """
    return BatchScoring(registry, ref, data, out, chunk_rows=chunk_rows).run(progress)
