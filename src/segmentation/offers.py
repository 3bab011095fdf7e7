"""Offers: promotion plans per segment/persona, loyalty tiers, eligibility lists and key dates.

Customer-scale pandas. Inputs are the customer feature table (index ``customer_id``; from
:func:`segmentation.pipeline.segment_customers`, with ``segment`` and, when present, ``persona``)
and the canonical customers table (``customer_id, consent_marketing, birth_date, signup_date,
age_band``).

The business rules are data, editable without touching code:

* ``rules/offer_rules.csv`` (:data:`OFFER_RULES`) -- which categories a group gets a discount on
  or sees featured, from the group's category lift and discount sensitivity;
* ``rules/loyalty_tiers.csv`` (:data:`LOYALTY_TIERS`) -- tier thresholds on spend and frequency.

Every function that lists customers for contact keeps only customers with
``consent_marketing`` True (absent column: nobody, see :func:`segmentation.privacy.consented`)
and returns ``(table, n_excluded_for_lack_of_consent)``.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from segmentation.features import demographics
from segmentation.privacy import consented
from segmentation.schema import rules_table

__all__ = [
    "OFFER_RULES",
    "LOYALTY_TIERS",
    "category_lift",
    "discount_sensitivity",
    "promotion_plan",
    "offer_list",
    "loyalty_tiers",
    "senior_discount_list",
    "win_back_list",
    "upcoming_key_dates",
]


#: Promotion rules, first match wins per (group, category): a group whose ``lift`` for the
#: category is in ``[min_lift, max_lift)`` and whose discount sensitivity is in
#: ``[min_discount_sensitivity, max_discount_sensitivity)`` gets ``offer`` (action ``discount`` or
#: ``feature``), sent to the group's ``buyers`` of the category, its ``non_buyers`` or ``all``.
#: ``offer`` and ``reason`` may use ``{group}, {category}, {lift}, {sensitivity}`` (a numeric
#: group label reads "segment 3").
OFFER_RULES: pd.DataFrame = rules_table("offer_rules")
#: Loyalty tiers, best first: a customer gets the first tier whose percentile thresholds on net
#: spend (``min_monetary_pct``) and frequency (``min_frequency_pct``) both hold (0-100).
LOYALTY_TIERS: pd.DataFrame = rules_table("loyalty_tiers")


def _require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (needs {columns}); found {list(df.columns)[:20]}")


def _group_column(features: pd.DataFrame, by: str | None) -> str:
    """``by`` when given, else ``persona`` when present, else ``segment``."""
    col = by or ("persona" if "persona" in features.columns else "segment")
    _require(features, [col], "features")
    return col


def _fill(template: str, values: pd.DataFrame) -> pd.Series:
    """Fill ``{name}`` placeholders of ``template`` from the string columns of ``values`` (vectorized)."""
    out = pd.Series("", index=values.index, dtype="string")
    for k, piece in enumerate(re.split(r"\{(\w+)\}", template)):
        out = out + (piece if k % 2 == 0 else values[piece])
    return out


def _contactable(table: pd.DataFrame, customers: pd.DataFrame | None) -> tuple[pd.DataFrame, int]:
    """Rows of ``table`` whose customer consented to marketing, and how many customers did not."""
    allowed, excluded = consented(pd.Index(table["customer_id"].unique()), customers, purpose="marketing")
    return table[table["customer_id"].isin(allowed)].reset_index(drop=True), excluded


# --------------------------------------------------------------------------------------------
# promotion plan
# --------------------------------------------------------------------------------------------
def category_lift(features: pd.DataFrame, by: str | None = None) -> pd.DataFrame:
    """Each group's spend share per category relative to the whole population (the wide form of
    :func:`segmentation.personas.category_lift`).

    Parameters
    ----------
    features : DataFrame
        Customer features with ``cat_<category>`` share columns, ``avg_order_value``,
        ``frequency`` and the group column.
    by : str, optional
        Group column (default ``persona`` when present, else ``segment``).

    Returns
    -------
    DataFrame
        Index group, one column per category (``cat_`` prefix removed); 1 = like the
        population, 2 = twice the population's share. O(customers x categories).
    """
    from segmentation.personas import category_lift as long_lift

    col = _group_column(features, by)
    if not any(c.startswith("cat_") for c in features.columns):
        raise ValueError("features has no cat_<category> share columns; compute them with segmentation.features.customer_features")
    _require(features, ["avg_order_value", "frequency"], "features")
    long = long_lift(features, features[col], min_share=0.0, top=None)
    lift = long.pivot(index="segment", columns="category", values="lift").rename_axis(index=col, columns=None)
    return lift


def discount_sensitivity(features: pd.DataFrame, by: str | None = None) -> pd.Series:
    """Each group's mean ``discount_share`` relative to the population's (1 = average)."""
    col = _group_column(features, by)
    _require(features, ["discount_share"], "features")
    overall = features["discount_share"].mean()
    out = features.groupby(col, observed=True)["discount_share"].mean() / (overall if overall > 0 else np.nan)
    return out.rename("discount_sensitivity")


def promotion_plan(
    category_lift: pd.DataFrame,
    discount_sensitivity: pd.Series,
    *,
    rules: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Which categories each group should get a discount on or see featured.

    Every (group, category) pair is matched against the rule table (first match wins).

    Parameters
    ----------
    category_lift : DataFrame
        From :func:`category_lift` (index group, columns categories).
    discount_sensitivity : Series
        From :func:`discount_sensitivity` (index group).
    rules : DataFrame, optional
        Default :data:`OFFER_RULES` (``rules/offer_rules.csv``).

    Returns
    -------
    DataFrame
        ``group, category, lift, discount_sensitivity, rule, action, offer, customers, reason``,
        one row per matched pair, sorted by group then lift (descending). O(groups x
        categories x rules).

    Examples
    --------
    >>> lift = pd.DataFrame({"wine": [2.0, 0.5]}, index=["A", "B"])
    >>> promotion_plan(lift, pd.Series([1.5, 0.5], index=["A", "B"]))[["group", "action", "offer"]].to_dict("records")
    [{'group': 'A', 'action': 'discount', 'offer': '10% off wine'}]
    """
    rules = OFFER_RULES if rules is None else rules
    _require(rules, list(OFFER_RULES.columns), "rules")
    pairs = category_lift.rename_axis(index="group", columns="category").stack().rename("lift").reset_index()
    pairs["discount_sensitivity"] = pairs["group"].map(discount_sensitivity).to_numpy()
    pairs = pairs.dropna(subset=["lift", "discount_sensitivity"])
    grid = pairs.reset_index(names="pair").merge(rules.reset_index(names="priority"), how="cross")
    hit = grid[
        (grid["lift"] >= grid["min_lift"]) & (grid["lift"] < grid["max_lift"])
        & (grid["discount_sensitivity"] >= grid["min_discount_sensitivity"])
        & (grid["discount_sensitivity"] < grid["max_discount_sensitivity"])
    ]
    plan = hit.sort_values(["pair", "priority"]).drop_duplicates("pair").copy()
    numeric = pd.api.types.is_numeric_dtype(category_lift.index)
    label = (f"{category_lift.index.name or 'group'} " if numeric else "") + plan["group"].astype("string")
    text = pd.DataFrame({
        "group": label, "category": plan["category"].astype("string"),
        "lift": plan["lift"].round(1).astype("string"), "sensitivity": plan["discount_sensitivity"].round(1).astype("string"),
    }, index=plan.index)
    for column in ("offer", "reason"):
        plan[column] = pd.concat([_fill(t, text.loc[g.index]) for t, g in plan.groupby(column, sort=False)]) if len(plan) else pd.Series(dtype="string")
    plan = plan.sort_values(["group", "lift"], ascending=[True, False])
    return plan[["group", "category", "lift", "discount_sensitivity", "rule", "action", "offer", "customers", "reason"]].reset_index(drop=True)


