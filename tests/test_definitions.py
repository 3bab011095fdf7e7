"""One definition per business concept, with hand-computed answers."""

from __future__ import annotations

import ibis
import pandas as pd
import pytest

from segmentation import definitions as d
from segmentation.data import to_pandas


def _features(**cols):
    return pd.DataFrame(cols, index=pd.Index([f"c{i}" for i in range(len(next(iter(cols.values()))))], name="customer_id"))


def test_status_uses_each_customers_own_rhythm():
    f = _features(
        frequency=[5, 5, 5, 1, 1, 2],
        ipi_mean_days=[10, 10, 10, None, None, 40],
        recency_days=[15, 25, 31, 60, 200, 59],
    )
    # repeat buyers' usual gaps 10, 10, 10, 40 -> median 10 for one-order customers
    status = d.customer_status(f).astype(str).tolist()
    # silence in usual gaps: 1.5, 2.5, 3.1, 6, 20, 1.475
    assert status == ["active", "lapsing", "lapsed", "lapsed", "lapsed", "active"]
    loose = d.customer_status(f, lapsing_after=3, lapsed_after=10).astype(str).tolist()
    assert loose == ["active", "active", "lapsing", "lapsing", "lapsed", "active"]


def test_usual_gap_floor_and_default():
    f = _features(frequency=[3, 1], ipi_mean_days=[2.0, None], recency_days=[1, 1])
    assert d.usual_gap_days(f).tolist() == [7.0, 7.0]  # never below a week
    nobody = _features(frequency=[1, 1], ipi_mean_days=[None, None], recency_days=[100, 300])
    assert d.usual_gap_days(nobody).tolist() == [90.0, 90.0]
    assert d.customer_status(nobody).astype(str).tolist() == ["active", "lapsed"]


def test_repeat_and_new():
    f = _features(frequency=[1, 2, 7], tenure_days=[10, 91, 400])
    assert d.is_repeat_buyer(f).tolist() == [False, True, True]
    assert d.is_new_customer(f).tolist() == [True, False, False]
    assert d.is_new_customer(f, new_customer_days=100).tolist() == [True, True, False]


def test_a_return_document_is_not_an_order():
    lines = pd.DataFrame({
        "customer_id": ["a", "a", "a", "b"], "order_id": ["1", "1", "R1", "2"],
        "order_date": pd.to_datetime(["2025-01-01", "2025-01-01", "2025-01-05", "2025-01-02"]),
        "amount": [10.0, 5.0, -10.0, 3.0], "quantity": [1.0, 1.0, -1.0, 1.0], "is_return": [False, False, True, False],
        "category": ["x", "y", "x", "x"],
    })
    orders = to_pandas(d.orders(ibis.memtable(lines), with_categories=True)).sort_values("order_id")
    assert orders["order_id"].tolist() == ["1", "2"]
    assert orders["value"].tolist() == [15.0, 3.0] and orders["categories"].tolist() == [2, 1]


def test_bad_thresholds():
    with pytest.raises(ValueError, match="lapsing_after < lapsed_after"):
        d.customer_status(_features(frequency=[1], ipi_mean_days=[None], recency_days=[1]), lapsing_after=3, lapsed_after=2)
