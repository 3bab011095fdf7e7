"""Journey: hand-made events with known answers, the vectorised functions against a plain
per-session reference on generated messy events, robustness, migration with permuted
alignment, small-group rules, and the planted funnel effect recovered."""

from __future__ import annotations

import ibis
import numpy as np
import pandas as pd
import pytest

from segmentation import journey as j
from segmentation.segments import match_segments


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
    f = j.funnel(EVENTS, min_group_size=1).set_index("step")
    assert f["sessions"].tolist() == [4, 4, 3, 3, 2]
    assert f.attrs["duplicates"] == 1
    assert f.loc["order", "conversion"] == pytest.approx(2 / 3)
    assert f.loc["product_view", "median_minutes"] == pytest.approx(1.5)  # minutes 1, 2, 5, 1
    lo, hi = f.loc["order", ["ci_low", "ci_high"]]
    assert lo < 2 / 3 < hi
    by_channel = j.funnel(EVENTS, by="channel", min_group_size=1).set_index(["group", "step"])["sessions"]
    assert by_channel[("social", "visit")] == 2 and by_channel[("social", "order")] == 0
    by_segment = j.funnel(EVENTS, by=pd.Series({"a": "A", "b": "B"}), min_group_size=1).set_index(["group", "step"])["sessions"]
    assert by_segment[("A", "order")] == 1 and by_segment[("B", "visit")] == 2  # anonymous s3 left out


def test_funnel_leaves_out_small_groups_with_a_note():
    f = j.funnel(EVENTS, by=pd.Series({"a": "A", "b": "B"}), min_group_size=2)
    assert set(f["group"]) == set()  # one customer each: both below 2
    assert "fewer than 2 customers" in f.attrs["notes"][0]
    by_channel = j.funnel(EVENTS, by="channel", min_group_size=2)
    assert set(by_channel["group"]) == {"social"}  # 2 sessions; email and search have 1


def test_wilson_interval_known_values():
    lo, hi = j.wilson_interval(np.array([8, 0]), np.array([10, 5]))
    assert lo[0] == pytest.approx(0.4902, abs=1e-4) and hi[0] == pytest.approx(0.9433, abs=1e-4)
    assert lo[1] == pytest.approx(0.0) and hi[1] == pytest.approx(0.4345, abs=1e-4)


def test_paths_attribution_post_purchase_converting():
    paths = j.common_paths(EVENTS)
    first = paths[paths["kind"] == "first"].set_index("path")["sessions"]
    # a's s1 (duplicate view collapsed), b's first order is in s2 (an order event, out of order or not)
    assert first.to_dict() == {"visit > product_view > add_to_cart > checkout > order": 1,
                               "visit > product_view > add_to_cart > order": 1}
    repeat = paths[paths["kind"] == "repeat"]
    assert repeat["path"].tolist() == ["visit > product_view > add_to_cart > checkout > order"]
    short = j.common_paths(EVENTS, max_len=2)
    assert set(short["path"]) == {"checkout > order", "add_to_cart > order"}
    att = j.attribution(EVENTS)
    assert att.loc["email", "first_touch"] == 1 and att.loc["social", "first_touch"] == 1
    assert att.loc["social", "last_touch"] == 1  # b's first order event is in s2
    pp = j.post_purchase(EVENTS, pd.Series({"a": 1, "b": 2}), pd.Series({"a": "A", "b": "B"}), min_group_size=1)
    assert pp.loc["B", "support_contact_per_order"] == pytest.approx(0.5) and pp.loc["A", "support_contact"] == 0
    cv = j.converting_vs_not(EVENTS)
    assert cv.loc["converting", "sessions"] == 3 and cv.loc["not converting", "sessions"] == 1  # s2's order is a web event
    assert cv.loc["converting", "product_views"] == 1 and cv.loc["converting", "minutes"] == pytest.approx((9 + 6 + 4) / 3)
    assert cv.loc["not converting", "minutes"] == 5 and cv.loc["not converting", "share_social"] == 1.0
    assert cv.loc["converting", "share_email"] == pytest.approx(1 / 3)


