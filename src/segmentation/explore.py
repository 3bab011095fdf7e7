"""Explore purchase history: what people buy, how much, how often, when.

Every function aggregates the cleaned transactions in the engine (Ibis) and returns a small
pandas DataFrame; the ``plot_*`` functions turn those into stakeholder-ready figures. Each
aggregate is one group-by over the lines (O(lines)); only customer- or period-sized results
leave the engine.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from segmentation import definitions
from segmentation.data import to_pandas

__all__ = [
    "overview",
    "revenue_concentration",
    "category_mix",
    "basket_summary",
    "basket_histogram",
    "category_pairs",
    "weekly_rhythm",
    "monthly_trend",
    "new_vs_returning",
    "new_revenue_share",
    "first_time_peaks",
    "after_first_month",
    "has_time_of_day",
    "partial_last_month",
    "plot_lorenz",
    "plot_category_mix",
    "plot_baskets",
    "plot_weekly_rhythm",
    "plot_monthly_trend",
    "plot_new_vs_returning",
]

_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
#: Quantiles reported for basket value, units, lines and categories.
BASKET_QUANTILES = (0.25, 0.5, 0.75, 0.95)


def _upto(t: ir.Table, as_of: str | pd.Timestamp) -> ir.Table:
    return t.filter(t.order_date < pd.Timestamp(as_of).to_pydatetime())


def overview(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Headline figures before ``as_of``, as numbers (the report formats them).

    Returns
    -------
    DataFrame
        ``figure, value, kind`` with ``kind`` one of ``count, money, share, number, date``;
        figures: customers (with at least one order), customers with only returns (when there
        are any), orders (:func:`segmentation.definitions.orders`), transaction lines,
        net revenue, returned value, returned share of sales, first and last purchase, average
        order value, units per order, orders per customer, repeat buyers (share of customers
        with 2 or more orders).
    """
    t = _upto(transactions, as_of)
    o = definitions.orders(t)
    a = to_pandas(t.aggregate(
        customers=t.customer_id.nunique(), lines=t.count(), net_revenue=t.amount.sum(),
        returned=(-t.amount).sum(where=t.is_return), first=t.order_date.min(), last=t.order_date.max(),
    )).iloc[0]
    per_customer = o.group_by("customer_id").aggregate(n=o.count())
    b = to_pandas(o.aggregate(orders=o.count(), aov=o.value.mean(), units=o.units.mean())).iloc[0]
    c = to_pandas(per_customer.aggregate(buyers=per_customer.count(), repeat=(per_customer.n >= 2).cast("int64").sum())).iloc[0]
    returned = float(a.returned or 0.0)
    buyers = int(c["buyers"])
    rows = [
        ("customers", buyers, "count"),
        ("orders", int(b["orders"]), "count"),
        ("transaction lines", int(a.lines), "count"),
        ("net revenue", float(a.net_revenue), "money"),
        ("returned value", returned, "money"),
        ("returned share of sales", returned / max(float(a.net_revenue) + returned, 1e-9), "share"),
        ("first purchase", pd.Timestamp(a["first"]), "date"),
        ("last purchase", pd.Timestamp(a["last"]), "date"),
        ("average order value", float(b.aov), "money"),
        ("units per order", float(b["units"]), "number"),
        ("orders per customer", int(b["orders"]) / max(int(c["buyers"]), 1), "number"),
        ("repeat buyers", int(c["repeat"]) / max(int(c["buyers"]), 1), "share"),
    ]
    if int(a.customers) > buyers:  # in the period only returns: not customers who ordered, but not dropped silently
        rows.insert(1, ("customers with only returns", int(a.customers) - buyers, "count"))
    return pd.DataFrame(rows, columns=["figure", "value", "kind"])


