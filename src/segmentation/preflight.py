"""Preflight: what each report can show with this data, decided in seconds before a run.

:func:`preflight` checks a loaded :class:`~segmentation.data.Store` against what each report
section needs and returns one row per section with ``status`` ``ok`` (shown in full),
``partial`` (shown, with the stated limitation) or ``skipped`` (not shown; the report says why
in one line). It reads only a few aggregates from the engine (two queries over the lines) and
the small tables.

Rules (thresholds are module constants)
---------------------------------------
=================================  =========================================================
condition                          consequence
=================================  =========================================================
no prices (one distinct price)     money figures are item counts (``partial``)
derived dates (Instacart)          weekday, hour and season figures not real (``partial``)
fewer than 2 categories            category mix, co-occurrence, trends ``skipped``
fewer than 2 products or no        co-purchase rules, recommender evaluation ``skipped``
order with 2+ products
no product names                   products shown by id (``partial``)
repeat buyers < 2% of customers    lifetime value, expected orders, next-purchase windows
                                   ``skipped``; RFM ``partial``
fewer than 50 customers            segments, personas ``skipped``
history < 180 days                 lifetime-model holdout validation ``skipped``
history < 365 days                 seasonality ``partial``; < 90 days: ``skipped``
data start after the comparison    segment migration ``skipped``
date (``compare_as_of``, default
6 months before ``as_of``)
no customers table                 demographics, key dates ``skipped``
one region only                    regional comparison ``partial``
no consent_marketing column        marketing lists empty (default no) ``partial``
no events                          funnels, attribution, support contacts ``skipped``
feedback without nps / csat /      that part ``skipped``, feedback overall ``partial``
comment
=================================  =========================================================
"""

from __future__ import annotations

from typing import Any

import ibis
import pandas as pd

from segmentation import definitions
from segmentation.data import Store, to_pandas

__all__ = ["preflight", "data_facts", "describe_store", "check_text", "REPORTS", "MIN_REPEAT_SHARE", "MIN_CUSTOMERS", "MIN_HISTORY_DAYS_VALUE"]

#: The reports, by number.
REPORTS: dict[str, str] = {
    "01": "01 purchase history",
    "02": "02 segmentation",
    "03": "03 personas",
    "04": "04 customer profile",
    "05": "05 customer value",
    "06": "06 recommendations and offers",
    "07": "07 journey and feedback",
}
#: Below this share of repeat buyers the lifetime models are not fitted.
MIN_REPEAT_SHARE = 0.02
#: Below this many customers no segments or personas are formed.
MIN_CUSTOMERS = 50
#: Below this many days of history the lifetime model cannot be validated on a holdout.
MIN_HISTORY_DAYS_VALUE = 180
FUNNEL_STEPS = ("visit", "product_view", "add_to_cart", "checkout", "order")


def data_facts(store: Store, as_of: str | pd.Timestamp | None = None) -> dict[str, Any]:
    """The few numbers :func:`preflight` decides on (also useful in a report's data note).

    Returns
    -------
    dict
        ``lines, customers, orders, repeat_buyers, repeat_share, first, last, history_days,
        days_after_last, prices, categories, products, multi_product_orders, channels`` and
        ``as_of``.
    """
    tx = store.transactions
    as_of_ts = pd.Timestamp(as_of) if as_of is not None else store.as_of
    lines = to_pandas(tx.aggregate(
        lines=tx.count(), first=tx.order_date.min(), last=tx.order_date.max(), prices=tx.unit_price.nunique(),
        categories=tx.category.nunique(), products=tx.product_id.nunique(),
        channels=tx.channel.nunique(where=tx.channel != "unknown"),
    )).iloc[0]
    orders = definitions.orders(tx)
    per_order = tx.filter(~tx.is_return).group_by("order_id").aggregate(k=ibis._.product_id.nunique())
    per_customer = orders.group_by("customer_id").aggregate(n=ibis._.count())
    o = to_pandas(per_customer.aggregate(customers=per_customer.count(), orders=per_customer.n.sum(),
                                         repeat=(per_customer.n >= 2).cast("int64").sum())).iloc[0]
    multi = int(to_pandas(per_order.aggregate(m=(per_order.k >= 2).cast("int64").sum()))["m"].iloc[0] or 0)
    first, last = lines["first"], lines["last"]
    customers = int(o["customers"] or 0)
    end = as_of_ts if as_of_ts is not None else (pd.Timestamp(last) if pd.notna(last) else None)
    return {
        "lines": int(lines["lines"]), "customers": customers, "orders": int(o["orders"] or 0),
        "repeat_buyers": int(o["repeat"] or 0), "repeat_share": (int(o["repeat"] or 0) / customers) if customers else 0.0,
        "first": first, "last": last, "as_of": as_of_ts,
        "history_days": float((end - pd.Timestamp(first)) / pd.Timedelta(days=1)) if pd.notna(first) and end is not None else 0.0,
        "days_after_last": float((as_of_ts - pd.Timestamp(last)) / pd.Timedelta(days=1)) if pd.notna(last) and as_of_ts is not None else 0.0,
        "prices": int(lines["prices"]), "categories": int(lines["categories"]), "products": int(lines["products"]),
        "multi_product_orders": multi, "channels": int(lines["channels"] or 0),
    }


def _has(df: pd.DataFrame | None, column: str) -> bool:
    return df is not None and column in df.columns and bool(df[column].notna().any())