# --------------------------------------------------------------- reference on generated events
def _random_events(seed: int, n_sessions: int = 250) -> pd.DataFrame:
    """Messy generated events: ties at minute resolution, exact duplicates, out-of-order steps,
    anonymous rows inside logged-in sessions, missing channels, repeat visits."""
    rng = np.random.default_rng(seed)
    vocab = np.array(["ad_click", "visit", "product_view", "add_to_cart", "checkout", "order", "support_contact"])
    n = rng.integers(1, 12, n_sessions)
    sess = np.repeat(np.arange(n_sessions), n)
    cust = rng.integers(0, 40, n_sessions).astype(object)
    cust[rng.random(n_sessions) < 0.15] = None
    start = pd.Timestamp("2025-01-01") + pd.to_timedelta(rng.integers(0, 60 * 24 * 30, n_sessions), unit="min")
    df = pd.DataFrame({
        "customer_id": pd.array([None if c is None else f"c{c}" for c in cust[sess]], dtype="string"),
        "session_id": [f"s{i:04d}" for i in sess],
        "timestamp": start[sess] + pd.to_timedelta(rng.integers(0, 15, len(sess)), unit="min"),
        "event": vocab[np.minimum(rng.geometric(0.35, len(sess)), len(vocab) - 1)],
        "channel": np.array(["email", "social", "search", "direct"])[rng.integers(0, 4, n_sessions)][sess].astype(object),
    })
    df.loc[rng.random(len(df)) < 0.05, "customer_id"] = None
    df.loc[rng.random(len(df)) < 0.03, "channel"] = None
    df = pd.concat([df, df.sample(frac=0.05, random_state=seed)])
    return df.sample(frac=1.0, random_state=seed + 1).reset_index(drop=True)


def _by_session(events: pd.DataFrame):
    """Reference: every session's deduplicated rows in time order (ties: input order)."""
    ev = events.drop_duplicates()
    ev = ev.assign(_i=np.arange(len(ev))).sort_values(["session_id", "timestamp", "_i"])
    return {s: d for s, d in ev.groupby("session_id", sort=True)}


def _first_valid(values: pd.Series):
    v = values.dropna()
    return v.iloc[0] if len(v) else None


def _reference_funnel(events, steps=j.WEB_FUNNEL):
    counts = {}
    for s, d in _by_session(events).items():  # reference loop, one session at a time
        t, reached = None, []
        for k, step in enumerate(steps):
            ts = d.loc[(d["event"] == step) & ((d["timestamp"] >= t) if t is not None else True), "timestamp"]
            if not len(ts):
                break
            t = ts.min()
            reached.append(step)
        if reached:
            channel = _first_valid(d["channel"])
            for step in reached:
                counts[("all", step)] = counts.get(("all", step), 0) + 1
                if channel is not None:  # a session without any channel is left out of the split
                    counts[(channel, step)] = counts.get((channel, step), 0) + 1
    return counts


def _reference_paths(events, target="order", max_len=6):
    rows = []
    for s, d in _by_session(events).items():  # reference loop
        d = d[d["event"] != d["event"].shift()]
        hits = d.loc[d["event"] == target, "timestamp"]
        if not len(hits):
            continue
        window = d[d["timestamp"] <= hits.min()].tail(max_len)
        who = _first_valid(window["customer_id"])
        if who is not None:
            rows.append((who, hits.min(), s, " > ".join(window["event"])))
    paths = pd.DataFrame(rows, columns=["customer", "ts", "session", "path"]).sort_values(["ts", "session"])
    paths["kind"] = np.where(paths.duplicated("customer"), "repeat", "first")
    return paths.groupby(["kind", "path"]).size().to_dict()


def _reference_attribution(events, target="order"):
    first_touch, last_touch = {}, {}
    ev = events.drop_duplicates().dropna(subset=["customer_id"])
    ev = ev.assign(_i=np.arange(len(ev))).sort_values(["session_id", "timestamp", "_i"])
    for cust, rows in ev.groupby("customer_id"):  # reference loop, one customer at a time
        mine = dict(list(rows.groupby("session_id", sort=True)))
        orders = [(d.loc[d["event"] == target, "timestamp"].min(), s) for s, d in mine.items() if (d["event"] == target).any()]
        if not orders:
            continue
        order_ts, order_session = min(orders)
        d = mine[order_session]
        ch = d.loc[(d["event"] == target) & (d["timestamp"] == order_ts), "channel"].iloc[0]
        if ch is not None and ch == ch:
            last_touch[ch] = last_touch.get(ch, 0) + 1
        starts = sorted((d["timestamp"].min(), s, _first_valid(d["channel"])) for s, d in mine.items())
        starts = [x for x in starts if x[0] <= order_ts and x[2] is not None]
        if starts:
            first_touch[starts[0][2]] = first_touch.get(starts[0][2], 0) + 1
    return first_touch, last_touch


