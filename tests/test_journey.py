"""Journey and satisfaction: hand-made events with known answers; planted effects recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation import journey as j
from segmentation import satisfaction as sat


def _events(rows):
    df = pd.DataFrame(rows, columns=["customer_id", "session_id", "timestamp", "event", "channel"])
    df["timestamp"] = pd.to_datetime(df["timestamp"])
    return df


EVENTS = _events([
    # s1: full funnel, with a duplicated product_view
    ("a", "s1", "2025-01-01 10:00", "visit", "email"),
    ("a", "s1", "2025-01-01 10:01", "product_view", "email"),
    ("a", "s1", "2025-01-01 10:01", "product_view", "email"),
    ("a", "s1", "2025-01-01 10:03", "add_to_cart", "email"),
    ("a", "s1", "2025-01-01 10:05", "checkout", "email"),
    ("a", "s1", "2025-01-01 10:09", "order", "email"),
    # s2: order logged BEFORE checkout (out of order) -> reaches checkout, not order
    ("b", "s2", "2025-01-02 09:00", "visit", "social"),
    ("b", "s2", "2025-01-02 09:02", "product_view", "social"),
    ("b", "s2", "2025-01-02 09:03", "add_to_cart", "social"),
    ("b", "s2", "2025-01-02 09:04", "order", "social"),
    ("b", "s2", "2025-01-02 09:06", "checkout", "social"),
    # s3: anonymous, stops after product view
    (None, "s3", "2025-01-03 12:00", "visit", "social"),
    (None, "s3", "2025-01-03 12:05", "product_view", "social"),
    # s4: b comes back and orders (repeat), then contacts support
    ("b", "s4", "2025-01-10 20:00", "visit", "search"),
    ("b", "s4", "2025-01-10 20:01", "product_view", "search"),
    ("b", "s4", "2025-01-10 20:02", "add_to_cart", "search"),
    ("b", "s4", "2025-01-10 20:03", "checkout", "search"),
    ("b", "s4", "2025-01-10 20:04", "order", "search"),
    ("b", "t1", "2025-01-12 08:00", "support_contact", "support"),
])


def test_funnel_counts_out_of_order_duplicates_and_anonymous():
    f = j.funnel(EVENTS).set_index("step")
    assert f["sessions"].tolist() == [4, 4, 3, 3, 2]
    assert f.attrs["duplicates"] == 1
    assert f.loc["order", "conversion"] == pytest.approx(2 / 3)
    assert f.loc["product_view", "median_minutes"] == pytest.approx(1.5)  # minutes 1, 2, 5, 1
    lo, hi = f.loc["order", ["ci_low", "ci_high"]]
    assert lo < 2 / 3 < hi
    by_channel = j.funnel(EVENTS, by="channel").set_index(["group", "step"])["sessions"]
    assert by_channel[("social", "visit")] == 2 and by_channel[("social", "order")] == 0
    by_segment = j.funnel(EVENTS, by=pd.Series({"a": "A", "b": "B"})).set_index(["group", "step"])["sessions"]
    assert by_segment[("A", "order")] == 1 and by_segment[("B", "visit")] == 2  # anonymous s3 left out


def test_wilson_interval_known_values():
    lo, hi = j.wilson_interval(np.array([8, 0]), np.array([10, 5]))
    assert lo[0] == pytest.approx(0.4902, abs=1e-4) and hi[0] == pytest.approx(0.9433, abs=1e-4)
    assert lo[1] == pytest.approx(0.0) and hi[1] == pytest.approx(0.4345, abs=1e-4)


def test_paths_attribution_post_purchase():
    paths = j.common_paths(EVENTS)
    assert set(paths["kind"]) == {"first", "repeat"}
    first = paths[paths["kind"] == "first"]
    assert first["sessions"].sum() == 2  # a's s1 and b's s4 (s2's order is out of order but still an order event)
    att = j.attribution(EVENTS)
    assert att.loc["email", "first_touch"] == 1 and att.loc["social", "first_touch"] == 1
    assert att.loc["social", "last_touch"] == 1  # b's first order event is in s2
    pp = j.post_purchase(EVENTS, pd.Series({"a": 1, "b": 2}), pd.Series({"a": "A", "b": "B"}))
    assert pp.loc["B", "support_contact_per_order"] == pytest.approx(0.5) and pp.loc["A", "support_contact"] == 0


def test_migration_and_cohorts():
    before = pd.Series({"a": 0, "b": 1, "c": 1})
    after = pd.Series({"a": 0, "b": 0, "d": 2})
    counts, moved = j.migration_matrix(before, after, revenue=pd.Series({"a": 10.0, "b": 5.0, "d": 7.0}))
    assert counts.loc["1", "0"] == 1 and counts.loc["1", "gone"] == 1 and counts.loc["new", "2"] == 1
    assert moved.loc["1", "0"] == 5.0

    import ibis
    tx = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "order_id": ["1", "2", "3", "4"],
                       "order_date": pd.to_datetime(["2025-01-05", "2025-03-02", "2025-01-20", "2025-02-11"]),
                       "amount": [10.0, 20.0, 5.0, 8.0], "is_return": False})
    ret, rev = j.cohort_retention(ibis.memtable(tx), "2025-04-01")
    assert ret.loc["2025-01", "customers"] == 2 and ret.loc["2025-01", 2] == pytest.approx(0.5)
    assert rev.loc["2025-01", 0] == pytest.approx(7.5)


def test_nps_csat_arithmetic():
    r = sat.nps(pd.Series([10, 9, 9, 8, 7, 6, 0, 10, 3, 9]))
    assert r["promoters"] == 0.5 and r["detractors"] == 0.3 and r["nps"] == pytest.approx(20.0)
    half = 1.959964 * 100 * np.sqrt((0.5 + 0.3 - 0.2**2) / 10)
    assert r["ci_high"] - r["nps"] == pytest.approx(half, rel=1e-5)
    c = sat.csat(pd.Series([5, 4, 3, 1]))
    assert c["mean"] == 3.25 and c["satisfied"] == 0.5
    with pytest.raises(ValueError, match="between 0 and 10"):
        sat.nps(pd.Series([11]))
    assert sat.nps_group(pd.Series([9, 7, 6, np.nan])).tolist()[:3] == ["promoter", "passive", "detractor"]


def test_pii_scrubbed_in_themes():
    comments = pd.Series(["delivery was late, call +44 7700 900123"] * 6 + ["staff friendly and helpful"] * 6
                         + ["app crashes at checkout, mail x.y@example.com"] * 6)
    themes, assignment = sat.feedback_themes(comments, n_themes=3)
    text = " ".join(themes[["example_1", "example_2"]].to_numpy().ravel())
    assert "7700" not in text and "example.com" not in text and "[phone]" in text
    assert assignment.nunique() == 3


@pytest.fixture(scope="module")
def synthetic():
    from segmentation.data import load_store
    from segmentation.features import customer_features

    store = load_store("synthetic", n_customers=1500, seed=42, as_of="2026-01-01", suppress=[])
    return store, customer_features(store.transactions, "2026-01-01")


def test_planted_checkout_dropoff_by_channel_is_recovered(synthetic):
    from segmentation.synthetic import CHECKOUT_CONVERSION

    store, _ = synthetic
    f = j.funnel(store.events, by="channel")
    got = f[f["step"] == "order"].set_index("group")["conversion"]
    for channel, planted in CHECKOUT_CONVERSION.items():
        assert got[channel] == pytest.approx(planted, abs=0.03), channel
    assert got["social"] < got["email"] - 0.3


def test_planted_satisfaction_drop_before_lapse_is_recovered(synthetic):
    from segmentation.synthetic import LAPSE_NPS_DROP

    store, features = synthetic
    t = sat.satisfaction_before_lapse(store.feedback, features)
    assert t.loc["lapsed", "change"] == pytest.approx(-LAPSE_NPS_DROP, abs=0.6)
    assert t.loc["active", "change"] > -1.0
    lapse = sat.satisfaction_and_behaviour(store.feedback, features)
    assert lapse.loc["detractor", "lapse_rate"] > lapse.loc["promoter", "lapse_rate"] + 0.3
