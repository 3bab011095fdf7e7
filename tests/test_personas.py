"""Personas: lift, indices, honest names and narratives on known data; planted personas recovered."""

from __future__ import annotations

import os
from pathlib import Path

import ibis
import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.data import load_store
from segmentation.personas import (
    behaviour_indices,
    build_personas,
    category_lift,
    plot_persona_card,
    plot_persona_overview,
    product_lift,
    quantifier,
    share_phrase,
)
from segmentation.pipeline import segment_customers

matplotlib.use("Agg")

SHARED_DATA = Path(os.environ.get("SEGMENTATION_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
LOYAL_WORDS = ("loyal", "vip", "come back", "habit", "frequent")


# ------------------------------------------------------------------------------------ wording
@pytest.mark.parametrize("share, word", [
    (1.0, "almost all"), (0.95, "almost all"), (0.949, "most"), (0.60, "most"), (0.599, "more than half"),
    (0.55, "more than half"), (0.50, "about half"), (0.45, "about half"), (0.44, "about two in five"),
    (0.35, "about a third"), (0.28, "about a third"), (0.25, "about a quarter"), (0.20, "about a quarter"),
    (0.15, "some"), (0.05, "a few"), (0.0, "none"),
])
def test_quantifier_bands(share, word):
    assert quantifier(share) == word


def test_quantifier_rejects_non_shares():
    for bad in (-0.1, 1.2, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            quantifier(bad)


def test_share_phrase_matches_the_percent_shown():
    assert share_phrase(0.35, capital=True) == "About a third (35%)"
    assert share_phrase(0.9496) == "almost all (95%)"  # shown as 95%: not "most (95%)"
    assert share_phrase(0.996) == "almost all (100%)"  # "all" only when it is all
    assert share_phrase(1.0) == "all (100%)" and share_phrase(0.0, capital=True) == "None"


# ------------------------------------------------------------------------------------ lifts and indices
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
    assert lift.loc[(0, "fresh"), "customers"] == 2 and lift.loc[(0, "treats"), "customers"] == 1
    assert (1, "fresh") not in lift.index  # below the support floor
    # every row rests on at least min_group_size buying customers
    strict = category_lift(t, t["segment"], min_group_size=2).set_index(["segment", "category"])
    assert set(strict.index) == {(0, "fresh"), (1, "treats")}


def test_product_lift_drops_products_of_few_customers():
    lines = pd.DataFrame({
        "customer_id": ["a", "b", "c", "a", "b", "d", "e", "f"],
        "product_id": ["P1", "P1", "P1", "P2", "P2", "P1", "P1", "P3"],
        "is_return": False,
    })
    segment = pd.Series([0, 0, 0, 1, 1, 1], index=list("abcdef"))
    out = product_lift(ibis.memtable(lines), segment, min_group_size=3).set_index(["segment", "product_id"])
    assert list(out.index) == [(0, "P1")]  # P2 (2 buyers in 0), P1/P3 in 1 (2 / 1 buyers) dropped
    assert out.loc[(0, "P1"), "lift"] == pytest.approx((3 / 3) / (5 / 6))
    assert len(product_lift(ibis.memtable(lines), segment, min_group_size=1)) == 4


def test_indices_are_transparent_weighted_sums():
    t = pd.DataFrame({"cat_fresh_produce": [0.5, 0.0], "cat_meat_fish": [0.2, 0.0], "discount_share": [0.1, 0.9],
                      "ipi_cv": [0.0, 1.0]}, index=["a", "b"])
    idx = behaviour_indices(t)
    assert idx.loc["a", "health"] == pytest.approx(0.5 + 0.5 * 0.2)
    assert idx.loc["b", "price_sensitivity"] == pytest.approx(0.9)
    assert idx.loc["a", "routine"] == pytest.approx(1.0) and idx.loc["b", "routine"] == pytest.approx(0.5)
    assert "indulgence" not in idx.columns  # no matching column: unavailable, not invented


# ------------------------------------------------------------------------------------ hand-made store
def _hand_made(n: int = 40) -> pd.DataFrame:
    """Three segments of n customers: 0 fresh-food morning shoppers, 1 discount buyers, 2 rare buyers."""
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
    return t


def test_names_and_narratives_follow_the_rules_on_hand_made_data():
    p = build_personas(_hand_made(), min_group_size=10)
    names = p.summary["name"].to_dict()
    assert names[0] == "Health-conscious home cooks" and names[1] == "Bargain hunters"
    assert names[2] == "Occasional buyers"  # no trait rule fires: plain description
    assert p.summary.at[2, "name_basis"] == "description" and pd.isna(p.summary.at[2, "trait"])
    # price sensitivity index of segment 1: 0.8 / mean(0.05, 0.8, 0.05) = 267
    assert p.summary.at[1, "trait"] == "price_sensitivity" and "index 267" in p.summary.at[1, "name_reason"]
    narrative = p.summary.at[0, "narrative"]
    assert narrative.startswith("Health-conscious home cooks: customers who fill their bags with fresh produce and staples "
                                "(above all fresh produce).")
    # 90% of their orders in the morning against (0.9 + 0.25 + 0.25) / 3 = 47% for everyone
    assert "Most (90%) of their orders are placed in the morning, against 47% for all customers." in narrative
    assert "All (100%) have ordered more than once (10.0 orders on average)" in narrative
    assert not hasattr(p, "actions")


def test_only_material_traits_are_highlighted_and_thin_traits_dropped():
    t = _hand_made()
    t.loc[t.index[40:75], "ipi_cv"] = np.nan  # segment 1: only 5 customers with a regular rhythm measured
    p = build_personas(t, min_group_size=10)
    assert p.highlight.at[1, "price_sensitivity"] and p.traits.at[1, "price_sensitivity"] > 120
    assert p.traits["value"].eq(100).all() and not p.highlight["value"].any()  # everyone spends the same
    assert np.isnan(p.traits.at[1, "routine"]) and not p.highlight.at[1, "routine"]  # rests on 5 < 10 customers
    assert p.traits.at[0, "routine"] == pytest.approx(100) and not p.highlight.at[0, "routine"]
    assert p.highlight.shape == p.traits.shape


def test_narrative_quantifies_demographics_and_drops_tiny_cells():
    t = _hand_made()
    n = 40
    t["age_band"] = (["45-54"] * 14 + ["25-34"] * 13 + ["35-44"] * 13) + (["45-54"] * 2 + ["25-34"] * 19 + ["35-44"] * 19) * 2
    t["household"] = ["couple"] * n + ["family"] * 30 + ["single"] * 10 + ["single"] * n
    t["region"] = ["North", "South"] * (n // 2 - 1) + ["North", "Iceland"] + ["North", "South"] * n
    p = build_personas(t, min_group_size=10)
    cooks = p.summary.at[0, "narrative"]
    # 14 of 40 = 35% are 45-54 against 18 of 120 = 15%: "about a third", never "45-54-year-old shoppers"
    assert "About a third (35%) are aged 45-54, against 15% of all customers." in cooks
    assert "year-old" not in cooks
    families = p.summary.at[1, "narrative"]
    assert "Most (75%) live in a family household, against 25% of all customers." in families
    demo = p.demographics
    assert not (demo["value"] == "Iceland").any() and "Iceland" not in " ".join(p.summary["narrative"])
    assert (demo["customers"] >= 10).all()
    assert demo.set_index(["segment", "attribute", "value"]).loc[(0, "age_band", "45-54"), "customers"] == 14
    loose = build_personas(t, min_group_size=1).demographics
    assert (loose["value"] == "Iceland").any()  # the cell exists: it is the size rule that drops it


def test_tiny_category_cells_are_dropped():
    t = _hand_made()
    t["cat_pet"] = 0.0
    t.loc["c100", ["cat_pet", "cat_staples", "cat_fresh_produce"]] = [1.0, 0.0, 0.0]  # one pet buyer in segment 2
    strict = build_personas(t, min_group_size=10).categories
    assert not (strict["category"] == "pet").any() and (strict["customers"] >= 10).all()
    assert (build_personas(t, min_group_size=1).categories["category"] == "pet").any()


def test_unstable_segment_is_not_named():
    stability = pd.DataFrame({"size": [40, 40, 40], "jaccard_mean": [0.95, 0.42, 0.9], "jaccard_min": [0.9, 0.3, 0.85],
                              "stable": [True, False, True]}, index=pd.Index([0, 1, 2], name="segment"))
    p = build_personas(_hand_made(), stability=stability, min_group_size=10)
    s = p.summary
    assert s.at[1, "name"] == "Mixed group A (unstable)" and s.at[1, "name_basis"] == "unstable"
    assert pd.isna(s.at[1, "trait"]) and not s.at[1, "stable"]
    assert "do not form a reliable group" in s.at[1, "narrative"] and "0.42" in s.at[1, "narrative"]
    assert "Bargain hunters" not in set(s["name"])  # the name is not passed on to another group
    assert s.at[0, "name"] == "Health-conscious home cooks"
    assert any("unstable" in n for n in p.notes)


def test_values_status_and_plain_notes():
    t = _hand_made()
    values = pd.DataFrame({"p_alive": np.linspace(0, 1, len(t)), "clv": np.arange(len(t), dtype=float)}, index=t.index)
    status = pd.Series(np.where(np.arange(len(t)) % 4 == 0, "lapsed", "active"), index=t.index)
    p = build_personas(t, values=values, status=status, min_group_size=10)
    s = p.summary
    assert s.at[0, "clv"] == pytest.approx(np.arange(40).mean()) and s.at[2, "p_alive"] == pytest.approx(values["p_alive"][80:].mean())
    assert s.at[0, "lapsed_share"] == pytest.approx(0.25) and s.at[0, "active_share"] == pytest.approx(0.75)
    assert s.at[2, "repeat_share"] == 1.0
    assert not any("value" in n.lower() and "not shown" in n for n in p.notes)
    without = build_personas(t, min_group_size=10)
    assert without.summary["clv"].isna().all()
    notes = " ".join(without.notes)
    assert "Expected value" in notes and "lifetime model" in notes
    for developer_text in ("pass values", "values=", "segmentation.", "()"):
        assert developer_text not in notes


# ------------------------------------------------------------------------------------ real data
def _cdnow_path() -> Path:
    path = SHARED_DATA / "cdnow" / "CDNOW_sample.txt"
    assert path.is_file(), f"shared data missing: {path} (tests read ../shared/data)"
    return path


def _cdnow_lines() -> pd.DataFrame:
    raw = pd.read_csv(_cdnow_path(), sep=r"\s+", header=None, names=["master", "customer_id", "date", "quantity", "value"],
                      dtype={"date": str})
    raw = raw[raw["value"] > 0]
    return pd.DataFrame({
        "customer_id": raw["customer_id"].astype(str), "order_id": raw["customer_id"].astype(str) + "-" + raw["date"],
        "order_date": pd.to_datetime(raw["date"], format="%Y%m%d"), "product_id": "cd", "category": "music",
        "quantity": raw["quantity"].astype(float), "unit_price": raw["value"] / raw["quantity"],
    })


def test_loyal_names_only_with_repeat_buyers_on_cdnow():
    """CDNOW as it is: the persona named VIP really does come back; each customer's first order
    only (every customer a one-time buyer): no name promises loyalty, though spend still differs."""
    store = load_store(_cdnow_path(), preset="cdnow", as_of="1998-07-01", pseudonymize=False, suppress=[])
    result = segment_customers(store, "1998-07-01", random_state=42, n_clusters=3)
    p = build_personas(result.table, store.transactions)
    vip = p.summary[p.summary["name"].str.contains("VIP")]
    assert len(vip) == 1 and vip["repeat_share"].iloc[0] >= 0.5 and vip["frequency"].iloc[0] >= 2

    lines = _cdnow_lines()
    first = lines[lines["order_date"] == lines.groupby("customer_id")["order_date"].transform("min")]
    one_time = load_store({"transactions": first}, as_of="1998-07-01", pseudonymize=False, suppress=[])
    result = segment_customers(one_time, "1998-07-01", random_state=42, n_clusters=5)
    p = build_personas(result.table, one_time.transactions)
    assert (result.table["frequency"] == 1).all() and (p.summary["repeat_share"] == 0).all()
    assert p.traits["value"].max() >= 200  # the value rule would fire on spend alone
    text = " ".join(p.summary["name"]).lower() + " " + " ".join(p.summary["narrative"]).lower()
    for word in LOYAL_WORDS:
        assert word not in text, word
    assert "none have ordered more than once" in text


# ------------------------------------------------------------------------------------ synthetic store
@pytest.fixture(scope="module")
def synthetic():
    store = load_store("synthetic", n_customers=2000, random_state=42, suppress=[])
    result = segment_customers(store, "2026-01-01", random_state=42, n_clusters=7)  # auto k: tests/test_pipeline.py
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
        assert personas.summary.at[seg, "trait"] == trait, planted
        assert personas.traits[trait].idxmax() == seg, f"{planted}: highest {trait} index"
        assert personas.highlight.at[seg, trait], planted
        if category:
            top = personas.categories[personas.categories["segment"] == seg]["category"].head(3).tolist()
            assert category in top, f"{planted}: {top}"
    cooks = majority["health_conscious_cooks"]
    narrative = personas.summary.at[cooks, "narrative"]
    assert narrative.startswith("Health-conscious home cooks:") and "fresh produce" in narrative and "older" in narrative
    vip = personas.summary.loc[majority["vip_loyalists"]]
    assert vip["repeat_share"] >= 0.5 and vip["frequency"] >= 2  # the loyal name rests on repeat purchases
    lapsing = personas.summary.loc[majority["lapsing_one_timers"]]
    assert lapsing["active_share"] <= 0.5
    assert {"active_share", "lapsed_share", "repeat_share", "trait"} <= set(personas.summary.columns)


def test_pain_points_and_figures(synthetic):
    store, result, personas = synthetic
    lapsing = personas.summary.index[personas.summary["name"] == "Lapsing one-timers"][0]
    pains = personas.pain_points[personas.pain_points["segment"] == lapsing].set_index("pain_point")["evidence"]
    assert {"returns", "support contacts", "low satisfaction", "lapsed"} <= set(pains.index)
    assert pains["lapsed"].endswith("of all customers.") and "%" in pains["lapsed"]
    assert set(personas.pain_points["segment"]) <= set(personas.visible())
    assert plot_persona_card(personas, lapsing).axes and plot_persona_overview(personas).axes
    import dataclasses

    unmeasured = personas.traits.columns[0]
    blank = dataclasses.replace(personas, traits=personas.traits.assign(**{unmeasured: float("nan")}))
    shown = [t.get_text() for t in plot_persona_overview(blank).axes[1].get_xticklabels()]
    assert len(shown) == personas.traits.shape[1] - 1  # a trait nobody can be measured on is left out


def test_small_personas_are_suppressed(synthetic):
    _, result, _ = synthetic
    table = result.table
    small = build_personas(table, min_group_size=int(table["segment"].value_counts().min()) + 1)
    hidden = small.summary[small.summary["suppressed"]]
    assert len(hidden) == 1 and hidden["narrative"].iloc[0] == "" and hidden["name"].iloc[0].startswith("(fewer than")
    assert hidden.index[0] not in set(small.categories["segment"]) | set(small.demographics["segment"])
    with pytest.raises(ValueError, match="not described"):
        plot_persona_card(small, hidden.index[0])


def test_missing_columns_are_named():
    with pytest.raises(ValueError, match="ipi_mean_days"):
        build_personas(_hand_made().drop(columns="ipi_mean_days"))
