"""One play per persona with a test design, the promotion plan, offer lists with consent, loyalty
tiers, eligibility lists and key dates -- known answers on small hand-made frames."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from segmentation.offers import (
    LOYALTY_TIERS,
    OFFER_RULES,
    PLAYS,
    action_plan,
    category_lift,
    discount_sensitivity,
    list_summary,
    loyalty_tier_table,
    loyalty_tiers,
    minimum_detectable_uplift,
    offer_counts,
    offer_list,
    promotion_plan,
    senior_discount_list,
    upcoming_key_dates,
    win_back_list,
)

Z = norm.ppf(0.975) + norm.ppf(0.8)  # 1.96 + 0.84


# ------------------------------------------------------------------------------ small frames
@pytest.fixture
def features() -> pd.DataFrame:
    # group A: wine lovers who use discounts; B: bread buyers who never use discounts
    return pd.DataFrame({
        "persona": ["A", "A", "A", "B", "B", "B"],
        "cat_wine": [0.8, 0.6, 0.0, 0.0, 0.1, 0.0],
        "cat_bread": [0.2, 0.4, 1.0, 1.0, 0.9, 1.0],
        "discount_share": [0.5, 0.3, 0.4, 0.0, 0.0, 0.0],
        "monetary": [100.0, 50, 10, 400, 20, 5],
        "avg_order_value": [20.0, 10, 10, 20, 10, 5],  # gross spend = 100, 30, 10, 400, 20, 5
        "frequency": [5, 3, 1, 20, 2, 1],
        "recency_days": [10.0, 200, 30, 300, 15, 400],
        "ipi_mean_days": [20.0, 30, float("nan"), 10, 40, float("nan")],
        "status": ["active", "lapsed", "active", "lapsed", "active", "lapsing"],
        "consent_marketing": [True, False, True, True, True, False],
    }, index=pd.Index([f"c{i}" for i in range(6)], name="customer_id"))


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(7)],
        "consent_marketing": [True, False, True, True, True, False, True],
        "consent_profiling": [True, True, True, True, True, True, False],
        "birth_date": pd.to_datetime(["1950-03-01", "1990-01-10", "1956-02-29", "1985-06-30", "2001-01-05", "1940-01-03",
                                      "1945-01-20"]),
        "signup_date": pd.to_datetime(["2020-01-20", "2025-12-25", "2024-01-02", "2019-05-05", "2023-02-28", "2022-01-15",
                                       "2021-01-10"]),
    })


def _persona_table() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Five groups with known answers (equal gross spend of 20 per customer):

    * Bargain hunters (50, trait price_sensitivity): staples 0.8 / fresh 0.2; 2 without profiling
      consent, 8 more without marketing consent, 40 reachable of whom 10 ordered in the last 30
      days (and all 10 unreachable did too); reachable: 35 active with net spend 200 over 730
      days, 5 lapsed.
    * Lapsing one-timers (20, trait lapsing): staples / fresh / pet 0.3 / 0.3 / 0.4; 6 reachable.
    * Home cooks (20, trait health): fresh 0.5 / pet 0.4 -- pet has the higher lift; all reachable.
    * a group of 5 (suppressed) and an unstable mixed group of 12 without a trait.
    """
    spec = [  # persona, n, staples, fresh, pet, discount_share
        ("Bargain hunters", 50, 0.8, 0.2, 0.0, 0.6),
        ("Lapsing one-timers", 20, 0.3, 0.3, 0.4, 0.1),
        ("Home cooks", 20, 0.1, 0.5, 0.4, 0.0),
        ("(fewer than 10 customers)", 5, 0.5, 0.5, 0.0, 0.0),
        ("Mixed group A (unstable)", 12, 0.4, 0.3, 0.3, 0.0),
    ]
    rows = []
    for persona, n, staples, fresh, pet, disc in spec:
        for _ in range(n):
            rows.append({"persona": persona, "cat_staples": staples, "cat_fresh_produce": fresh, "cat_pet": pet,
                         "discount_share": disc, "avg_order_value": 10.0, "frequency": 2, "monetary": 200.0,
                         "tenure_days": 730.0, "recency_days": 100.0, "status": "active",
                         "consent_profiling": True, "consent_marketing": True})
    t = pd.DataFrame(rows, index=pd.Index([f"k{i:03d}" for i in range(len(rows))], name="customer_id"))
    bh = np.flatnonzero(t["persona"] == "Bargain hunters")
    t.iloc[bh[:2], t.columns.get_loc("consent_profiling")] = False
    t.iloc[bh[2:10], t.columns.get_loc("consent_marketing")] = False
    t.iloc[bh[:20], t.columns.get_loc("recency_days")] = 5.0  # the 10 unreachable and 10 reachable ordered recently
    t.iloc[bh[45:], t.columns.get_loc("status")] = "lapsed"
    lap = np.flatnonzero(t["persona"] == "Lapsing one-timers")
    t.iloc[lap[6:], t.columns.get_loc("consent_marketing")] = False
    summary = pd.DataFrame({
        "name": [s[0] for s in spec],
        "trait": ["price_sensitivity", "lapsing", "health", np.nan, np.nan],
        "customers": [s[1] for s in spec],
        "suppressed": [False, False, False, True, False],
        "stable": [True, True, True, True, False],
    }, index=pd.Index(range(5), name="segment"))
    return t, summary


