"""RFM scores and named segments."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.rfm import RFM_SEGMENTS, plot_rfm_grid, rfm_scores, rfm_segments, rfm_summary

matplotlib.use("Agg")


def test_mapping_covers_every_cell_exactly_once():
    cells = [(r, fm) for row in RFM_SEGMENTS.itertuples() for r in range(row.r_min, row.r_max + 1)
             for fm in range(row.fm_min, row.fm_max + 1)]
    assert sorted(cells) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    assert RFM_SEGMENTS["segment"].nunique() == 11


def test_scores_are_quintiles_with_recency_reversed():
    f = pd.DataFrame({"recency_days": np.arange(100.0), "frequency": np.arange(100.0), "monetary": np.arange(100.0)[::-1]})
    s = rfm_scores(f)
    assert s["r_score"].iloc[0] == 5 and s["r_score"].iloc[-1] == 1
    assert s["f_score"].value_counts().tolist() == [20] * 5
    assert s.loc[0, "rfm_cell"] == "515"


def test_ties_share_a_score():
    f = pd.DataFrame({"recency_days": [1, 2, 3, 4], "frequency": [1, 1, 1, 5], "monetary": [1, 2, 3, 4]})
    s = rfm_scores(f, bins=4)
    assert s["f_score"].tolist()[:3] == [2, 2, 2]


def test_known_customers_land_in_known_segments():
    scores = pd.DataFrame({"r_score": [5, 1, 1, 5, 2], "fm_score": [5, 1, 5, 1, 4]}, index=list("abcde"))
    assert rfm_segments(scores).tolist() == ["Champions", "Lost", "Can't Lose Them", "New", "At Risk"]


def test_bad_mapping_is_refused():
    with pytest.raises(ValueError, match="no segment"):
        rfm_segments(pd.DataFrame({"r_score": [3], "fm_score": [3]}), RFM_SEGMENTS.iloc[:2])
    with pytest.raises(ValueError, match="two segments"):
        rfm_segments(pd.DataFrame({"r_score": [5], "fm_score": [5]}), pd.concat([RFM_SEGMENTS, RFM_SEGMENTS.iloc[:1]]))


def test_summary_and_grid_figure():
    rng = np.random.default_rng(0)
    f = pd.DataFrame({"recency_days": rng.exponential(50, 500), "frequency": rng.poisson(5, 500) + 1.0,
                      "monetary": rng.gamma(2, 100, 500)})
    scores = rfm_scores(f)
    seg = rfm_segments(scores)
    summary = rfm_summary(f, seg)
    assert summary["customers"].sum() == 500
    assert summary["revenue_share"].sum() == pytest.approx(1.0)
    fig = plot_rfm_grid(scores, seg, f)
    assert "Champions" in " ".join(t.get_text() for t in fig.axes[0].texts)
