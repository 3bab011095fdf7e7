"""Customer features and the lifetime-model summary on hand-made data with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation.features import behaviour_columns, customer_features, demographics, encode_demographics, lifetime_summary, slug


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

    store = load_store(shared_data / "cdnow" / "CDNOW_sample.txt", preset="cdnow", pseudonymize=False, suppress=[], as_of="1998-07-01")
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


# ------------------------------------------------------------------------------------------------
# the engine implementation against a straightforward pandas one, on generated data
def _generated(seed: int = 7, n_customers: int = 300) -> pd.DataFrame:
    """Random lines with every case the features distinguish: 1-12 orders of 1-4 lines, lines of
    an order a few minutes apart, mixed channels within an order, discounts, returns (own order
    ids), purchases after ``AS_OF``, a customer with returns only, category names whose slugs
    collide ("Fresh Produce" / "fresh produce")."""
    rng = np.random.default_rng(seed)
    categories = np.array(["Fresh Produce", "fresh produce", "dairy", "snacks & treats", "wine", "pet"])
    start = pd.Timestamp("2024-06-01").value // 10**9
    rows = []
    for c in range(n_customers):
        n_orders = int(rng.integers(1, 13))
        order_times = start + np.sort(rng.choice(240 * 86400, n_orders, replace=False))  # no two orders at once
        for o, ts in enumerate(order_times):
            for _ in range(int(rng.integers(1, 5))):
                rows.append((f"c{c:04d}", f"{c}-{o}", ts + int(rng.integers(0, 600)), f"p{rng.integers(0, 40)}",
                             rng.choice(categories), float(rng.integers(1, 4)), float(rng.integers(1, 60)) / 2,
                             float(rng.random() < 0.2) * 1.5, rng.choice(["store", "online", "app"])))
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "product_id", "category", "quantity",
                                     "unit_price", "discount", "channel"])
    returns = df.sample(frac=0.05, random_state=seed).assign(
        order_id=lambda d: "R" + d["order_id"], quantity=lambda d: -d["quantity"], discount=0.0,
        order_date=lambda d: d["order_date"] + 3 * 86400)
    only_returns = returns.iloc[:1].assign(customer_id="returns-only")
    df = pd.concat([df, returns, only_returns], ignore_index=True)
    return df.assign(order_date=pd.to_datetime(df["order_date"], unit="s"))


def _reference_features(tx: pd.DataFrame, as_of: str) -> pd.DataFrame:
    """The documented feature columns, written plainly with pandas group-bys and pivots."""
    as_of = pd.Timestamp(as_of)
    t = tx[tx["order_date"] < as_of].assign(amount=lambda d: d["quantity"] * d["unit_price"], is_return=lambda d: d["quantity"] < 0)
    buys = t[~t["is_return"]]
    orders = (buys.groupby(["customer_id", "order_id"])
              .agg(ts=("order_date", "min"), value=("amount", "sum"), units=("quantity", "sum"),
                   lines=("amount", "size"), channel=("channel", "max"))
              .reset_index().sort_values(["customer_id", "ts"]))
    orders["gap"] = orders.groupby("customer_id")["ts"].diff().dt.total_seconds() / 86400
    hour = orders["ts"].dt.hour
    orders = orders.assign(weekend=orders["ts"].dt.day_of_week >= 5, morning=(hour >= 6) & (hour < 12),
                           afternoon=(hour >= 12) & (hour < 17), evening=(hour >= 17) & (hour < 22), night=(hour >= 22) | (hour < 6))
    g = orders.groupby("customer_id")
    f = pd.DataFrame({"first_purchase": g["ts"].min(), "last_purchase": g["ts"].max()})
    f["recency_days"] = (as_of - f["last_purchase"]).dt.total_seconds() / 86400
    f["tenure_days"] = (as_of - f["first_purchase"]).dt.total_seconds() / 86400
    f["frequency"] = g.size().astype(float)
    gross = g["value"].sum()
    returned = (-t[t["is_return"]].groupby("customer_id")["amount"].sum()).reindex(f.index, fill_value=0.0)
    f["monetary"] = gross - returned
    f["avg_order_value"] = gross / f["frequency"]
    f["items_per_order"] = g["units"].sum() / f["frequency"]
    f["ipi_mean_days"] = g["gap"].mean()
    f["ipi_cv"] = (g["gap"].std(ddof=0) / f["ipi_mean_days"]).where(f["frequency"] >= 3)
    recent = orders[orders["ts"] >= as_of - pd.Timedelta(days=90)].groupby("customer_id")["value"].sum().reindex(f.index, fill_value=0.0)
    earlier = orders[(orders["ts"] >= as_of - pd.Timedelta(days=180)) & (orders["ts"] < as_of - pd.Timedelta(days=90))]
    earlier = earlier.groupby("customer_id")["value"].sum().reindex(f.index, fill_value=0.0)
    f["spend_trend"] = ((recent - earlier) / (recent + earlier)).where(recent + earlier > 0, 0.0)
    f["return_rate"] = (returned / gross).where(gross > 0, 0.0)
    discounted = buys[buys["discount"] > 0].groupby("customer_id")["amount"].sum().reindex(f.index, fill_value=0.0)
    f["discount_share"] = (discounted / gross).where(gross > 0, 0.0)
    f["weekend_share"] = g["weekend"].mean()
    for part in ("morning", "afternoon", "evening", "night"):
        f[f"tod_{part}"] = g[part].mean()
    channels = pd.crosstab(orders["customer_id"], orders["channel"], normalize="index")
    f = f.join(channels.rename(columns=lambda c: f"channel_{c}"))
    spend = buys.assign(category=buys["category"].map(slug)).pivot_table(
        index="customer_id", columns="category", values="amount", aggfunc="sum", fill_value=0.0).clip(lower=0)
    shares = spend.div(spend.sum(axis=1), axis=0)
    f = f.join(shares.rename(columns=lambda c: f"cat_{c}"))
    p = shares.reindex(f.index).to_numpy()
    f["category_entropy"] = -np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0).sum(axis=1)
    n_products = buys.groupby("customer_id")["product_id"].nunique()
    first_lines = g["lines"].first()
    later = g["lines"].sum() - first_lines
    f["novelty_share"] = ((n_products - first_lines) / later).clip(0, 1).where(later > 0)
    f["n_products"] = n_products.astype(float)
    f.index = f.index.astype("str")
    return f.sort_index()


def test_engine_features_match_a_plain_pandas_reference():
    tx = _generated()
    as_of = "2025-01-15"  # some orders fall after it, some customers only buy after it
    expected = _reference_features(tx, as_of)
    got = customer_features(tx, as_of)
    assert "returns-only" not in got.index and len(got) == len(expected) > 250
    assert {"cat_fresh_produce", "cat_snacks_treats"} <= set(got.columns)  # two spellings, one column
    pd.testing.assert_frame_equal(got, expected[got.columns], check_exact=False, rtol=0, atol=1e-9)
    assert set(got.columns) == set(expected.columns)


def test_lifetime_summary_matches_a_plain_pandas_reference():
    tx = _generated(seed=11)
    as_of = pd.Timestamp("2025-01-15")
    buys = tx[(tx["quantity"] > 0) & (tx["order_date"] < as_of)].assign(amount=lambda d: d["quantity"] * d["unit_price"])
    days = buys.groupby(["customer_id", buys["order_date"].dt.floor("D")])["amount"].sum().reset_index().sort_values("order_date")
    g = days.groupby("customer_id")
    n = g.size()
    expected = pd.DataFrame({
        "frequency": (n - 1).astype(float),
        "recency": (g["order_date"].max() - g["order_date"].min()).dt.days / 7,
        "T": (as_of - pd.Timedelta(days=1) - g["order_date"].min()).dt.days / 7,
        "monetary_value": ((g["amount"].sum() - g["amount"].first()) / (n - 1)).where(n > 1, 0.0),
    })
    expected.index = expected.index.astype("str")
    pd.testing.assert_frame_equal(lifetime_summary(tx, as_of), expected, check_exact=False, rtol=0, atol=1e-9)