# ------------------------------------------------------------------------------ test design
def test_mde_matches_the_textbook_sample_size():
    # Fleiss (no continuity correction): 10% -> 15% needs 686 per group, 50% -> 60% needs 388
    # (387.3 rounded up) at 5% two-sided and 80% power
    assert minimum_detectable_uplift(0.10, 686, 686) == pytest.approx(0.05, abs=3e-4)
    assert minimum_detectable_uplift(0.50, 388, 388) < 0.10 < minimum_detectable_uplift(0.50, 387, 387)
    # large groups, small effect: the simple closed form (z_a + z_b) sqrt(p q (1/n_t + 1/n_c))
    assert minimum_detectable_uplift(0.3, 80_000, 20_000) == pytest.approx(
        Z * np.sqrt(0.21 * (1 / 80_000 + 1 / 20_000)), rel=0.02)


def test_mde_has_the_stated_power_for_unequal_groups():
    p0, nt, nc = np.array([0.05, 0.3, 0.6]), np.array([900, 240, 80]), np.array([100, 60, 20])
    d = minimum_detectable_uplift(p0, nt, nc)
    p1 = p0 + d
    pooled = (nc * p0 + nt * p1) / (nc + nt)
    se0 = np.sqrt(pooled * (1 - pooled) * (1 / nt + 1 / nc))
    se1 = np.sqrt(p0 * (1 - p0) / nc + p1 * (1 - p1) / nt)
    assert norm.cdf((d - norm.ppf(0.975) * se0) / se1) == pytest.approx(0.8, abs=1e-6)
    # more customers in the control group, smaller detectable uplift; stricter level, larger
    assert minimum_detectable_uplift(0.3, 240, 120) < minimum_detectable_uplift(0.3, 240, 60)
    assert minimum_detectable_uplift(0.3, 240, 60, alpha=0.01) > minimum_detectable_uplift(0.3, 240, 60)


def test_mde_undetectable_or_invalid():
    assert np.isnan(minimum_detectable_uplift(0.3, 100, 0))
    assert np.isnan(minimum_detectable_uplift(0.9, 3, 3))  # even 100% could not be told apart from 90%
    with pytest.raises(ValueError, match="baseline must be a rate"):
        minimum_detectable_uplift(1.5, 100, 100)


