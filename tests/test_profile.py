"""Personas end with a person: representative customers, their stories and individual profiles."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.data import load_store, to_pandas
from segmentation.personas import build_personas
from segmentation.pipeline import segment_customers
from segmentation.profile import (
    customer_profile,
    customer_story,
    example_customer,
    membership_strength,
    membership_words,
    plot_customer_profile,
    representative_customers,
    representative_stories,
)

matplotlib.use("Agg")
AS_OF = "2026-01-01"


@pytest.fixture(scope="module")
def synthetic():
    store = load_store("synthetic", n_customers=800, random_state=7, suppress=[])
    result = segment_customers(store, AS_OF, random_state=7, n_clusters=7)
    personas = build_personas(result.table, store.transactions, products=store.products, min_group_size=10)
    lines = to_pandas(store.transactions)
    return store, result, personas, lines


def _distances(result) -> pd.Series:
    """Each customer's distance to their own segment's mean in the model space (brute force)."""
    Z = result.model.transform(result.table[result.features])
    centres = Z.groupby(result.table["segment"].to_numpy()).mean()
    own = centres.reindex(result.table["segment"].to_numpy()).to_numpy()
    return pd.Series(np.sqrt(((Z.to_numpy() - own) ** 2).sum(axis=1)), index=result.table.index)


def test_representative_is_the_most_central_consenting_member(synthetic):
    store, result, personas, _ = synthetic
    reps = representative_customers(result.table, result.model, result.features, customers=store.customers)
    table = result.table
    assert list(reps.index) == sorted(table["segment"].unique())
    consenting = set(store.customers.loc[store.customers["consent_profiling"], "customer_id"])
    dist = _distances(result)
    for seg, row in reps.iterrows():
        assert table.at[row["customer_id"], "segment"] == seg  # a member of its persona
        assert row["customer_id"] in consenting
        members = dist[(table["segment"] == seg) & table.index.isin(consenting)]
        assert dist[row["customer_id"]] == pytest.approx(members.min(), rel=1e-6)
        assert row["members"] == (table["segment"] == seg).sum()
        assert 0 <= row["strength"] <= 1 and row["closer_than"] > 0.9
    # withdrawing consent moves the choice to another member of the same persona
    seg0 = reps.at[0, "customer_id"]
    c = store.customers.copy()
    c.loc[c["customer_id"] == seg0, "consent_profiling"] = False
    again = representative_customers(result.table, result.model, result.features, customers=c)
    assert again.at[0, "customer_id"] != seg0 and table.at[again.at[0, "customer_id"], "segment"] == 0
    assert again.drop(index=0)["customer_id"].equals(reps.drop(index=0)["customer_id"])
    largest = table["segment"].value_counts().idxmax()
    assert example_customer(result.table, result.model, result.features) == reps.at[largest, "customer_id"]


def test_story_tells_the_customers_real_numbers(synthetic):
    store, result, personas, lines = synthetic
    reps = representative_customers(result.table, result.model, result.features)
    cid = reps.loc[reps["members"].idxmax(), "customer_id"]
    values = pd.DataFrame({"p_alive": [0.87], "clv": [420.0]}, index=[cid])
    recs = pd.DataFrame({"customer_id": [cid] * 3, "rank": [2, 1, 3], "product_id": ["P0001", "P0000", "P0002"]})
    story = customer_story(cid, result.table, store.transactions, as_of=AS_OF, persona="Test persona",
                           membership='clearly one of the "Test persona"', values=values, recommendations=recs,
                           products=store.products, feedback=store.feedback, currency="EUR")
    text = story.text()
    # the numbers, recomputed here from the customer's own lines
    mine = lines[(lines["customer_id"] == cid) & (lines["order_date"] < pd.Timestamp(AS_OF)) & ~lines["is_return"]]
    orders = mine["order_id"].nunique()
    first, last = mine["order_date"].min(), mine["order_date"].max()
    assert story.numbers["orders"] == orders and story.numbers["first_purchase"] == first.date().isoformat()
    assert f"First order on {first.day} {first:%B %Y}" in text and f"Last order on {last.day} {last:%B %Y}" in text
    assert (f"{orders} orders in all" in text) if orders > 1 else ("One order so far." in text)
    top_category = mine.groupby("category")["amount"].sum().idxmax()
    assert list(story.numbers["favourite_categories"])[0] == top_category
    assert "Favourite categor" in text and top_category.replace("_", " ") in text
    median_value = mine.groupby("order_id")["amount"].sum().median()
    assert story.numbers["median_order_value"] == pytest.approx(median_value, abs=0.01)
    assert "€420" in text and "87%" in text
    assert "Suggested next: Fresh Produce item 1, Fresh Produce item 2 and Fresh Produce item 3." in text  # by rank
    answers = store.feedback[(store.feedback["customer_id"] == cid) & (store.feedback["timestamp"] < pd.Timestamp(AS_OF))]
    if answers["nps"].notna().any():
        assert f"({answers['nps'].notna().sum()} answer" in text
    else:
        assert "They have not answered a survey." in text
    assert text.startswith('Clearly one of the "Test persona".')
    status = result.table["status"] if "status" in result.table else None
    assert story.numbers["status"] in ("active", "lapsing", "lapsed") and (status is None or story.numbers["status"] == status[cid])


def test_story_of_a_one_order_customer():
    lines = pd.DataFrame({"customer_id": ["x"] * 2, "order_id": ["o1"] * 2,
                          "order_date": pd.to_datetime(["2025-03-02 10:00"] * 2), "product_id": ["a", "b"],
                          "category": ["books", "toys"], "quantity": [1.0, 2.0], "amount": [30.0, 10.0], "is_return": False})
    table = pd.DataFrame({"first_purchase": pd.to_datetime(["2025-03-02"]), "last_purchase": pd.to_datetime(["2025-03-02"]),
                          "frequency": [1], "monetary": [40.0], "recency_days": [305], "ipi_mean_days": [np.nan],
                          "tenure_days": [305]}, index=["x"])
    story = customer_story("x", table, lines, as_of=AS_OF, currency="EUR")
    assert story.sentences[:4] == [
        "First order on 2 March 2025, 10 months before the analysis date.",
        "One order so far.",
        "Their order: 3 items for €40.00; €40.00 net spend in all.",
        "Favourite categories: books (75% of their spend) and toys (25%).",
    ]
    assert story.sentences[4].startswith("Last order on 2 March 2025, 305 days before the analysis date; lapsed")
    assert "Suggested" not in story.text() and "Expected value" not in story.text()


def test_membership_in_words():
    assert membership_words(0.6, 0.8, "Bargain hunters") == (
        'clearly one of the "Bargain hunters" (closer to this persona\'s centre than 8 in 10 of its members)')
    assert membership_words(0.3, 0.42, "Bargain hunters").startswith('mostly one of the "Bargain hunters" (closer')
    assert "4 in 10" in membership_words(0.3, 0.42, "Bargain hunters")
    assert membership_words(0.1, 0.02, "A", "B") == ('on the border between "A" and "B" (farther from this persona\'s '
                                                     'centre than almost all its members)')


def test_profile_of_one_customer(synthetic):
    store, result, personas, _ = synthetic
    cid = example_customer(result.table, result.model, result.features, customers=store.customers)
    values = pd.DataFrame({"p_alive": [0.5], "clv": [1234.0]}, index=[cid])
    recs = pd.DataFrame({"customer_id": [cid], "rank": [1], "product_id": ["P0003"], "reason": ["bought again"]})
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of=AS_OF,
                         customers=store.customers, pii=store.pii, feedback=store.feedback, products=store.products,
                         values=values, recommendations=recs, currency="EUR")
    assert p.persona == personas.summary.at[result.table.at[cid, "segment"], "name"]
    assert p.membership.startswith(("clearly", "mostly", "on the border")) and p.persona in p.membership
    assert 0 <= p.strength <= 1
    assert p.facts.at["expected value (lifetime value)", "value"] == "€1,234"
    assert p.recommendations["name"].tolist() == ["Fresh Produce item 4"]
    assert not any(n.startswith(("Expected value", "Suggested next")) for n in p.notes)
    # differences in words, with units, never raw feature names
    d = p.differences
    assert 1 <= len(d) <= 6 and not d["label"].str.contains("_").any()
    assert d["text"].str.contains(f'than \\d+% of the "{p.persona}"').all()
    members = result.table[result.table["segment"] == p.segment]
    first = d.iloc[0]
    column, mine = members[first["feature"]].dropna(), result.table.at[cid, first["feature"]]
    below, above = (column < mine).mean(), (column > mine).mean()
    assert f"{(below if first['direction'] == 'higher' else above):.0%} of the" in first["text"]
    assert p.timeline["spend"].sum() > 0 and p.identity is None
    ax = plot_customer_profile(p).axes[0]
    first, last = p.timeline.index.min(), p.timeline.index.max()
    months = (last.year - first.year) * 12 + last.month - first.month + 1
    assert len(ax.patches) == months  # one bar per month from the first order to the last, empty months at 0
    assert sum(bar.get_height() for bar in ax.patches) == pytest.approx(p.timeline["spend"].sum())
    internal = customer_profile(cid, result.table, store.transactions, personas.summary, result.model, result.features,
                                as_of=AS_OF, customers=store.customers, pii=store.pii, internal=True)
    assert "@example.com" in internal.identity["email"]
    notes = " ".join(internal.notes)
    assert "Expected value is not shown" in notes and "Suggested next products are not shown" in notes
    assert "pass values" not in notes and "=" not in notes
    s = membership_strength(result.model, result.table[result.features])
    assert s.between(0, 1).all()


def test_profile_refuses_without_consent_and_unknown(synthetic):
    store, result, personas, _ = synthetic
    no = store.customers.loc[~store.customers["consent_profiling"], "customer_id"].iloc[0]
    with pytest.raises(ValueError, match="consented to profiling"):
        customer_profile(no, result.table, store.transactions, personas, result.model, result.features,
                         as_of=AS_OF, customers=store.customers)
    with pytest.raises(KeyError, match="unknown"):
        customer_profile("nobody", result.table, store.transactions, personas, result.model, result.features, as_of=AS_OF)


def test_key_dates_only_with_marketing_consent(synthetic):
    store, result, personas, _ = synthetic
    c = store.customers.copy()
    cid = example_customer(result.table, result.model, result.features)
    c.loc[c["customer_id"] == cid, ["birth_date", "consent_marketing", "consent_profiling"]] = [pd.Timestamp("1970-01-10"), True, True]
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of=AS_OF,
                         customers=c, key_date_days=30)
    assert p.key_dates.set_index("event").loc["birthday", "days_until"] == 9
    c.loc[c["customer_id"] == cid, "consent_marketing"] = False
    p = customer_profile(cid, result.table, store.transactions, personas, result.model, result.features, as_of=AS_OF,
                         customers=c, key_date_days=30)
    assert p.key_dates.empty and any("not agreed to marketing" in n for n in p.notes)


def test_every_persona_card_gets_a_person(synthetic):
    store, result, personas, _ = synthetic
    cards = representative_stories(result.table, store.transactions, result.model, result.features, personas, as_of=AS_OF,
                                   customers=store.customers, products=store.products, currency="EUR")
    reps = representative_customers(result.table, result.model, result.features, customers=store.customers)
    assert list(cards.index) == personas.visible()
    assert cards["customer_id"].equals(reps.loc[cards.index, "customer_id"])
    for seg, card in cards.iterrows():
        assert card["persona"] == personas.summary.at[seg, "name"] and card["persona"] in card["membership"]
        orders = int(result.table.at[card["customer_id"], "frequency"])
        assert card["story"].startswith(card["membership"][0].upper())
        assert (f"{orders} orders in all" in card["story"]) if orders > 1 else ("One order so far." in card["story"])
