"""From a spec to one scikit-learn Pipeline: preprocessing, feature selection, estimator.

The whole Pipeline is what gets registered, so a served request goes through
the same imputation, scaling and encoding the model was trained behind.
Step and estimator classes come from a table of known names or a dotted path
inside scikit-learn, XGBoost, LightGBM or aimass itself; a spec cannot make
aimass import anything else. The steps are named so that tuning spaces can
address them: ``features`` (a ColumnTransformer with ``numeric`` and
``categorical`` sub-pipelines), one step per selector (its class name in lower
case, ``selectkbest``), and ``model``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from aimass.contract.signature import Task
from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.spec import ColumnGroupSpec, EstimatorSpec, FeaturesSpec, Step, TrainSpec
from aimass.runtimes.loading import require

__all__ = ["build_estimator", "build_pipeline", "extras_of", "fit", "task_of"]

_TRANSFORMERS: dict[str, str] = {
    "SimpleImputer": "sklearn.impute",
    "KNNImputer": "sklearn.impute",
    "StandardScaler": "sklearn.preprocessing",
    "MinMaxScaler": "sklearn.preprocessing",
    "RobustScaler": "sklearn.preprocessing",
    "MaxAbsScaler": "sklearn.preprocessing",
    "Normalizer": "sklearn.preprocessing",
    "OneHotEncoder": "sklearn.preprocessing",
    "OrdinalEncoder": "sklearn.preprocessing",
    "PolynomialFeatures": "sklearn.preprocessing",
    "PowerTransformer": "sklearn.preprocessing",
    "QuantileTransformer": "sklearn.preprocessing",
    "KBinsDiscretizer": "sklearn.preprocessing",
    "SelectKBest": "sklearn.feature_selection",
    "SelectPercentile": "sklearn.feature_selection",
    "VarianceThreshold": "sklearn.feature_selection",
    "PCA": "sklearn.decomposition",
}

_ESTIMATORS: dict[str, str] = {
    "LogisticRegression": "sklearn.linear_model",
    "LinearRegression": "sklearn.linear_model",
    "Ridge": "sklearn.linear_model",
    "Lasso": "sklearn.linear_model",
    "ElasticNet": "sklearn.linear_model",
    "SGDClassifier": "sklearn.linear_model",
    "DecisionTreeClassifier": "sklearn.tree",
    "DecisionTreeRegressor": "sklearn.tree",
    "RandomForestClassifier": "sklearn.ensemble",
    "RandomForestRegressor": "sklearn.ensemble",
    "ExtraTreesClassifier": "sklearn.ensemble",
    "ExtraTreesRegressor": "sklearn.ensemble",
    "GradientBoostingClassifier": "sklearn.ensemble",
    "GradientBoostingRegressor": "sklearn.ensemble",
    "HistGradientBoostingClassifier": "sklearn.ensemble",
    "HistGradientBoostingRegressor": "sklearn.ensemble",
    "KNeighborsClassifier": "sklearn.neighbors",
    "KNeighborsRegressor": "sklearn.neighbors",
    "SVC": "sklearn.svm",
    "SVR": "sklearn.svm",
    "GaussianNB": "sklearn.naive_bayes",
    "XGBClassifier": "xgboost",
    "XGBRegressor": "xgboost",
    "LGBMClassifier": "lightgbm",
    "LGBMRegressor": "lightgbm",
    "TorchClassifier": "aimass.lifecycle.torch_estimator",
    "TorchRegressor": "aimass.lifecycle.torch_estimator",
}

# Which pip extra brings each top-level package; a dotted path must start with one.
_EXTRAS = {"sklearn": "sklearn", "xgboost": "xgboost", "lightgbm": "lightgbm", "aimass": "torch"}

_SCORE_FUNCTIONS = (
    "f_classif",
    "f_regression",
    "chi2",
    "mutual_info_classif",
    "mutual_info_regression",
)


def _resolve(name: str, table: dict[str, str], what: str) -> type[Any]:
    if name in table:
        module, attr = table[name], name
    elif "." in name:
        module, _, attr = name.rpartition(".")
    else:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"unknown {what} '{name}'; known: {', '.join(sorted(table))}, "
            "or a dotted path inside scikit-learn, xgboost or lightgbm",
        )
    top = module.split(".")[0]
    if top not in _EXTRAS or (top == "aimass" and module != "aimass.lifecycle.torch_estimator"):
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"{what} '{name}': only classes from scikit-learn, xgboost, lightgbm "
            "and aimass's torch estimators may be named",
        )
    require(top if top != "aimass" else "torch", _EXTRAS[top])
    try:
        found = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        raise AimassError(ErrorCode.INVALID_INPUT, f"{what} '{name}' does not exist") from None
    if not inspect.isclass(found):
        raise AimassError(ErrorCode.INVALID_INPUT, f"{what} '{name}' is not a class")
    return found


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    resolved = dict(params or {})
    score = resolved.get("score_func")
    if isinstance(score, str):
        if score not in _SCORE_FUNCTIONS:
            raise AimassError(
                ErrorCode.INVALID_INPUT,
                f"unknown score_func '{score}'; known: {', '.join(_SCORE_FUNCTIONS)}",
            )
        from sklearn import feature_selection

        resolved["score_func"] = getattr(feature_selection, score)
    return resolved


def _instantiate(cls: type[Any], params: dict[str, Any], what: str) -> Any:
    try:
        return cls(**params)
    except TypeError as exc:
        raise AimassError(ErrorCode.INVALID_INPUT, f"{what} {cls.__name__}: {exc}") from None


def _step(step: Step) -> tuple[str, Any]:
    ((name, params),) = step.items()
    cls = _resolve(name, _TRANSFORMERS, "step")
    return cls.__name__.lower(), _instantiate(cls, _params(params), "step")


def build_estimator(spec: EstimatorSpec, seed: int) -> Any:
    """The estimator a spec names, seeded with ``random_state`` when it takes one."""
    cls = _resolve(spec.name, _ESTIMATORS, "estimator")
    params = dict(spec.params)
    if "random_state" in inspect.signature(cls).parameters and "random_state" not in params:
        params["random_state"] = seed
    return _instantiate(cls, params, "estimator")


def _group_columns(group: ColumnGroupSpec, numeric: bool, frame: Any) -> list[str]:
    if group.columns != "auto":
        missing = [c for c in group.columns if c not in frame.columns]
        if missing:
            raise AimassError(ErrorCode.INVALID_INPUT, f"features: no column(s) {missing}")
        return list(group.columns)
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    return [
        str(c)
        for c in frame.columns
        if (is_numeric_dtype(frame[c]) and not is_bool_dtype(frame[c])) == numeric
    ]


def _features(spec: FeaturesSpec, frame: Any) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    transformers = []
    assigned: set[str] = set()
    for group_name, group in (("numeric", spec.numeric), ("categorical", spec.categorical)):
        if group is None:
            continue
        columns = _group_columns(group, group_name == "numeric", frame)
        assigned.update(columns)
        steps = [_step(s) for s in group.steps]
        body = Pipeline(steps) if steps else "passthrough"
        transformers.append((group_name, body, columns))
    left = [str(c) for c in frame.columns if c not in assigned]
    if left:
        raise AimassError(
            ErrorCode.INVALID_INPUT,
            f"features: column(s) {left} are in no group; add them to 'numeric' or "
            "'categorical' (or leave out 'columns' for 'auto'), or drop them with data.columns",
        )
    # Dense output so every estimator (torch included) takes it as is.
    return ColumnTransformer(transformers, sparse_threshold=0.0)


def build_pipeline(spec: TrainSpec, frame: Any) -> Any:
    """The unfitted Pipeline for ``spec``, with columns resolved against ``frame``."""
    require("sklearn", "sklearn")
    from sklearn.pipeline import Pipeline

    steps: list[tuple[str, Any]] = []
    if spec.features is not None:
        if spec.features.numeric is not None or spec.features.categorical is not None:
            steps.append(("features", _features(spec.features, frame)))
        steps.extend(_step(s) for s in spec.features.select)
    steps.append(("model", build_estimator(spec.estimator, spec.seed)))
    names = [name for name, _ in steps]
    if len(set(names)) != len(names):
        raise AimassError(ErrorCode.INVALID_INPUT, f"two pipeline steps share a name: {names}")
    return Pipeline(steps)


def fit(estimator: Any, features: Any, target: Any) -> Any:
    """``estimator.fit(features, target)``, a refusal of the spec told as INVALID_INPUT.

    scikit-learn and its kin raise ValueError for parameters that do not go
    together (an elasticnet penalty with the liblinear solver) and for data
    the estimator cannot take: the spec's mistake, to be told in one line.
    """
    try:
        return estimator.fit(features, target)
    except ValueError as exc:
        steps = getattr(estimator, "steps", None)
        final = steps[-1][1] if steps else estimator
        raise AimassError(
            ErrorCode.INVALID_INPUT, f"fitting {type(final).__name__} failed: {exc}"
        ) from exc


def task_of(pipeline: Any) -> Task:
    """Classification or regression, from the final estimator."""
    from sklearn.base import is_classifier, is_regressor

    if is_classifier(pipeline):
        return Task.CLASSIFICATION
    if is_regressor(pipeline):
        return Task.REGRESSION
    raise AimassError(
        ErrorCode.INVALID_INPUT, "the estimator is neither a classifier nor a regressor"
    )


def extras_of(spec: EstimatorSpec) -> list[str]:
    """The pip extras a trained pipeline needs to load (for build files)."""
    cls = _resolve(spec.name, _ESTIMATORS, "estimator")
    top = cls.__module__.split(".")[0]
    return sorted({"sklearn", _EXTRAS.get(top, "sklearn")})