def offer_list(
    features: pd.DataFrame,
    customers: pd.DataFrame | None,
    plan: pd.DataFrame,
    *,
    by: str | None = None,
) -> tuple[pd.DataFrame, int]:
    """The customers per offer of a promotion plan, with the reason in words.

    A customer of a group receives each of the group's offers whose ``customers`` rule fits:
    ``buyers`` (the customer's ``cat_<category>`` share > 0), ``non_buyers`` (share 0) or ``all``.
    Only customers with ``consent_marketing`` True are listed.

    Parameters
    ----------
    features : DataFrame
        Index ``customer_id``; the group column and ``cat_<category>`` shares.
    customers : DataFrame or None
        ``customer_id, consent_marketing`` (without it nobody is contactable).
    plan : DataFrame
        From :func:`promotion_plan`.
    by : str, optional
        Group column (default ``persona`` when present, else ``segment``).

    Returns
    -------
    offers : DataFrame
        ``customer_id, group, category, action, offer, reason``.
    n_excluded : int
        Customers who would get an offer but did not consent to marketing.

    Notes
    -----
    O(customers x categories + listed offers).
    """
    col = _group_column(features, by)
    shares = features.filter(like="cat_").rename(columns=lambda c: c.removeprefix("cat_"))
    long = shares.rename_axis(index="customer_id", columns="category").stack().rename("share").reset_index()
    long["group"] = long["customer_id"].map(features[col]).astype("string")
    matched = long.merge(plan.astype({"group": "string", "category": "string"}), on=["group", "category"])
    fits = matched["customers"].map({"buyers": True, "non_buyers": False, "all": pd.NA})
    ok = fits.isna() | (fits.fillna(False).astype(bool) == (matched["share"] > 0))
    offers = matched.loc[ok, ["customer_id", "group", "category", "action", "offer", "reason"]].astype({"customer_id": "string"})
    return _contactable(offers.sort_values(["group", "offer", "customer_id"]), customers)