@pytest.mark.parametrize("seed", [0, 1])
def test_vectorised_functions_match_a_per_session_reference(seed):
    events = _random_events(seed)
    f = j.funnel(events, min_group_size=0)
    fc = j.funnel(events, by="channel", min_group_size=0)
    got = {("all", r.step): r.sessions for r in f.itertuples()} | {(r.group, r.step): r.sessions for r in fc.itertuples()}
    assert {k: v for k, v in got.items() if v > 0} == _reference_funnel(events)
    assert f.attrs["duplicates"] == len(events) - len(events.drop_duplicates())

    paths = j.common_paths(events, top=10_000)
    assert paths.set_index(["kind", "path"])["sessions"].to_dict() == _reference_paths(events)
    short = j.common_paths(events, max_len=2, top=10_000)
    assert short.set_index(["kind", "path"])["sessions"].to_dict() == _reference_paths(events, max_len=2)
    top = j.common_paths(events, top=3)
    assert top.groupby("kind").size().max() == 3 and top.groupby("kind")["sessions"].is_monotonic_decreasing.all()

    att = j.attribution(events)
    first_touch, last_touch = _reference_attribution(events)
    coded = j.code_events(events)  # coded once, same answers everywhere
    pd.testing.assert_frame_equal(j.attribution(coded), att)
    pd.testing.assert_frame_equal(j.common_paths(coded, top=10_000), paths)
    pd.testing.assert_frame_equal(j.funnel(coded, by="channel", min_group_size=0), fc)
    pd.testing.assert_frame_equal(j.converting_vs_not(coded), j.converting_vs_not(events))
    assert att["first_touch"][att["first_touch"] > 0].to_dict() == first_touch
    assert att["last_touch"][att["last_touch"] > 0].to_dict() == last_touch


def test_no_events_gives_not_available_results():
    for ev in (None, EVENTS.iloc[:0]):
        for table in (j.funnel(ev), j.common_paths(ev), j.converting_vs_not(ev), j.attribution(ev)):
            assert len(table) == 0 and table.attrs["notes"] == [j.NO_EVENTS_NOTE]
        pp = j.post_purchase(ev, pd.Series({"a": 1}), pd.Series({"a": "A"}), min_group_size=1)
        assert pp.loc["A", "customers"] == 1 and j.NO_EVENTS_NOTE in pp.attrs["notes"]
    assert list(j.funnel(None).columns)[:3] == ["group", "step", "sessions"]
    with pytest.raises(ValueError, match=r"no column\(s\) \['session_id'\]"):
        j.funnel(EVENTS.drop(columns="session_id"))
    # optional columns really optional
    f = j.funnel(EVENTS.drop(columns=["channel", "customer_id"]), by="channel", min_group_size=1)
    assert f["group"].unique().tolist() == ["unknown"] and f["sessions"].iloc[0] == 4
    assert j.attribution(EVENTS.drop(columns="customer_id")).attrs["notes"]


