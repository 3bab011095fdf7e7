"""RFM scores and the named RFM segments, named only where the numbers support the name.

Scores are quantile ranks (1 = worst, ``bins`` = best): recency is scored so that *more recent*
is higher. The named segments come from an editable table kept as data in
``rules/rfm_segments.csv`` (columns ``segment, r_min, r_max, fm_min, fm_max, status, description,
action``):

* **grid rows** (``r_* / fm_*`` filled, ``status`` empty): rectangles over R and
  FM = round half up of (F + M) / 2; a segment may own several rectangles; every (R, FM) cell of
  the 5 x 5 grid belongs to exactly one segment.
* **one-time rows** (``status`` filled: ``active``, ``lapsing`` or ``lapsed``): the labels of
  customers with a single order.

Honesty rules
-------------
* **Names that claim repeat purchases need repeat purchases.** Every grid name speaks of
  frequency ("buy often", "buy regularly", "average frequency", "few orders"), so grid names go to
  repeat buyers only (:func:`segmentation.definitions.is_repeat_buyer`: at least 2 orders).
  One-time buyers are labelled by their status (:func:`segmentation.definitions.customer_status`):
  "One-time buyers, recent / lapsing / lapsed".
* **Ties are scored honestly.** Customers with the same frequency share the *lowest* score of
  their tie group: a one-time buyer is at the bottom of the frequency ranking, not in its middle
  (with 99% one-time buyers, the average rank would give them all F = 3, "average frequency").
  Recency and spend ties share the score of their average rank.
* **A frequency score that cannot rank is said to be so.** When repeat buyers are fewer than one
  score band (``1 / bins`` of the customers, 20% with quintiles), F only separates one-time from
  repeat buyers; :func:`rfm_scores` says so in ``attrs["note"]`` and ``attrs["f_informative"]``.

Pass your own table as ``mapping`` to change the names or the grid.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from segmentation import definitions
from segmentation.schema import rules_table

__all__ = ["RFM_SEGMENTS", "ONE_TIME_LABELS", "rfm_scores", "rfm_segments", "rfm_summary", "plot_rfm_grid"]


#: The editable segment table (see the module docstring).
RFM_SEGMENTS: pd.DataFrame = rules_table("rfm_segments")


def _grid(mapping: pd.DataFrame) -> pd.DataFrame:
    """The grid rows of a mapping (``status`` empty), with integer bounds."""
    rows = mapping[mapping["status"].isna()] if "status" in mapping.columns else mapping
    return rows.astype({c: "int64" for c in ("r_min", "r_max", "fm_min", "fm_max")})


def _one_time(mapping: pd.DataFrame) -> pd.Series:
    """Status -> one-time-buyer label, from the mapping's one-time rows."""
    if "status" not in mapping.columns:
        return pd.Series(dtype=object)
    rows = mapping[mapping["status"].notna()]
    return pd.Series(rows["segment"].to_numpy(), index=rows["status"].to_numpy())


#: Status -> label of one-time buyers (from :data:`RFM_SEGMENTS`).
ONE_TIME_LABELS: dict[str, str] = _one_time(RFM_SEGMENTS).to_dict()


def _score(values: pd.Series, bins: int, higher_is_better: bool = True, ties: str = "average") -> pd.Series:
    """Quantile score 1..bins from the percentile rank (``ties``: the rank a tie group shares)."""
    pct = values.rank(method=ties, pct=True, ascending=higher_is_better)
    return np.ceil(pct * bins).clip(1, bins).astype("int64")


