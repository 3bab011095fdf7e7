"""BG/NBD and Gamma-Gamma: hand-computed likelihoods, the published CDNOW estimates, predictions."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.value import (
    BetaGeo,
    GammaGamma,
    calibration_holdout,
    customer_value,
    expected_orders_by_group,
    holdout_errors,
    next_purchase_window,
    plot_conditional_expectations,
    plot_cumulative_repeat,
    value_by_group,
)

matplotlib.use("Agg")


def _bg(r=0.243, alpha=4.414, a=0.793, b=2.426) -> BetaGeo:
    m = BetaGeo()
    m.params_ = {"r": r, "alpha": alpha, "a": a, "b": b}
    return m


def _hand_ll(x, tx, T, r=0.243, alpha=4.414, a=0.793, b=2.426):
    """Equation 6 of Fader, Hardie & Lee (2005), written out with the math module."""
    B = lambda u, v: math.gamma(u) * math.gamma(v) / math.gamma(u + v)  # noqa: E731
    front = B(a, b + x) / B(a, b) * math.gamma(r + x) * alpha**r / math.gamma(r)
    inner = (alpha + T) ** -(r + x) + (a / (b + x - 1) * (alpha + tx) ** -(r + x) if x > 0 else 0.0)
    return math.log(front * inner)


def test_bgnbd_likelihood_matches_hand_computation():
    s = pd.DataFrame({"frequency": [0.0, 2.0, 7.0], "recency": [0.0, 30.43, 35.1], "T": [38.86, 38.86, 37.0]})
    ll = _bg().log_likelihood_per_customer(s)
    for i, row in enumerate(s.itertuples()):
        assert ll.iloc[i] == pytest.approx(_hand_ll(row.frequency, row.recency, row.T), rel=1e-10)


def test_gamma_gamma_likelihood_matches_hand_computation():
    p, q, g, x, m = 6.25, 3.74, 15.44, 3.0, 40.0
    # the individual likelihood integrated over nu (Fader, Hardie & Lee 2005, RFM and CLV, eq. 3)
    hand = (math.lgamma(p * x + q) - math.lgamma(p * x) - math.lgamma(q) + q * math.log(g)
            + (p * x - 1) * math.log(m) + p * x * math.log(x) - (p * x + q) * math.log(g + m * x))
    assert GammaGamma._ll((p, q, g), np.array([x]), np.array([m]))[0] == pytest.approx(hand)


@pytest.fixture(scope="module")
def cdnow(shared_data):
    from segmentation.data import load_store
    from segmentation.features import lifetime_summary

    store = load_store(shared_data / "cdnow" / "CDNOW_sample.txt", preset="cdnow", pseudonymize=False, suppress=[])
    return store, lifetime_summary(store.transactions, "1997-10-01", time_unit="W")


def test_cdnow_matches_the_published_estimates(cdnow):
    _, summary = cdnow
    bg = BetaGeo().fit(summary)
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for k, v in published.items():
        assert float(f"{bg.params_[k]:.3g}") == pytest.approx(float(f"{v:.3g}")), (k, bg.params_[k])
    assert float(f"{bg.log_likelihood_:.5g}") == pytest.approx(-9582.4)
    gg = GammaGamma().fit(summary)
    assert gg.n_customers_ == 946
    for k, v in {"p": 6.25, "q": 3.74, "gamma": 15.44}.items():
        assert float(f"{gg.params_[k]:.3g}") == pytest.approx(float(f"{v:.3g}")), (k, gg.params_[k])


def test_predictions_behave(cdnow):
    store, summary = cdnow
    bg, gg = BetaGeo().fit(summary), GammaGamma().fit(summary)
    alive = bg.probability_alive(summary)
    assert (alive[summary["frequency"] == 0] == 1).all()  # by construction
    assert alive.between(0, 1).all()
    e = bg.expected_purchases(np.array([4.0, 13.0, 52.0]), summary)
    assert (np.diff(e, axis=1) >= 0).all()
    # unconditional E[X(t)] at t = 78 weeks; the paper's Figure 2 reaches ~1.6 repeat purchases per customer
    assert 1.2 < float(bg.expected_purchases_new(78.0)) < 2.0
    v = customer_value(summary, bg, gg, horizon=52, discount_rate=0.0)
    np.testing.assert_allclose(v["clv"], v["expected_purchases"] * v["expected_avg_value"], rtol=1e-9)
    v = customer_value(summary, bg, gg, horizon=52, discount_rate=0.01)
    assert (v["clv"] <= v["expected_spend"] + 1e-9).all()
    assert set(v["churn_band"].astype(str)) <= {"low", "medium", "high"}
    assert ((v["churn_band"] == "high") == (v["churn_risk"] >= 0.7)).all()
    pop_mean = gg.params_["p"] * gg.params_["gamma"] / (gg.params_["q"] - 1)
    assert gg.conditional_expected_value(summary)[summary["frequency"] == 0].iloc[0] == pytest.approx(pop_mean)
    w = next_purchase_window(summary, bg)
    assert (w["window_start"] < w["window_median"]).all() and (w["window_median"] < w["window_end"]).all()
    groups = pd.Series(np.where(summary["frequency"] > 0, "repeat", "one-off"), index=summary.index)
    vg = value_by_group(v, groups)
    assert vg["customers"].sum() == len(summary)
    plan = expected_orders_by_group(summary, bg, gg, groups, weeks=4)
    assert len(plan) == 8 and (plan["expected_orders"] > 0).all()


def test_holdout_on_cdnow(cdnow):
    store, _ = cdnow
    ch = calibration_holdout(store.transactions, "1997-10-01", "1998-07-01")
    bg = BetaGeo().fit(ch)
    err = holdout_errors(ch, bg)["value"]
    assert err["actual holdout purchases"] > 1500
    assert abs(err["total error (relative)"]) < 0.2
    assert err["correlation actual vs predicted"] > 0.5
    assert plot_conditional_expectations(ch, bg).axes
    assert plot_cumulative_repeat(store.transactions, bg, "1997-10-01", "1998-07-01").axes


def test_gamma_gamma_needs_repeat_buyers():
    with pytest.raises(ValueError, match="repeat buyers"):
        GammaGamma().fit(pd.DataFrame({"frequency": [0.0, 0.0, 1.0], "monetary_value": [0.0, 0.0, 5.0]}))
    with pytest.raises(ValueError, match="lifetime_summary"):
        BetaGeo().fit(pd.DataFrame({"frequency": [1.0]}))
