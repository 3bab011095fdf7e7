"""Promotion plans, offer lists with consent, loyalty tiers, eligibility lists and key dates."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation.offers import (
    LOYALTY_TIERS,
    OFFER_RULES,
    category_lift,
    discount_sensitivity,
    loyalty_tiers,
    offer_list,
    promotion_plan,
    senior_discount_list,
    upcoming_key_dates,
    win_back_list,
)


@pytest.fixture
def features() -> pd.DataFrame:
    # segment A: wine lovers who use discounts; B: bread buyers who never use discounts
    return pd.DataFrame({
        "segment": ["A", "A", "A", "B", "B", "B"],
        "cat_wine": [0.8, 0.6, 0.0, 0.0, 0.1, 0.0],
        "cat_bread": [0.2, 0.4, 1.0, 1.0, 0.9, 1.0],
        "discount_share": [0.5, 0.3, 0.4, 0.0, 0.0, 0.0],
        "monetary": [100.0, 50, 10, 400, 20, 5],
        "avg_order_value": [20.0, 10, 10, 20, 10, 5],  # gross spend = 100, 30, 10, 400, 20, 5
        "frequency": [5, 3, 1, 20, 2, 1],
        "recency_days": [10.0, 200, 30, 300, 15, 400],
        "ipi_mean_days": [20.0, 30, float("nan"), 10, 40, float("nan")],
    }, index=pd.Index([f"c{i}" for i in range(6)], name="customer_id"))


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame({
        "customer_id": [f"c{i}" for i in range(6)],
        "consent_marketing": [True, False, True, True, True, False],
        "birth_date": pd.to_datetime(["1950-03-01", "1990-01-10", "1956-02-29", "1985-06-30", "2001-01-05", "1940-01-03"]),
        "signup_date": pd.to_datetime(["2020-01-20", "2025-12-25", "2024-01-02", "2019-05-05", "2023-02-28", "2022-01-15"]),
    })


def test_category_lift_and_discount_sensitivity_known_values(features):
    lift = category_lift(features)
    # spend on wine: A 80 + 18 + 0 = 98 of 140, B 0 + 2 + 0 = 2 of 425; population 100 of 565
    assert lift.loc["A", "wine"] == pytest.approx((98 / 140) / (100 / 565))
    # bread: B 400 + 18 + 5 = 423 of 425; population 465 of 565
    assert lift.loc["B", "bread"] == pytest.approx((423 / 425) / (465 / 565))
    assert lift.loc["B", "wine"] == pytest.approx((2 / 425) / (100 / 565))
    sens = discount_sensitivity(features)
    assert sens["A"] == pytest.approx(0.4 / 0.2) and sens["B"] == 0.0


def test_promotion_plan_follows_the_rule_table(features):
    plan = promotion_plan(category_lift(features), discount_sensitivity(features)).set_index(["group", "category"])
    assert plan.loc[("A", "wine"), "rule"] == "discount_favourite"
    assert plan.loc[("A", "wine"), "offer"] == "10% off wine"
    assert plan.loc[("A", "wine"), "reason"].startswith("Customers in A buy wine at 4.0x the average rate and use discounts 2.0x")
    assert plan.loc[("B", "bread"), "rule"] == "feature_favourite"
    assert plan.loc[("A", "bread"), "rule"] == "trial_discount"  # lift (42/140)/(465/565) = 0.36, discount-sensitive
    assert plan.loc[("A", "bread"), "customers"] == "non_buyers"
    assert ("B", "wine") not in plan.index  # lift 0.03 but B never uses discounts: no rule matches
    # editing the table changes the plan: a rule that discounts everything
    rules = OFFER_RULES.iloc[:1].assign(min_lift=0.0, min_discount_sensitivity=0.0)
    assert len(promotion_plan(category_lift(features), discount_sensitivity(features), rules=rules)) == 4


def test_offer_list_only_consented_buyers(features, customers):
    plan = promotion_plan(category_lift(features), discount_sensitivity(features))
    offers, excluded = offer_list(features, customers, plan)
    wine = offers[offers["offer"] == "10% off wine"]
    assert wine["customer_id"].tolist() == ["c0"]  # c1 bought wine but has no consent; c2 never bought wine
    assert set(offers["customer_id"]) == {"c0", "c3", "c4"}
    assert excluded == 2  # c1 and c5
    assert offers["reason"].str.len().gt(20).all()
    none, excluded_all = offer_list(features, customers.drop(columns="consent_marketing"), plan)
    assert none.empty and excluded_all == 5  # no consent column: nobody is contactable


def test_loyalty_tiers_thresholds_as_data(features):
    tiers = loyalty_tiers(features)
    # monetary pct: c3 100, c0 83.3, c1 66.7, c4 50, c2 33.3, c5 16.7; frequency pct: c3 100, c0 83.3, c1 66.7, c4 50, c2/c5 33.3
    assert tiers["tier"].astype(str).to_dict() == {"c0": "Gold", "c1": "Silver", "c2": "Bronze", "c3": "Platinum", "c4": "Silver", "c5": "Bronze"}
    assert list(tiers["tier"].cat.categories) == list(LOYALTY_TIERS["tier"])[::-1]
    two = pd.DataFrame({"tier": ["Top", "Rest"], "min_monetary_pct": [90, 0], "min_frequency_pct": [0, 0]})
    assert loyalty_tiers(features, two)["tier"].astype(str).value_counts().to_dict() == {"Rest": 5, "Top": 1}
    with pytest.raises(ValueError, match="without a tier"):
        loyalty_tiers(features, two.iloc[:1])


def test_senior_discount_oldest_band_consented(customers):
    eligible, excluded = senior_discount_list(customers, "2026-01-01")
    # ages: c0 75, c2 69, c5 85 are 65+; c5 has no consent
    assert eligible["customer_id"].tolist() == ["c0", "c2"] and eligible["age_band"].eq("65+").all()
    assert excluded == 1
    banded = pd.DataFrame({"customer_id": ["x", "y"], "age_band": ["55-64", "25-34"], "consent_marketing": [True, True]})
    assert senior_discount_list(banded, "2026-01-01")[0]["customer_id"].tolist() == ["x"]


def test_win_back_recency_rule_and_churn_risk(features, customers):
    eligible, excluded = win_back_list(features, customers, value_quantile=0.5)
    # high value (>= median 35): c0, c1, c3; at risk (recency > 2 x gap): c1 (200 > 60), c3 (300 > 20)
    assert eligible["customer_id"].tolist() == ["c3"] and excluded == 1
    assert "no purchase for 300 days, usually every 10" in eligible["reason"].iloc[0]
    risk = pd.Series({"c0": 0.9, "c1": 0.1, "c3": 0.2})
    by_model, _ = win_back_list(features, customers, churn_risk=risk, value_quantile=0.5)
    assert by_model["customer_id"].tolist() == ["c0"] and "churn risk 0.9" in by_model["reason"].iloc[0]


def test_key_dates_window_leap_day_and_consent(customers):
    dates, excluded = upcoming_key_dates(customers, "2026-01-01", days=30)
    got = {(r.customer_id, r.event): (str(r.date.date()), r.years) for r in dates.itertuples()}
    assert got == {
        ("c0", "signup anniversary"): ("2026-01-20", 6),
        ("c2", "signup anniversary"): ("2026-01-02", 2),
        ("c4", "birthday"): ("2026-01-05", 25),
    }
    assert excluded == 2  # c1 birthday (Jan 10), c5 birthday (Jan 3) and anniversary (Jan 15): two customers
    feb, _ = upcoming_key_dates(customers, "2026-02-20", days=15)
    leap = feb.set_index(["customer_id", "event"])
    assert str(leap.loc[("c2", "birthday"), "date"].date()) == "2026-02-28"  # born Feb 29, common year
    assert str(leap.loc[("c4", "signup anniversary"), "date"].date()) == "2026-02-28"
    leap_year, _ = upcoming_key_dates(customers, "2028-02-20", days=15)
    assert str(leap_year.set_index(["customer_id", "event"]).loc[("c2", "birthday"), "date"].date()) == "2028-02-29"
    late, _ = upcoming_key_dates(customers, "2026-12-20", days=20)  # wraps into next year
    assert late["date"].dt.strftime("%Y-%m-%d").tolist() == ["2027-01-02", "2027-01-05"]
    assert late["years"].tolist() == [3, 26]