# ------------------------------------------------------------------------------ action plan
def test_action_plan_one_play_per_persona_with_reach_value_and_test():
    t, summary = _persona_table()
    raw = action_plan(t, summary, control_share=0.25)
    assert raw.attrs["notes"] == ["1 group(s) of 5 customers in all get no play: each has fewer than 10 customers."]
    plan = raw.set_index("persona")
    # the suppressed group gets no play; every other group exactly one
    assert sorted(plan.index) == ["Bargain hunters", "Home cooks", "Lapsing one-timers", "Mixed group A (unstable)"]
    bh = plan.loc["Bargain hunters"]
    assert bh["offer"] == "Personal coupon: 10% off staples" and bh["category"] == "staples"
    assert bh["channel"] == PLAYS.set_index("trait").at["price_sensitivity", "channel"]
    assert (bh["customers"], bh["reachable"], bh["left_out_no_profiling"], bh["left_out_no_marketing"]) == (50, 40, 2, 8)
    # 35 active reachable customers spending 200 over two years -> 100 in the next 12 months; lapsed count zero
    assert bh["value_at_stake"] == pytest.approx(35 * 200 * 365.25 / 730)
    assert "no usable lifetime model" in bh["value_basis"]
    # test: 25% of 40 reachable = 10 control, 30 offer; baseline among the reachable = 10 / 40
    assert (bh["control"], bh["treatment"], bh["split"]) == (10, 30, "75/25")
    assert bh["baseline_rate"] == pytest.approx(0.25)
    assert bh["mde"] == pytest.approx(float(minimum_detectable_uplift(0.25, 30, 10)))
    assert bh["mde_even_split"] == pytest.approx(float(minimum_detectable_uplift(0.25, 20, 20)))
    assert bh["expected_effect"].startswith("unknown") and np.isnan(bh["effect_low"])
    assert "30 days" in bh["success_measure"]
    # the health persona's play is about its own trait's category (fresh produce), not pet (higher lift)
    cooks = plan.loc["Home cooks"]
    assert cooks["category"] == "fresh produce" and "fresh produce" in cooks["offer"]
    # 20 reachable: a 25% control group of 5 is too small -> no control group, no test
    assert (cooks["control"], cooks["treatment"], cooks["split"]) == (0, 20, "no control group")
    assert np.isnan(cooks["mde"]) and "no test is possible" in cooks["note"]
    # the lapsing persona's win-back is about its favourite category; only 6 reachable: numbers hidden
    lapsing = plan.loc["Lapsing one-timers"]
    assert lapsing["offer"] == "Win-back voucher on pet"
    assert lapsing[["reachable", "value_at_stake", "left_out_no_marketing", "mde"]].isna().all()
    assert lapsing["note"].startswith("Fewer than 10 customers")
    mixed = plan.loc["Mixed group A (unstable)"]
    assert mixed["offer"] == PLAYS.set_index("trait").at["default", "offer"] and "unstable" in mixed["note"]
    # the plan is ordered by value at stake; hidden values last
    assert plan.index[0] == "Bargain hunters" and plan.index[-1] == "Lapsing one-timers"


def test_action_plan_uses_clv_when_usable_and_explicit_consents():
    t, summary = _persona_table()
    # CLV 1 for the reachable, 1000 for the unreachable: only the reachable count
    clv = pd.DataFrame({"clv": np.where(t["consent_profiling"] & t["consent_marketing"], 1.0, 1000.0)}, index=t.index)
    plan = action_plan(t, summary, values=clv).set_index("persona")
    assert plan.at["Bargain hunters", "value_at_stake"] == pytest.approx(40.0)
    assert plan.at["Bargain hunters", "value_per_customer"] == pytest.approx(1.0)
    assert plan.at["Bargain hunters", "value_basis"].startswith("lifetime value (CLV) from the lifetime model, next 12 months")
    unusable = action_plan(t, summary, values=clv.assign(clv=np.nan)).set_index("persona")
    assert "no usable lifetime model" in unusable.at["Bargain hunters", "value_basis"]
    # default 80/20 split: 8 of 40 in control (< 10) -> no test
    assert plan.at["Bargain hunters", "split"] == "no control group"
    # consents from a separate customers table; without marketing consent nobody is reachable
    flags = t[["consent_profiling", "consent_marketing"]].rename_axis("customer_id").reset_index()
    bare = t.drop(columns=["consent_profiling", "consent_marketing"])
    same = action_plan(bare, summary, consents=flags).set_index("persona")
    pd.testing.assert_series_equal(same["reachable"].sort_index(), plan["reachable"].sort_index())
    nobody = action_plan(bare, summary).set_index("persona")
    assert nobody["reachable"].isna().all() and nobody["note"].str.startswith("Fewer than 10").all()