def rfm_scores(features: pd.DataFrame, bins: int = 5) -> pd.DataFrame:
    """R, F and M scores per customer.

    Parameters
    ----------
    features : DataFrame
        With ``recency_days``, ``frequency`` and ``monetary`` (``features.customer_features``).
    bins : int
        Number of score levels (quintiles by default).

    Returns
    -------
    DataFrame
        ``r_score, f_score, m_score, fm_score`` (round half up of the F/M mean) and ``rfm_cell``
        (e.g. ``"545"``), same index as ``features``. F ties share the lowest score of their
        group (module docstring). ``attrs``: ``repeat_share`` (share of repeat buyers),
        ``f_informative`` (repeat buyers are at least ``1 / bins`` of the customers) and
        ``note`` (a sentence for the report).

    Examples
    --------
    >>> f = pd.DataFrame({"recency_days": [1, 50, 300], "frequency": [9, 3, 1], "monetary": [900, 90, 9]})
    >>> rfm_scores(f, bins=3)["rfm_cell"].tolist()
    ['333', '222', '111']
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    missing = [c for c in ("recency_days", "frequency", "monetary") if c not in features.columns]
    if missing:
        raise ValueError(f"features lack {missing}; pass features.customer_features(...)")
    out = pd.DataFrame(index=features.index)
    out["r_score"] = _score(features["recency_days"], bins, higher_is_better=False)
    out["f_score"] = _score(features["frequency"], bins, ties="min")
    out["m_score"] = _score(features["monetary"], bins)
    out["fm_score"] = np.floor((out["f_score"] + out["m_score"]) / 2 + 0.5).astype("int64")
    out["rfm_cell"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    repeat = float(definitions.is_repeat_buyer(features).mean()) if len(features) else 0.0
    informative = repeat >= 1 / bins
    if repeat == 1.0:
        note = "Every customer is a repeat buyer: all are named by the RFM grid."
    elif informative:
        note = (f"{repeat:.0%} of customers are repeat buyers: they are named by the RFM grid; the one-time buyers "
                f"({1 - repeat:.0%}) are grouped by status (recent / lapsing / lapsed).")
    else:
        note = (f"Only {repeat:.1%} of customers bought more than once: the frequency score cannot rank customers "
                f"(it only separates one-time buyers, all F = 1, from repeat buyers). One-time buyers are grouped by "
                "status (recent / lapsing / lapsed) instead of RFM names that claim repeat purchases.")
    out.attrs.update(repeat_share=repeat, f_informative=bool(informative), note=note)
    return out


def rfm_segments(scores: pd.DataFrame, mapping: pd.DataFrame | None = None, *, features: pd.DataFrame | None = None,
                 lapsing_after: float = definitions.LAPSING_AFTER,
                 lapsed_after: float = definitions.LAPSED_AFTER) -> pd.Series:
    """Named segment per customer (vectorized lookup, no loop).

    Parameters
    ----------
    scores : DataFrame
        From :func:`rfm_scores` (``r_score``, ``fm_score``).
    mapping : DataFrame, optional
        The segment table (default :data:`RFM_SEGMENTS`).
    features : DataFrame, optional
        The customer features (``recency_days, frequency, ipi_mean_days``), same index: one-time
        buyers then get the one-time labels by status instead of a grid name. Without it every
        customer gets a grid name -- only right when every customer is known to be a repeat buyer.
    lapsing_after, lapsed_after : float
        Status thresholds (:func:`segmentation.definitions.customer_status`).

    Raises
    ------
    ValueError
        When the grid leaves a cell without a segment or gives a cell two segments, or the
        mapping lacks a one-time label for a status that occurs.
    """
    mapping = RFM_SEGMENTS if mapping is None else mapping
    grid = pd.DataFrame(
        [(r, fm, row.segment) for row in _grid(mapping).itertuples()
         for r in range(row.r_min, row.r_max + 1) for fm in range(row.fm_min, row.fm_max + 1)],
        columns=["r_score", "fm_score", "segment"],
    )
    dup = grid.duplicated(["r_score", "fm_score"], keep=False)
    if dup.any():
        raise ValueError(f"RFM mapping gives these (R, FM) cells two segments: {grid[dup].values.tolist()[:6]}")
    lookup = grid.set_index(["r_score", "fm_score"])["segment"]
    keys = pd.MultiIndex.from_arrays([scores["r_score"], scores["fm_score"]])
    seg = pd.Series(lookup.reindex(keys).to_numpy(), index=scores.index, name="rfm_segment")
    if features is not None:
        features = features.reindex(scores.index)
        once = ~definitions.is_repeat_buyer(features).to_numpy()
        if once.any():
            # on every customer: the typical gap of one-order customers comes from the repeat buyers
            status = definitions.customer_status(features, lapsing_after=lapsing_after, lapsed_after=lapsed_after)[once]
            labels = _one_time(mapping)
            lacking = sorted(set(status.astype(str)) - set(labels.index))
            if lacking:
                raise ValueError(f"RFM mapping has no one-time-buyer label for status {lacking}; add rows with "
                                 "status=<status> (see rules/rfm_segments.csv)")
            seg[once] = labels.reindex(status.astype(str)).to_numpy()
    if seg.isna().any():
        missing = sorted(set(keys[seg.isna().to_numpy()]))[:6]
        raise ValueError(f"RFM mapping has no segment for (R, FM) cells {missing}")
    return seg


def rfm_summary(features: pd.DataFrame, segments: pd.Series) -> pd.DataFrame:
    """Per named segment: customers, share, revenue, revenue share, mean recency/frequency/spend,
    the segment's description and suggested action, and ``one_time`` (a one-time-buyer label);
    ordered by revenue."""
    g = features.groupby(segments.rename("rfm_segment"))
    out = pd.DataFrame({
        "customers": g.size(),
        "revenue": g["monetary"].sum(),
        "recency_days": g["recency_days"].mean(),
        "frequency": g["frequency"].mean(),
        "monetary": g["monetary"].mean(),
    })
    out["customer_share"] = out["customers"] / out["customers"].sum()
    out["revenue_share"] = out["revenue"] / out["revenue"].sum()
    info = RFM_SEGMENTS.drop_duplicates("segment").set_index("segment")
    out = out.join(info[["description", "action"]])
    out["one_time"] = out.index.isin(_one_time(RFM_SEGMENTS).to_numpy())
    return out.sort_values("revenue", ascending=False)


def plot_rfm_grid(scores: pd.DataFrame, segments: pd.Series, features: pd.DataFrame,
                  mapping: pd.DataFrame | None = None) -> plt.Figure:
    """The R x FM grid of the repeat buyers: each cell coloured by its segment, annotated with
    the segment's name, its share of customers and of revenue; the one-time buyers' groups are
    listed under the grid."""
    mapping = RFM_SEGMENTS if mapping is None else mapping
    grid = _grid(mapping)
    summary = rfm_summary(features, segments)
    names = list(dict.fromkeys(grid["segment"]))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(names)))
    fig, ax = plt.subplots(figsize=(9, 7))
    for row in grid.itertuples():
        i = names.index(row.segment)
        ax.add_patch(plt.Rectangle((row.fm_min - 0.5, row.r_min - 0.5), row.fm_max - row.fm_min + 1,
                                   row.r_max - row.r_min + 1, facecolor=colours[i], edgecolor="white", lw=2, alpha=0.85))
    for seg, rows in grid.groupby("segment", sort=False):
        biggest = rows.assign(area=(rows.r_max - rows.r_min + 1) * (rows.fm_max - rows.fm_min + 1)).sort_values("area").iloc[-1]
        x, y = (biggest.fm_min + biggest.fm_max) / 2, (biggest.r_min + biggest.r_max) / 2
        if seg in summary.index:
            s = summary.loc[seg]
            text = f"{seg}\n{s.customer_share:.0%} of customers\n{s.revenue_share:.0%} of revenue"
        else:
            text = f"{seg}\n(no customers)"
        ax.text(x, y, text, ha="center", va="center", fontsize=8)
    once = summary[summary["one_time"]]
    if len(once):
        lines = "; ".join(f"{seg}: {s.customer_share:.0%} of customers, {s.revenue_share:.0%} of revenue"
                          for seg, s in once.iterrows())
        fig.text(0.5, 0.01, f"Not in the grid (one order only): {lines}", ha="center", fontsize=8, wrap=True)
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0.5, 5.5)
    ax.set_xticks(range(1, 6))
    ax.set_yticks(range(1, 6))
    ax.set_xlabel("FM score (frequency and spend, 5 = best)")
    ax.set_ylabel("R score (recency, 5 = most recent)")
    ax.set_title("RFM segments of repeat buyers: share of customers and of revenue")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig
