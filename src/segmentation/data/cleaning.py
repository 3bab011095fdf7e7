"""Cleaning transaction lines: every row dropped, flagged or changed is counted.

Cleaning rules (each counted in ``Store.quality``; nothing is lost silently)
--------------------------------------------------------------------------
The drop rules apply in this order; a row is counted by the first rule that drops it.

======================  ===============================================================  ===========
rule                    definition                                                       action
======================  ===============================================================  ===========
missing_customer_id     customer id missing, blank or a missing-value spelling           dropped
                        (``NaN``, ``None``, ``null``, ``NA``, ``N/A``, ``-``, any case)
unparseable_date        order_date cannot be read as a date (examples in ``detail``;     dropped
                        Excel serial numbers named as such)
after_as_of             order_date >= as_of (``detail``: how many lie more than a year   dropped
                        after as_of -- probably wrong dates -- and the latest)
retention               order_date < as_of - max_age_days                                dropped
suppressed_customer     customer on the erasure suppression list                         dropped
non_product             a line that is not a product: postage, carriage, fees,           dropped
                        discounts, manual adjustments, samples, gift vouchers (a
                        preset marks them, see ``presets.NON_PRODUCT_CODES``); excluded
                        from products, baskets and returns
non_positive_price      unit_price <= 0 or missing (free gifts, fees, bad debt)          dropped
zero_quantity           quantity == 0 or missing                                         dropped
duplicate_line          exact duplicate of another line (``duplicates="drop"``, the      dropped /
                        default); with ``duplicates="keep"`` counted and kept.           kept
                        ``detail`` warns when >= 0.5% of the lines are duplicates and
                        >= 90% of all lines have quantity 1 (exports that write one line
                        per item, where identical lines are genuine)
return_or_cancellation  quantity < 0 (kept as negative lines; ``detail`` says how many   kept
                        match an earlier purchase of the same customer and product)
wholesale_outlier       abs(quantity) above a robust threshold:                          flagged
                        ``max(100, 10 ** (median + 5 x 1.4826 x MAD))`` of
                        log10 abs(quantity) over the kept lines
unknown_product         product_id absent from the products table                        kept
ambiguous_date          d/m vs m/d dates readable both ways, read in the column's order  kept
date_order_conflict     dates readable only against the column's order, read that way    kept
timezone_converted      timestamps with a UTC offset converted to naive UTC              changed
future_date             (only without ``as_of``) dated after the moment of loading       flagged
======================  ===============================================================  ===========

Every rule appears in the quality table (0 rows when it did not apply), so the same data give
the same table shape.

Wholesale outliers
~~~~~~~~~~~~~~~~~~
The threshold is the median plus five robust standard deviations (1.4826 x the median absolute
deviation) of log10 |quantity|, floored at 100 units. Median and MAD ignore the extreme lines
themselves, so a single 80,995-unit line in a file of twenty lines is flagged (a 99.9th
percentile would sit on that line and hide it). Both are computed exactly from the value counts
of |quantity|, which the engine aggregates with a spillable hash aggregate (a few hundred
distinct values even at tens of millions of lines). On UCI Online Retail II (2009-2010) the
threshold is ~4,456 units (median 5, MAD 0.40 decades): 47 lines flagged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from segmentation import schema
from segmentation.data.engine import materialize
from segmentation.data.readers import (
    QUALITY_COLUMNS,
    DataContractError,
    _as_id,
    _examples,
    _numeric,
    _strip,
    customer_id_expr,
    parse_dates,
)

__all__ = ["clean_transactions", "quality_summary", "WHOLESALE_FLOOR", "WHOLESALE_MADS", "outlier_threshold"]

#: Smallest |quantity| ever flagged as a wholesale outlier.
WHOLESALE_FLOOR = 100.0
#: Robust standard deviations of log10 |quantity| above the median for a wholesale outlier.
WHOLESALE_MADS = 5.0
#: Dropped duplicates trigger a warning when at least this share of the lines are duplicates ...
DUPLICATE_WARN_SHARE = 0.005
#: ... and at least this share of all lines have quantity 1 (one line per item).
DUPLICATE_WARN_Q1_SHARE = 0.9


def _weighted_quantile(x: np.ndarray, n: np.ndarray, q: float) -> float:
    """Exact ``q`` quantile with linear interpolation (``quantile_cont``) of values ``x``
    repeated ``n`` times."""
    order = np.argsort(x, kind="stable")
    x, cum = x[order], n[order].cumsum()
    h = (cum[-1] - 1) * q
    lo = x[np.searchsorted(cum, np.floor(h), side="right")]
    hi = x[np.searchsorted(cum, np.ceil(h), side="right")]
    return float(lo + (h - np.floor(h)) * (hi - lo))


def outlier_threshold(quantity: ir.NumericColumn) -> tuple[float, float, float]:
    """The wholesale-outlier threshold of the lines' quantities (see the module docstring).

    Returns
    -------
    (threshold, median, mad)
        ``median`` and ``mad`` of log10 |quantity| (0 and 0 for no lines).
    """
    counts = quantity.abs().name("v").as_table().group_by("v").aggregate(n=ibis._.count()).execute()
    counts = counts[counts["v"] > 0].dropna()
    if counts.empty:
        return WHOLESALE_FLOOR, 0.0, 0.0
    x = np.log10(counts["v"].to_numpy(dtype="float64"))
    n = counts["n"].to_numpy(dtype="int64")
    med = _weighted_quantile(x, n, 0.5)
    mad = _weighted_quantile(np.abs(x - med), n, 0.5)
    return max(WHOLESALE_FLOOR, float(10 ** (med + WHOLESALE_MADS * 1.4826 * mad))), med, mad


def _day(ts: Any) -> str:
    return "none" if ts is None or pd.isna(ts) else pd.Timestamp(ts).strftime("%Y-%m-%d")


def clean_transactions(
    table: ir.Table,
    *,
    source_name: str = "DataFrame",
    products: pd.DataFrame | None = None,
    as_of: str | pd.Timestamp | None = None,
    max_age_days: int | None = None,
    suppress: Iterable[str] | None = None,
    con: Any = None,
    drop_free_items: bool = True,
    duplicates: str = "drop",
) -> tuple[ir.Table, pd.DataFrame]:
    """Validate and clean canonical transactions; count every row dropped, flagged or changed.

    Parameters
    ----------
    table : ibis.Table
        Transactions with canonical column names (see :mod:`segmentation.schema`); an optional
        string column ``non_product`` names the kind of non-product line (null for products).
    source_name : str
        Shown in error messages and the quality report.
    products : DataFrame, optional
        Fills ``category`` when absent and detects unknown products.
    as_of : str or Timestamp, optional
        Lines on or after it are dropped (counted); with ``max_age_days`` the retention window.
        It must lie after the first transaction.
    max_age_days : int, optional
        Retention: lines older than ``as_of - max_age_days`` are dropped (counted).
    suppress : iterable of str, optional
        Customer ids (after pseudonymization) to drop: the erasure suppression list.
    con : ibis backend, optional
        When given, the parsed lines and then the cleaned lines are materialized there (see
        :func:`materialize`; DuckDB spills them to its ``temp_directory`` beyond its
        ``memory_limit``), so the counting queries do not parse again and the returned table
        is a cheap projection of the cleaned lines.
    drop_free_items : bool
        Drop lines with ``unit_price == 0`` (default; in retail exports they are mostly fees and
        adjustments). CDNOW keeps them: there a zero-value line is a real purchase.
    duplicates : {"drop", "keep"}
        Exact duplicate lines: dropped (default) or kept (exports with one line per item and
        quantity 1, where identical lines are genuine); counted either way.

    Returns
    -------
    (ibis.Table, DataFrame)
        The cleaned table (canonical columns + ``amount``, ``is_return``, ``is_outlier``) and the
        quality report (``table, rule, rows, action, detail``; rules in the module docstring).

    Raises
    ------
    DataContractError
        Non-numeric quantities or prices, a numeric date column, ``max_age_days`` without
        ``as_of``, or an ``as_of`` on or before the first transaction (the message names the
        data's first and last dates).
    """
    if duplicates not in ("drop", "keep"):
        raise ValueError(f"duplicates must be 'drop' or 'keep', got {duplicates!r}")
    if max_age_days is not None and as_of is None:
        raise DataContractError("max_age_days (retention) needs as_of: the age is counted back from it")
    raw = table
    cols = set(raw.columns)
    order_date, date_findings, date_hints = parse_dates(raw, "order_date", table="transactions", label=source_name)
    has_category = "category" in cols
    t = raw.mutate(
        customer_id=customer_id_expr(raw.customer_id),
        order_id=_strip(_as_id(raw.order_id)),
        product_id=_strip(_as_id(raw.product_id)),
        order_date=order_date,
        quantity=_numeric(raw, "quantity", source_name),
        unit_price=_numeric(raw, "unit_price", source_name),
        discount=_numeric(raw, "discount", source_name).fill_null(0.0) if "discount" in cols else ibis.literal(0.0),
        channel=raw.channel.cast("string").fill_null("unknown") if "channel" in cols else ibis.literal("unknown"),
        store_id=_as_id(raw.store_id).fill_null("unknown") if "store_id" in cols else ibis.literal("unknown"),
        category=raw.category.cast("string") if has_category else ibis.null().cast("string"),
        non_product=raw.non_product.cast("string") if "non_product" in cols else ibis.null().cast("string"),
        raw_date=raw.order_date.cast("string"),
    )
    t = t.select(*schema.column_names("transactions"), "non_product", "raw_date")
    if products is not None and len(products) and "category" in products.columns:
        prod = ibis.memtable(
            products[["product_id", "category"]].astype({"product_id": "string", "category": "string"})
            .drop_duplicates("product_id").rename(columns={"product_id": "p_id", "category": "p_category"})
        )
        t = t.left_join(prod, t.product_id == prod.p_id).mutate(
            category=ibis.coalesce(t.category, ibis._.p_category), known=ibis._.p_id.notnull()
        ).drop("p_id", "p_category")
    elif products is not None and len(products):
        known_ids = ibis.memtable(products[["product_id"]].astype("string").drop_duplicates().rename(columns={"product_id": "p_id"}))
        t = t.left_join(known_ids, t.product_id == known_ids.p_id).mutate(known=ibis._.p_id.notnull()).drop("p_id")
    else:
        t = t.mutate(known=ibis.literal(True))
    t = t.mutate(category=ibis.coalesce(t.category, ibis.literal("unknown")))
    if con is not None:
        t = materialize(con, t)  # parse and normalise once; the counts and the de-duplication read this

    as_of_ts = pd.Timestamp(as_of) if as_of is not None else None
    suppressed = sorted(set(suppress or ()))
    missing_id = t.customer_id.isnull()
    bad_date = t.order_date.isnull()
    after = t.order_date >= as_of_ts if as_of_ts is not None else ibis.literal(False)
    too_old = (t.order_date < as_of_ts - pd.Timedelta(days=int(max_age_days))) if max_age_days is not None else ibis.literal(False)
    supp = t.customer_id.isin(suppressed) if suppressed else ibis.literal(False)
    non_product = t.non_product.notnull()
    bad_price = t.unit_price.isnull() | ((t.unit_price <= 0) if drop_free_items else (t.unit_price < 0))
    zero_qty = t.quantity.isnull() | (t.quantity == 0)
    # sequential rules: a row is counted by the first rule that drops it
    rules = [
        ("missing_customer_id", missing_id, "customer id missing, blank or a missing-value spelling (NaN, None, null, NA, N/A, -)"),
        ("unparseable_date", bad_date, "order_date could not be parsed"),
        ("after_as_of", after, f"on or after as_of {_day(as_of_ts)}" if as_of_ts is not None else "no as_of given"),
        ("retention", too_old, f"older than {max_age_days} days before as_of" if max_age_days else "no retention limit"),
        ("suppressed_customer", supp, "customer erased on request (suppression list)"),
        ("non_product", non_product, "not a product (postage, fees, discounts, adjustments, ...): excluded from products, baskets and returns"),
        ("non_positive_price", bad_price, "unit_price <= 0 or missing (free items, fees, adjustments)" if drop_free_items else "unit_price < 0 or missing"),
        ("zero_quantity", zero_qty, "quantity 0 or missing"),
    ]
    dropped_so_far = ibis.literal(False)
    aggs: dict[str, Any] = {"rows_in": t.count()}
    for name, cond, _ in rules:
        aggs[name] = (cond & ~dropped_so_far).cast("int64").sum()
        dropped_so_far = dropped_so_far | cond
    valid = ~missing_id & ~bad_date
    aggs["unknown_product"] = (~t.known & ~dropped_so_far).cast("int64").sum()
    aggs["first_date"] = t.order_date.min(where=valid)
    aggs["last_date"] = t.order_date.max(where=valid)
    aggs["q1_kept"] = ((t.quantity == 1) & ~dropped_so_far).cast("int64").sum()
    if as_of_ts is not None:
        aggs["far_future"] = (valid & (t.order_date >= as_of_ts + pd.Timedelta(days=365))).cast("int64").sum()
    else:
        aggs["future"] = (valid & ~dropped_so_far & (t.order_date > pd.Timestamp.now().floor("s"))).cast("int64").sum()
    counts = t.aggregate(**aggs).execute().iloc[0]
    first_date, last_date = counts.pop("first_date"), counts.pop("last_date")
    counts = counts.fillna(0).astype(int)
    if as_of_ts is not None and pd.notna(first_date) and as_of_ts <= first_date:
        raise DataContractError(
            f"as_of {_day(as_of_ts)} lies on or before the first transaction in {source_name} (the data run from "
            f"{_day(first_date)} to {_day(last_date)}); choose an as_of after {_day(first_date)}, e.g. "
            f"{_day(pd.Timestamp(last_date).normalize() + pd.Timedelta(days=1))}, the day after the last transaction"
        )

    details = {name: detail for name, _, detail in rules}
    if int(counts["unparseable_date"]):
        examples = _examples(t, t.raw_date, bad_date & ~missing_id & t.raw_date.notnull())
        details["unparseable_date"] += f", e.g. {examples}" + "".join(f"; {h}" for h in date_hints)
    if as_of_ts is not None and int(counts["after_as_of"]) and int(counts["far_future"]):
        details["after_as_of"] += (f"; {int(counts['far_future'])} of them more than a year after as_of "
                                   f"(latest {_day(last_date)}): probably wrong dates")
    if int(counts["non_product"]):
        kinds = (t.filter(non_product & ~(missing_id | bad_date | after | too_old | supp))
                 .group_by("non_product").aggregate(n=ibis._.count()).order_by([ibis.desc("n"), "non_product"]).execute())
        details["non_product"] += " -- " + ", ".join(f"{r.non_product} {int(r.n):,}" for r in kinds.itertuples())

    kept = t.filter(~dropped_so_far).drop("known", "non_product", "raw_date")
    deduped = kept.distinct() if duplicates == "drop" else kept
    if con is not None:
        deduped = materialize(con, deduped)  # the one full pass; every later query starts here
    n_kept = int(counts["rows_in"]) - sum(int(counts[r[0]]) for r in rules)
    stats = deduped.aggregate(
        rows=deduped.count(),
        returns=(deduped.quantity < 0).cast("int64").sum(),
        q1=(deduped.quantity == 1).cast("int64").sum(),
    ).execute().iloc[0].fillna(0).astype(int)
    n_dedup = int(stats["rows"])
    threshold, med, mad = outlier_threshold(deduped.quantity)
    buys = deduped.filter(deduped.quantity > 0).group_by(["customer_id", "product_id"]).aggregate(first_buy=ibis._.order_date.min())
    rets = deduped.filter(deduped.quantity < 0)
    matched = rets.join(buys, ["customer_id", "product_id"]).filter(lambda r: r.first_buy <= r.order_date).count().execute()
    cleaned = deduped.mutate(
        amount=deduped.quantity * deduped.unit_price,
        is_return=deduped.quantity < 0,
        is_outlier=deduped.quantity.abs() > threshold,
    )
    n_outliers = int(cleaned.is_outlier.cast("int64").sum().execute() or 0)

    if duplicates == "drop":
        n_dup = n_kept - n_dedup
        dup_q1 = int(counts["q1_kept"]) - int(stats["q1"])
        dup_detail = "exact duplicate of another line"
        q1_share = int(counts["q1_kept"]) / max(n_kept, 1)
        if n_dup >= DUPLICATE_WARN_SHARE * max(n_kept, 1) and q1_share >= DUPLICATE_WARN_Q1_SHARE:
            dup_detail += (f"; WARNING: {n_dup / n_kept:.1%} of the lines are exact duplicates ({dup_q1:,} of them quantity 1) and "
                           f"{q1_share:.0%} of all lines have quantity 1, as in exports that write one line per item: the "
                           "duplicates are probably genuine purchases; load with duplicates='keep'")
        dup_row = ("transactions", "duplicate_line", n_dup, "dropped", dup_detail)
    else:
        n_dup_lines = n_kept - int(kept.distinct().count().execute())
        dup_row = ("transactions", "duplicate_line", n_dup_lines, "kept", "exact duplicates kept (duplicates='keep')")

    rows = [("transactions", "rows_in", int(counts["rows_in"]), "read", source_name)]
    rows += [("transactions", name, int(counts[name]), "dropped", details[name]) for name, _, _ in rules]
    rows += [
        dup_row,
        ("transactions", "return_or_cancellation", int(stats["returns"]), "kept",
         f"negative quantity; {int(matched)} match an earlier purchase of the same customer and product"),
        ("transactions", "wholesale_outlier", n_outliers, "flagged",
         f"abs(quantity) > {threshold:,.0f} = max({WHOLESALE_FLOOR:g}, 10^(median {med:.2f} + {WHOLESALE_MADS:g} x 1.4826 x MAD {mad:.2f}) "
         "of log10 abs(quantity)); kept, is_outlier=True"),
        ("transactions", "unknown_product", int(counts["unknown_product"]), "kept",
         "product_id not in the products table; category 'unknown'" if products is not None else "no products table"),
        *date_findings,
    ]
    if as_of_ts is None:
        rows.append(("transactions", "future_date", int(counts["future"]), "flagged",
                     "dated after the moment of loading (no as_of given); kept"))
    rows.append(("transactions", "rows_out", n_dedup, "kept", "clean lines"))
    quality = pd.DataFrame(rows, columns=QUALITY_COLUMNS)
    return cleaned, quality


def quality_summary(quality: pd.DataFrame) -> str:
    """A short plain-language summary of the data-quality report.

    Examples
    --------
    >>> q = pd.DataFrame({"table": ["transactions"] * 3, "rule": ["rows_in", "missing_customer_id", "rows_out"],
    ...                   "rows": [10, 2, 8], "action": ["read", "dropped", "kept"], "detail": ["f.csv", "", ""]})
    >>> print(quality_summary(q))
    transactions: 10 rows read, 8 kept (80.0%).
      - missing_customer_id: 2 rows dropped
    """
    lines = []
    for table, q in quality.groupby("table", sort=False):
        r = q.set_index("rule")["rows"]
        if "rows_in" in r and "rows_out" in r:
            share = 100.0 * r["rows_out"] / r["rows_in"] if r["rows_in"] else 0.0
            lines.append(f"{table}: {r['rows_in']:,} rows read, {r['rows_out']:,} kept ({share:.1f}%).")
        else:
            lines.append(f"{table}:")
        for row in q[(q["rows"] > 0) & ~q["rule"].isin(["rows_in", "rows_out"])].itertuples():
            lines.append(f"  - {row.rule}: {row.rows:,} rows {row.action}")
    return "\n".join(lines)