def revenue_concentration(transactions: ir.Table, as_of: str | pd.Timestamp) -> tuple[pd.DataFrame, dict[str, float]]:
    """Lorenz curve of net revenue over customers, the Gini coefficient and the share of
    revenue from the top 20% and top 1% of customers.

    Returns
    -------
    curve : DataFrame
        ``customer_share, revenue_share`` (101 points).
    stats : dict
        ``gini, top20_share, top1_share``.
    """
    t = _upto(transactions, as_of)
    spend = to_pandas(t.group_by("customer_id").aggregate(v=t.amount.sum()))["v"].clip(lower=0).sort_values().to_numpy()
    cum = np.concatenate([[0.0], np.cumsum(spend)]) / max(spend.sum(), 1e-12)
    x = np.linspace(0, 1, len(cum))
    grid = np.linspace(0, 1, 101)
    curve = pd.DataFrame({"customer_share": grid, "revenue_share": np.interp(grid, x, cum)})
    gini = 1 - 2 * np.trapezoid(cum, x)
    top = lambda q: 1 - np.interp(1 - q, x, cum)  # noqa: E731
    return curve, {"gini": float(gini), "top20_share": float(top(0.2)), "top1_share": float(top(0.01))}


def category_mix(transactions: ir.Table, as_of: str | pd.Timestamp, *, min_group_size: int = 1) -> pd.DataFrame:
    """Per category: revenue, units, orders and customers, with shares; by revenue.

    Categories bought by fewer than ``min_group_size`` customers are pooled into one row
    ``"(small categories)"`` (dropped too when the pool itself is below the threshold), so no
    row describes a handful of people. Shares are of all purchases.
    """
    t = _upto(transactions, as_of)
    buys = definitions.purchase_lines(t)
    out = to_pandas(buys.group_by("category").aggregate(
        revenue=buys.amount.sum(), units=buys.quantity.sum(), orders=buys.order_id.nunique(),
        customers=buys.customer_id.nunique(),
    )).set_index("category")
    n_orders = to_pandas(buys.aggregate(n=buys.order_id.nunique()))["n"].iloc[0]
    out["revenue_share"] = out["revenue"] / out["revenue"].sum()
    out["order_penetration"] = out["orders"] / n_orders
    small = out["customers"] < min_group_size
    if small.any():
        cats = out.index[small].tolist()
        pooled = buys.filter(buys.category.isin(cats))
        pool = to_pandas(pooled.aggregate(revenue=pooled.amount.sum(), units=pooled.quantity.sum(),
                                          orders=pooled.order_id.nunique(), customers=pooled.customer_id.nunique())).iloc[0]
        out = out[~small]
        if pool["customers"] >= min_group_size:
            row = pd.DataFrame({**pool.to_dict(), "order_penetration": pool["orders"] / n_orders}, index=["(small categories)"])
            out = pd.concat([out, row])
        total = to_pandas(buys.aggregate(v=buys.amount.sum()))["v"].iloc[0]
        out["revenue_share"] = out["revenue"] / total
        out.attrs["pooled_categories"] = len(cats)
    out.index.name = "category"
    return out.sort_values("revenue", ascending=False)


