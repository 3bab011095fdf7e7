"""One definition for each business concept, used by every module and every report.

==================  =====================================================================
concept             definition
==================  =====================================================================
order               a purchase document: an ``order_id`` of a customer with at least one
                    purchase line (``quantity > 0``). Return and cancellation documents
                    (only negative lines) are **not** orders; they reduce spend.
purchase day        a calendar day with at least one order (the lifetime models count
                    repeat purchase *days*: same-day orders are merged).
repeat buyer        a customer with at least 2 orders before ``as_of``.
new customer        first order within the last ``new_customer_days`` (default 90) days
                    before ``as_of``.
usual gap           a repeat buyer's mean number of days between orders; for a one-order
                    customer the median usual gap of the repeat buyers (90 days when there
                    are none); never below 7 days.
active              last order at most ``lapsing_after`` (default 1.5) usual gaps ago.
lapsing             last order more than ``lapsing_after`` and at most ``lapsed_after``
                    (default 3) usual gaps ago.
lapsed              last order more than ``lapsed_after`` usual gaps ago.
churn risk          1 - P(alive) from the BG/NBD model (a model estimate, shown only when
                    the model passes its holdout check); bands low < 30% <= medium < 70%
                    <= high.
==================  =====================================================================

The status rule (active / lapsing / lapsed) is descriptive: it needs no model, so it is
available on every data set, and it measures silence against each customer's own rhythm.
"""

from __future__ import annotations

import ibis.expr.types as ir
import numpy as np
import pandas as pd

__all__ = [
    "GLOSSARY",
    "STATUSES",
    "LAPSING_AFTER",
    "LAPSED_AFTER",
    "NEW_CUSTOMER_DAYS",
    "DEFAULT_GAP_DAYS",
    "MIN_GAP_DAYS",
    "purchase_lines",
    "orders",
    "is_repeat_buyer",
    "is_new_customer",
    "usual_gap_days",
    "customer_status",
    "COLUMN_LABELS",
    "column_label",
]

LAPSING_AFTER = 1.5
LAPSED_AFTER = 3.0
NEW_CUSTOMER_DAYS = 90
DEFAULT_GAP_DAYS = 90.0
MIN_GAP_DAYS = 7.0
STATUSES = ("active", "lapsing", "lapsed")

#: The glossary printed in the README and, term by term, in the reports that use a term.
GLOSSARY: pd.DataFrame = pd.DataFrame(
    [
        ("order", "A purchase document: an order (invoice, basket) with at least one item bought. "
                  "Returns and cancellations are not orders; they reduce spend."),
        ("repeat buyer", "A customer with at least 2 orders before the analysis date."),
        ("new customer", f"A customer whose first order lies within the {NEW_CUSTOMER_DAYS} days before the analysis date."),
        ("usual gap", "A repeat buyer's average number of days between orders; for one-order customers "
                      "the typical gap of the repeat buyers (at least 7 days)."),
        ("active", f"Last order at most {LAPSING_AFTER:g} usual gaps ago."),
        ("lapsing", f"Last order between {LAPSING_AFTER:g} and {LAPSED_AFTER:g} usual gaps ago."),
        ("lapsed", f"Last order more than {LAPSED_AFTER:g} usual gaps ago."),
        ("churn risk", "1 - the probability that the customer is still buying, from the BG/NBD model; "
                       "shown only when the model passes its holdout check."),
        ("net spend", "What a customer paid for purchases minus what they returned, before the analysis date."),
        ("CLV", "Customer lifetime value: the expected spend over the stated horizon, discounted at the stated annual rate."),
    ],
    columns=["term", "definition"],
)


def purchase_lines(transactions: ir.Table) -> ir.Table:
    """The lines that make orders: purchases (``is_return`` false), not returns."""
    return transactions.filter(~transactions.is_return)


