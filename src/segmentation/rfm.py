"""RFM scores and the named RFM segments.

Scores are quantile ranks (1 = worst, ``bins`` = best): recency is scored so that *more recent*
is higher. The named segments come from an editable grid over R and FM = round((F + M) / 2),
kept as data in ``rules/rfm_segments.csv`` (columns ``segment, r_min, r_max, fm_min, fm_max,
description, action``; a segment may own several rectangles; every (R, FM) cell of the 5 x 5
grid belongs to exactly one segment). Pass your own table as ``mapping`` to change it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from segmentation.schema import rules_table

__all__ = ["RFM_SEGMENTS", "rfm_scores", "rfm_segments", "rfm_summary", "plot_rfm_grid"]


#: The editable segment grid (see the module docstring).
RFM_SEGMENTS: pd.DataFrame = rules_table("rfm_segments")


def _score(values: pd.Series, bins: int, higher_is_better: bool = True) -> pd.Series:
    """Quantile score 1..bins from the percentile rank (ties share a score)."""
    pct = values.rank(method="average", pct=True, ascending=higher_is_better)
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
        (e.g. ``"545"``), same index as ``features``.

    Examples
    --------
    >>> f = pd.DataFrame({"recency_days": [1, 50, 300], "frequency": [9, 3, 1], "monetary": [900, 90, 9]})
    >>> rfm_scores(f, bins=3)["rfm_cell"].tolist()
    ['333', '222', '111']
    """
    if bins < 2:
        raise ValueError("bins must be at least 2")
    out = pd.DataFrame(index=features.index)
    out["r_score"] = _score(features["recency_days"], bins, higher_is_better=False)
    out["f_score"] = _score(features["frequency"], bins)
    out["m_score"] = _score(features["monetary"], bins)
    out["fm_score"] = np.floor((out["f_score"] + out["m_score"]) / 2 + 0.5).astype("int64")
    out["rfm_cell"] = out["r_score"].astype(str) + out["f_score"].astype(str) + out["m_score"].astype(str)
    return out


def rfm_segments(scores: pd.DataFrame, mapping: pd.DataFrame | None = None) -> pd.Series:
    """Named segment per customer from the R x FM grid (vectorized lookup, no loop).

    Raises
    ------
    ValueError
        When the mapping leaves a cell without a segment or gives a cell two segments.
    """
    mapping = RFM_SEGMENTS if mapping is None else mapping
    grid = pd.DataFrame(
        [(r, fm, row.segment) for row in mapping.itertuples()
         for r in range(int(row.r_min), int(row.r_max) + 1) for fm in range(int(row.fm_min), int(row.fm_max) + 1)],
        columns=["r_score", "fm_score", "segment"],
    )
    dup = grid.duplicated(["r_score", "fm_score"], keep=False)
    if dup.any():
        raise ValueError(f"RFM mapping gives these (R, FM) cells two segments: {grid[dup].values.tolist()[:6]}")
    lookup = grid.set_index(["r_score", "fm_score"])["segment"]
    keys = pd.MultiIndex.from_arrays([scores["r_score"], scores["fm_score"]])
    seg = lookup.reindex(keys)
    if seg.isna().any():
        missing = sorted(set(keys[seg.isna().to_numpy()]))[:6]
        raise ValueError(f"RFM mapping has no segment for (R, FM) cells {missing}")
    return pd.Series(seg.to_numpy(), index=scores.index, name="rfm_segment")


def rfm_summary(features: pd.DataFrame, segments: pd.Series) -> pd.DataFrame:
    """Per named segment: customers, share, revenue, revenue share, mean recency/frequency/spend,
    and the segment's description and suggested action, ordered by revenue."""
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
    info = RFM_SEGMENTS.drop_duplicates("segment").set_index("segment")[["description", "action"]]
    return out.join(info).sort_values("revenue", ascending=False)


def plot_rfm_grid(scores: pd.DataFrame, segments: pd.Series, features: pd.DataFrame, mapping: pd.DataFrame | None = None) -> plt.Figure:
    """The R x FM grid: each cell coloured by its segment, annotated with the segment's name,
    its share of customers and of revenue."""
    mapping = RFM_SEGMENTS if mapping is None else mapping
    summary = rfm_summary(features, segments)
    names = list(dict.fromkeys(mapping["segment"]))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(names)))
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for row in mapping.itertuples():
        i = names.index(row.segment)
        ax.add_patch(plt.Rectangle((row.fm_min - 0.5, row.r_min - 0.5), row.fm_max - row.fm_min + 1,
                                   row.r_max - row.r_min + 1, facecolor=colours[i], edgecolor="white", lw=2, alpha=0.85))
    for seg, rows in mapping.groupby("segment", sort=False):
        biggest = rows.assign(area=(rows.r_max - rows.r_min + 1) * (rows.fm_max - rows.fm_min + 1)).sort_values("area").iloc[-1]
        x, y = (biggest.fm_min + biggest.fm_max) / 2, (biggest.r_min + biggest.r_max) / 2
        if seg in summary.index:
            s = summary.loc[seg]
            text = f"{seg}\n{s.customer_share:.0%} of customers\n{s.revenue_share:.0%} of revenue"
        else:
            text = f"{seg}\n(no customers)"
        ax.text(x, y, text, ha="center", va="center", fontsize=8)
    ax.set_xlim(0.5, 5.5)
    ax.set_ylim(0.5, 5.5)
    ax.set_xticks(range(1, 6))
    ax.set_yticks(range(1, 6))
    ax.set_xlabel("FM score (frequency and spend, 5 = best)")
    ax.set_ylabel("R score (recency, 5 = most recent)")
    ax.set_title("RFM segments: share of customers and of revenue")
    fig.tight_layout()
    return fig
