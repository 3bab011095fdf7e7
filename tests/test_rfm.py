"""RFM scores and named segments, and the honesty rules: names that claim repeat purchases go
to repeat buyers only; frequency ties are scored at the bottom; a frequency score that cannot
rank says so."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation import definitions
from segmentation.rfm import ONE_TIME_LABELS, RFM_SEGMENTS, plot_rfm_grid, rfm_scores, rfm_segments, rfm_summary

matplotlib.use("Agg")

GRID = RFM_SEGMENTS[RFM_SEGMENTS["status"].isna()]


def test_grid_covers_every_cell_exactly_once_and_one_time_labels_cover_every_status():
    cells = [(r, fm) for row in GRID.itertuples() for r in range(int(row.r_min), int(row.r_max) + 1)
             for fm in range(int(row.fm_min), int(row.fm_max) + 1)]
    assert sorted(cells) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    assert GRID["segment"].nunique() == 11
    assert sorted(ONE_TIME_LABELS) == sorted(definitions.STATUSES)
    assert ONE_TIME_LABELS["lapsed"] == "One-time buyers, lapsed"


def test_scores_are_quintiles_with_recency_reversed():
    f = pd.DataFrame({"recency_days": np.arange(100.0), "frequency": np.arange(100.0), "monetary": np.arange(100.0)[::-1]})
    s = rfm_scores(f)
    assert s["r_score"].iloc[0] == 5 and s["r_score"].iloc[-1] == 1
    assert s["f_score"].value_counts().tolist() == [20] * 5
    assert s.loc[0, "rfm_cell"] == "515"


def test_frequency_ties_take_the_lowest_score():
    f = pd.DataFrame({"recency_days": [1, 2, 3, 4], "frequency": [1, 1, 1, 5], "monetary": [5, 5, 5, 4]})
    s = rfm_scores(f, bins=4)
    assert s["f_score"].tolist() == [1, 1, 1, 4]  # one order is the bottom, not the middle
    assert s["m_score"].tolist()[:3] == [3, 3, 3]  # spend ties share their average rank


def test_known_customers_land_in_known_segments():
    scores = pd.DataFrame({"r_score": [5, 1, 1, 5, 2], "fm_score": [5, 1, 5, 1, 4]}, index=list("abcde"))
    assert rfm_segments(scores).tolist() == ["Champions", "Lost", "Can't Lose Them", "New", "At Risk"]


def _marketplace(n=1000, repeat=6, seed=0) -> pd.DataFrame:
    """Marketplace-like customers: all but ``repeat`` bought once (CDNOW-like or marketplace data)."""
    rng = np.random.default_rng(seed)
    frequency = np.ones(n)
    frequency[:repeat] = [2, 2, 3, 2, 4, 2][:repeat]
    return pd.DataFrame({
        "recency_days": rng.uniform(1, 400, n),
        "frequency": frequency,
        "monetary": rng.gamma(2, 50, n),
        "ipi_mean_days": np.where(frequency > 1, 60.0, np.nan),
    }, index=[f"c{i}" for i in range(n)])


def test_almost_no_repeat_buyers_no_repeat_names():
    """99.4% one-time buyers: F cannot rank, the note says so, and nobody is called Loyal or
    Champion for buying once; one-time buyers are labelled by their status."""
    f = _marketplace()
    scores = rfm_scores(f)
    assert (scores.loc[f["frequency"] == 1, "f_score"] == 1).all()
    assert scores.attrs["repeat_share"] == pytest.approx(0.006) and not scores.attrs["f_informative"]
    assert scores.attrs["note"].startswith("Only 0.6% of customers bought more than once")
    seg = rfm_segments(scores, features=f)
    once = f["frequency"] == 1
    status = definitions.customer_status(f).astype(str)
    assert (seg[once] == status[once].map(ONE_TIME_LABELS)).all()
    assert not seg[once].isin(GRID["segment"]).any()
    assert seg[~once].isin(GRID["segment"]).all()  # repeat buyers keep the grid names
    # without the features (no way to tell one-time buyers) the grid would name them all
    assert rfm_segments(scores).isin(GRID["segment"]).all()


def test_repeat_buyers_are_named_by_the_grid():
    rng = np.random.default_rng(1)
    f = pd.DataFrame({"recency_days": rng.exponential(50, 500), "frequency": rng.poisson(5, 500) + 2.0,
                      "monetary": rng.gamma(2, 100, 500), "ipi_mean_days": rng.uniform(10, 60, 500)})
    scores = rfm_scores(f)
    assert scores.attrs["f_informative"] and scores.attrs["note"].startswith("Every customer is a repeat buyer")
    pd.testing.assert_series_equal(rfm_segments(scores, features=f), rfm_segments(scores))


def test_bad_mapping_is_refused():
    with pytest.raises(ValueError, match="no segment"):
        rfm_segments(pd.DataFrame({"r_score": [3], "fm_score": [3]}), RFM_SEGMENTS.iloc[:2])
    with pytest.raises(ValueError, match="two segments"):
        rfm_segments(pd.DataFrame({"r_score": [5], "fm_score": [5]}), pd.concat([RFM_SEGMENTS, RFM_SEGMENTS.iloc[:1]]))
    f = _marketplace(n=50)
    with pytest.raises(ValueError, match="no one-time-buyer label for status"):
        rfm_segments(rfm_scores(f), GRID, features=f)


def test_summary_and_grid_figure():
    f = _marketplace(n=500, repeat=6).assign(frequency=lambda d: np.where(np.arange(len(d)) < 300, 3.0, 1.0),
                                             ipi_mean_days=lambda d: np.where(np.arange(len(d)) < 300, 60.0, np.nan))
    scores = rfm_scores(f)
    seg = rfm_segments(scores, features=f)
    summary = rfm_summary(f, seg)
    assert summary["customers"].sum() == 500
    assert summary["revenue_share"].sum() == pytest.approx(1.0)
    assert summary.loc[summary["one_time"], "customers"].sum() == 200
    fig = plot_rfm_grid(scores, seg, f)
    assert "Champions" in " ".join(t.get_text() for t in fig.axes[0].texts)
    assert "Not in the grid (one order only): One-time buyers" in " ".join(t.get_text() for t in fig.texts)