def preflight(store: Store, as_of: str | pd.Timestamp | None = None, *, compare_as_of: str | pd.Timestamp | None = None,
              min_repeat_share: float = MIN_REPEAT_SHARE) -> pd.DataFrame:
    """What each report section can show with this store (rules in the module docstring).

    Parameters
    ----------
    store : Store
    as_of : str or Timestamp, optional
        The analysis date; default the store's (``store.as_of``).
    compare_as_of : str or Timestamp, optional
        The earlier date of the segment migration; default 6 months before ``as_of``.
    min_repeat_share : float
        Smallest share of repeat buyers for the lifetime models.

    Returns
    -------
    DataFrame
        ``report, section, status, reason``; ``status`` in ``ok, partial, skipped``; ``reason``
        is one plain sentence (empty for ``ok``).
    """
    f = data_facts(store, as_of)
    as_of_ts = f["as_of"]
    compare = pd.Timestamp(compare_as_of) if compare_as_of is not None else (
        as_of_ts - pd.DateOffset(months=6) if as_of_ts is not None else None)
    rows: list[tuple[str, str, str, str]] = []

    def add(report: str, section: str, problems: list[tuple[str, str]]) -> None:
        """``problems``: (status, reason) pairs; the worst status wins, reasons joined."""
        if any(s == "skipped" for s, _ in problems):
            status = "skipped"
            reasons = [r for s, r in problems if s == "skipped"]
        elif problems:
            status, reasons = "partial", [r for _, r in problems]
        else:
            status, reasons = "ok", []
        rows.append((REPORTS[report], section, status, "; ".join(reasons)))

    money = [("partial", "no prices in the data: money figures count items")] if f["prices"] <= 1 else []
    if store.currency is None and f["prices"] > 1:
        money = [("partial", "currency unknown: money shown without a currency (set currency)")]
    calendar = [("partial", "order dates are derived, not calendar dates: weekday, hour and season are not real")] if store.derived_dates else []
    few_repeat = f["repeat_share"] < min_repeat_share
    repeat_note = (f"only {f['repeat_buyers']:,} of {f['customers']:,} customers ({f['repeat_share']:.1%}) bought twice or more "
                   f"(needs {min_repeat_share:.0%})")
    few_customers = [("skipped", f"only {f['customers']:,} customers (needs {MIN_CUSTOMERS})")] if f["customers"] < MIN_CUSTOMERS else []
    one_category = [("skipped", f"{f['categories']} product category only")] if f["categories"] < 2 else []
    no_baskets = ([("skipped", "a single product") if f["products"] < 2 else ("skipped", "no order has two or more products")]
                  if f["products"] < 2 or f["multi_product_orders"] == 0 else [])
    names = [] if _has(store.products, "name") else [("partial", "no product names: products shown by id")]
    months = f["history_days"] / 30.44
    customers, feedback, events = store.customers, store.feedback, store.events
    no_customers = [("skipped", "no customers table")] if customers is None else []
    demo_cols = [c for c in ("age_band", "birth_date", "region", "household", "household_size") if _has(customers, c)]
    single_region = (customers is not None and "region" in customers.columns
                     and customers["region"].nunique(dropna=True) == 1)
    no_marketing = [] if customers is not None and "consent_marketing" in customers.columns else [
        ("partial", "no consent_marketing column: nobody may be contacted (default no), so marketing lists are empty")]
    key_dates = no_customers or ([] if _has(customers, "birth_date") or _has(customers, "signup_date")
                                 else [("skipped", "no birth_date or signup_date in the customers table")])
    no_feedback = [("skipped", "no feedback table")] if feedback is None else []

    if f["days_after_last"] > 365:
        rows.append(("all reports", "analysis date", "partial",
                     f"as_of lies {f['days_after_last']:.0f} days after the last transaction ({pd.Timestamp(f['last']):%Y-%m-%d}): "
                     "every customer looks lapsed"))
    # 01 purchase history
    add("01", "data quality", [])
    add("01", "headline figures", money)
    add("01", "revenue concentration", money)
    add("01", "category mix", one_category)
    add("01", "co-occurring categories", one_category or no_baskets)
    add("01", "basket size and value", money)
    add("01", "when people shop", calendar)
    days = f["history_days"]
    season = ([("skipped", f"history covers {months:.1f} months (needs 3)")] if days < 90
              else [("partial", f"history covers {months:.1f} months: no year-on-year comparison")] if days < 365 else [])
    add("01", "seasonality and peak months", season + calendar)
    add("01", "new vs returning customers", [])
    # 02 segmentation
    add("02", "RFM segments", few_customers + ([("partial", repeat_note + ": labels that need repeat purchases are not used")]
                                               if few_repeat else []))
    add("02", "behavioural segments", few_customers)
    add("02", "demographic features", no_customers or ([] if demo_cols else [("skipped", "no demographic columns in the customers table")]))
    add("02", "agreement with planted personas", [] if store.truth is not None else [("skipped", "no planted ground truth (synthetic store only)")])
    # 03 personas
    add("03", "persona cards", few_customers)
    add("03", "what they buy", few_customers + names)
    add("03", "demographics", few_customers + (no_customers or ([] if demo_cols else [("skipped", "no demographic columns")]))
        + ([("partial", "one region only: no regional comparison")] if single_region else []))
    add("03", "satisfaction and pain points", few_customers + no_feedback)
    # 04 customer profile
    add("04", "profile and spend timeline", money)
    add("04", "favourite categories and products", names + ([("partial", "one category only")] if one_category else []))
    add("04", "key dates", key_dates + no_marketing)
    add("04", "satisfaction", no_feedback)
    # 05 customer value
    value_gate = [("skipped", repeat_note + ": the lifetime models need repeat purchases")] if few_repeat else []
    add("05", "lifetime value (BG/NBD, Gamma-Gamma)", value_gate + money)
    add("05", "holdout validation", value_gate + ([("skipped", f"history of {f['history_days']:.0f} days (needs {MIN_HISTORY_DAYS_VALUE})")]
                                                  if f["history_days"] < MIN_HISTORY_DAYS_VALUE else []))
    add("05", "expected orders per persona", value_gate)
    add("05", "next-purchase windows", value_gate)
    # 06 recommendations and offers
    add("06", "co-purchase rules", no_baskets)
    add("06", "recommender evaluation", no_baskets + ([("skipped", repeat_note)] if few_repeat else []))
    add("06", "promotion plan and offers", money)
    add("06", "loyalty tiers", money)
    add("06", "eligibility lists", no_marketing)
    add("06", "key-date counts", key_dates)
    # 07 journey and feedback
    no_events = [("skipped", "no events table")] if events is None else []
    present = set(events["event"].dropna().unique()) if events is not None and "event" in events.columns else set()
    missing_steps = [s for s in FUNNEL_STEPS if s not in present]
    add("07", "funnels", no_events or ([("partial", f"no {', '.join(missing_steps)} events")] if missing_steps else []))
    add("07", "funnels by channel and persona", no_events or ([] if _has(events, "channel") else [("skipped", "events have no channel")]))
    add("07", "first/last-touch attribution", no_events or ([] if _has(events, "channel") else [("skipped", "events have no channel")]))
    add("07", "support contacts per order", no_events or ([] if "support_contact" in present else [("skipped", "no support_contact events")]))
    parts = {"nps": "NPS", "csat": "CSAT", "comment": "comments"}
    have = {c: _has(feedback, c) for c in parts}
    add("07", "voice of the customer", no_feedback or (
        [("partial", f"feedback has no {', '.join(parts[c] for c, h in have.items() if not h)}")] if not all(have.values()) else []))
    for col, section in (("nps", "NPS per persona"), ("csat", "CSAT per persona"), ("comment", "comment themes")):
        add("07", section, no_feedback or ([] if have[col] else [("skipped", f"feedback has no {parts[col]}")]))
    add("07", "satisfaction vs lapsing", no_feedback or ([] if have["nps"] or have["csat"] else [("skipped", "feedback has no scores")]))
    add("07", "cohort retention", [("partial", f"history covers {months:.1f} months")] if days < 90 else [])
    migration = []
    if compare is not None and pd.notna(f["first"]) and pd.Timestamp(f["first"]) >= compare:
        migration = [("skipped", f"the data start on {pd.Timestamp(f['first']):%Y-%m-%d}, after the comparison date {compare:%Y-%m-%d}")]
    add("07", "segment migration", few_customers + migration)
    add("07", "category trends", one_category)
    return pd.DataFrame(rows, columns=["report", "section", "status", "reason"])


