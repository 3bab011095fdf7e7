"""Customer features: RFM, behaviour, the lifetime-model summary, demographics.

All transaction-level work is Ibis (runs on DuckDB by default, unchanged on Spark or a
warehouse); the engine returns a handful of customer-scale aggregates (via Arrow) that pandas
assembles. Only lines strictly before ``as_of`` count: no leakage.

Cost: each aggregate is one hash group-by over the lines before ``as_of`` (O(lines)); the
inter-purchase intervals add one window (sort) over *orders* per customer (O(orders log orders)).
No Python loop over customers or rows.

The feature columns are documented in ``docs/architecture.md`` ("Customer feature columns").
"""

from __future__ import annotations

import re

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd

from segmentation.data import materialize, to_pandas

__all__ = [
    "customer_features",
    "lifetime_summary",
    "lifetime_summary_table",
    "demographics",
    "encode_demographics",
    "behaviour_columns",
    "slug",
    "AGE_BANDS",
    "TREND_WINDOW_DAYS",
]

TREND_WINDOW_DAYS = 90
AGE_BANDS = (18, 25, 35, 45, 55, 65)
_AGE_LABELS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_SECONDS_PER_DAY = 86400


def slug(text: str) -> str:
    """Column-name slug: lower case, runs of non-alphanumerics become ``_``.

    >>> slug("Fresh Produce & Herbs")
    'fresh_produce_herbs'
    """
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "unknown"


def _table(transactions: ir.Table | pd.DataFrame) -> ir.Table:
    if isinstance(transactions, pd.DataFrame):
        df = transactions
        if "amount" not in df.columns:
            df = df.assign(amount=df["quantity"] * df["unit_price"])
        if "is_return" not in df.columns:
            df = df.assign(is_return=df["quantity"] < 0)
        for col, default in (("discount", 0.0), ("channel", "unknown"), ("category", "unknown")):
            if col not in df.columns:
                df = df.assign(**{col: default})
        return ibis.memtable(df)
    return transactions


def _before(t: ir.Table, as_of: str | pd.Timestamp) -> ir.Table:
    if as_of is None:
        raise ValueError("as_of is required: only transactions before it count")
    return t.filter(t.order_date < pd.Timestamp(as_of).to_pydatetime())


