"""Personas: lift, indices, names and narratives on known data; planted personas recovered."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.data import load_store
from segmentation.personas import behaviour_indices, build_personas, category_lift, plot_persona_card, plot_persona_overview
from segmentation.pipeline import segment_customers
from segmentation.profile import customer_profile, example_customer, membership_strength, plot_customer_profile

matplotlib.use("Agg")


def test_category_lift_known_answer():
    t = pd.DataFrame({
        "segment": [0, 0, 1, 1],
        "avg_order_value": [10.0, 10.0, 10.0, 10.0], "frequency": [1.0, 1.0, 1.0, 1.0],
        "cat_fresh": [1.0, 0.5, 0.0, 0.0], "cat_treats": [0.0, 0.5, 1.0, 1.0],
    })
    lift = category_lift(t, t["segment"]).set_index(["segment", "category"])
    # segment 0 spends 15 of 20 on fresh; population 15 of 40 -> lift 2
    assert lift.loc[(0, "fresh"), "lift"] == pytest.approx((15 / 20) / (15 / 40))
    assert lift.loc[(1, "treats"), "lift"] == pytest.approx(1.0 / (25 / 40))
    assert (1, "fresh") not in lift.index  # below the support floor


def test_indices_are_transparent_weighted_sums():
    t = pd.DataFrame({"cat_fresh_produce": [0.5, 0.0], "cat_meat_fish": [0.2, 0.0], "discount_share": [0.1, 0.9],
                      "ipi_cv": [0.0, 1.0]}, index=["a", "b"])
    idx = behaviour_indices(t)
    assert idx.loc["a", "health"] == pytest.approx(0.5 + 0.5 * 0.2)
    assert idx.loc["b", "price_sensitivity"] == pytest.approx(0.9)
    assert idx.loc["a", "routine"] == pytest.approx(1.0) and idx.loc["b", "routine"] == pytest.approx(0.5)
    assert "indulgence" not in idx.columns  # no matching column: unavailable, not invented


@pytest.fixture(scope="module")
def synthetic():
    store = load_store("synthetic", n_customers=2000, seed=42, suppress=[])
    result = segment_customers(store, "2026-01-01", random_state=42)
    personas = build_personas(result.table, store.transactions, products=store.products, feedback=store.feedback,
                              events=store.events)
    return store, result, personas


EXPECTED = {
    "health_conscious_cooks": ("Health-conscious home cooks", "health", "fresh_produce"),
    "busy_families": ("Busy families", "family", "baby"),
    "bargain_hunters": ("Bargain hunters", "price_sensitivity", None),
    "occasional_indulgers": ("Occasional indulgers", "indulgence", None),
    "young_urban_singles": ("Convenience-first urbanites", "convenience", "ready_meals"),
    "lapsing_one_timers": ("Lapsing one-timers", "lapsing", None),
    "vip_loyalists": ("VIP loyalists", "value", None),
}


def test_each_planted_persona_gets_its_name_and_traits(synthetic):
    store, result, personas = synthetic
    truth = store.truth.set_index("customer_id")["persona"].reindex(result.table.index)
    majority = pd.crosstab(truth, result.table["segment"]).idxmax(axis=1)
    assert majority.nunique() == 7  # one generated persona per planted persona
    for planted, (name, trait, category) in EXPECTED.items():
        seg = majority[planted]
        assert personas.summary.at[seg, "name"] == name, planted
        assert personas.traits[trait].idxmax() == seg, f"{planted}: highest {trait} index"
        if category:
            top = personas.categories[personas.categories["segment"] == seg]["category"].head(3).tolist()
            assert category in top, f"{planted}: {top}"
    cooks = majority["health_conscious_cooks"]
    narrative = personas.summary.at[cooks, "narrative"]
    assert narrative.startswith("Health-conscious home cooks:") and "fresh produce" in narrative and "older" in narrative


def test_actions_pain_points_and_figures(synthetic):
    store, result, personas = synthetic
    assert set(personas.actions["segment"]) == set(personas.visible())
    lapsing = personas.summary.index[personas.summary["name"] == "Lapsing one-timers"][0]
    pains = set(personas.pain_points.loc[personas.pain_points["segment"] == lapsing, "pain_point"])
    assert {"returns", "support contacts", "low satisfaction"} <= pains
    assert plot_persona_card(personas, lapsing).axes and plot_persona_overview(personas).axes


def test_small_personas_are_suppressed(synthetic):
    _, result, _ = synthetic
    table = result.table
    small = build_personas(table, min_group_size=int(table["segment"].value_counts().min()) + 1)
    hidden = small.summary[small.summary["suppressed"]]
    assert len(hidden) == 1 and hidden["narrative"].iloc[0] == "" and hidden["name"].iloc[0].startswith("(fewer than")
    with pytest.raises(ValueError, match="not described"):
        plot_persona_card(small, hidden.index[0])


def test_profile_of_one_customer(synthetic):
    store, result, personas = synthetic
    cid = example_customer(result.table)
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of="2026-01-01",
                         customers=store.customers, pii=store.pii, feedback=store.feedback, products=store.products)
    assert p.persona == personas.summary.at[result.table.at[cid, "segment"], "name"]
    assert 0 <= p.strength <= 1 and len(p.differences) == 6
    assert p.timeline["spend"].sum() > 0 and p.identity is None
    assert any("not available" in n for n in p.notes)
    assert plot_customer_profile(p).axes
    internal = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features,
                                as_of="2026-01-01", customers=store.customers, pii=store.pii, internal=True)
    assert "@example.com" in internal.identity["email"]
    s = membership_strength(result.model, result.table[result.features])
    assert s.between(0, 1).all()


def test_profile_refuses_without_consent_and_unknown(synthetic):
    store, result, personas = synthetic
    no = store.customers.loc[~store.customers["consent_profiling"], "customer_id"].iloc[0]
    with pytest.raises(ValueError, match="consented to profiling"):
        customer_profile(no, result.table, store.transactions, personas, result.model, result.features,
                         as_of="2026-01-01", customers=store.customers)
    with pytest.raises(KeyError, match="unknown"):
        customer_profile("nobody", result.table, store.transactions, personas, result.model, result.features, as_of="2026-01-01")


def test_key_dates_only_with_marketing_consent(synthetic):
    store, result, personas = synthetic
    c = store.customers.copy()
    cid = example_customer(result.table)
    c.loc[c["customer_id"] == cid, ["birth_date", "consent_marketing"]] = [pd.Timestamp("1970-01-10"), True]
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of="2026-01-01",
                         customers=c, key_date_days=30)
    assert p.key_dates.set_index("event").loc["birthday", "days_until"] == 9
    c.loc[c["customer_id"] == cid, "consent_marketing"] = False
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of="2026-01-01",
                         customers=c, key_date_days=30)
    assert p.key_dates.empty and any("no marketing consent" in n for n in p.notes)


def test_names_and_narratives_follow_the_rules_on_hand_made_data():
    n = 30
    seg = np.repeat([0, 1, 2], n)
    base = {"recency_days": 10.0, "tenure_days": 300.0, "frequency": 10.0, "monetary": 500.0, "avg_order_value": 50.0,
            "return_rate": 0.02, "ipi_cv": 0.5, "weekend_share": 0.3, "tod_morning": 0.25, "tod_afternoon": 0.25,
            "tod_evening": 0.25, "tod_night": 0.25, "novelty_share": 0.3, "ipi_mean_days": 20.0}
    t = pd.DataFrame([base] * (3 * n), index=[f"c{i}" for i in range(3 * n)])
    t["segment"] = seg
    t["discount_share"] = np.where(seg == 1, 0.8, 0.05)
    t["cat_fresh_produce"] = np.where(seg == 0, 0.7, 0.1)
    t["cat_staples"] = 1 - t["cat_fresh_produce"]
    t.loc[t["segment"] == 0, "tod_morning"] = 0.9
    t.loc[t["segment"] == 2, "frequency"] = 2.0
    p = build_personas(t, min_group_size=10)
    names = p.summary["name"].to_dict()
    assert names[0] == "Health-conscious home cooks" and names[1] == "Bargain hunters"
    assert names[2] == "Occasional buyers"  # no trait rule fires: plain RFM description
    assert p.summary.at[0, "narrative"] == ("Health-conscious home cooks: morning shoppers who fill their bags with "
                                            "fresh produce and staples (above all fresh produce).")
    assert set(p.actions.loc[p.actions["segment"] == 1, "trait"]) >= {"price_sensitivity"}
