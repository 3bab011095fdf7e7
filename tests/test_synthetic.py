"""The synthetic store: deterministic, consistent, and the planted differences are really there."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation import schema
from segmentation.synthetic import CATEGORIES, PERSONAS, generate_store


@pytest.fixture(scope="module")
def store():
    return generate_store(1500, random_state=7)


def test_deterministic_for_a_seed():
    a, b, c = generate_store(200, random_state=3), generate_store(200, random_state=3), generate_store(200, random_state=4)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name])
    assert not a["transactions"].equals(c["transactions"])


def test_tables_follow_the_contract(store):
    for table in ("transactions", "customers", "products", "events", "feedback"):
        assert set(schema.required_columns(table)) <= set(store[table].columns), table
    tx = store["transactions"]
    assert set(tx["customer_id"]) <= set(store["customers"]["customer_id"])
    assert set(tx["product_id"]) <= set(store["products"]["product_id"])
    assert set(tx["category"]) == set(CATEGORIES)
    assert (tx["quantity"] < 0).any() and (tx["unit_price"] > 0).all()
    assert set(store["truth"]["persona"]) == set(PERSONAS.index)
    assert store["events"]["customer_id"].isna().any()  # anonymous sessions exist
    assert store["feedback"]["nps"].between(0, 10).all() and store["feedback"]["csat"].between(1, 5).all()


def test_planted_differences_are_there(store):
    tx = store["transactions"].merge(store["truth"][["customer_id", "persona"]], on="customer_id")
    buys = tx[tx["quantity"] > 0].assign(amount=lambda d: d["quantity"] * d["unit_price"])
    share = buys.pivot_table(index="persona", columns="category", values="amount", aggfunc="sum")
    share = share.div(share.sum(axis=1), axis=0)
    assert share["fresh_produce"].idxmax() == "health_conscious_cooks"
    assert share["baby"].idxmax() == "busy_families"
    assert share["ready_meals"].idxmax() == "young_urban_singles"
    disc = (buys["discount"] > 0).groupby(buys["persona"]).mean()
    assert disc.idxmax() == "bargain_hunters"
    truth = store["truth"].set_index("persona")
    assert truth.groupby(level=0)["purchase_rate"].mean().idxmax() == "vip_loyalists"
    assert truth.groupby(level=0)["churned"].mean().idxmax() == "lapsing_one_timers"
    hours = buys.drop_duplicates("order_id").assign(h=lambda d: d["order_date"].dt.hour)
    morning = hours["h"].between(6, 11).groupby(hours["persona"]).mean()
    assert morning.idxmax() == "health_conscious_cooks"
    age = (pd.Timestamp("2026-01-01") - store["customers"]["birth_date"]).dt.days / 365.25
    by_persona = age.groupby(store["truth"]["persona"]).mean()
    assert by_persona.idxmin() == "young_urban_singles"


def test_messy_adds_counted_mess():
    clean, messy = generate_store(300, random_state=5), generate_store(300, random_state=5, messy=True)
    m = messy["transactions"]
    assert m["customer_id"].isna().mean() == pytest.approx(0.03, abs=0.01)
    assert len(m) > len(clean["transactions"])
    assert (m["unit_price"] <= 0).any() and (m["quantity"] >= 500).any()
    assert m.duplicated().sum() > 0
