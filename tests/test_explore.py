"""Exploration aggregates on hand-made transactions with known answers."""

from __future__ import annotations

import ibis
import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation import explore

matplotlib.use("Agg")
AS_OF = "2025-03-01"


@pytest.fixture()
def tx():
    rows = [
        ("a", "1", "2025-01-06 09:30", "p1", "fresh", 2.0, 5.0),   # Monday
        ("a", "1", "2025-01-06 09:30", "p2", "treats", 1.0, 10.0),
        ("b", "2", "2025-01-11 14:00", "p1", "fresh", 1.0, 5.0),   # Saturday
        ("b", "3", "2025-02-15 14:00", "p2", "treats", 1.0, 10.0),  # Saturday
        ("b", "R3", "2025-02-20 10:00", "p2", "treats", -1.0, 10.0),
        ("c", "4", "2025-02-16 20:00", "p3", "home", 10.0, 8.0),  # Sunday
        ("c", "5", "2025-04-01 10:00", "p3", "home", 1.0, 1.0),   # after as_of
    ]
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "product_id", "category", "quantity", "unit_price"])
    df["order_date"] = pd.to_datetime(df["order_date"])
    df["amount"] = df["quantity"] * df["unit_price"]
    df["is_return"] = df["quantity"] < 0
    return ibis.memtable(df)


def test_overview(tx):
    o = explore.overview(tx, AS_OF).set_index("figure")["value"]
    assert o["customers"] == 3 and o["orders"] == 4 and o["net revenue"] == 105  # the return document R3 is no order
    assert o["average order value"] == 28.75  # (20 + 5 + 10 + 80) / 4
    assert o["returned value"] == 10 and o["returned share of sales"] == pytest.approx(10 / 115)
    assert o["repeat buyers"] == pytest.approx(1 / 3)  # only b has two orders
    assert "customers with only returns" not in o


def test_overview_counts_customers_with_only_returns_apart(tx):
    returns_only = pd.DataFrame({"customer_id": ["d"], "order_id": ["R9"], "order_date": pd.to_datetime(["2025-02-01"]),
                                 "product_id": ["p1"], "category": ["fresh"], "quantity": [-1.0], "unit_price": [5.0],
                                 "amount": [-5.0], "is_return": [True]})
    o = explore.overview(tx.union(ibis.memtable(returns_only)), AS_OF).set_index("figure")["value"]
    assert o["customers"] == 3 and o["customers with only returns"] == 1 and o["orders"] == 4


def test_concentration(tx):
    curve, stats = explore.revenue_concentration(tx, AS_OF)
    # spend a=20, b=5, c=80 -> top customer (1/3 of customers) brings 80/105
    # linear interpolation of the Lorenz curve between 2/3 and 1 of customers
    assert stats["top20_share"] == pytest.approx(1 - (25 / 105 + (0.8 - 2 / 3) * 3 * 80 / 105))
    assert curve["revenue_share"].iloc[-1] == pytest.approx(1.0)
    assert 0 < stats["gini"] < 1


def test_category_mix_and_pairs(tx):
    mix = explore.category_mix(tx, AS_OF)
    assert mix.loc["home", "revenue"] == 80 and mix.loc["fresh", "orders"] == 2
    assert mix.loc["treats", "order_penetration"] == pytest.approx(2 / 4)
    pairs = explore.category_pairs(tx, AS_OF)
    assert pairs[["a", "b", "baskets"]].values.tolist() == [["fresh", "treats", 1]]
    assert explore.category_pairs(tx, AS_OF, min_group_size=2).empty
    pooled = explore.category_mix(tx, AS_OF, min_group_size=2)  # fresh: a, b; treats: a, b; home: c only
    assert sorted(pooled.index) == ["fresh", "treats"] and pooled.attrs["pooled_categories"] == 1
    assert pairs["lift"].iloc[0] == pytest.approx((1 / 4) / ((2 / 4) * (2 / 4)))


def test_baskets_rhythm_trend(tx):
    b = explore.basket_summary(tx, AS_OF)
    assert b.loc["value", "mean"] == 28.75 and b.loc["value", "p50"] == 15.0  # values 5, 10, 20, 80
    assert b.loc["categories", "p95"] == pytest.approx(1.85)  # category counts 2, 1, 1, 1
    h = explore.basket_histogram(tx, AS_OF, bins=4)
    assert h.groupby("measure")["orders"].sum().tolist() == [4, 4]
    r = explore.weekly_rhythm(tx, AS_OF)
    assert r.loc["Mon", 9] == 1 and r.loc["Sat", 14] == 2 and r.loc["Sun", 20] == 1 and r.to_numpy().sum() == 4
    m = explore.monthly_trend(tx, AS_OF)
    assert m["revenue"].tolist() == [25.0, 80.0]
    n = explore.new_vs_returning(tx, AS_OF)
    assert n["new_customers"].tolist() == [2, 1] and n["returning_customers"].tolist() == [0, 1]
    for fig in (explore.plot_baskets(h, b), explore.plot_weekly_rhythm(r), explore.plot_monthly_trend(m), explore.plot_new_vs_returning(n)):
        assert fig.axes


