"""Missing values served as training and ``aimass evaluate`` handled them, over real HTTP."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from aimass.lifecycle.assessment import assess
from aimass.lifecycle.evaluate import frame_inputs
from aimass.lifecycle.runs import RunStore
from aimass.lifecycle.spec import load_spec
from aimass.lifecycle.train import Trainer, TrainResult
from aimass.registry import Registry

EXAMPLES = Path(__file__).parents[3] / "examples"
NEW = EXAMPLES / "churn_new.csv"


@pytest.fixture(scope="module")
def churn(lc_registry: Registry, runs: RunStore) -> TrainResult:
    return Trainer(lc_registry, runs).train(load_spec(EXAMPLES / "churn.yaml"))


@pytest.fixture(scope="module")
def new_rows(churn: TrainResult) -> pd.DataFrame:
    frame = pd.read_csv(NEW)
    return frame[[s.name for s in churn.version.manifest.signature.inputs]]


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _json_request(churn: TrainResult, rows: pd.DataFrame) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": spec.name,
                "datatype": spec.datatype.value,
                "shape": [len(rows)],
                "data": [_json_value(v) for v in rows[spec.name].tolist()],
            }
            for spec in churn.version.manifest.signature.inputs
        ]
    }


def _evaluated(lc_registry: Registry, churn: TrainResult, rows: pd.DataFrame) -> Any:
    """The probabilities ``aimass evaluate`` scores: the version's runtime on the read frame."""
    model = lc_registry.load("churn", churn.version.version)
    return model.predict_named(frame_inputs(model, rows))["probabilities"]


def test_the_signature_says_which_inputs_may_be_missing(churn: TrainResult, base_url: str) -> None:
    nullable = {s.name: s.nullable for s in churn.version.manifest.signature.inputs}
    assert nullable == {
        "contract": False,
        "payment_method": True,
        "tenure_months": True,
        "monthly_charges": True,
        "support_calls": False,
    }
    meta = httpx.get(f"{base_url}/v2/models/churn/versions/{churn.version.version}").json()
    shown = {t["name"]: t.get("parameters", {}).get("nullable", False) for t in meta["inputs"]}
    assert shown == nullable


def test_served_answers_equal_evaluate_on_every_row_of_churn_new(
    churn: TrainResult,
    new_rows: pd.DataFrame,
    lc_registry: Registry,
    runs: RunStore,
    base_url: str,
) -> None:
    assert new_rows["payment_method"].isna().sum() == 6  # the rows the issue names
    expected = _evaluated(lc_registry, churn, new_rows)
    url = f"{base_url}/v2/models/churn/versions/{churn.version.version}/infer"
    response = httpx.post(url, json=_json_request(churn, new_rows), timeout=30)
    assert response.status_code == 200, response.text
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    served = np.array(outputs["probabilities"]["data"]).reshape(-1, 2)
    assert len(served) == len(new_rows) == 200
    for row, (got, want) in enumerate(zip(served, expected, strict=True)):
        np.testing.assert_array_equal(got, want, err_msg=f"row {row} of {NEW.name}")
    # And aimass evaluate's own numbers are those of the served answers.
    from sklearn.metrics import log_loss

    evaluation = assess(lc_registry, runs, f"churn:{churn.version.version}", NEW).evaluation
    truth = pd.read_csv(NEW)["churned"]
    assert evaluation.metrics["log_loss"] == pytest.approx(
        log_loss(truth, served, labels=["no", "yes"]), rel=1e-12
    )


def test_a_missing_category_is_imputed_not_an_unknown_category(
    churn: TrainResult, new_rows: pd.DataFrame, lc_registry: Registry, base_url: str
) -> None:
    row = new_rows[new_rows["payment_method"].isna()].head(1)
    url = f"{base_url}/v2/models/churn/versions/{churn.version.version}/infer"
    answer = httpx.post(url, json=_json_request(churn, row)).json()
    proba = {o["name"]: o for o in answer["outputs"]}["probabilities"]["data"]
    np.testing.assert_array_equal(proba, _evaluated(lc_registry, churn, row)[0])
    empty = _json_request(churn, row.fillna({"payment_method": ""}))
    unknown = {o["name"]: o for o in httpx.post(url, json=empty).json()["outputs"]}
    assert unknown["probabilities"]["data"] != proba  # "" is a value, not a missing one


def test_binary_bytes_list_their_missing_positions(
    churn: TrainResult, new_rows: pd.DataFrame, lc_registry: Registry, base_url: str
) -> None:
    from tritonclient.utils import serialize_byte_tensor

    header: dict[str, Any] = {"inputs": [], "outputs": [{"name": "probabilities"}]}
    chunks: list[bytes] = []
    for spec in churn.version.manifest.signature.inputs:
        column = new_rows[spec.name]
        if spec.datatype.value == "BYTES":
            gaps = column.isna().to_numpy()
            texts = np.array([b"" if g else v.encode() for g, v in zip(gaps, column, strict=True)])
            raw = serialize_byte_tensor(texts.astype(object)).item()
            parameters: dict[str, Any] = {"missing": np.flatnonzero(gaps).tolist()}
        else:
            raw = column.to_numpy().tobytes()  # missing numbers travel as NaN
            parameters = {}
        parameters["binary_data_size"] = len(raw)
        header["inputs"].append(
            {
                "name": spec.name,
                "datatype": spec.datatype.value,
                "shape": [len(column)],
                "parameters": parameters,
            }
        )
        chunks.append(raw)
    head = json.dumps(header).encode()
    response = httpx.post(
        f"{base_url}/v2/models/churn/versions/{churn.version.version}/infer",
        content=head + b"".join(chunks),
        headers={"Inference-Header-Content-Length": str(len(head))},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    served = np.array(response.json()["outputs"][0]["data"]).reshape(-1, 2)
    np.testing.assert_array_equal(served, _evaluated(lc_registry, churn, new_rows))


@pytest.mark.parametrize(
    ("name", "datatype", "message"),
    [
        ("contract", "BYTES", "input 'contract' has missing values (null)"),
        ("support_calls", "INT64", "INT64 data cannot hold null"),
    ],
)
def test_null_for_an_input_that_may_not_be_missing_is_a_400_naming_it(
    churn: TrainResult,
    new_rows: pd.DataFrame,
    base_url: str,
    name: str,
    datatype: str,
    message: str,
) -> None:
    body = _json_request(churn, new_rows.head(2))
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            assert tensor["datatype"] == datatype
            tensor["data"][1] = None
    url = f"{base_url}/v2/models/churn/versions/{churn.version.version}/infer"
    response = httpx.post(url, json=body)
    assert response.status_code == 400
    assert message in response.json()["error"]
