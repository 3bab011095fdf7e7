"""Customer features and the lifetime-model summary on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation.features import behaviour_columns, customer_features, demographics, encode_demographics, lifetime_summary


def _tx() -> pd.DataFrame:
    rows = [
        # customer a: 3 orders (Mon 09:00, Sat 13:00 two lines, Wed 19:00), one return, one discount
        ("a", "1", "2025-01-06 09:00", "p1", "fresh", 2, 5.0, 0.0, "store"),
        ("a", "2", "2025-01-11 13:00", "p1", "fresh", 1, 5.0, 0.0, "online"),
        ("a", "2", "2025-01-11 13:00", "p2", "treats", 1, 10.0, 2.0, "online"),
        ("a", "3", "2025-01-22 19:00", "p3", "treats", 4, 5.0, 0.0, "store"),
        ("a", "R2", "2025-01-25 10:00", "p2", "treats", -1, 10.0, 0.0, "online"),
        # customer b: one order
        ("b", "4", "2025-01-20 23:30", "p1", "fresh", 1, 4.0, 0.0, "app"),
        # after as_of: must not count
        ("a", "5", "2025-03-01 10:00", "p9", "fresh", 100, 100.0, 0.0, "store"),
        ("c", "6", "2025-03-02 10:00", "p9", "fresh", 1, 1.0, 0.0, "store"),
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "product_id", "category",
                                     "quantity", "unit_price", "discount", "channel"])
    return df.assign(order_date=pd.to_datetime(df["order_date"]))


AS_OF = "2025-02-01"


def test_rfm_and_behaviour_known_answers():
    f = customer_features(_tx(), AS_OF)
    assert list(f.index) == ["a", "b"]  # c only buys after as_of
    a = f.loc["a"]
    assert a["frequency"] == 3
    assert a["recency_days"] == pytest.approx((pd.Timestamp(AS_OF) - pd.Timestamp("2025-01-22 19:00")).total_seconds() / 86400)
    assert a["tenure_days"] == pytest.approx((pd.Timestamp(AS_OF) - pd.Timestamp("2025-01-06 09:00")).total_seconds() / 86400)
    gross = 10 + 15 + 20
    assert a["monetary"] == pytest.approx(gross - 10)
    assert a["avg_order_value"] == pytest.approx(gross / 3)
    assert a["items_per_order"] == pytest.approx(8 / 3)
    gaps = np.array([5 + 4 / 24, 11 + 6 / 24])
    assert a["ipi_mean_days"] == pytest.approx(gaps.mean())
    assert a["ipi_cv"] == pytest.approx(gaps.std() / gaps.mean())
    assert a["return_rate"] == pytest.approx(10 / gross)
    assert a["discount_share"] == pytest.approx(10 / gross)
    assert a["weekend_share"] == pytest.approx(1 / 3)
    assert (a["tod_morning"], a["tod_afternoon"], a["tod_evening"], a["tod_night"]) == pytest.approx((1 / 3, 1 / 3, 1 / 3, 0))
    assert (a["channel_store"], a["channel_online"], a["channel_app"]) == pytest.approx((2 / 3, 1 / 3, 0))
    assert (a["cat_fresh"], a["cat_treats"]) == pytest.approx((15 / gross, 30 / gross))
    shares = np.array([15, 30]) / gross
    assert a["category_entropy"] == pytest.approx(-(shares * np.log(shares)).sum())
    # after the first order: p1 (not new), p2 (new), p3 (new) -> 2/3
    assert a["novelty_share"] == pytest.approx(2 / 3)
    assert a["n_products"] == 3
    # spend trend: all of a's spend is within the 90 days before as_of -> +1
    assert a["spend_trend"] == 1.0
    b = f.loc["b"]
    assert b["tod_night"] == 1 and np.isnan(b["ipi_mean_days"]) and np.isnan(b["novelty_share"])
    assert "first_purchase" not in behaviour_columns(f) and "frequency" in behaviour_columns(f)


def test_no_leakage_row_order_and_other_customers():
    tx = _tx()
    base = customer_features(tx, AS_OF)
    # rows after as_of changed arbitrarily: nothing changes
    changed = tx.copy()
    late = changed["order_date"] >= AS_OF
    changed.loc[late, "quantity"] = 999
    pd.testing.assert_frame_equal(base, customer_features(changed, AS_OF))
    # shuffled rows: nothing changes
    pd.testing.assert_frame_equal(base, customer_features(tx.sample(frac=1, random_state=3), AS_OF))
    # adding a customer leaves the others untouched
    extra = pd.concat([tx, tx[tx.customer_id == "b"].assign(customer_id="z")])
    pd.testing.assert_frame_equal(base, customer_features(extra, AS_OF).drop(index="z"))


def test_ibis_and_pandas_inputs_agree():
    import ibis

    tx = _tx().assign(amount=lambda d: d.quantity * d.unit_price, is_return=lambda d: d.quantity < 0)
    pd.testing.assert_frame_equal(customer_features(tx, AS_OF), customer_features(ibis.memtable(tx), AS_OF))


def test_lifetime_summary_by_the_book():
    tx = pd.DataFrame({
        "customer_id": ["a", "a", "a", "a", "b"],
        "order_id": ["1", "2", "3", "4", "5"],
        "order_date": pd.to_datetime(["2025-01-01 08:00", "2025-01-01 18:00", "2025-01-15 00:00", "2025-01-29 00:00", "2025-01-08 00:00"]),
        "product_id": "p", "category": "x",
        "quantity": [1.0, 1.0, 1.0, 1.0, 1.0],
        "unit_price": [10.0, 5.0, 20.0, 30.0, 7.0],
    })
    s = lifetime_summary(tx, "2025-02-05", time_unit="W")
    # a: purchase days Jan 1 (merged, 15), Jan 15 (20), Jan 29 (30) -> 2 repeat days
    # T runs to the last day of the calibration period (2025-02-04), as in the literature
    assert s.loc["a"].tolist() == pytest.approx([2, 4.0, 34 / 7, 25.0])
    assert s.loc["b"].tolist() == pytest.approx([0, 0.0, 27 / 7, 0.0])
    d = lifetime_summary(tx, "2025-02-05", time_unit="D")
    assert d.loc["a", "T"] == 34 and d.loc["a", "recency"] == 28
    assert list(lifetime_summary(tx, "2025-02-05", start="2025-01-05").index) == ["b"]
    with pytest.raises(ValueError, match="time_unit"):
        lifetime_summary(tx, "2025-02-05", time_unit="M")


def test_lifetime_summary_on_cdnow(shared_data):
    from segmentation.data import load_store

    store = load_store(shared_data / "cdnow" / "CDNOW_sample.txt", preset="cdnow", pseudonymize=False, suppress=[])
    s = lifetime_summary(store.transactions, "1997-10-01", time_unit="W")
    assert len(s) == 2357
    assert (s["frequency"] > 0).sum() == 946  # the repeat buyers of the Gamma-Gamma paper
    assert s["T"].max() == pytest.approx(38.857, abs=1e-3) and s["T"].min() > 26  # cohort acquired in weeks 1-12


def test_demographics_kept_apart():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "birth_date": ["1990-06-01", "1950-01-01"],
                              "region": ["North", "South"], "household_size": [1, 2]})
    d = demographics(customers, "2025-01-01")
    assert d.loc["a", "age_band"] == "25-34" and d.loc["b", "age_band"] == "65+"
    enc = encode_demographics(d)
    assert {"age_band_25_34", "region_north", "household_size"} <= set(enc.columns)
    assert demographics(None, "2025-01-01").empty
