"""Follow the journey: funnels, paths, attribution, post-purchase, cohorts, migration, trends.

Events use the canonical columns ``customer_id`` (may be missing: anonymous sessions),
``session_id``, ``timestamp``, ``event``, ``channel``. All counting is vectorized pandas:
group-bys and joins over events (O(events log events) for the sorts), with one pass per funnel
*step* (a handful), never per session or customer.

Funnel rule: a session reaches step k when it has an event of step k **at or after** the time it
reached step k-1 (so an out-of-order event -- an ``order`` logged before the ``checkout`` --
does not count as progress, and a later one does). Exact duplicate events are dropped first
(counted in the result's ``attrs["duplicates"]``). Anonymous sessions count in the overall
funnel and per channel, but not per segment.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import norm

from segmentation.data import to_pandas

__all__ = [
    "WEB_FUNNEL",
    "wilson_interval",
    "funnel",
    "common_paths",
    "converting_vs_not",
    "attribution",
    "post_purchase",
    "cohort_retention",
    "migration_matrix",
    "category_trends",
    "plot_funnel",
    "plot_cohort_heatmap",
    "plot_migration",
]

WEB_FUNNEL: tuple[str, ...] = ("visit", "product_view", "add_to_cart", "checkout", "order")


def wilson_interval(successes: np.ndarray | pd.Series, trials: np.ndarray | pd.Series, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions (good for small counts).

    >>> lo, hi = wilson_interval(np.array([8]), np.array([10]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.49, 0.943)
    """
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(trials, dtype="float64")
    z = norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


