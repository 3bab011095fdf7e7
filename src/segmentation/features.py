"""Customer features: RFM, behaviour, the lifetime-model summary, demographics.

All transaction-level work is Ibis (runs on DuckDB by default, unchanged on Spark or a
warehouse). The whole feature table is one engine query (after one cheap query for the channel
and category names), handed back once through Arrow; the lifetime summary likewise. Only lines
strictly before ``as_of`` count: no leakage.

Cost: hash group-bys over the lines before ``as_of`` (O(lines)); the inter-purchase intervals
add one window (sort) over *orders* per customer (O(orders log orders)). Memory outside the
engine: the customer-sized result plus one column (see :func:`_columns`). No Python loop over
customers or rows. Measured at 10M lines / 3.4M customers in ``docs/scaling.md``.

The feature columns are documented in ``docs/architecture.md`` ("Customer feature columns").
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from segmentation.data import to_pandas

__all__ = [
    "customer_features",
    "customer_features_table",
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


def _mix_groups(buys: ir.Table) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The channel and category values among the purchase lines, grouped by column slug
    (``{"online": ["online", "Online"], ...}``): one cheap query, so that the mixes can be
    computed as conditional aggregates (one column per slug) instead of a pivot."""
    pairs = to_pandas(buys.select("channel", "category").distinct())
    groups: tuple[dict[str, list[str]], dict[str, list[str]]] = ({}, {})
    for out, col in zip(groups, ("channel", "category")):
        for value in sorted(pairs[col].dropna().unique().tolist()):
            out.setdefault(slug(value), []).append(value)
    return groups


def _share(part: ir.NumericValue, whole: ir.NumericValue) -> ir.FloatingValue:
    """``part / whole``, 0 where ``whole`` is not positive (no division by zero in any engine)."""
    return ibis.ifelse(whole > 0, part / whole, 0.0)