def test_action_plan_effect_only_from_the_rule_table_and_errors():
    t, summary = _persona_table()
    cited = PLAYS.assign(effect_low=np.where(PLAYS["trait"] == "price_sensitivity", 0.01, np.nan),
                         effect_high=np.where(PLAYS["trait"] == "price_sensitivity", 0.03, np.nan),
                         effect_source=np.where(PLAYS["trait"] == "price_sensitivity", "spring 2025 coupon test", None))
    plan = action_plan(t, summary, plays=cited).set_index("persona")
    assert plan.at["Bargain hunters", "expected_effect"] == "+1.0 to +3.0 points of purchase rate (spring 2025 coupon test)"
    assert plan.at["Home cooks", "expected_effect"].startswith("unknown")
    with pytest.raises(ValueError, match="personas the summary does not know"):
        action_plan(t.assign(persona="Someone else"), summary)
    with pytest.raises(ValueError, match="control_share"):
        action_plan(t, summary, control_share=1.0)
    with pytest.raises(ValueError, match="'default'"):
        action_plan(t, summary, plays=PLAYS[PLAYS["trait"] != "default"])


def test_action_plan_without_category_data_names_no_category():
    t, summary = _persona_table()
    bare = t.drop(columns=[c for c in t.columns if c.startswith("cat_")] + ["discount_share"])
    plan = action_plan(bare, summary).set_index("persona")
    assert plan.at["Bargain hunters", "offer"] == "Personal coupon: 10% off favourites"
    assert plan["category"].isna().all()


def test_offer_list_one_offer_per_customer_and_a_random_control_group():
    t, summary = _persona_table()
    plan = action_plan(t, summary, control_share=0.25)
    offers, left_out = offer_list(t, plan, random_state=3)
    assert offers["customer_id"].is_unique
    counts = offer_counts(offers).set_index("persona")
    assert counts.loc["Bargain hunters", ["offer_group", "control_group"]].tolist() == [30, 10]
    assert counts.loc["Home cooks", ["offer_group", "control_group"]].tolist() == [20, 0]
    assert "Lapsing one-timers" not in counts.index  # too few reachable: no campaign
    reachable = t.index[t["consent_profiling"] & t["consent_marketing"]]
    assert offers["customer_id"].isin(reachable).all()
    assert left_out == {"no_profiling_consent": 2, "no_marketing_consent": 8}
    assert (offers.groupby("persona")["offer"].nunique() == 1).all()
    again, _ = offer_list(t, plan, random_state=3)
    pd.testing.assert_frame_equal(offers, again)
    other, _ = offer_list(t, plan, random_state=4)
    control = set(offers.loc[offers["arm"] == "control", "customer_id"])
    assert control != set(other.loc[other["arm"] == "control", "customer_id"])


# ------------------------------------------------------------------------------ promotion plan
def test_category_lift_and_discount_sensitivity_known_values(features):
    lift = category_lift(features, features["persona"])
    # spend on wine: A 80 + 18 + 0 = 98 of 140, B 0 + 2 + 0 = 2 of 425; population 100 of 565
    assert lift.loc["A", "wine"] == pytest.approx((98 / 140) / (100 / 565))
    # bread: B 400 + 18 + 5 = 423 of 425; population 465 of 565
    assert lift.loc["B", "bread"] == pytest.approx((423 / 425) / (465 / 565))
    assert lift.index.name == "persona"
    sens = discount_sensitivity(features)
    assert sens["A"] == pytest.approx(0.4 / 0.2) and sens["B"] == 0.0