def orders(transactions: ir.Table, *, with_categories: bool = False) -> ir.Table:
    """One row per order (see the module table), as an Ibis expression.

    Returns ``customer_id, order_id, order_date`` (first line's time), ``value`` (purchase
    value), ``units``, ``lines``, ``channel`` (when the lines have one), and with ``with_categories`` the number of
    distinct ``categories`` in the order.
    """
    buys = purchase_lines(transactions)
    aggs = dict(
        order_date=buys.order_date.min(),
        value=buys.amount.sum(),
        units=buys.quantity.sum(),
        lines=buys.count(),
    )
    if "channel" in buys.columns:
        aggs["channel"] = buys.channel.max()
    if with_categories:
        aggs["categories"] = buys.category.nunique()
    return buys.group_by(["customer_id", "order_id"]).aggregate(**aggs)


def is_repeat_buyer(features: pd.DataFrame) -> pd.Series:
    """``frequency >= 2`` (orders before ``as_of``), from :func:`segmentation.features.customer_features`."""
    return (features["frequency"] >= 2).rename("repeat_buyer")


def is_new_customer(features: pd.DataFrame, *, new_customer_days: int = NEW_CUSTOMER_DAYS) -> pd.Series:
    """First order within the last ``new_customer_days`` days (``tenure_days`` of the features)."""
    return (features["tenure_days"] <= new_customer_days).rename("new_customer")


def usual_gap_days(features: pd.DataFrame) -> pd.Series:
    """Each customer's usual gap between orders in days (see the module table).

    Uses ``frequency`` and ``ipi_mean_days`` of the customer features.
    """
    repeat = is_repeat_buyer(features)
    own = features["ipi_mean_days"].where(repeat)
    typical = float(own.median()) if own.notna().any() else DEFAULT_GAP_DAYS
    gap = own.fillna(typical)
    return gap.clip(lower=MIN_GAP_DAYS).rename("usual_gap_days")


def customer_status(features: pd.DataFrame, *, lapsing_after: float = LAPSING_AFTER,
                    lapsed_after: float = LAPSED_AFTER) -> pd.Series:
    """``active``, ``lapsing`` or ``lapsed`` per customer (see the module table).

    Parameters
    ----------
    features : DataFrame
        Customer features with ``recency_days, frequency, ipi_mean_days``.
    lapsing_after, lapsed_after : float
        Silence, in usual gaps, after which a customer counts as lapsing / lapsed.

    Returns
    -------
    Series
        Categorical with categories :data:`STATUSES`, index as ``features``.
    """
    if not 0 < lapsing_after < lapsed_after:
        raise ValueError(f"need 0 < lapsing_after < lapsed_after, got {lapsing_after} and {lapsed_after}")
    silence = features["recency_days"] / usual_gap_days(features)
    codes = np.where(silence > lapsed_after, 2, np.where(silence > lapsing_after, 1, 0))
    return pd.Series(pd.Categorical.from_codes(codes, categories=list(STATUSES)), index=features.index, name="status")