def basket_summary(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Per order (purchases only): mean and quantiles of value, units, lines and categories.

    Returns
    -------
    DataFrame
        Index ``measure`` (``value, units, lines, categories``); columns ``mean`` and ``p25,
        p50, p75, p95``. Computed in the engine over orders (O(lines)).
    """
    o = definitions.orders(_upto(transactions, as_of), with_categories=True)
    aggs = {}
    for m in ("value", "units", "lines", "categories"):
        col = o[m].cast("float64")
        aggs[f"{m}__mean"] = col.mean()
        for q in BASKET_QUANTILES:
            aggs[f"{m}__p{int(q * 100)}"] = col.quantile(q)
    row = to_pandas(o.aggregate(**aggs)).iloc[0]
    long = pd.Series(row.to_numpy(dtype="float64"), index=pd.MultiIndex.from_tuples([tuple(k.split("__")) for k in row.index]))
    out = long.unstack().loc[["value", "units", "lines", "categories"], ["mean", *(f"p{int(q * 100)}" for q in BASKET_QUANTILES)]]
    out.index.name = "measure"
    out.columns.name = None
    return out


def basket_histogram(transactions: ir.Table, as_of: str | pd.Timestamp, *, bins: int = 40) -> pd.DataFrame:
    """Histogram of order value and units per order up to their 99th percentile (binned in
    the engine, so it costs O(orders) and returns ``2 x bins`` rows).

    Returns
    -------
    DataFrame
        ``measure`` (``value`` or ``units``), ``left, right`` (bin edges), ``orders``.
    """
    o = definitions.orders(_upto(transactions, as_of))
    tops = to_pandas(o.aggregate(value=o.value.quantile(0.99), units=o.units.quantile(0.99))).iloc[0]
    parts = []
    for m in ("value", "units"):
        top = max(float(tops[m]), 1e-9)
        width = top / bins
        col = o[m].clip(lower=0, upper=top)
        b = (col / width).floor().cast("int64").clip(upper=bins - 1)
        counts = to_pandas(o.group_by(bin=b).aggregate(orders=o.count())).set_index("bin")["orders"]
        counts = counts.reindex(range(bins), fill_value=0)
        parts.append(pd.DataFrame({"measure": m, "left": np.arange(bins) * width, "right": (np.arange(bins) + 1) * width,
                                   "orders": counts.to_numpy()}))
    return pd.concat(parts, ignore_index=True)


def category_pairs(transactions: ir.Table, as_of: str | pd.Timestamp, top: int = 10, *, min_group_size: int = 1) -> pd.DataFrame:
    """The category pairs most often bought in the same basket, with support (share of
    baskets) and lift (support / product of the two categories' supports); pairs seen in
    fewer than ``min_group_size`` baskets are left out."""
    t = _upto(transactions, as_of)
    bc = definitions.purchase_lines(t).select("order_id", "category").distinct()
    n = to_pandas(bc.aggregate(n=bc.order_id.nunique()))["n"].iloc[0]
    single = to_pandas(bc.group_by("category").aggregate(k=bc.count())).set_index("category")["k"] / n
    a, b = bc.view(), bc.view()
    pairs = a.join(b, [a.order_id == b.order_id, a.category < b.category])
    counts = to_pandas(pairs.group_by([a.category.name("a"), b.category.name("b")]).aggregate(k=pairs.count()))
    counts = counts[counts["k"] >= min_group_size]
    counts["support"] = counts["k"] / n
    counts["lift"] = counts["support"] / (single.reindex(counts["a"]).to_numpy() * single.reindex(counts["b"]).to_numpy())
    counts = counts.sort_values(["support", "a", "b"], ascending=[False, True, True])
    return counts.head(top).reset_index(drop=True).rename(columns={"k": "baskets"})


def weekly_rhythm(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Orders by day of week (rows Mon..Sun) and hour of day (columns 0..23)."""
    o = definitions.orders(_upto(transactions, as_of))
    counts = to_pandas(o.group_by(dow=o.order_date.day_of_week.index(), hour=o.order_date.hour()).aggregate(n=o.count()))
    grid = counts.pivot_table(index="dow", columns="hour", values="n", fill_value=0).reindex(index=range(7), columns=range(24), fill_value=0)
    grid.index = _DAYS
    grid.index.name = "day"
    grid.columns = [int(c) for c in grid.columns]
    return grid.astype("int64")


#: A month counts as complete (and is compared with the rest of its year) when the data cover at least
#: this share of its days: the first month of the data may start late, the last one ends at as_of.
COMPLETE_MONTH = 0.9


def _coverage(months: pd.DatetimeIndex, first_day: pd.Timestamp, as_of: str | pd.Timestamp) -> np.ndarray:
    """The share of each month's days (``months``: first days) between ``first_day`` and
    ``as_of`` (exclusive)."""
    start = months.to_series()
    end = start + pd.offsets.MonthBegin(1)
    covered = (end.clip(upper=pd.Timestamp(as_of)) - start.clip(lower=first_day)) / (end - start)
    return covered.clip(0, 1).to_numpy()


def partial_last_month(as_of: str | pd.Timestamp) -> pd.Timestamp | None:
    """The first day of the last calendar month before ``as_of`` when the data cover less than
    :data:`COMPLETE_MONTH` of it (``as_of`` is exclusive), else None.

    >>> partial_last_month("2010-12-10"), partial_last_month("2011-01-01")
    (Timestamp('2010-12-01 00:00:00'), None)
    """
    start = (pd.Timestamp(as_of) - pd.Timedelta(days=1)).to_period("M").to_timestamp()
    return start if _coverage(pd.DatetimeIndex([start]), start, as_of)[0] < COMPLETE_MONTH else None


def _year_level(revenue: np.ndarray, window: int = 13) -> np.ndarray:
    """The median of the ``window`` months around each month: centred, and shifted (not shrunk)
    at the ends of the data, so the last December is judged against a whole year too; all the
    months when there are fewer."""
    if len(revenue) <= window:
        return np.full(len(revenue), np.median(revenue) if len(revenue) else np.nan)
    medians = np.median(np.lib.stride_tricks.sliding_window_view(revenue, window), axis=1)
    return medians[np.clip(np.arange(len(revenue)) - window // 2, 0, len(revenue) - window)]


def monthly_trend(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Per calendar month: orders, net revenue, active customers, and the seasonal revenue
    index.

    Returns
    -------
    DataFrame
        Index ``month`` (first day); ``revenue, orders, customers``; ``coverage`` (share of the
        month's days between the first purchase in the data and ``as_of``); ``complete``
        (coverage at least :data:`COMPLETE_MONTH`); ``revenue_index`` (month / median of the 13
        complete months around it, centred, shifted at the ends of the data -- the year-long
        window of classical seasonal decomposition, so that a season of several months stands
        out against the year while slow growth of the customer base is not mistaken for
        seasonality; missing for incomplete months); ``comparable`` (complete and not the first month of the data: there every buyer
        is new to the records, so a peak cannot be told apart from their start); ``peak`` (a
        comparable month at least 20% above that level).
    """
    t = _upto(transactions, as_of)
    month = t.order_date.truncate("M")
    out = to_pandas(t.group_by(month=month).aggregate(
        revenue=t.amount.sum(), orders=t.order_id.nunique(where=~t.is_return), customers=t.customer_id.nunique(),
        first=t.order_date.min(),
    )).sort_values("month").set_index("month")
    first_day = out["first"].iloc[0].normalize() if len(out) else pd.NaT
    out["coverage"] = _coverage(pd.DatetimeIndex(out.index), first_day, as_of)
    out["complete"] = out["coverage"] >= COMPLETE_MONTH
    complete = out.loc[out["complete"], "revenue"]
    out["revenue_index"] = complete / _year_level(complete.to_numpy(dtype="float64"))
    out["comparable"] = out["complete"] & (np.arange(len(out)) > 0)
    out["peak"] = ((out["revenue_index"] >= 1.2) & out["comparable"]).fillna(False).astype(bool)
    return out.drop(columns="first")


def new_vs_returning(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Per month: customers buying for the first time vs returning customers, and their revenue."""
    t = _upto(transactions, as_of)
    first = t.group_by("customer_id").aggregate(first_month=t.order_date.min().truncate("M"))
    j = t.join(first, "customer_id")
    month = j.order_date.truncate("M")
    is_new = month == j.first_month
    out = to_pandas(j.group_by(month=month).aggregate(
        new_customers=j.customer_id.nunique(where=is_new), returning_customers=j.customer_id.nunique(where=~is_new),
        new_revenue=j.amount.sum(where=is_new), returning_revenue=j.amount.sum(where=~is_new),
    )).sort_values("month").set_index("month")
    return out.fillna(0)


def new_revenue_share(nvr: pd.DataFrame) -> pd.Series:
    """Per month of :func:`new_vs_returning`: the share of the month's revenue from customers
    buying for the first time (missing when the month's revenue is zero). A peak month above
    one half is a wave of new customers (a campaign, a launch, the start of the data), not a
    season their regulars come back for."""
    total = nvr["new_revenue"] + nvr["returning_revenue"]
    return (nvr["new_revenue"] / total.where(total != 0)).rename("new_revenue_share")


#: A peak month in which first-time buyers bring more than this share of revenue is a wave of
#: new customers, not a season.
FIRST_TIME_PEAK = 0.5


def first_time_peaks(trend: pd.DataFrame) -> pd.Series:
    """The peak months of :func:`monthly_trend` made by first-time buyers (its
    ``new_revenue_share`` column, from :func:`new_revenue_share`, above :data:`FIRST_TIME_PEAK`);
    all False without that column."""
    if "new_revenue_share" not in trend:
        return pd.Series(False, index=trend.index)
    return trend["peak"] & (trend["new_revenue_share"] > FIRST_TIME_PEAK)


def after_first_month(nvr: pd.DataFrame) -> pd.DataFrame:
    """The months of :func:`new_vs_returning` after the first one (all of them when there is
    only one): in the first month of the data every buyer is new to it."""
    return nvr.iloc[1:] if len(nvr) > 1 else nvr


# ------------------------------------------------------------------------------------ figures
def plot_lorenz(curve: pd.DataFrame, stats: dict[str, float]) -> plt.Figure:
    """Lorenz curve with the equality line and the headline concentration figures."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(curve["customer_share"], curve["revenue_share"], lw=2, label="customers, from smallest to largest spender")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="everyone spends the same")
    ax.fill_between(curve["customer_share"], curve["revenue_share"], curve["customer_share"], alpha=0.15)
    ax.set_xlabel("share of customers")
    ax.set_ylabel("share of revenue")
    ax.xaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ax.set_title(f"Revenue concentration: top 20% of customers bring {stats['top20_share']:.0%}\n(Gini {stats['gini']:.2f})")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_category_mix(mix: pd.DataFrame) -> plt.Figure:
    """Revenue share and basket penetration per category."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(mix) + 1.5), sharey=True)
    mix = mix.set_axis(mix.index.astype(str).str.replace("_", " "))
    sns.barplot(x=mix["revenue_share"], y=mix.index, ax=axes[0], color="tab:blue")
    axes[0].set_xlabel("share of revenue")
    axes[0].set_ylabel("")
    sns.barplot(x=mix["order_penetration"], y=mix.index, ax=axes[1], color="tab:green")
    axes[1].set_xlabel("share of orders containing the category")
    for ax in axes:
        ax.xaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    top = str(mix.index[0]).replace("_", " ")
    fig.suptitle(f"{top.capitalize()} brings {mix['revenue_share'].iloc[0]:.0%} of revenue and is in {mix['order_penetration'].iloc[0]:.0%} of orders")
    fig.tight_layout()
    return fig


def plot_baskets(histogram: pd.DataFrame, summary: pd.DataFrame) -> plt.Figure:
    """Distributions of order value and units per order (from :func:`basket_histogram`), with
    the medians of :func:`basket_summary`; money in the run's currency (:mod:`segmentation.report`)."""
    from segmentation.report import currency, money

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, m, label in ((axes[0], "value", f"order value ({currency()})" if currency() else "order value (items)"),
                         (axes[1], "units", "units per order")):
        h = histogram[histogram["measure"] == m]
        ax.bar(h["left"], h["orders"], width=(h["right"] - h["left"]), align="edge", color="tab:purple")
        median = float(summary.loc[m, "p50"])
        ax.axvline(median, color="black", ls="--", lw=1, label=f"median {median:,.1f}")
        ax.set_xlabel(label + " (top 1% not shown)")
        ax.set_ylabel("orders")
        ax.legend()
    fig.suptitle(f"Half of all orders are worth less than {money(summary.loc['value', 'p50'])}")
    fig.tight_layout()
    return fig


def has_time_of_day(grid: pd.DataFrame) -> bool:
    """Whether the orders of :func:`weekly_rhythm` carry a time of day: dates without times all
    fall at midnight, and then nothing can be said about the hour people shop."""
    hours = pd.to_numeric(pd.Index(grid.columns).astype(str))  # column names are text after a Parquet round trip
    return bool(grid.loc[:, hours != 0].to_numpy().sum() > 0)


def plot_weekly_rhythm(grid: pd.DataFrame) -> plt.Figure:
    """Heatmap of orders by day of week and hour; bars by weekday when the data have dates
    without times (:func:`has_time_of_day`)."""
    day = grid.sum(axis=1).idxmax()
    if len(grid) == 1:  # no real weekdays (dates derived from gaps): orders by hour only
        fig, ax = plt.subplots(figsize=(9, 3.2))
        hours = grid.iloc[0]
        ax.bar([int(h) for h in hours.index], hours.to_numpy(), color="tab:blue")
        ax.set_xlabel("hour of day")
        ax.set_ylabel("orders")
        ax.set_xticks(range(0, 24, 2))
        ax.set_title(f"Busiest hour: around {int(hours.idxmax())}:00 (the data give no real weekdays)")
        fig.tight_layout()
        return fig
    if not has_time_of_day(grid):
        fig, ax = plt.subplots(figsize=(7, 3.2))
        ax.bar(grid.index, grid.sum(axis=1), color="tab:blue")
        ax.set_ylabel("orders")
        ax.yaxis.set_major_formatter(plt.matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        ax.set_title(f"Busiest day: {day} (the data have dates without times of day)")
        fig.tight_layout()
        return fig
    fig, ax = plt.subplots(figsize=(11, 3.6))
    sns.heatmap(grid, cmap="viridis", ax=ax, cbar_kws={"label": "orders"})
    ax.set_xlabel("hour of day")
    ax.set_ylabel("")
    hour = grid.sum(axis=0).idxmax()
    ax.set_title(f"Busiest: {day} around {hour}:00 (orders by weekday and hour)")
    fig.tight_layout()
    return fig


def plot_monthly_trend(trend: pd.DataFrame) -> plt.Figure:
    """Monthly revenue and orders, peak months highlighted; money in the run's currency."""
    from segmentation.report import currency

    fig, ax = plt.subplots(figsize=(11, 3.8))
    complete = trend["complete"] if "complete" in trend else pd.Series(True, index=trend.index)
    wave = first_time_peaks(trend)
    colours = np.where(wave, "tab:orange", np.where(trend["peak"], "tab:red", np.where(complete, "tab:blue", "lightgrey")))
    bars = ax.bar(trend.index, trend["revenue"], width=20, color=colours)
    for bar, whole in zip(bars, complete):
        if not whole:
            bar.set_hatch("//")
            bar.set_edgecolor("grey")
    ax.set_ylabel(f"net revenue ({currency()})" if currency() else "net revenue (items)")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax2 = ax.twinx()
    ax2.plot(trend.index, trend["orders"], color="black", marker=".", lw=1)
    ax2.set_ylabel("orders")
    peaks = trend.index[trend["peak"] & ~wave]
    title = (("Peak months (red, at least 20% above the typical month of their year): " + ", ".join(f"{m:%b %Y}" for m in peaks[-4:]))
             if len(peaks) else "No month stands out from the rest of its year (orders as a line)")
    if "comparable" in trend and not trend["comparable"].any():
        title = "Revenue and orders by month (the months of this data cannot be compared for seasonality)"
    if wave.any():
        title += "\norange: peaks made by first-time buyers (" + ", ".join(f"{m:%b %Y}" for m in trend.index[wave][-4:]) + ")"
    if not complete.all():
        title += "\ngrey, hatched: a month the data cover only in part (not compared)"
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_new_vs_returning(nvr: pd.DataFrame) -> plt.Figure:
    """Stacked monthly customers: first-time vs returning."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.bar(nvr.index, nvr["returning_customers"], width=20, label="returning", color="tab:blue")
    ax.bar(nvr.index, nvr["new_customers"], width=20, bottom=nvr["returning_customers"], label="new", color="tab:orange")
    ax.set_ylabel("customers buying in the month")
    later = after_first_month(nvr)
    share_new = later["new_customers"].sum() / max((later["new_customers"] + later["returning_customers"]).sum(), 1)
    ax.set_title(f"{share_new:.0%} of monthly buyers are first-time customers"
                 + (" (from the second month of the data on: in the first, every buyer is new to the data)" if len(nvr) > 1 else ""))
    ax.legend()
    fig.tight_layout()
    return fig