def _clean(events: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    ev = events[["customer_id", "session_id", "timestamp", "event", "channel"]] if "channel" in events else \
        events[["customer_id", "session_id", "timestamp", "event"]].assign(channel="unknown")
    dedup = ev.drop_duplicates()
    return dedup, len(ev) - len(dedup)


def _reach(ev: pd.DataFrame, steps: tuple[str, ...]) -> pd.DataFrame:
    """Per session, the time each step was reached (NaT when not reached)."""
    first = ev[ev["event"] == steps[0]].groupby("session_id")["timestamp"].min().rename(steps[0])
    reached = first.to_frame()
    for prev, step in zip(steps, steps[1:]):  # one pass per step
        cand = ev.loc[ev["event"] == step, ["session_id", "timestamp"]].merge(
            reached[prev].dropna().rename("prev_ts"), left_on="session_id", right_index=True)
        cand = cand[cand["timestamp"] >= cand["prev_ts"]]
        reached[step] = cand.groupby("session_id")["timestamp"].min().reindex(reached.index)
    return reached


def funnel(events: pd.DataFrame, steps: tuple[str, ...] = WEB_FUNNEL, *, by: str | pd.Series | None = None) -> pd.DataFrame:
    """Sessions reaching each step, conversion and drop-off with Wilson 95% intervals, and the
    median minutes from the previous step.

    Parameters
    ----------
    events : DataFrame
        Canonical events.
    steps : tuple of str
        Funnel steps in order (only sessions with the first step enter the funnel).
    by : "channel", or a Series mapping customer_id -> group (e.g. segment or persona)
        Split the funnel; with a Series, anonymous sessions and customers without a group are
        left out of the split.

    Returns
    -------
    DataFrame
        ``group, step, sessions, conversion, ci_low, ci_high, from_first, drop_off,
        median_minutes`` (``conversion`` = from the previous step). ``attrs["duplicates"]``:
        exact duplicate events dropped.
    """
    ev, dups = _clean(events)
    reached = _reach(ev, steps)
    session_info = ev.sort_values("timestamp").groupby("session_id").agg(customer_id=("customer_id", "first"), channel=("channel", "first"))
    if by is None:
        group = pd.Series("all", index=reached.index)
    elif isinstance(by, str):
        group = session_info[by].reindex(reached.index)
    else:
        group = session_info["customer_id"].reindex(reached.index).map(by)
    reached = reached[group.notna()]
    group = group[group.notna()]
    counts = reached.notna().groupby(group).sum()[list(steps)]
    minutes = pd.DataFrame({s: (reached[s] - reached[p]).dt.total_seconds() / 60 for p, s in zip(steps, steps[1:])}).groupby(group).median()
    rows = []
    for g, c in counts.iterrows():  # one row per group
        n = c.to_numpy(dtype="float64")
        prev = np.concatenate([[n[0]], n[:-1]])
        lo, hi = wilson_interval(n, prev)
        rows.append(pd.DataFrame({
            "group": g, "step": list(steps), "sessions": n.astype(int),
            "conversion": np.where(prev > 0, n / np.maximum(prev, 1), np.nan), "ci_low": lo, "ci_high": hi,
            "from_first": n / max(n[0], 1), "drop_off": prev - n,
            "median_minutes": np.concatenate([[np.nan], minutes.loc[g].to_numpy()]) if g in minutes.index else np.nan,
        }))
    out = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()
    out.attrs["duplicates"] = dups
    return out


def common_paths(events: pd.DataFrame, *, target: str = "order", max_len: int = 6, top: int = 10) -> pd.DataFrame:
    """The most common event paths of sessions that reach ``target``, split into the customer's
    first such session and later ones. Consecutive repeats collapse (view, view -> view); paths
    stop at the target and keep its last ``max_len`` steps.

    Returns ``kind (first/repeat), path, sessions, share``.
    """
    ev, _ = _clean(events)
    ev = ev.sort_values(["session_id", "timestamp"], kind="stable")
    ev = ev[ev["event"] != ev.groupby("session_id")["event"].shift()]
    target_ts = ev[ev["event"] == target].groupby("session_id")["timestamp"].min().rename("target_ts")
    ev = ev.merge(target_ts, left_on="session_id", right_index=True)
    ev = ev[ev["timestamp"] <= ev["target_ts"]]
    ev = ev[ev.groupby("session_id").cumcount(ascending=False) < max_len]
    paths = ev.groupby("session_id").agg(path=("event", " > ".join), customer_id=("customer_id", "first"), ts=("target_ts", "first"))
    paths = paths.dropna(subset=["customer_id"]).sort_values("ts")
    paths["kind"] = np.where(paths.groupby("customer_id").cumcount() == 0, "first", "repeat")
    out = paths.groupby(["kind", "path"]).size().rename("sessions").reset_index()
    out["share"] = out["sessions"] / out.groupby("kind")["sessions"].transform("sum")
    return out.sort_values(["kind", "sessions"], ascending=[True, False]).groupby("kind").head(top).reset_index(drop=True)


def converting_vs_not(events: pd.DataFrame, *, target: str = "order") -> pd.DataFrame:
    """What distinguishes sessions that convert: mean events, product views, duration (minutes)
    and the share per channel, for converting vs non-converting sessions."""
    ev, _ = _clean(events)
    web = ev[ev["event"].isin(WEB_FUNNEL)]
    s = web.groupby("session_id").agg(
        events=("event", "size"), product_views=("event", lambda e: (e == "product_view").sum()),
        start=("timestamp", "min"), end=("timestamp", "max"), channel=("channel", "first"),
        converted=("event", lambda e: (e == target).any()),
    )
    s["minutes"] = (s["end"] - s["start"]).dt.total_seconds() / 60
    out = s.groupby("converted")[["events", "product_views", "minutes"]].mean()
    mix = pd.crosstab(s["converted"], s["channel"], normalize="index").add_prefix("share_")
    out = out.join(mix)
    out.insert(0, "sessions", s.groupby("converted").size())
    out.index = out.index.map({True: "converting", False: "not converting"})
    return out


def attribution(events: pd.DataFrame, *, target: str = "order") -> pd.DataFrame:
    """Acquisition channel of each customer's first order, by **first touch** (channel of their
    earliest session up to that order) and by **last touch** (channel of the session with the
    order). Returns per channel: ``first_touch, last_touch`` counts and shares."""
    ev, _ = _clean(events)
    ev = ev.dropna(subset=["customer_id"])
    orders = ev[ev["event"] == target].sort_values("timestamp")
    first_order = orders.groupby("customer_id").first()[["timestamp", "channel"]].rename(columns={"timestamp": "order_ts", "channel": "last_touch"})
    sessions = ev.groupby(["customer_id", "session_id"]).agg(start=("timestamp", "min"), channel=("channel", "first")).reset_index()
    sessions = sessions.merge(first_order, left_on="customer_id", right_index=True)
    sessions = sessions[sessions["start"] <= sessions["order_ts"]].sort_values("start")
    first_touch = sessions.groupby("customer_id")["channel"].first()
    out = pd.DataFrame({"first_touch": first_touch.value_counts(), "last_touch": first_order["last_touch"].value_counts()}).fillna(0).astype(int)
    out["first_touch_share"] = out["first_touch"] / out["first_touch"].sum()
    out["last_touch_share"] = out["last_touch"] / out["last_touch"].sum()
    out.index.name = "channel"
    return out.sort_values("first_touch", ascending=False)


def post_purchase(events: pd.DataFrame, orders_per_customer: pd.Series, groups: pd.Series) -> pd.DataFrame:
    """Support contacts and returns per order, per group (segment or persona).

    ``orders_per_customer``: orders of each customer (e.g. the ``frequency`` feature).
    Returns ``customers, orders`` and, for each of ``support_contact`` and ``return`` present in
    the events, its count and rate per order.
    """
    ev = events.dropna(subset=["customer_id"])
    counts = pd.crosstab(ev["customer_id"], ev["event"])
    data = pd.DataFrame({"orders": orders_per_customer, "group": groups}).dropna(subset=["group"])
    kinds = [k for k in ("support_contact", "return") if k in counts.columns]
    for k in kinds:
        data[k] = counts[k].reindex(data.index).fillna(0)
    out = data.groupby("group").agg(customers=("orders", "size"), orders=("orders", "sum"), **{k: (k, "sum") for k in kinds})
    for k in kinds:
        out[f"{k}_per_order"] = out[k] / out["orders"]
    return out


def cohort_retention(transactions, as_of: str | pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monthly acquisition cohorts (month of first purchase) x months since acquisition.

    Returns ``(retention, revenue)``: the share of the cohort buying in each month, and revenue
    per cohort customer in each month. Aggregated in the engine; O(lines).
    """
    t = transactions.filter(transactions.order_date < pd.Timestamp(as_of).to_pydatetime())
    month = t.order_date.truncate("M")
    activity = to_pandas(t.group_by(["customer_id", month.name("month")]).aggregate(revenue=t.amount.sum()))
    activity["cohort"] = activity.groupby("customer_id")["month"].transform("min")
    activity["age"] = (activity["month"].dt.year - activity["cohort"].dt.year) * 12 + (activity["month"].dt.month - activity["cohort"].dt.month)
    size = activity[activity["age"] == 0].groupby("cohort")["customer_id"].nunique()
    active = activity.pivot_table(index="cohort", columns="age", values="customer_id", aggfunc="nunique")
    revenue = activity.pivot_table(index="cohort", columns="age", values="revenue", aggfunc="sum")
    retention = active.div(size, axis=0)
    revenue = revenue.div(size, axis=0)
    retention.index = retention.index.strftime("%Y-%m")
    revenue.index = revenue.index.strftime("%Y-%m")
    retention.insert(0, "customers", size.to_numpy())
    return retention, revenue


def migration_matrix(before: pd.Series, after: pd.Series, revenue: pd.Series | None = None) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Who moved from which segment to which between two dates.

    Customers absent before are counted from ``"new"``; absent after, to ``"gone"``. With
    ``revenue`` (per customer, e.g. spend in the later period), also the revenue moved.
    Returns ``(counts, revenue_moved)``.
    """
    ids = before.index.union(after.index)
    b = before.astype(str).reindex(ids).fillna("new")
    a = after.astype(str).reindex(ids).fillna("gone")
    counts = pd.crosstab(b.rename("from"), a.rename("to"))
    moved = None
    if revenue is not None:
        moved = pd.crosstab(b.rename("from"), a.rename("to"), values=revenue.reindex(ids).fillna(0), aggfunc="sum").fillna(0)
    return counts, moved


def category_trends(transactions, as_of: str | pd.Timestamp, groups: pd.Series, *, window_days: int = 90) -> pd.DataFrame:
    """Change in each group's category spend share: last ``window_days`` before ``as_of`` vs
    the ``window_days`` before that. Returns ``group, category, share_before, share_recent,
    change`` (share points), sorted by change."""
    end = pd.Timestamp(as_of)
    mid, start = end - pd.Timedelta(days=window_days), end - pd.Timedelta(days=2 * window_days)
    t = transactions.filter((transactions.order_date >= start.to_pydatetime()) & (transactions.order_date < end.to_pydatetime()) & ~transactions.is_return)
    recent = t.order_date >= mid.to_pydatetime()
    spend = to_pandas(t.group_by(["customer_id", "category", recent.name("recent")]).aggregate(v=t.amount.sum()))
    spend["group"] = spend["customer_id"].map(groups)
    spend = spend.dropna(subset=["group"])
    tab = spend.pivot_table(index=["group", "category"], columns="recent", values="v", aggfunc="sum", fill_value=0.0)
    tab = tab.reindex(columns=[False, True], fill_value=0.0)
    shares = tab / tab.groupby(level="group").transform("sum")
    out = pd.DataFrame({"share_before": shares[False], "share_recent": shares[True]}).fillna(0.0)
    out["change"] = out["share_recent"] - out["share_before"]
    return out.reset_index().sort_values("change", ascending=False).reset_index(drop=True)


# ------------------------------------------------------------------------------------ figures
def plot_funnel(f: pd.DataFrame) -> plt.Figure:
    """Share of sessions reaching each step (from the first), one line per group, with the
    step conversion's 95% interval as error bars."""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for g, d in f.groupby("group", sort=False):
        ax.plot(d["step"], d["from_first"], marker="o", label=str(g))
    ax.set_ylabel("share of sessions reaching the step")
    ax.set_title("Funnel: from visit to order")
    ax.legend(title=f.attrs.get("by", "group"), fontsize=8)
    fig.tight_layout()
    return fig


def plot_cohort_heatmap(table: pd.DataFrame, title: str, fmt: str = ".0%") -> plt.Figure:
    """Cohort x months-since-acquisition heatmap."""
    data = table.drop(columns=["customers"], errors="ignore")
    fig, ax = plt.subplots(figsize=(12, 0.3 * len(data) + 1.5))
    sns.heatmap(data, cmap="YlGnBu", annot=len(data.columns) <= 26, fmt=fmt, annot_kws={"size": 6}, ax=ax)
    ax.set_xlabel("months since first purchase")
    ax.set_ylabel("cohort (month of first purchase)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_migration(counts: pd.DataFrame) -> plt.Figure:
    """Row-normalized transition heatmap: where each earlier segment's customers went."""
    shares = counts.div(counts.sum(axis=1), axis=0)
    fig, ax = plt.subplots(figsize=(1.1 * len(counts.columns) + 3, 0.6 * len(counts) + 1.5))
    sns.heatmap(shares, cmap="Blues", annot=counts, fmt="d", ax=ax, cbar_kws={"label": "share of the row"})
    ax.set_title("Segment migration: counts (colour = share of the earlier segment)")
    fig.tight_layout()
    return fig