def _days(ts: ir.TimestampValue) -> ir.IntegerValue:
    """Whole days since the epoch (portable across engines)."""
    return (ts.epoch_seconds() // _SECONDS_PER_DAY).cast("int64")


def customer_features(
    transactions: ir.Table | pd.DataFrame,
    as_of: str | pd.Timestamp,
    *,
    customers: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per customer with at least one purchase before ``as_of``.

    Parameters
    ----------
    transactions : ibis.Table or DataFrame
        Cleaned transactions (``segmentation.data.Store.transactions``) or a DataFrame with the
        canonical columns (``amount`` and ``is_return`` are derived when absent).
    as_of : str or Timestamp
        Analysis date; only lines strictly before it count.
    customers : DataFrame, optional
        Not used for behaviour (demographics stay apart: see :func:`demographics`); accepted so
        that callers can pass the store's tables uniformly.

    Returns
    -------
    DataFrame
        Index ``customer_id``; columns as documented in ``docs/architecture.md``.

    Examples
    --------
    >>> tx = pd.DataFrame({"customer_id": ["a", "a"], "order_id": ["1", "2"],
    ...     "order_date": pd.to_datetime(["2025-01-01", "2025-01-11"]), "product_id": ["p", "q"],
    ...     "category": ["x", "y"], "quantity": [1.0, 2.0], "unit_price": [10.0, 5.0]})
    >>> f = customer_features(tx, "2025-01-21")
    >>> f.loc["a", ["recency_days", "frequency", "monetary", "ipi_mean_days"]].tolist()
    [10.0, 2.0, 20.0, 10.0]
    """
    as_of_ts = pd.Timestamp(as_of)
    t = _before(_table(transactions), as_of_ts)
    buys = t.filter(~t.is_return)


    # --- orders (one row per customer-order) -------------------------------------------------
    orders = buys.group_by(["customer_id", "order_id"]).aggregate(
        ts=buys.order_date.min(),
        value=buys.amount.sum(),
        units=buys.quantity.sum(),
        lines=buys.count(),
        channel=buys.channel.max(),
    )
    orders = orders.mutate(
        day=_days(orders.ts),
        hour=orders.ts.hour(),
        weekend=orders.ts.day_of_week.index() >= 5,
    )
    w = ibis.window(group_by=orders.customer_id, order_by=[orders.ts, orders.order_id])
    orders = orders.mutate(gap=(orders.ts.epoch_seconds() - orders.ts.epoch_seconds().lag().over(w)) / _SECONDS_PER_DAY)
    orders = materialize(ibis.get_backend(t), orders)  # order-sized; computed once, read by two queries
    recent_from = as_of_ts - pd.Timedelta(days=TREND_WINDOW_DAYS)
    earlier_from = as_of_ts - pd.Timedelta(days=2 * TREND_WINDOW_DAYS)
    h = orders.hour
    per_customer = orders.group_by("customer_id").aggregate(
        first_purchase=orders.ts.min(),
        last_purchase=orders.ts.max(),
        frequency=orders.count(),
        lines=orders.lines.sum(),
        first_order_lines=orders.lines.argmin(orders.ts),
        gross=orders.value.sum(),
        units=orders.units.sum(),
        ipi_mean_days=orders.gap.mean(),
        ipi_sd=orders.gap.std(how="pop"),
        weekend_share=orders.weekend.cast("float64").mean(),
        tod_morning=((h >= 6) & (h < 12)).cast("float64").mean(),
        tod_afternoon=((h >= 12) & (h < 17)).cast("float64").mean(),
        tod_evening=((h >= 17) & (h < 22)).cast("float64").mean(),
        tod_night=((h >= 22) | (h < 6)).cast("float64").mean(),
        recent=orders.value.sum(where=orders.ts >= recent_from.to_pydatetime()),
        earlier=orders.value.sum(where=(orders.ts >= earlier_from.to_pydatetime()) & (orders.ts < recent_from.to_pydatetime())),
    )
    lines_agg = t.group_by("customer_id").aggregate(
        returned=(-t.amount).sum(where=t.is_return),
        discounted=t.amount.sum(where=~t.is_return & (t.discount > 0)),
        n_products=t.product_id.nunique(where=~t.is_return),
    )
    f = to_pandas(per_customer).set_index("customer_id")
    f = f.join(to_pandas(lines_agg).set_index("customer_id"), how="left")

    # --- mixes: channel (per order), category (per spend) -------------------------------------
    channel_mix = to_pandas(orders.group_by(["customer_id", "channel"]).aggregate(n=orders.count()))
    category_mix = to_pandas(buys.group_by(["customer_id", "category"]).aggregate(v=buys.amount.sum()))
    out = pd.DataFrame(index=f.index)
    out["first_purchase"] = f["first_purchase"]
    out["last_purchase"] = f["last_purchase"]
    out["recency_days"] = (as_of_ts - f["last_purchase"]).dt.total_seconds() / _SECONDS_PER_DAY
    out["tenure_days"] = (as_of_ts - f["first_purchase"]).dt.total_seconds() / _SECONDS_PER_DAY
    out["frequency"] = f["frequency"].astype("float64")
    returned = f["returned"].fillna(0.0)
    out["monetary"] = f["gross"] - returned
    out["avg_order_value"] = f["gross"] / f["frequency"]
    out["items_per_order"] = f["units"] / f["frequency"]
    out["ipi_mean_days"] = f["ipi_mean_days"]
    out["ipi_cv"] = (f["ipi_sd"] / f["ipi_mean_days"]).where(f["frequency"] >= 3)
    recent, earlier = f["recent"].fillna(0.0), f["earlier"].fillna(0.0)
    total = recent + earlier
    out["spend_trend"] = ((recent - earlier) / total.where(total > 0)).fillna(0.0)
    out["return_rate"] = (returned / f["gross"].where(f["gross"] > 0)).fillna(0.0)
    out["discount_share"] = (f["discounted"].fillna(0.0) / f["gross"].where(f["gross"] > 0)).fillna(0.0)
    for col in ("weekend_share", "tod_morning", "tod_afternoon", "tod_evening", "tod_night"):
        out[col] = f[col].astype("float64")
    ch = channel_mix.pivot_table(index="customer_id", columns="channel", values="n", aggfunc="sum", fill_value=0)
    ch = ch.div(ch.sum(axis=1), axis=0)
    ch.columns = [f"channel_{slug(c)}" for c in ch.columns]
    cat = category_mix.pivot_table(index="customer_id", columns="category", values="v", aggfunc="sum", fill_value=0.0).clip(lower=0)
    cat = cat.div(cat.sum(axis=1).where(lambda s: s > 0), axis=0).fillna(0.0)
    cat.columns = [f"cat_{slug(c)}" for c in cat.columns]
    out = out.join(ch.sort_index(axis=1), how="left").join(cat.sort_index(axis=1), how="left")
    mix_cols = [c for c in out.columns if c.startswith(("channel_", "cat_"))]
    out[mix_cols] = out[mix_cols].fillna(0.0)
    shares = out[[c for c in mix_cols if c.startswith("cat_")]].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["category_entropy"] = -np.nansum(np.where(shares > 0, shares * np.log(shares), 0.0), axis=1)
    # novelty: of the purchase lines after the first order, the share that bring a product new to
    # the customer: (distinct products - first-basket lines) / lines after the first basket
    # (a product is one line per basket; a product repeated within the first basket makes it a
    # slight under-estimate)
    later_lines = f["lines"] - f["first_order_lines"]
    out["novelty_share"] = ((f["n_products"] - f["first_order_lines"]) / later_lines.where(later_lines > 0)).clip(0.0, 1.0)
    out["n_products"] = f["n_products"].fillna(0).astype("float64")
    out.index = out.index.astype("str")
    out.index.name = "customer_id"
    return out.sort_index()


def behaviour_columns(features: pd.DataFrame) -> list[str]:
    """The default behavioural columns for clustering: every numeric feature except
    timestamps, raw counts that duplicate others, and identifiers.

    Excluded: ``first_purchase, last_purchase`` (timestamps) and ``n_products`` (size, which
    ``frequency`` already carries). ``ipi_*`` and ``novelty_share`` (NaN for one-order
    customers) are included; the segmenter imputes them.
    """
    skip = {"first_purchase", "last_purchase", "n_products"}
    return [c for c in features.columns if c not in skip and pd.api.types.is_numeric_dtype(features[c])]


def lifetime_summary_table(
    transactions: ir.Table | pd.DataFrame,
    as_of: str | pd.Timestamp,
    *,
    time_unit: str = "W",
    start: str | pd.Timestamp | None = None,
) -> ir.Table:
    """The lifetime-model summary of :func:`lifetime_summary` as an Ibis expression, left in the
    engine (columns ``customer_id, frequency, recency, T, monetary_value``, unordered).

    Use it when the customers do not fit in memory: stream it in batches with
    :func:`segmentation.scale.score_value`, or write it out with the engine.
    """
    divisor = {"D": 1.0, "W": 7.0}.get(time_unit)
    if divisor is None:
        raise ValueError(f"time_unit must be 'D' or 'W', got {time_unit!r}")
    as_of_ts = pd.Timestamp(as_of)
    t = _before(_table(transactions), as_of_ts)
    buys = t.filter(~t.is_return)
    days = buys.group_by(["customer_id", _days(buys.order_date).name("day")]).aggregate(value=buys.amount.sum())
    s = days.group_by("customer_id").aggregate(
        first_day=days.day.min(),
        last_day=days.day.max(),
        n_days=days.count(),
        total=days.value.sum(),
        first_value=days.value.argmin(days.day),  # value of the first purchase day, no self-join
    )
    if start is not None:
        s = s.filter(s.first_day >= pd.Timestamp(start).normalize().value // 10**9 // _SECONDS_PER_DAY)
    as_of_day = as_of_ts.normalize().value // 10**9 // _SECONDS_PER_DAY
    frequency = (s.n_days - 1).cast("float64")
    return s.select(
        customer_id=s.customer_id.cast("string"),
        frequency=frequency,
        recency=(s.last_day - s.first_day).cast("float64") / divisor,
        T=(as_of_day - 1 - s.first_day).cast("float64") / divisor,
        monetary_value=ibis.ifelse(frequency > 0, (s.total - s.first_value) / frequency, 0.0),
    )


def lifetime_summary(
    transactions: ir.Table | pd.DataFrame,
    as_of: str | pd.Timestamp,
    *,
    time_unit: str = "W",
    start: str | pd.Timestamp | None = None,
) -> pd.DataFrame:
    """The BG/NBD / Gamma-Gamma summary, as the literature defines it.

    Purchases are aggregated to purchase *days* (same-day orders merged; returns excluded), then
    per customer:

    * ``frequency`` -- number of repeat purchase days (purchase days - 1);
    * ``recency`` -- time from the first to the last purchase day;
    * ``T`` -- time from the first purchase day to the last day of the calibration period
      (the day before ``as_of``: purchases on it still count);
    * ``monetary_value`` -- mean value of the repeat purchase days (0 when ``frequency == 0``).

    This matches ``lifetimes.utils.summary_data_from_transaction_data`` with
    ``observation_period_end = as_of - 1 day`` and ``freq = time_unit``, and reproduces the
    published CDNOW calibration data (T = 38.86 weeks for a customer who first bought on
    1997-01-01, with ``as_of = "1997-10-01"``).

    Parameters
    ----------
    transactions : ibis.Table or DataFrame
    as_of : str or Timestamp
        End of the calibration period (exclusive for purchases).
    time_unit : {"W", "D"}
        Weeks (days / 7) or days.
    start : str or Timestamp, optional
        Only customers whose first purchase is on or after ``start`` (a cohort).

    Returns
    -------
    DataFrame
        Index ``customer_id`` (sorted); columns ``frequency, recency, T, monetary_value``.
        Computed in the engine by :func:`lifetime_summary_table`.
    """
    out = to_pandas(lifetime_summary_table(transactions, as_of, time_unit=time_unit, start=start)).set_index("customer_id")
    return out.sort_index()


def demographics(customers: pd.DataFrame | None, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Demographics per customer, kept apart from behaviour.

    Returns index ``customer_id`` and the columns present among ``age_band`` (from
    ``birth_date`` at ``as_of`` when absent: 18-24, 25-34, 35-44, 45-54, 55-64, 65+),
    ``region``, ``household``, ``household_size``. Empty when there is no customers table.
    """
    if customers is None or customers.empty:
        return pd.DataFrame(index=pd.Index([], name="customer_id", dtype="str"))
    c = customers.set_index(customers["customer_id"].astype("str"))
    c.index.name = "customer_id"
    out = pd.DataFrame(index=c.index)
    if "age_band" in c.columns:
        out["age_band"] = c["age_band"].astype("string")
    elif "birth_date" in c.columns:
        age = (pd.Timestamp(as_of) - pd.to_datetime(c["birth_date"], errors="coerce")).dt.days / 365.25
        out["age_band"] = pd.cut(age, bins=[*AGE_BANDS, np.inf], labels=_AGE_LABELS, right=False).astype("string")
    for col in ("region", "household"):
        if col in c.columns:
            out[col] = c[col].astype("string")
    if "household_size" in c.columns:
        out["household_size"] = pd.to_numeric(c["household_size"], errors="coerce")
    return out[~out.index.duplicated()]


def encode_demographics(demo: pd.DataFrame) -> pd.DataFrame:
    """One-hot encode the categorical demographics (``age_band_25_34``, ``region_north``, ...)
    for segmentation; numeric columns pass through."""
    cats = [c for c in demo.columns if not pd.api.types.is_numeric_dtype(demo[c])]
    dummies = pd.get_dummies(demo[cats].fillna("unknown"), prefix=cats, dtype="float64")
    dummies.columns = [slug(c) for c in dummies.columns]
    return dummies.join(demo.drop(columns=cats))