# -------------------------------------------------------------------------------- migration
def test_migration_with_permuted_alignment_names_and_counts():
    # earlier model: segments 0, 1, 2 at x = 0, 10, 20. The current fit finds the same three
    # people-types in another order (raw 0 = earlier 2, raw 1 = earlier 0, raw 2 = earlier 1)
    # and a fourth, new one far away.
    previous = pd.DataFrame({"x": [0.0, 10.0, 20.0], "y": 0.0}, index=[0, 1, 2])
    current = pd.DataFrame({"x": [20.0, 0.0, 10.0, 100.0], "y": [0.1, 0.1, 0.1, 50.0]}, index=[0, 1, 2, 3])
    mapping = match_segments(previous, current)
    assert mapping.set_index("current")["new_id"].to_dict() == {0: 2, 1: 0, 2: 1, 3: 3}
    ids = [f"c{i}" for i in range(120)]
    before = pd.Series([0] * 40 + [1] * 40 + [2] * 40, index=ids)
    # raw current labels: segment-0 people stay (raw 1) except 10 who form the new segment (raw 3);
    # segment-1 people stay (raw 2); of segment 2 (raw 0), 15 move to segment 1 (raw 2)
    raw = pd.Series([1] * 30 + [3] * 10 + [2] * 40 + [0] * 25 + [2] * 15, index=ids)
    after = raw.map(mapping.set_index("current")["new_id"]).drop(["c0", "c1"])  # two customers gone
    after = pd.concat([after, pd.Series(0, index=[f"n{i}" for i in range(12)])])  # 12 new customers in segment 0
    names = {0: "Bargain hunters", 1: "VIP loyalists", 2: "Busy families", 3: "Deal seekers"}  # current personas, aligned ids
    mig = j.migration_matrix(before, after, names=names, new_segments=mapping.loc[~mapping["matched"], "new_id"],
                             min_group_size=10)
    s = mig.summary["customers"]
    assert s.to_dict() == {"stayed": 28 + 40 + 25, "moved": 15, "joined a new segment": 10,
                           "left a discontinued segment": 0, "gone customers": 2, "new customers": 12}
    c = mig.counts
    assert c.loc["Bargain hunters", "Bargain hunters"] == 28 and c.loc["Busy families", "VIP loyalists"] == 15
    assert c.loc["Bargain hunters", "Deal seekers (new segment)"] == 10
    assert c.loc["not a customer then", "Bargain hunters"] == 12
    assert pd.isna(c.loc["Bargain hunters", "not in the current run"])  # 2 < min_group_size: hidden
    assert c.loc["VIP loyalists", "Busy families"] == 0  # zero is shown, not hidden
    assert mig.flows[["from", "to", "customers"]].values.tolist() == [["Busy families", "VIP loyalists", 15]]
    assert "Deal seekers" not in set(mig.flows["to"])  # never a destination of movers
    assert mig.new_segments.iloc[0][["name", "customers", "from_earlier_segments"]].tolist() == ["Deal seekers", 10, 10]
    assert mig.scalars()["moved"] == 15 and any("shown as new" in n for n in mig.notes)
    # without alignment the same data would look like a mass migration
    naive = j.migration_matrix(before, raw.drop(["c0", "c1"]), min_group_size=0)
    assert naive.summary.loc["moved", "customers"] > 60


def test_migration_rejects_unaligned_ids_and_handles_discontinued_segments():
    before = pd.Series([0, 0, 1, 1, 2], index=list("abcde"))
    with pytest.raises(ValueError, match="declared new but have customers in the earlier run"):
        j.migration_matrix(before, pd.Series([0, 1, 1], index=list("abc")), new_segments=[1])
    mig = j.migration_matrix(before, pd.Series([0, 0, 0, 1, 1], index=list("abcde")), names={0: "A", 1: "B"},
                             previous_names={2: "Old C"}, min_group_size=0)
    assert mig.summary.loc["left a discontinued segment", "customers"] == 1
    assert mig.counts.loc["Old C (discontinued)", "B"] == 1 and mig.summary.loc["moved", "customers"] == 1
    with_revenue = j.migration_matrix(before, pd.Series([0, 1], index=list("ab")), revenue=pd.Series({"a": 10.0, "b": 5.0}),
                                      min_group_size=0)
    assert with_revenue.revenue.loc["segment 0", "segment 1"] == 5.0


# ------------------------------------------------------------------------ cohorts and trends
def _tx(rows):
    tx = pd.DataFrame(rows, columns=["customer_id", "order_date", "category", "amount"])
    tx["order_date"] = pd.to_datetime(tx["order_date"])
    tx["order_id"] = [f"o{i}" for i in range(len(tx))]
    tx["is_return"] = False
    return ibis.memtable(tx)


def test_cohorts_known_values_small_cohorts_and_no_data():
    tx = _tx([("a", "2025-01-05", "x", 10.0), ("a", "2025-03-02", "x", 20.0), ("b", "2025-01-20", "x", 5.0),
              ("c", "2025-02-11", "x", 8.0)])
    ret, rev = j.cohort_retention(tx, "2025-04-01", min_group_size=1)
    assert ret.loc["2025-01", "customers"] == 2 and ret.loc["2025-01", 2] == pytest.approx(0.5)
    assert rev.loc["2025-01", 0] == pytest.approx(7.5)
    ret, rev = j.cohort_retention(tx, "2025-04-01", min_group_size=2)
    assert ret.index.tolist() == ["2025-01"] and any("1 monthly cohort" in n for n in ret.attrs["notes"])
    ret, rev = j.cohort_retention(tx, "2024-01-01")
    assert ret.empty and "not available" in ret.attrs["notes"][0]


