"""Promotion gate requirements: parsing and checking."""

from __future__ import annotations

import pytest

from aimass.errors import AimassError, ErrorCode
from aimass.lifecycle.gates import Requirement


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("f1_macro>=0.95", Requirement("f1_macro", ">=", 0.95)),
        (" rmse < 2.5 ", Requirement("rmse", "<", 2.5)),
        ("accuracy==1", Requirement("accuracy", "==", 1.0)),
        ("r2>-1e-3", Requirement("r2", ">", -0.001)),
    ],
)
def test_parse(text: str, expected: Requirement) -> None:
    assert Requirement.parse(text) == expected


@pytest.mark.parametrize("text", ["f1_macro", "f1_macro=>0.9", ">=0.9", "f1 macro>=1", "a>=x"])
def test_malformed_requirements_are_invalid_input(text: str) -> None:
    with pytest.raises(AimassError) as caught:
        Requirement.parse(text)
    assert caught.value.code is ErrorCode.INVALID_INPUT


def test_check_gives_the_reason() -> None:
    gate = Requirement.parse("f1_macro>=0.95")
    assert gate.check({"f1_macro": 0.95}) is None
    assert gate.check({"f1_macro": 0.9}) == "f1_macro is 0.9, required >=0.95"
    assert gate.check({"accuracy": 1.0}) == "f1_macro was not recorded (recorded: accuracy)"
    assert Requirement.parse("rmse<=1").check({"rmse": 1.5}) == "rmse is 1.5, required <=1"
