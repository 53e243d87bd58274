"""The training spec: what ``aimass train spec.yaml`` reads, as typed, validated models.

A spec names the model to register, the data (a CSV or Parquet file, or a
scikit-learn bundled data set), the preprocessing and feature steps, the
estimator, the held-out split, the cross-validation scheme, the metrics, an
optional tuning space and the model card's intended-use fields::

    name: iris
    data: {dataset: iris}
    features:
      numeric:
        steps: [{StandardScaler: {}}]
    estimator: {name: LogisticRegression, params: {max_iter: 500}}
    cv: {folds: 5}

Unknown keys are errors, so a typo never silently falls back to a default.
Relative data paths are resolved against the spec file's directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aimass.errors import AimassError, ErrorCode

__all__ = [
    "CVSpec",
    "CardSpec",
    "ColumnGroupSpec",
    "DataSpec",
    "EstimatorSpec",
    "FeaturesSpec",
    "ParamSpace",
    "SplitSpec",
    "Step",
    "TrainSpec",
    "TuneSpec",
    "load_spec",
]

BUNDLED_DATASETS = ("iris", "wine", "breast_cancer", "digits", "diabetes")
"""The scikit-learn data sets a spec may name with ``data: {dataset: …}``."""


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid")


Step = dict[str, dict[str, Any] | None]
"""One step, ``{ClassName: {param: value}}``: a mapping with exactly one key."""


def _check_steps(steps: list[Step]) -> list[Step]:
    for step in steps:
        if len(step) != 1:
            raise ValueError(
                f"a step is one mapping {{ClassName: {{params}}}}, got keys {sorted(step)}"
            )
    return steps


class DataSpec(_Spec):
    """Where the training data comes from and which column is the target."""

    path: Path | None = Field(default=None, description="A .csv or .parquet file")
    dataset: str | None = Field(
        default=None, description=f"A scikit-learn bundled data set: {', '.join(BUNDLED_DATASETS)}"
    )
    target: str | None = Field(
        default=None, description="The target column (bundled data sets: 'target')"
    )
    columns: list[str] | None = Field(
        default=None, description="Feature columns to use (default: every other column)"
    )

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if (self.path is None) == (self.dataset is None):
            raise ValueError("give exactly one of 'path' (a CSV or Parquet file) or 'dataset'")
        if self.dataset is not None and self.dataset not in BUNDLED_DATASETS:
            raise ValueError(
                f"unknown dataset '{self.dataset}'; known: {', '.join(BUNDLED_DATASETS)}"
            )
        if self.path is not None and self.target is None:
            raise ValueError("a data file needs 'target': the column to predict")
        return self


class ColumnGroupSpec(_Spec):
    """A group of columns and the steps applied to them, in order."""

    columns: list[str] | Literal["auto"] = Field(
        default="auto",
        description="Column names, or 'auto' (numeric: number columns; categorical: the rest)",
    )
    steps: list[Step] = Field(default_factory=list)

    _steps = field_validator("steps")(_check_steps)


class FeaturesSpec(_Spec):
    """Preprocessing per column group, then feature selection over the result."""

    numeric: ColumnGroupSpec | None = None
    categorical: ColumnGroupSpec | None = None
    select: list[Step] = Field(default_factory=list, description="Selectors, e.g. SelectKBest")

    _select = field_validator("select")(_check_steps)


class EstimatorSpec(_Spec):
    """The model: a class name from the known table or a dotted path, and its parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class SplitSpec(_Spec):
    """The held-out test split that every run is evaluated on."""

    test_size: float = Field(default=0.2, gt=0, lt=1)
    stratify: bool = Field(default=True, description="Stratify by class (classification only)")


class CVSpec(_Spec):
    """K-fold cross-validation on the training part; stratified for classifiers by default."""

    folds: int = Field(default=5, ge=2)
    stratified: bool | None = Field(default=None, description="Default: yes for classification")
    shuffle: bool = True


class ParamSpace(_Spec):
    """One tunable parameter: a float or int range, or a set of choices."""

    type: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _bounds(self) -> ParamSpace:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs 'choices'")
        elif self.low is None or self.high is None or self.low > self.high:
            raise ValueError(f"a {self.type} parameter needs 'low' <= 'high'")
        return self


class TuneSpec(_Spec):
    """A hyper-parameter search: the space, the objective, and its budget."""

    metric: str = Field(description="The cross-validated metric to optimise, e.g. f1_macro")
    direction: Literal["maximize", "minimize"] | None = Field(
        default=None, description="Default: minimize for errors and log loss, else maximize"
    )
    trials: int | None = Field(default=20, ge=1)
    timeout_s: float | None = Field(default=None, gt=0)
    space: dict[str, ParamSpace] = Field(
        description="Pipeline parameter (model__C, selectkbest__k, …) -> its range"
    )


class CardSpec(_Spec):
    """The model card's human fields."""

    intended_use: str = ""
    out_of_scope: str = ""
    limitations: str = ""
    ethical_considerations: str = ""
    owners: list[str] = Field(default_factory=list)


class TrainSpec(_Spec):
    """Everything a training run needs."""

    name: str = Field(description="The model to register the trained pipeline as")
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    data: DataSpec
    features: FeaturesSpec | None = None
    estimator: EstimatorSpec
    split: SplitSpec = Field(default_factory=SplitSpec)
    cv: CVSpec | None = None
    metrics: list[str] | None = Field(default=None, description="Default: all for the task")
    tune: TuneSpec | None = None
    card: CardSpec = Field(default_factory=CardSpec)
    seed: int = 0

    def resolved(self, base: Path) -> TrainSpec:
        """The spec with a relative data path made relative to ``base``."""
        if self.data.path is None or self.data.path.is_absolute():
            return self
        data = self.data.model_copy(update={"path": base / self.data.path})
        return self.model_copy(update={"data": data})


def load_spec(path: Path) -> TrainSpec:
    """Read and validate a YAML spec; INVALID_INPUT names the first problem found."""
    if not path.is_file():
        raise AimassError(ErrorCode.NOT_FOUND, f"spec {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{path}: not valid YAML: {exc}") from None
    return parse_spec(raw, source=str(path)).resolved(path.parent)


def parse_spec(raw: Any, *, source: str = "spec") -> TrainSpec:
    """Validate a spec given as a mapping (what the YAML file holds)."""
    if not isinstance(raw, dict):
        raise AimassError(ErrorCode.INVALID_INPUT, f"{source}: expected a mapping at the top")
    try:
        return TrainSpec.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "spec"
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{source}: {where}: {first['msg']}",
            field=where,
        ) from None
