"""Training data: read a CSV, a Parquet file or a bundled data set, and fingerprint it.

A file is read whole (:func:`read_table`, for training and evaluation) or in
chunks of rows (:func:`read_chunks`, for batch scoring), so that a file larger
than memory streams through. The fingerprint (a sha256 over the rows, the
column names and their types, plus the shape) is what a run and a version
record, so two runs can be told to have seen the same data, or not, without
keeping the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.spec import DataSpec
from aimass.runtimes.loading import require

__all__ = [
    "DataFingerprint",
    "Dataset",
    "check_columns",
    "fingerprint",
    "load_dataset",
    "read_chunks",
    "read_table",
]

_CSV = (".csv",)
_PARQUET = (".parquet", ".pq")


class DataFingerprint(BaseModel):
    """What identifies a data set: a content hash and its shape."""

    model_config = ConfigDict(frozen=True)

    sha256: str
    rows: int
    columns: int
    source: str


@dataclass(frozen=True)
class Dataset:
    """Feature columns and the target, as pandas objects."""

    features: Any  # pandas.DataFrame
    target: Any  # pandas.Series
    source: str

    @property
    def target_name(self) -> str:
        """The target column's name."""
        return str(self.target.name)


def _table_format(path: Path) -> str:
    """``csv`` or ``parquet``, from the suffix of a data file that exists."""
    if not path.is_file():
        raise AimassError(ErrorCode.NOT_FOUND, f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix in _CSV:
        return "csv"
    if suffix in _PARQUET:
        return "parquet"
    raise AimassError(
        ErrorCode.INVALID_INPUT, f"{path}: data files must be .csv or .parquet, not '{suffix}'"
    )


def _unreadable(path: Path, exc: Exception) -> AimassError:
    return AimassError(ErrorCode.INVALID_INPUT, f"cannot read {path}: {exc}")


def _missing_as_nan(frame: Any) -> Any:
    """Parquet's missing text reads as None, a CSV's as NaN: NaN both ways, one marker to impute."""
    text = [name for name, dtype in frame.dtypes.items() if dtype.kind == "O"]
    if text:
        frame[text] = frame[text].where(frame[text].notna(), float("nan"))
    return frame


def read_table(path: Path) -> Any:
    """A CSV or Parquet file as a data frame."""
    pd = require("pandas", "sklearn")
    kind = _table_format(path)
    try:
        return pd.read_csv(path) if kind == "csv" else _missing_as_nan(pd.read_parquet(path))
    except (ValueError, OSError, ImportError) as exc:
        raise _unreadable(path, exc) from None


def read_chunks(
    path: Path, rows: int, *, dtypes: Mapping[str, Any] | None = None
) -> Iterator[tuple[Any, float]]:
    """A CSV or Parquet file as data frames of at most ``rows`` rows, each with the share read.

    ``dtypes`` fixes the type of CSV columns it names, so that every chunk
    reads a column alike (a chunk whose text column is all missing would
    otherwise read as numbers); Parquet files carry their own types.
    """
    pd = require("pandas", "sklearn")
    kind = _table_format(path)
    try:
        if kind == "parquet":
            parquet = require("pyarrow.parquet", "lifecycle")
            source = parquet.ParquetFile(path)
            total, done = max(source.metadata.num_rows, 1), 0
            for batch in source.iter_batches(batch_size=rows):
                done += batch.num_rows
                yield _missing_as_nan(batch.to_pandas()), done / total
            return
        size = max(path.stat().st_size, 1)
        with path.open("rb") as handle:
            reader = pd.read_csv(handle, chunksize=rows, dtype=dict(dtypes or {}))
            for chunk in reader:
                yield chunk, min(handle.tell() / size, 1.0)
    except (ValueError, OSError) as exc:
        raise _unreadable(path, exc) from None


def check_columns(present: Sequence[Any], needed: Sequence[str], source: str) -> None:
    """INVALID_INPUT naming the columns a model needs that ``present`` lacks."""
    have = {str(c) for c in present}
    missing = [c for c in needed if c not in have]
    if missing:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{source}: the model needs column(s) {missing}")


def split_target(frame: Any, target: str, columns: list[str] | None, source: str) -> Dataset:
    """Separate the target column from the features (all others, or ``columns``)."""
    if target not in frame.columns:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{source}: no target column '{target}'; columns are {list(map(str, frame.columns))}",
        )
    wanted = columns if columns is not None else [c for c in frame.columns if c != target]
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{source}: no column(s) {missing}")
    if frame[target].isna().any():
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"{source}: the target column '{target}' has missing values"
        )
    return Dataset(features=frame[wanted].copy(), target=frame[target].copy(), source=source)


def load_dataset(spec: DataSpec) -> Dataset:
    """The data a spec names."""
    if spec.dataset is not None:
        require("sklearn", "sklearn")
        from sklearn import datasets

        loaded = getattr(datasets, f"load_{spec.dataset}")(as_frame=True)
        frame = loaded.frame
        return split_target(frame, spec.target or "target", spec.columns, f"sklearn:{spec.dataset}")
    assert spec.path is not None  # the spec checked that one source is given
    frame = read_table(spec.path)
    assert spec.target is not None
    return split_target(frame, spec.target, spec.columns, str(spec.path))


def fingerprint(data: Dataset) -> DataFingerprint:
    """A content hash of features and target, with the data's shape."""
    pd = require("pandas", "sklearn")
    frame = data.features.assign(**{f"__target__{data.target_name}": data.target.to_numpy()})
    digest = hashlib.sha256()
    for name, dtype in frame.dtypes.items():
        digest.update(f"{name}\0{dtype}\n".encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    rows, columns = data.features.shape
    return DataFingerprint(
        sha256=digest.hexdigest(), rows=int(rows), columns=int(columns), source=data.source
    )