def customer_features_table(transactions: ir.Table | pd.DataFrame, as_of: str | pd.Timestamp) -> ir.Table:
    """The customer feature table of :func:`customer_features` as one Ibis expression, left in the
    engine (column ``customer_id`` plus every feature column except ``recency_days`` and
    ``tenure_days``, which :func:`customer_features` derives from the timestamps; unordered).

    It runs one cheap query now (the distinct channels and categories); the returned expression
    is a single query: two customer-level hash aggregations, one over orders (with one window for
    the inter-purchase gaps) and one over lines, joined on ``customer_id``, then a projection that
    derives every ratio, share and the entropy.

    The channel and category mixes are conditional aggregates, one per channel or category
    known after the cheap query, so no pivot and no long (customer x category) table is built.
    Categories (or channels) whose names share a slug (``"Fresh Produce"``, ``"fresh produce"``)
    share one column.
    """
    as_of_ts = pd.Timestamp(as_of)
    t = _before(_table(transactions), as_of_ts)
    buys = t.filter(~t.is_return)
    channels, categories = _mix_groups(buys)

    # --- orders (one row per customer-order) ------------------------------------------------------
    # the order's channel is the largest channel name among its lines, kept as its rank among the
    # sorted names (an integer: cheaper to carry and to count than the name)
    names = sorted(v for values in channels.values() for v in values)
    if names:
        channel_rank = buys.channel.cases(*[(name, i) for i, name in enumerate(names)], else_=None)
    else:  # no channel names: every purchase line's channel is null, and so is this
        channel_rank = buys.channel.length().cast("int64")
    orders = buys.group_by(["customer_id", "order_id"]).aggregate(
        ts=buys.order_date.min(),
        value=buys.amount.sum(),
        units=buys.quantity.sum(),
        lines=buys.count(),
        channel=channel_rank.max(),
    )
    seconds = orders.ts.epoch_seconds()
    # the gap to the customer's previous order; ties in ts give a gap of 0 whichever comes first,
    # so ordering by ts alone is deterministic; the first order is the one without a previous one
    previous = seconds.lag().over(ibis.window(group_by=orders.customer_id, order_by=orders.ts))
    orders = orders.mutate(gap=(seconds - previous) / _SECONDS_PER_DAY, first=previous.isnull(),
                           hour=orders.ts.hour(), weekend=orders.ts.day_of_week.index() >= 5)
    h = orders.hour
    recent_from = (as_of_ts - pd.Timedelta(days=TREND_WINDOW_DAYS)).to_pydatetime()
    earlier_from = (as_of_ts - pd.Timedelta(days=2 * TREND_WINDOW_DAYS)).to_pydatetime()
    channel_ranks = [[names.index(v) for v in values] for values in channels.values()]
    by_orders = orders.group_by("customer_id").aggregate(
        first_purchase=orders.ts.min(),
        last_purchase=orders.ts.max(),
        n_orders=orders.count(),
        lines=orders.lines.sum(),
        first_order_lines=orders.lines.max(where=orders.first),
        gross=orders.value.sum(),
        units=orders.units.sum(),
        ipi_mean_days=orders.gap.mean(),
        ipi_sd=orders.gap.std(how="pop"),
        n_weekend=orders.count(where=orders.weekend),
        n_morning=orders.count(where=(h >= 6) & (h < 12)),
        n_afternoon=orders.count(where=(h >= 12) & (h < 17)),
        n_evening=orders.count(where=(h >= 17) & (h < 22)),
        n_night=orders.count(where=(h >= 22) | (h < 6)),
        recent=orders.value.sum(where=orders.ts >= recent_from),
        earlier=orders.value.sum(where=(orders.ts >= earlier_from) & (orders.ts < recent_from)),
        **{f"n_channel_{i}": orders.count(where=orders.channel.isin(ranks)) for i, ranks in enumerate(channel_ranks)},
    )
    # --- lines: returns, discounts, distinct products, category spend ----------------------------
    bought = ~t.is_return
    by_lines = t.group_by("customer_id").aggregate(
        returned=ibis.ifelse(t.is_return, -t.amount, 0.0).sum(),
        discounted=ibis.ifelse(bought & (t.discount > 0), t.amount, 0.0).sum(),
        n_products=t.product_id.nunique(where=bought),
        **{f"v_cat_{i}": ibis.ifelse(bought & t.category.isin(values), t.amount, 0.0).sum()
           for i, values in enumerate(categories.values())},
    )
    spend = [ibis.greatest(by_lines[f"v_cat_{i}"], 0.0) for i in range(len(categories))]  # a negative net counts as 0
    by_lines = by_lines.select(
        "customer_id", "returned", "discounted", "n_products",
        *[x.name(f"x_cat_{i}") for i, x in enumerate(spend)],
        spend_total=sum(spend, ibis.literal(0.0)),
        # entropy of p_i = x_i / X: -sum p_i ln p_i = ln X - sum(x_i ln x_i) / X (linear in the categories)
        x_ln_x=sum((x * ibis.ifelse(x > 0, x, 1.0).ln() for x in spend), ibis.literal(0.0)),
    )
    f = by_orders.inner_join(by_lines, "customer_id")

    # --- derived columns, in the engine ------------------------------------------------------------
    n = f.n_orders.cast("float64")
    gross, returned = f.gross, f.returned
    recent, earlier = f.recent.fill_null(0.0), f.earlier.fill_null(0.0)
    n_channel = [f[f"n_channel_{i}"] for i in range(len(channels))]
    channel_total = sum(n_channel, ibis.literal(0))
    later_lines = f.lines - f.first_order_lines
    novelty = (f.n_products - f.first_order_lines).cast("float64") / later_lines
    columns = {
        "customer_id": f.customer_id.cast("string"),
        "first_purchase": f.first_purchase,
        "last_purchase": f.last_purchase,
        "frequency": n,
        "monetary": gross - returned,
        "avg_order_value": gross / n,
        "items_per_order": f.units / n,
        "ipi_mean_days": f.ipi_mean_days,
        "ipi_cv": ibis.ifelse((f.n_orders >= 3) & (f.ipi_mean_days != 0), f.ipi_sd / f.ipi_mean_days, ibis.null("float64")),
        "spend_trend": _share(recent - earlier, recent + earlier),
        "return_rate": _share(returned, gross),
        "discount_share": _share(f.discounted, gross),
        "weekend_share": f.n_weekend / n,
        **{f"tod_{part}": f[f"n_{part}"] / n for part in ("morning", "afternoon", "evening", "night")},
        **{f"channel_{name}": _share(count, channel_total) for name, count in zip(channels, n_channel)},
        **{f"cat_{name}": _share(f[f"x_cat_{i}"], f.spend_total) for i, name in enumerate(categories)},
        "category_entropy": ibis.ifelse(f.spend_total > 0, f.spend_total.ln() - f.x_ln_x / f.spend_total, 0.0),
        # novelty: of the purchase lines after the first order, the share that bring a product new
        # to the customer: (distinct products - first-basket lines) / lines after the first basket
        # (a product is one line per basket; a product repeated within the first basket makes it a
        # slight under-estimate)
        "novelty_share": ibis.ifelse(later_lines > 0, ibis.greatest(ibis.least(novelty, 1.0), 0.0), ibis.null("float64")),
        "n_products": f.n_products.cast("float64"),
    }
    return f.select(**columns)


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
        Index ``customer_id`` (sorted); columns as documented in ``docs/architecture.md``
        ("Customer feature columns").

    Notes
    -----
    Two queries: the distinct channels and categories, then the whole table
    (:func:`customer_features_table`), sorted by the engine and handed over once through Arrow.
    Only ``recency_days`` and ``tenure_days`` are computed here (exact timestamp differences).
    Cost O(lines) hash aggregation plus one sort of the orders within each customer; memory
    outside the engine O(customers x columns).

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
    table = customer_features_table(transactions, as_of_ts)
    index, order, columns = _columns(_record_batches(table), table.schema().to_pyarrow())
    as_of_us = np.datetime64(as_of_ts.to_datetime64(), "us").astype("int64")
    days = {name: (as_of_us - columns[column].astype("datetime64[us]").view("int64")) / (_SECONDS_PER_DAY * 1e6)
            for name, column in (("recency_days", "last_purchase"), ("tenure_days", "first_purchase"))}
    names = list(columns)
    ordered = {name: columns.pop(name) for name in names[:2]} | days | {name: columns.pop(name) for name in names[2:]}
    return _frame(index, order, ordered)