def describe_store(store: Store) -> pd.DataFrame:
    """``table, rows, columns`` of each table the store holds (after cleaning)."""
    tx = store.transactions
    rows = [("transactions", int(to_pandas(tx.aggregate(n=tx.count()))["n"].iloc[0]), ", ".join(tx.columns))]
    for name in ("customers", "products", "events", "feedback"):
        df = getattr(store, name)
        rows.append((name, 0 if df is None else len(df), "(none)" if df is None else ", ".join(map(str, df.columns))))
    return pd.DataFrame(rows, columns=["table", "rows", "columns"])


def check_text(store: Store, table: pd.DataFrame) -> str:
    """The plain-text answer of ``segmentation check``: source, tables, quality, preflight."""
    from segmentation.data import quality_summary

    f = data_facts(store)
    lines = [f"source: {store.name}; analysis date {store.as_of:%Y-%m-%d}; currency {store.currency or 'none'}",
             f"data: {f['customers']:,} customers, {f['orders']:,} orders, {f['lines']:,} lines from "
             f"{pd.Timestamp(f['first']):%Y-%m-%d} to {pd.Timestamp(f['last']):%Y-%m-%d}; "
             f"{f['repeat_share']:.1%} repeat buyers", "", "tables:"]
    for r in describe_store(store).itertuples():
        lines.append(f"  {r.table:<13} {r.rows:>10,} rows  {r.columns}")
    lines += ["", "data quality:", *("  " + line for line in quality_summary(store.quality).splitlines())]
    lines += ["", "notes:", *(f"  - {n}" for n in store.notes)] if store.notes else []
    counts = table["status"].value_counts()
    lines += ["", f"what the reports can show ({counts.get('ok', 0)} ok, {counts.get('partial', 0)} partial, "
                  f"{counts.get('skipped', 0)} skipped):"]
    for r in table.itertuples():
        lines.append(f"  {r.report:<31} {r.section:<38} {r.status:<8} {r.reason}")
    return "\n".join(lines)