# --------------------------------------------------------------------------------------------
# loyalty and eligibility
# --------------------------------------------------------------------------------------------
def loyalty_tiers(features: pd.DataFrame, thresholds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Loyalty tier per customer from net spend and frequency percentiles.

    Percentile = share of customers with a value at most the customer's (x 100), so ties share
    a percentile. A customer gets the first (best) tier of ``thresholds`` whose both minimums
    hold; the last tier should have minimums 0 so that every customer gets one.

    Parameters
    ----------
    features : DataFrame
        Index ``customer_id``; ``monetary`` and ``frequency``.
    thresholds : DataFrame, optional
        ``tier, min_monetary_pct, min_frequency_pct`` best first; default :data:`LOYALTY_TIERS`.

    Returns
    -------
    DataFrame
        Index ``customer_id``; ``tier`` (ordered categorical, worst to best), ``monetary_pct``,
        ``frequency_pct``. O(customers log customers + customers x tiers).

    Examples
    --------
    >>> f = pd.DataFrame({"monetary": [10.0, 20, 30, 40], "frequency": [1, 1, 2, 9]}, index=list("abcd"))
    >>> loyalty_tiers(f)["tier"].astype(str).tolist()
    ['Bronze', 'Silver', 'Silver', 'Platinum']
    """
    thresholds = LOYALTY_TIERS if thresholds is None else thresholds
    _require(thresholds, ["tier", "min_monetary_pct", "min_frequency_pct"], "thresholds")
    _require(features, ["monetary", "frequency"], "features")
    pct = features[["monetary", "frequency"]].rank(method="max", pct=True) * 100
    meets = (pct["monetary"].to_numpy()[:, None] >= thresholds["min_monetary_pct"].to_numpy()[None, :]) & (
        pct["frequency"].to_numpy()[:, None] >= thresholds["min_frequency_pct"].to_numpy()[None, :])
    if not meets.any(axis=1).all():
        raise ValueError("thresholds leave some customers without a tier: give the last tier minimums of 0")
    order = list(thresholds["tier"])[::-1]
    tier = pd.Categorical(thresholds["tier"].to_numpy()[meets.argmax(axis=1)], categories=order, ordered=True)
    return pd.DataFrame({"tier": tier, "monetary_pct": pct["monetary"], "frequency_pct": pct["frequency"]}, index=features.index)


def senior_discount_list(customers: pd.DataFrame, as_of: str | pd.Timestamp, *, band: str | None = None) -> tuple[pd.DataFrame, int]:
    """Customers in the oldest age band (or ``band``), for a senior discount.

    The age band comes from ``age_band`` or, when absent, from ``birth_date`` at ``as_of``
    (:func:`segmentation.features.demographics`). The oldest band is the one with the highest
    leading number (``65+`` over ``55-64``).

    Returns
    -------
    eligible : DataFrame
        ``customer_id, age_band, offer, reason`` (consented to marketing only).
    n_excluded : int
        Eligible customers left out for lack of marketing consent.
    """
    demo = demographics(customers, as_of)
    if "age_band" not in demo.columns or demo["age_band"].isna().all():
        raise ValueError("customers has neither age_band nor birth_date: the senior discount needs one of them")
    bands = pd.Series(demo["age_band"].dropna().unique())
    band = band or bands.iloc[bands.str.extract(r"(\d+)", expand=False).astype(float).argmax()]
    who = demo[demo["age_band"] == band].reset_index()[["customer_id", "age_band"]]
    who["offer"], who["reason"] = "senior discount", f"in the oldest age band ({band})"
    return _contactable(who, customers)


def win_back_list(
    features: pd.DataFrame,
    customers: pd.DataFrame | None,
    *,
    churn_risk: pd.Series | None = None,
    value_quantile: float = 0.8,
    risk_threshold: float = 0.5,
    recency_factor: float = 2.0,
) -> tuple[pd.DataFrame, int]:
    """High-value customers at risk of leaving, for a win-back offer.

    High value: ``monetary`` at or above the ``value_quantile`` of all customers. At risk:
    ``churn_risk >= risk_threshold`` when a churn-risk Series (index ``customer_id``, 0-1, e.g.
    1 - P(alive) from :mod:`segmentation.value`) is given; otherwise the recency rule
    ``recency_days > recency_factor x usual gap``, the usual gap being the customer's own
    ``ipi_mean_days`` or, for customers with one order, the median ``ipi_mean_days``.

    Returns
    -------
    eligible : DataFrame
        ``customer_id, monetary, recency_days, offer, reason`` (consented to marketing only).
    n_excluded : int
        Eligible customers left out for lack of marketing consent. O(customers).
    """
    _require(features, ["monetary", "recency_days"], "features")
    high = features["monetary"] >= features["monetary"].quantile(value_quantile)
    if churn_risk is not None:
        risk = churn_risk.reindex(features.index)
        at_risk, why = risk >= risk_threshold, "churn risk " + risk.round(2).astype("string")
    else:
        _require(features, ["ipi_mean_days"], "features")
        gap = features["ipi_mean_days"].fillna(features["ipi_mean_days"].median())
        at_risk = features["recency_days"] > recency_factor * gap
        why = ("no purchase for " + features["recency_days"].round().astype("Int64").astype("string")
               + " days, usually every " + gap.round().astype("Int64").astype("string"))
    who = features.loc[high & at_risk.fillna(False), ["monetary", "recency_days"]].rename_axis("customer_id").reset_index()
    who["offer"] = "win-back"
    who["reason"] = f"top {1 - value_quantile:.0%} by spend; " + why[high & at_risk.fillna(False)].to_numpy()
    return _contactable(who.astype({"customer_id": "string"}), customers)


# --------------------------------------------------------------------------------------------
# key dates
# --------------------------------------------------------------------------------------------
def _next_occurrence(dates: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Next anniversary of each date on or after ``as_of`` (Feb 29 falls on Feb 28 in common years)."""
    month, day = dates.dt.month, dates.dt.day

    def in_year(year: pd.Series) -> pd.Series:
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        d = day.where(~((month == 2) & (day == 29) & ~leap), 28)
        return pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": d}))

    year = pd.Series(as_of.year, index=dates.index)
    this = in_year(year)
    return this.where(this >= as_of.normalize(), in_year(year + 1))


def upcoming_key_dates(customers: pd.DataFrame, as_of: str | pd.Timestamp, days: int = 30) -> tuple[pd.DataFrame, int]:
    """Birthdays and signup anniversaries in ``[as_of, as_of + days)``, marketing-consented only.

    Vectorized calendar arithmetic: the date's month and day placed in ``as_of``'s year, or the
    next year when already past; a Feb 29 date is celebrated on Feb 28 in common years. A signup
    anniversary needs at least one full year of membership. O(customers).

    Returns
    -------
    dates : DataFrame
        ``customer_id, event ("birthday" | "signup anniversary"), date, days_until, years``
        (age reached / years as a member), sorted by date.
    n_excluded : int
        Customers with an upcoming date left out for lack of marketing consent.

    Examples
    --------
    >>> c = pd.DataFrame({"customer_id": ["a"], "birth_date": ["1980-02-29"], "consent_marketing": [True]})
    >>> upcoming_key_dates(c, "2026-02-20", days=10)[0][["date", "years"]].astype(str).values.tolist()
    [['2026-02-28', '46']]
    """
    _require(customers, ["customer_id"], "customers")
    as_of = pd.Timestamp(as_of)
    present = [(col, event) for col, event in (("birth_date", "birthday"), ("signup_date", "signup anniversary")) if col in customers.columns]
    if not present:
        raise ValueError("customers has neither birth_date nor signup_date; nothing to list")
    parts = []
    for col, event in present:  # at most two columns
        known = customers[["customer_id", col]].assign(start=pd.to_datetime(customers[col], errors="coerce")).dropna(subset=["start"])
        known = known[known["start"] < as_of]
        when = _next_occurrence(known["start"], as_of)
        parts.append(pd.DataFrame({"customer_id": known["customer_id"].astype("string"), "event": event, "date": when,
                                   "days_until": (when - as_of.normalize()).dt.days, "years": when.dt.year - known["start"].dt.year}))
    out = pd.concat(parts, ignore_index=True)
    out = out[(out["days_until"] < days) & (out["years"] >= 1)].sort_values(["date", "event", "customer_id"])
    return _contactable(out, customers)