def test_promotion_plan_follows_the_rule_table_keyed_by_persona(features):
    plan = promotion_plan(features, features["persona"], min_group_size=1).set_index(["persona", "category"])
    assert plan.loc[("A", "wine"), "rule"] == "discount_favourite"
    assert plan.loc[("A", "wine"), "offer"] == "10% off wine"
    assert plan.loc[("A", "wine"), "reason"].startswith("Customers in A buy wine at 4.0x the average rate and use discounts 2.0x")
    assert plan.loc[("A", "wine"), ["audience", "audience_size"]].tolist() == ["buyers", 2]
    assert plan.loc[("B", "bread"), "rule"] == "feature_favourite"
    # A's bread lift is (42/140)/(465/565) = 0.36 and A is discount-sensitive (a trial for non-buyers), but every
    # customer of A buys bread: an empty audience gets no promotion
    assert ("A", "bread") not in plan.index
    assert ("B", "wine") not in plan.index  # lift 0.03 but B never uses discounts: no rule matches
    # audiences below min_group_size are dropped; top limits the rows per persona
    assert promotion_plan(features, "persona", min_group_size=3)["category"].tolist() == ["bread"]  # A: 2 wine buyers
    assert promotion_plan(features, "persona", min_group_size=1, top=1)["persona"].tolist() == ["A", "B"]
    everything = OFFER_RULES.iloc[:1].assign(min_lift=0.0, min_discount_sensitivity=0.0)
    assert len(promotion_plan(features, "persona", rules=everything, min_group_size=1, top=5)) == 4


def test_promotion_plan_top_rows_on_many_categories():
    t, _ = _persona_table()
    plan = promotion_plan(t, "persona", top=2)
    assert plan.groupby("persona").size().max() <= 2
    assert "(fewer than 10 customers)" not in set(plan["persona"])  # the group of 5 is below min_group_size
    assert (plan["audience_size"] >= 10).all()
    # Bargain hunters (discount-sensitive): a discount on staples (lift 0.8 / (55.3 / 107) = 1.55) for its buyers,
    # a trial of pet food (lift 0) for its 50 non-buyers; fresh produce (lift 0.67) has no non-buyers to try it
    bh = plan[plan["persona"] == "Bargain hunters"]
    assert bh[["category", "rule", "audience", "audience_size"]].values.tolist() == [
        ["staples", "discount_favourite", "buyers", 50], ["pet", "trial_discount", "non_buyers", 50]]
    assert bh["lift"].iloc[0] == pytest.approx(0.8 / (55.3 / 107))


# ------------------------------------------------------------------------------ loyalty
def test_loyalty_tiers_thresholds_as_data(features):
    tiers = loyalty_tiers(features)
    # monetary pct: c3 100, c0 83.3, c1 66.7, c4 50, c2 33.3, c5 16.7; frequency pct: c3 100, c0 83.3, c1 66.7, c4 50, c2/c5 33.3
    assert tiers["tier"].astype(str).to_dict() == {"c0": "Gold", "c1": "Silver", "c2": "Bronze", "c3": "Platinum", "c4": "Silver", "c5": "Bronze"}
    assert list(tiers["tier"].cat.categories) == list(LOYALTY_TIERS["tier"])[::-1]
    two = pd.DataFrame({"tier": ["Top", "Rest"], "min_monetary_pct": [90, 0], "min_frequency_pct": [0, 0]})
    assert loyalty_tiers(features, two)["tier"].astype(str).value_counts().to_dict() == {"Rest": 5, "Top": 1}
    with pytest.raises(ValueError, match="without a tier"):
        loyalty_tiers(features, two.iloc[:1])


def test_loyalty_tier_table_sizes_thresholds_and_labels(features):
    table = loyalty_tier_table(features, min_group_size=2).set_index("tier")
    assert list(table.index) == ["Platinum", "Gold", "Silver", "Bronze"]
    assert table["rule"].str.len().gt(10).all()  # the description in words
    assert table["customers"].tolist() == [1, 1, 2, 2]
    # Silver: net spend in the top half (pct >= 50: 20, 50, 100, 400 -> at least 20) and frequency pct >= 25 (all)
    assert table.loc["Silver", ["min_spend", "min_orders"]].tolist() == [20.0, 1.0]
    assert table.loc["Platinum", ["min_spend", "min_orders"]].tolist() == [400.0, 5.0]  # pct >= 95; pct >= 75: c0, c3
    assert table.loc["Silver", "avg_spend"] == pytest.approx((50 + 20) / 2)
    assert table.loc["Bronze", "revenue_share"] == pytest.approx(15 / 585)
    assert table.loc[["Platinum", "Gold"], ["avg_spend", "avg_orders", "revenue_share"]].isna().all().all()  # 1 customer each


