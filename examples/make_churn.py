"""Writes churn.csv and churn_new.csv: synthetic customers with categorical and missing values.

Run from this directory (``python make_churn.py``); the seed is fixed, so the
files come out the same every time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def customers(rows: int, seed: int) -> pd.DataFrame:
    """Customers whose churn depends on contract, tenure, charges and support calls."""
    rng = np.random.default_rng(seed)
    contract = rng.choice(["month-to-month", "one-year", "two-year"], rows, p=[0.5, 0.3, 0.2])
    payment = rng.choice(["card", "bank-transfer", "electronic-check"], rows)
    tenure = rng.integers(1, 72, rows).astype(float)
    charges = np.round(rng.normal(70, 20, rows).clip(20, 130), 2)
    calls = rng.poisson(1.5, rows)
    score = (
        -1.0
        + 1.8 * (contract == "month-to-month")
        - 1.2 * (contract == "two-year")
        + 0.7 * (payment == "electronic-check")
        - 0.04 * tenure
        + 0.02 * (charges - 70)
        + 0.5 * calls
    )
    churned = rng.random(rows) < 1 / (1 + np.exp(-score))
    frame = pd.DataFrame(
        {
            "contract": contract,
            "payment_method": payment,
            "tenure_months": tenure,
            "monthly_charges": charges,
            "support_calls": calls,
            "churned": np.where(churned, "yes", "no"),
        }
    )
    # Missing values, as real exports have them.
    for column, share in (
        ("tenure_months", 0.08),
        ("monthly_charges", 0.05),
        ("payment_method", 0.06),
    ):
        frame.loc[rng.random(rows) < share, column] = None
    return frame


if __name__ == "__main__":
    customers(600, seed=7).to_csv("churn.csv", index=False)
    customers(200, seed=8).to_csv("churn_new.csv", index=False)