def test_partial_months_are_marked_and_never_peaks():
    # one order of 100 on the 1st of each month Jan-Jun 2025, 300 in April; the data start on
    # 20 Dec 2024 (a 1,000 order: 12 of 31 days covered) and as_of is 10 Jul 2025 (9 of 31 days)
    days = ["2024-12-20", "2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01", "2025-07-01"]
    amounts = [1000.0, 100, 100, 100, 300, 100, 100, 1000]
    df = pd.DataFrame({"customer_id": [f"c{i}" for i in range(8)], "order_id": [str(i) for i in range(8)],
                       "order_date": pd.to_datetime(days), "amount": amounts})
    df["is_return"] = False
    m = explore.monthly_trend(ibis.memtable(df), "2025-07-10")
    assert m["coverage"].round(3).tolist() == [round(12 / 31, 3), 1, 1, 1, 1, 1, 1, round(9 / 31, 3)]
    assert m["complete"].tolist() == [False] + [True] * 6 + [False]
    assert m.loc["2025-04-01", "revenue_index"] == 3.0 and m["revenue_index"].isna().tolist()[::7] == [True, True]
    assert m.index[m["peak"]].strftime("%Y-%m").tolist() == ["2025-04"]  # not the 1,000 partial months
    title = explore.plot_monthly_trend(m).axes[0].get_title()
    assert "Apr 2025" in title and "cover only in part" in title


@pytest.mark.parametrize("april_buyer, wave", [("regular", False), ("newcomer", True)])
def test_a_peak_made_by_first_time_buyers_is_told_apart_from_a_season(april_buyer, wave):
    days = pd.to_datetime(["2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01", "2025-05-01", "2025-06-01"])
    df = pd.DataFrame({"customer_id": ["regular", "regular", "regular", april_buyer, "regular", "regular"],
                       "order_id": [str(i) for i in range(6)], "order_date": days,
                       "amount": [100.0, 100, 100, 300, 100, 100]})
    df["is_return"] = False
    t = ibis.memtable(df)
    trend, nvr = explore.monthly_trend(t, "2025-07-01"), explore.new_vs_returning(t, "2025-07-01")
    share = explore.new_revenue_share(nvr)
    assert share.tolist() == [1.0, 0.0, 0.0, 1.0 if wave else 0.0, 0.0, 0.0]
    trend["new_revenue_share"] = share
    assert trend.index[trend["peak"]].strftime("%Y-%m").tolist() == ["2025-04"]
    title = explore.plot_monthly_trend(trend).axes[0].get_title()
    assert ("first-time buyers (Apr 2025)" in title) is wave and ("Peak months" in title) is not wave


def test_dates_without_times_give_the_busiest_day_and_no_hour(tx):
    assert explore.has_time_of_day(explore.weekly_rhythm(tx, AS_OF))
    df = pd.DataFrame({"customer_id": ["a", "b", "c"], "order_id": ["1", "2", "3"],
                       "order_date": pd.to_datetime(["2025-01-07", "2025-01-14", "2025-01-10"]), "amount": [1.0, 2, 3],
                       "quantity": 1.0})
    df["is_return"] = False
    grid = explore.weekly_rhythm(ibis.memtable(df), AS_OF)
    assert not explore.has_time_of_day(grid) and grid.loc["Tue", 0] == 2
    assert not explore.has_time_of_day(grid.rename(columns=str))  # as read back from results/
    title = explore.plot_weekly_rhythm(grid).axes[0].get_title()
    assert title == "Busiest day: Tue (the data have dates without times of day)"


def test_the_level_of_a_month_is_its_year_even_at_the_ends_of_the_data():
    from segmentation.explore import _year_level

    growing = np.arange(1.0, 25.0)  # 24 months of steady growth
    level = _year_level(growing)
    assert level[12] == np.median(growing[6:19]) and level[0] == np.median(growing[:13])
    assert level[-1] == np.median(growing[-13:])  # shifted, not shrunk: the last month against a whole year
    assert (_year_level(np.array([1.0, 3.0, 2.0])) == 2.0).all() and len(_year_level(np.array([]))) == 0