def test_a_month_the_data_cover_only_in_part_is_blank_in_every_cohort():
    tx = _tx([("a", "2025-01-05", "x", 10.0), ("a", "2025-03-02", "x", 20.0), ("b", "2025-01-20", "x", 5.0),
              ("c", "2025-02-11", "x", 8.0), ("c", "2025-03-01", "x", 4.0)])
    ret, rev = j.cohort_retention(tx, "2025-03-05", min_group_size=1)  # March: 4 of 31 days
    assert pd.isna(ret.loc["2025-01", 2]) and pd.isna(ret.loc["2025-02", 1]) and pd.isna(rev.loc["2025-02", 1])
    assert ret.loc["2025-01", 0] == 1.0 and "Mar 2025 is left blank" in ret.attrs["notes"][1]
    assert ret.attrs["notes"][0] == "The first cohort (Jan 2025) also holds the customers who had bought before the data begin."
    ret, _ = j.cohort_retention(tx, "2025-04-01", min_group_size=1)  # March complete: kept
    assert ret.loc["2025-01", 2] == pytest.approx(0.5) and ret.loc["2025-02", 1] == 1.0
    assert ret.loc["2025-01", 1] == 0.0 and pd.isna(ret.loc["2025-02", 2])  # nobody came back / after the data
    assert j.explore.partial_last_month("2025-03-30") is None  # 29 of 31 days: complete
    # the first cohort (January: 0 of 2 back in February) holds everyone who bought before the data:
    # left out while a later one is known (February: 1 of 1 back in March)
    assert j.second_month_return(ret) == 1.0 and j.second_month_return(ret.rename(columns=str)) == 1.0
    partial, _ = j.cohort_retention(tx, "2025-03-05", min_group_size=1)
    assert j.second_month_return(partial) == 0.0  # February's month after is blank: only January is known


def test_category_trends_need_enough_buyers_in_both_windows():
    rows = []
    for i in range(12):  # 12 customers buy x in both windows, spending more recently
        rows += [(f"k{i}", "2025-08-15", "x", 10.0), (f"k{i}", "2025-11-15", "x", 30.0)]
    for i in range(5):  # 5 customers drive a huge jump in y
        rows += [(f"k{i}", "2025-08-16", "y", 1.0), (f"k{i}", "2025-11-16", "y", 500.0)]
    rows += [("k0", "2025-08-17", "z", 40.0)]
    tx = _tx(rows)
    groups = pd.Series("A", index=[f"k{i}" for i in range(12)])
    t = j.category_trends(tx, "2026-01-01", groups, min_group_size=10)
    assert t["category"].tolist() == ["x"]  # y rests on 5 buyers, z on 1 and none recently
    assert t.loc[0, ["customers_before", "customers_recent"]].tolist() == [12, 12]
    assert t.loc[0, "share_before"] == pytest.approx(120 / (120 + 5 + 40))
    assert "2 of 3 group-category trends" in t.attrs["notes"][0]
    everything = j.category_trends(tx, "2026-01-01", groups, min_group_size=1)
    assert everything.loc[0, "category"] == "y"  # the fastest "growth" is the one that rests on 5 customers


# ---------------------------------------------------------------------------- planted effects
@pytest.fixture(scope="module")
def synthetic():
    from segmentation.data import load_store

    return load_store("synthetic", n_customers=1500, random_state=42, as_of="2026-01-01", suppress=[])


def test_planted_checkout_dropoff_by_channel_is_recovered(synthetic):
    from segmentation.synthetic import CHECKOUT_CONVERSION

    f = j.funnel(synthetic.events, by="channel")
    got = f[f["step"] == "order"].set_index("group")["conversion"]
    for channel, planted in CHECKOUT_CONVERSION.items():
        assert got[channel] == pytest.approx(planted, abs=0.03), channel
    assert got["social"] < got["email"] - 0.3
    paths = j.common_paths(synthetic.events, top=3)
    assert paths.iloc[0]["path"].endswith("visit > product_view > add_to_cart > checkout > order")