# ------------------------------------------------------------------------------ eligibility lists
def test_senior_discount_needs_profiling_and_marketing_consent(customers):
    eligible, left_out = senior_discount_list(customers, "2026-01-01")
    # ages: c0 75, c2 69, c5 85, c6 80 are 65+; c5 has no marketing consent, c6 no profiling consent
    assert eligible["customer_id"].tolist() == ["c0", "c2"] and eligible["age_band"].eq("65+").all()
    assert left_out == {"no_profiling_consent": 1, "no_marketing_consent": 1}
    banded = pd.DataFrame({"customer_id": ["x", "y"], "age_band": ["55-64", "25-34"], "consent_marketing": [True, True]})
    assert senior_discount_list(banded, "2026-01-01")[0]["customer_id"].tolist() == ["x"]


def test_win_back_uses_status_among_the_valuable(features):
    eligible, left_out = win_back_list(features, value_quantile=0.5)
    # valuable (net spend >= median 35): c0, c1, c3; lapsing or lapsed: c1, c3, c5; c1 has no marketing consent
    assert eligible["customer_id"].tolist() == ["c3"] and left_out == {"no_profiling_consent": 0, "no_marketing_consent": 1}
    assert eligible["reason"].iloc[0] == "top 50% by net spend; lapsed: no order for 300 days"
    # without a status column the one definition (definitions.customer_status) is applied
    derived, _ = win_back_list(features.drop(columns="status"), value_quantile=0.5)
    # c3: 300 days silent, usual gap 10 -> lapsed; c0: 10 days, gap 20 -> active; c1: 200 vs 30 -> lapsed (no consent)
    assert derived["customer_id"].tolist() == ["c3"] and derived["status"].tolist() == ["lapsed"]
    flags = pd.DataFrame({"customer_id": ["c1", "c3"], "consent_marketing": [True, True], "consent_profiling": [True, False]})
    by_table, left = win_back_list(features, consents=flags, value_quantile=0.5)
    assert by_table["customer_id"].tolist() == ["c1"] and left == {"no_profiling_consent": 1, "no_marketing_consent": 0}


def test_key_dates_window_leap_day_and_consent(customers):
    dates, left_out = upcoming_key_dates(customers, "2026-01-01", days=30)
    got = {(r.customer_id, r.event): (str(r.date.date()), r.years) for r in dates.itertuples()}
    assert got == {
        ("c0", "signup anniversary"): ("2026-01-20", 6),
        ("c2", "signup anniversary"): ("2026-01-02", 2),
        ("c4", "birthday"): ("2026-01-05", 25),
    }
    # c1 birthday (Jan 10), c5 birthday and anniversary: no marketing consent; c6 (Jan 20, Jan 10): no profiling consent
    assert left_out == {"no_profiling_consent": 1, "no_marketing_consent": 2}
    feb, _ = upcoming_key_dates(customers, "2026-02-20", days=15)
    leap = feb.set_index(["customer_id", "event"])
    assert str(leap.loc[("c2", "birthday"), "date"].date()) == "2026-02-28"  # born Feb 29, common year
    assert str(leap.loc[("c4", "signup anniversary"), "date"].date()) == "2026-02-28"
    leap_year, _ = upcoming_key_dates(customers, "2028-02-20", days=15)
    assert str(leap_year.set_index(["customer_id", "event"]).loc[("c2", "birthday"), "date"].date()) == "2028-02-29"
    late, _ = upcoming_key_dates(customers, "2026-12-20", days=20)  # wraps into next year
    assert late["date"].dt.strftime("%Y-%m-%d").tolist() == ["2027-01-02", "2027-01-05"]
    assert late["years"].tolist() == [3, 26]


def test_list_summary_counts_each_reason(customers, features):
    lists = {"senior discount": senior_discount_list(customers, "2026-01-01"),
             "win-back": win_back_list(features, value_quantile=0.5)}
    summary = list_summary(lists).set_index("list")
    assert summary.loc["senior discount"].tolist() == [2, 1, 1]
    assert summary.loc["win-back"].tolist() == [1, 0, 1]