def _record_batches(expr: ir.Table, batch_size: int = 250_000) -> Iterator[pa.RecordBatch]:
    """Stream a (customer-sized) result out of the engine as Arrow record batches, so the engine
    never holds a materialized copy of it."""
    backend = ibis.get_backend(expr)
    if backend.name == "duckdb":  # ibis 12's to_pyarrow_batches calls a method DuckDB 2.0 removed
        return iter(backend._to_duckdb_relation(expr).to_arrow_reader(batch_size))  # registers memtables too
    return iter(expr.to_pyarrow_batches(chunk_size=batch_size))


def _columns(batches: Iterator[pa.RecordBatch], schema: pa.Schema, *,
             presorted: bool = False) -> tuple[pd.Index, np.ndarray, dict[str, np.ndarray]]:
    """Record batches (``customer_id`` first) as the sorted ``customer_id`` index, the order that
    sorts the rows, and one NumPy array per other column in arrival order (at least as long as
    the index; put them in order with :func:`_frame`).

    Each batch is copied into growing NumPy columns (grown with ``realloc``, which moves no data
    for large arrays) and released at once, so the engine never holds the result while NumPy holds
    it too. ``presorted``: the engine was asked to sort the rows by ``customer_id`` (cheap for a
    narrow table; for a wide one, sorting the ids here is cheaper than moving wide rows there);
    checked, and sorted here when a backend did not keep the order.
    """
    names = schema.names[1:]
    dtypes = {name: np.dtype(schema.field(name).type.to_pandas_dtype()) for name in names}
    capacity, n = 1 << 16, 0
    columns = {name: np.empty(capacity, dtypes[name]) for name in names}
    ids: list[pa.Array] = [pa.array([], type=schema.field(0).type)]
    for batch in batches:
        m = batch.num_rows
        if n + m > capacity:
            capacity = max(capacity + capacity // 2, n + m)
            for column in columns.values():
                column.resize(capacity, refcheck=False)
        for name in names:
            columns[name][n:n + m] = batch.column(name).to_numpy(zero_copy_only=False)
        ids.append(pa.concat_arrays([batch.column(0).cast(ids[0].type), ids[0]]))  # a copy: the batch is released now
        n += m
        del batch
    id_array = pa.chunked_array(ids, type=schema.field(0).type)
    ids_flat = id_array.combine_chunks()
    if presorted and (n < 2 or pc.all(pc.less_equal(ids_flat.slice(0, n - 1), ids_flat.slice(1))).as_py()):
        order = np.arange(n)
        index = pd.Index(ids_flat.to_pandas(), name="customer_id", dtype="str")
    else:
        order = pc.sort_indices(ids_flat).to_numpy()
        index = pd.Index(ids_flat.take(order).to_pandas(), name="customer_id", dtype="str")
    return index, order, columns


def _frame(index: pd.Index, order: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The DataFrame of ``columns`` taken in ``order``, emptying ``columns`` as it goes.

    The float64 columns share one 2-D block (what pandas would otherwise build by copying the
    whole table at its first ``copy``), written in place by ``np.take(..., out=)``: the block's
    pages are committed row by row while each source column is freed, so the peak is the result
    plus one column.
    """
    names = list(columns)
    floats = [name for name in names if columns[name].dtype == np.float64]
    block = np.empty((len(floats), len(order)), dtype=np.float64)
    for i, name in enumerate(floats):
        np.take(columns.pop(name), order, out=block[i])
    out = pd.DataFrame(block.T, index=index, columns=floats, copy=False)
    for position, name in enumerate(names):  # the other columns in their places (no copy of the block)
        if name in columns:
            out.insert(position, name, columns.pop(name)[order])
    return out


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
    # purchase days as dates (a cheap cast per line); whole days since the epoch only per customer
    days = buys.group_by(["customer_id", buys.order_date.date().name("day")]).aggregate(value=buys.amount.sum())
    s = days.group_by("customer_id").aggregate(
        first_date=days.day.min(),
        last_date=days.day.max(),
        n_days=days.count(),
        total=days.value.sum(),
        first_value=days.value.argmin(days.day),  # value of the first purchase day, no self-join
    )
    s = s.mutate(first_day=s.first_date.epoch_days(), last_day=s.last_date.epoch_days())
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
        Computed and sorted in the engine by :func:`lifetime_summary_table`, streamed back
        through Arrow into NumPy (no second copy).
    """
    table = lifetime_summary_table(transactions, as_of, time_unit=time_unit, start=start)
    return _frame(*_columns(_record_batches(table.order_by("customer_id")), table.schema().to_pyarrow(), presorted=True))


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
