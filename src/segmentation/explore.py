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

from segmentation.data import to_pandas

__all__ = [
    "overview",
    "revenue_concentration",
    "category_mix",
    "basket_stats",
    "category_pairs",
    "weekly_rhythm",
    "monthly_trend",
    "new_vs_returning",
    "plot_lorenz",
    "plot_category_mix",
    "plot_baskets",
    "plot_weekly_rhythm",
    "plot_monthly_trend",
    "plot_new_vs_returning",
]

_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]


def _upto(t: ir.Table, as_of: str | pd.Timestamp) -> ir.Table:
    return t.filter(t.order_date < pd.Timestamp(as_of).to_pydatetime())


def _orders(t: ir.Table) -> ir.Table:
    buys = t.filter(~t.is_return)
    return buys.group_by(["customer_id", "order_id"]).aggregate(
        ts=buys.order_date.min(), value=buys.amount.sum(), units=buys.quantity.sum(),
        lines=buys.count(), categories=buys.category.nunique(),
    )


def overview(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Headline figures before ``as_of``: customers, orders, lines, net revenue, returns, period,
    average order value, orders per customer. One row per figure (``figure, value``)."""
    t = _upto(transactions, as_of)
    o = _orders(t)
    a = to_pandas(t.aggregate(
        customers=t.customer_id.nunique(), lines=t.count(), net_revenue=t.amount.sum(),
        returned=(-t.amount).sum(where=t.is_return), first=t.order_date.min(), last=t.order_date.max(),
    )).iloc[0]
    b = to_pandas(o.aggregate(orders=o.count(), aov=o.value.mean(), units=o.units.mean())).iloc[0]
    rows = [
        ("customers", f"{int(a.customers):,}"),
        ("orders", f"{int(b.orders):,}"),
        ("transaction lines", f"{int(a.lines):,}"),
        ("net revenue", f"{a.net_revenue:,.0f}"),
        ("returned value", f"{(a.returned or 0):,.0f} ({(a.returned or 0) / max(a.net_revenue + (a.returned or 0), 1e-9):.1%} of sales)"),
        ("period", f"{pd.Timestamp(a['first']):%Y-%m-%d} to {pd.Timestamp(a['last']):%Y-%m-%d}"),
        ("average order value", f"{b.aov:,.2f}"),
        ("units per order", f"{b.units:,.1f}"),
        ("orders per customer", f"{b.orders / a.customers:,.1f}"),
    ]
    return pd.DataFrame(rows, columns=["figure", "value"])


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


def category_mix(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Per category: revenue, units, orders and customers, with shares; by revenue."""
    t = _upto(transactions, as_of)
    buys = t.filter(~t.is_return)
    out = to_pandas(buys.group_by("category").aggregate(
        revenue=buys.amount.sum(), units=buys.quantity.sum(), orders=buys.order_id.nunique(),
        customers=buys.customer_id.nunique(),
    )).set_index("category")
    n_orders = to_pandas(buys.aggregate(n=buys.order_id.nunique()))["n"].iloc[0]
    out["revenue_share"] = out["revenue"] / out["revenue"].sum()
    out["order_penetration"] = out["orders"] / n_orders
    return out.sort_values("revenue", ascending=False)


def basket_stats(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """One row per order (purchases only): ``value, units, lines, categories``.

    Order-sized, not line-sized: for very large data sets sample it before plotting.
    """
    o = _orders(_upto(transactions, as_of))
    return to_pandas(o.select("value", "units", "lines", "categories"))


def category_pairs(transactions: ir.Table, as_of: str | pd.Timestamp, top: int = 10) -> pd.DataFrame:
    """The category pairs most often bought in the same basket, with support (share of
    baskets) and lift (support / product of the two categories' supports)."""
    t = _upto(transactions, as_of)
    bc = t.filter(~t.is_return).select("order_id", "category").distinct()
    n = to_pandas(bc.aggregate(n=bc.order_id.nunique()))["n"].iloc[0]
    single = to_pandas(bc.group_by("category").aggregate(k=bc.count())).set_index("category")["k"] / n
    a, b = bc.view(), bc.view()
    pairs = a.join(b, [a.order_id == b.order_id, a.category < b.category])
    counts = to_pandas(pairs.group_by([a.category.name("a"), b.category.name("b")]).aggregate(k=pairs.count()))
    counts["support"] = counts["k"] / n
    counts["lift"] = counts["support"] / (single.reindex(counts["a"]).to_numpy() * single.reindex(counts["b"]).to_numpy())
    return counts.sort_values("support", ascending=False).head(top).reset_index(drop=True).rename(columns={"k": "baskets"})


def weekly_rhythm(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Orders by day of week (rows Mon..Sun) and hour of day (columns 0..23)."""
    o = _orders(_upto(transactions, as_of))
    counts = to_pandas(o.group_by(dow=o.ts.day_of_week.index(), hour=o.ts.hour()).aggregate(n=o.count()))
    grid = counts.pivot_table(index="dow", columns="hour", values="n", fill_value=0).reindex(index=range(7), columns=range(24), fill_value=0)
    grid.index = _DAYS
    return grid


def monthly_trend(transactions: ir.Table, as_of: str | pd.Timestamp) -> pd.DataFrame:
    """Per calendar month: orders, net revenue, active customers, and the seasonal revenue
    index (month / centred 5-month rolling median, so that growth of the customer base is not
    mistaken for seasonality); ``peak`` marks months at least 20% above their neighbours."""
    t = _upto(transactions, as_of)
    month = t.order_date.truncate("M")
    out = to_pandas(t.group_by(month=month).aggregate(
        revenue=t.amount.sum(), orders=t.order_id.nunique(where=~t.is_return), customers=t.customer_id.nunique(),
    )).sort_values("month").set_index("month")
    out["revenue_index"] = out["revenue"] / out["revenue"].rolling(5, center=True, min_periods=1).median()
    out["peak"] = out["revenue_index"] >= 1.2
    return out


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


# ------------------------------------------------------------------------------------ figures
def plot_lorenz(curve: pd.DataFrame, stats: dict[str, float]) -> plt.Figure:
    """Lorenz curve with the equality line and the headline concentration figures."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot(curve["customer_share"], curve["revenue_share"], lw=2, label="customers, from smallest to largest spender")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", label="everyone spends the same")
    ax.fill_between(curve["customer_share"], curve["revenue_share"], curve["customer_share"], alpha=0.15)
    ax.set_xlabel("share of customers")
    ax.set_ylabel("share of revenue")
    ax.set_title(f"Revenue concentration: top 20% of customers bring {stats['top20_share']:.0%}\n(Gini {stats['gini']:.2f})")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_category_mix(mix: pd.DataFrame) -> plt.Figure:
    """Revenue share and basket penetration per category."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.35 * len(mix) + 1.5), sharey=True)
    sns.barplot(x=mix["revenue_share"], y=mix.index, ax=axes[0], color="tab:blue")
    axes[0].set_xlabel("share of revenue")
    axes[0].set_ylabel("")
    sns.barplot(x=mix["order_penetration"], y=mix.index, ax=axes[1], color="tab:green")
    axes[1].set_xlabel("share of baskets containing the category")
    fig.suptitle("What is in the bag")
    fig.tight_layout()
    return fig


def plot_baskets(baskets: pd.DataFrame) -> plt.Figure:
    """Distributions of basket value and basket size (units), clipped at the 99th percentile."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, col, label in ((axes[0], "value", "basket value"), (axes[1], "units", "units per basket")):
        v = baskets[col].clip(upper=baskets[col].quantile(0.99))
        sns.histplot(v, bins=40, ax=ax, color="tab:purple")
        ax.axvline(baskets[col].median(), color="black", ls="--", lw=1, label=f"median {baskets[col].median():,.1f}")
        ax.set_xlabel(label)
        ax.legend()
    fig.suptitle("How big are the baskets?")
    fig.tight_layout()
    return fig


def plot_weekly_rhythm(grid: pd.DataFrame) -> plt.Figure:
    """Heatmap of orders by day of week and hour."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    sns.heatmap(grid, cmap="viridis", ax=ax, cbar_kws={"label": "orders"})
    ax.set_xlabel("hour of day")
    ax.set_ylabel("")
    ax.set_title("When do customers shop?")
    fig.tight_layout()
    return fig


def plot_monthly_trend(trend: pd.DataFrame) -> plt.Figure:
    """Monthly revenue and orders, peak months highlighted."""
    fig, ax = plt.subplots(figsize=(11, 3.8))
    colours = np.where(trend["peak"], "tab:red", "tab:blue")
    ax.bar(trend.index, trend["revenue"], width=20, color=colours)
    ax.set_ylabel("net revenue")
    ax2 = ax.twinx()
    ax2.plot(trend.index, trend["orders"], color="black", marker=".", lw=1)
    ax2.set_ylabel("orders")
    ax.set_title("Seasonality: revenue per month (red: at least 20% above the surrounding months), orders as a line")
    fig.tight_layout()
    return fig


def plot_new_vs_returning(nvr: pd.DataFrame) -> plt.Figure:
    """Stacked monthly customers: first-time vs returning."""
    fig, ax = plt.subplots(figsize=(11, 3.6))
    ax.bar(nvr.index, nvr["returning_customers"], width=20, label="returning", color="tab:blue")
    ax.bar(nvr.index, nvr["new_customers"], width=20, bottom=nvr["returning_customers"], label="new", color="tab:orange")
    ax.set_ylabel("customers buying in the month")
    ax.set_title("New versus returning customers")
    ax.legend()
    fig.tight_layout()
    return fig