#: Human labels for column names, used by every table and figure of the reports (prefixes
#: ``cat_``, ``channel_``, ``tod_`` are labelled by :func:`column_label`).
COLUMN_LABELS: dict[str, str] = {
    "customer_id": "customer", "customers": "customers", "customer_share": "share of customers",
    "revenue": "revenue", "revenue_share": "share of revenue", "net_revenue": "net revenue",
    "orders": "orders", "units": "units", "lines": "lines", "order_penetration": "share of orders containing it",
    "frequency": "orders per customer", "monetary": "net spend", "recency_days": "days since last order",
    "tenure_days": "days since first order", "avg_order_value": "average order value",
    "items_per_order": "items per order", "ipi_mean_days": "usual gap between orders (days)",
    "ipi_cv": "irregularity of ordering", "spend_trend": "spend trend (last 90 days vs the 90 before)",
    "return_rate": "share of spend returned", "discount_share": "share of spend on discount",
    "weekend_share": "share of orders at weekends", "category_entropy": "spread across categories",
    "novelty_share": "share of new products after the first order", "n_products": "different products bought",
    "first_purchase": "first order", "last_purchase": "last order",
    "segment": "segment", "persona": "persona", "rfm_segment": "RFM group", "status": "status",
    "p_alive": "probability still active", "clv": "lifetime value", "churn_risk": "churn risk",
    "churn_band": "churn risk band", "expected_purchases": "expected orders", "expected_spend": "expected spend",
    "support": "share of baskets", "confidence": "confidence", "lift": "lift", "leverage": "leverage",
    "conviction": "conviction", "count": "baskets", "baskets": "baskets",
    "jaccard_mean": "agreement in refits (Jaccard)", "jaccard_min": "lowest agreement in refits", "stable": "stable",
    "size": "customers", "share": "share", "population_share": "share of all customers",
    "conversion": "conversion", "ci_low": "95% interval from", "ci_high": "95% interval to",
    "sessions": "sessions", "respondents": "respondents", "response_rate": "response rate",
    "recall@10": "recall", "precision@10": "precision", "hit_rate@10": "hit rate",
    "value": "value", "mean": "mean", "p25": "lower quartile", "p50": "median", "p75": "upper quartile",
    "p95": "95th percentile", "r_score": "recency score", "f_score": "frequency score", "m_score": "spend score",
    "a": "category", "b": "bought with", "antecedent": "if the basket has", "consequent": "it also has",
    "repeat_buyer": "repeat buyer", "new_customer": "new customer",
    "active_share": "active", "lapsing_share": "lapsing", "lapsed_share": "lapsed", "repeat_share": "repeat buyers",
    "reachable": "reachable customers", "value_at_stake": "value at stake", "value_per_customer": "value per customer",
    "mde": "smallest uplift the test can detect (points of purchase rate)",
    "mde_relative": "smallest detectable uplift, relative", "mde_even_split": "smallest detectable uplift with a 50/50 split",
    "baseline_rate": "buying now (in the test window)", "control": "control group", "treatment": "offer group",
    "expected_effect": "expected effect", "success_measure": "how we will know it worked", "offer": "offer",
    "channel": "channel", "message": "message", "test_days": "test length (days)",
    "consent_marketing": "agreed to marketing", "consent_profiling": "agreed to profiling",
    "clv_total": "total lifetime value", "clv_low": "90% interval from", "clv_high": "90% interval to",
    "clv_median": "median lifetime value", "clv_p25": "lifetime value, lower quartile", "clv_p75": "lifetime value, upper quartile",
    "p_alive_mean": "chance still buying (mean)", "high_churn_share": "high churn risk", "expected_orders": "expected orders",
    "stability": "agreement of refits", "stability_low": "worst pair of refits", "silhouette": "separation (silhouette)",
    "largest_share": "largest segment", "smallest_share": "smallest segment", "eligible": "sizes pass the guards",
    "chosen": "chosen", "coverage": "coverage", "precision": "precision", "rule": "rule", "description": "description",
    "action": "suggested action", "name": "name", "matching_customers": "customers the rule describes",
    "customers_commenting": "customers who commented", "movement": "movement", "of": "share of",
}


def column_label(column: object) -> str:
    """The human label of a column: from :data:`COLUMN_LABELS`, else from its prefix
    (``cat_baby`` -> "share of spend on baby"), else underscores as spaces."""
    c = str(column)
    if c in COLUMN_LABELS:
        return COLUMN_LABELS[c]
    for prefix, text in (("cat_", "share of spend on "), ("channel_", "share of orders via "), ("tod_", "share of orders in the ")):
        if c.startswith(prefix):
            return text + c.removeprefix(prefix).replace("_", " ")
    return c.replace("_", " ")


#: Human names of the recommendation methods compared by
#: :func:`segmentation.recommend.evaluation_table`.
METHOD_NAMES = {"recommender": "our recommender", "buy_again": "buy again (each customer's own favourites)",
                "popularity": "best sellers for everyone"}
