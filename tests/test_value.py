"""BG/NBD and Gamma-Gamma: hand-computed likelihoods, the published CDNOW estimates, predictions,
value in stated units (annual rate, horizon in weeks or months), intervals checked by simulation,
and the verdict on the model."""

from __future__ import annotations

import math

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.value import (
    BetaGeo,
    GammaGamma,
    assess_model,
    calibration_holdout,
    choose_calibration_end,
    customer_value,
    expected_orders_by_group,
    holdout_errors,
    next_purchase_window,
    period_discount_rate,
    conditional_expectations,
    plot_conditional_expectations,
    plot_cumulative_repeat,
    repeat_tracking,
    simulate_bgnbd,
    value_by_group,
    value_intervals,
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

    store = load_store(shared_data / "cdnow" / "CDNOW_sample.txt", preset="cdnow", pseudonymize=False, suppress=[], as_of="1998-07-01")
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
    v = customer_value(summary, bg, gg, horizon_weeks=52, annual_discount_rate=0.0)
    np.testing.assert_allclose(v["clv"], v["expected_purchases"] * v["expected_avg_value"], rtol=1e-9)
    v = customer_value(summary, bg, gg, horizon_weeks=52, annual_discount_rate=0.10)
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


def test_predictions_once_per_distinct_row_equal_the_row_by_row_ones(cdnow):
    """BG/NBD predictions are computed once per distinct (frequency, recency, T) row and spread
    back to the customers: the same numbers as customer by customer, in the customers' order."""
    from segmentation.value import _distinct_rows

    (x, t), inverse = _distinct_rows(np.array([2.0, 1.0, 2.0, 1.0]), np.array([5.0, 3.0, 5.0, 4.0]))
    assert x.tolist() == [1.0, 1.0, 2.0] and t.tolist() == [3.0, 4.0, 5.0] and inverse.tolist() == [2, 0, 2, 1]
    _, summary = cdnow
    bg, gg = BetaGeo().fit(summary), GammaGamma().fit(summary)
    assert len(summary[["frequency", "recency", "T"]].drop_duplicates()) < 0.5 * len(summary)  # many shared rows
    one = summary.iloc[:40]
    each = pd.concat([customer_value(one.iloc[[i]], bg, gg) for i in range(len(one))])
    pd.testing.assert_frame_equal(customer_value(summary, bg, gg).iloc[:40], each, check_exact=True)
    row_by_row = np.vstack([bg.expected_purchases(np.array([4.0, 13.0]), one.iloc[[i]]) for i in range(len(one))])
    assert (bg.expected_purchases(np.array([4.0, 13.0]), summary)[:40] == row_by_row).all()
    groups = pd.Series(np.arange(len(summary)) % 3, index=summary.index)
    plan = expected_orders_by_group(summary, bg, gg, groups, weeks=2).set_index(["group", "week"])
    weekly = np.diff(bg.expected_purchases(np.array([0.0, 1.0, 2.0]), summary), axis=1)
    value = gg.conditional_expected_value(summary).to_numpy()
    for g in range(3):
        np.testing.assert_allclose(plan.loc[g, "expected_orders"], weekly[groups == g].sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(plan.loc[g, "expected_revenue"], (weekly * value[:, None])[groups == g].sum(axis=0), rtol=1e-12)


def test_holdout_on_cdnow(cdnow):
    store, _ = cdnow
    ch = calibration_holdout(store.transactions, "1997-10-01", "1998-07-01")
    bg = BetaGeo().fit(ch)
    err = holdout_errors(ch, bg)["value"]
    assert err["actual holdout purchases"] > 1500
    assert abs(err["total error (relative)"]) < 0.2
    assert err["correlation actual vs predicted"] > 0.5
    cond = conditional_expectations(ch, bg)
    assert cond["customers"].sum() == len(ch) and cond.index.max() == 7
    assert cond.loc[0, "actual"] == pytest.approx(ch.loc[ch["frequency"] == 0, "frequency_holdout"].mean())
    assert plot_conditional_expectations(cond).axes
    tracking = repeat_tracking(store.transactions, bg, "1997-10-01", "1998-07-01")
    assert plot_cumulative_repeat(tracking).axes


def test_gamma_gamma_needs_repeat_buyers():
    with pytest.raises(ValueError, match="repeat buyers"):
        GammaGamma().fit(pd.DataFrame({"frequency": [0.0, 0.0, 1.0], "monetary_value": [0.0, 0.0, 5.0]}))
    with pytest.raises(ValueError, match="lifetime_summary"):
        BetaGeo().fit(pd.DataFrame({"frequency": [1.0]}))


# ------------------------------------------------------------------------------ units
def _lifetimes_clv(summary: pd.DataFrame, bg: BetaGeo, gg: GammaGamma, months: int = 12, monthly_rate: float = 0.01) -> float:
    """lifetimes' customer_lifetime_value(freq="W", time=12, discount_rate=0.01), written out:
    monthly steps of 4.345 weeks, each month's increment of expected purchases times the expected
    average value, discounted by (1 + monthly rate) ** month."""
    step, value, total = 4.345, gg.conditional_expected_value(summary).to_numpy(), 0.0
    for month in range(1, months + 1):
        increment = bg.expected_purchases(month * step, summary) - bg.expected_purchases((month - 1) * step, summary)
        total += float((value * increment.to_numpy()).sum()) / (1 + monthly_rate) ** month
    return total


def test_cdnow_clv_in_annual_units_matches_lifetimes_monthly_rate(cdnow):
    _, summary = cdnow
    bg, gg = BetaGeo().fit(summary), GammaGamma().fit(summary)
    reference = _lifetimes_clv(summary, bg, gg)
    assert len(summary) == 2357 and round(reference) == pytest.approx(71_508, abs=2)  # lifetimes' published total
    annual = 1.01**12 - 1  # 1% a month = 12.68% a year
    v = customer_value(summary, bg, gg, horizon_weeks=52, annual_discount_rate=annual)
    assert v["clv"].sum() == pytest.approx(reference, rel=0.005)
    assert v.attrs["annual_discount_rate"] == pytest.approx(annual)
    assert v.attrs["period_discount_rate"] == pytest.approx(1.01 ** (12 / 52) - 1)
    assert v.attrs["horizon_weeks"] == 52 and v.attrs["horizon_months"] == 12
    assert v.attrs["note"] == "CLV: expected spend over the next 52 weeks, discounted at 12.7% a year."
    # the old mistake: 1% per *week* (68% a year) gives a much smaller total
    weekly_one_percent = customer_value(summary, bg, gg, horizon_weeks=52, annual_discount_rate=1.01**52 - 1)
    assert weekly_one_percent["clv"].sum() < 0.9 * reference
    months = customer_value(summary, bg, gg, horizon_months=12, annual_discount_rate=annual)
    pd.testing.assert_series_equal(months["clv"], v["clv"])
    assert months.attrs["horizon_label"] == "12 months"


def test_rates_and_horizons_are_explicit():
    assert period_discount_rate(0.10, "W") == pytest.approx(1.10 ** (1 / 52) - 1)
    assert period_discount_rate(0.10, "D") == pytest.approx(1.10 ** (1 / 365) - 1)
    assert (1 + period_discount_rate(0.10, "W")) ** 52 == pytest.approx(1.10)
    with pytest.raises(ValueError, match="yearly rate"):
        period_discount_rate(-0.1)
    s = pd.DataFrame({"frequency": [0.0, 3.0], "recency": [0.0, 20.0], "T": [30.0, 30.0], "monetary_value": [0.0, 25.0]})
    gg = GammaGamma()
    gg.params_ = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    with pytest.raises(ValueError, match="not both"):
        customer_value(s, _bg(), gg, horizon_weeks=10, horizon_months=3)
    with pytest.raises(TypeError):
        customer_value(s, _bg(), gg, discount_rate=0.01)  # the per-period argument is gone
    default = customer_value(s, _bg(), gg)
    assert default.attrs["horizon_label"] == "12 months" and default.attrs["annual_discount_rate"] == 0.10
    # a daily summary: the same customers in days, the same 26-week horizon -> nearly the same value
    days = s.assign(recency=s["recency"] * 7, T=s["T"] * 7)
    bg_days = _bg(alpha=4.414 * 7)
    weekly = customer_value(s, _bg(), gg, horizon_weeks=26)
    daily = customer_value(days, bg_days, gg, horizon_weeks=26, time_unit="D")
    np.testing.assert_allclose(daily["expected_purchases"], weekly["expected_purchases"], rtol=1e-9)
    np.testing.assert_allclose(daily["clv"], weekly["clv"], rtol=2e-3)  # daily vs weekly discounting steps


# ------------------------------------------------------------------------------ uncertainty
def test_simulated_customers_have_the_model_moments():
    true = dict(r=0.5, alpha=4.0, a=0.8, b=2.5)
    sim = simulate_bgnbd(40_000, **true, T=30.0, random_state=3)
    expected = float(_bg(**true).expected_purchases_new(30.0))  # E[X(T)] of the paper, equation 9
    assert sim["frequency"].mean() == pytest.approx(expected, rel=0.03)
    assert ((sim["recency"] > 0) == (sim["frequency"] > 0)).all() and (sim["recency"] <= sim["T"]).all()


def test_intervals_on_cdnow(cdnow):
    _, summary = cdnow
    bg, gg = BetaGeo().fit(summary), GammaGamma().fit(summary)
    ci = bg.param_intervals(0.9)
    assert ((ci["low"] < ci["estimate"]) & (ci["estimate"] < ci["high"])).all()
    assert ci.loc["r", "high"] / ci.loc["r", "low"] < 1.3  # r is well determined on 2,357 customers
    groups = pd.Series(np.where(summary["frequency"] > 0, "repeat", "one-off"), index=summary.index)
    vi = value_intervals(summary, bg, gg, groups, horizon_months=12, n_draws=100, random_state=1)
    v = customer_value(summary, bg, gg, horizon_months=12)
    assert vi.loc["total", "clv"] == pytest.approx(v["clv"].sum())
    assert vi.loc["repeat", "customers"] == (summary["frequency"] > 0).sum()
    assert vi.loc[["one-off", "repeat"], "expected_purchases"].sum() == pytest.approx(vi.loc["total", "expected_purchases"])
    for col in ("clv", "expected_purchases"):
        assert (vi[f"{col}_low"] < vi[col]).all() and (vi[col] < vi[f"{col}_high"]).all()
    assert 0.02 < vi.loc["total", "clv_high"] / vi.loc["total", "clv"] - 1 < 0.3
    again = value_intervals(summary, bg, gg, groups, horizon_months=12, n_draws=100, random_state=1)
    pd.testing.assert_frame_equal(vi, again)
    assert vi.attrs["level"] == 0.9 and "not how wrong the model could be" in vi.attrs["note"]


@pytest.mark.slow
def test_intervals_cover_the_truth_in_simulation():
    """200 data sets of 1,000 customers from known BG/NBD parameters: the 90% intervals of the
    parameters and of the total expected purchases in the next 26 weeks cover the truth in 85-95%."""
    true = dict(r=0.5, alpha=4.0, a=0.8, b=2.5)
    reps, n = 200, 1000
    T = np.random.default_rng(1).uniform(52, 104, size=(reps, n))
    sims = simulate_bgnbd((reps, n), **true, T=T, random_state=7)
    truth_model = _bg(**true)
    covered = []
    for rep, s in sims.groupby("replication"):
        bg = BetaGeo().fit(s)
        ci = bg.param_intervals(0.9)
        total = value_intervals(s, bg, None, horizon_weeks=26, n_draws=100, random_state=rep).loc["total"]
        truth = truth_model.expected_purchases(26.0, s).sum()
        covered.append([ci.loc[k, "low"] <= v <= ci.loc[k, "high"] for k, v in true.items()]
                       + [total["expected_purchases_low"] <= truth <= total["expected_purchases_high"]])
    coverage = np.mean(covered, axis=0)
    assert ((coverage >= 0.85) & (coverage <= 0.95)).all(), dict(zip([*true, "total purchases"], coverage))


# ------------------------------------------------------------------------------ verdict
def test_cdnow_model_is_usable(cdnow):
    store, summary = cdnow
    ch = calibration_holdout(store.transactions, "1997-10-01", "1998-07-01")
    bg_cal = BetaGeo().fit(ch)
    holdout = holdout_errors(ch, bg_cal)
    assert holdout.loc["total error (relative)", "value"] == pytest.approx(-0.12, abs=0.01)
    assert holdout.loc["correlation actual vs predicted", "value"] == pytest.approx(0.63, abs=0.01)
    repeat_share = float((summary["frequency"] > 0).mean())
    verdict, reasons, checks = assess_model(BetaGeo().fit(summary), holdout, repeat_share=repeat_share,
                                            ggf=GammaGamma().fit(summary))
    assert verdict == "usable", reasons
    assert any("12% fewer repeat purchases" in r and "0.63" in r for r in reasons)
    assert set(checks["outcome"]) == {"usable"}
    # the split chosen from the data span: a third of the 78 weeks, at most 26 weeks of holdout
    end = choose_calibration_end("1997-01-01", "1998-07-01")  # CDNOW's first purchase, the day after its last
    assert end == pd.Timestamp("1998-07-01") - pd.Timedelta(weeks=26)
    ch2 = calibration_holdout(store.transactions, end, "1998-07-01")
    verdict2, reasons2, _ = assess_model(BetaGeo().fit(ch2), holdout_errors(ch2, BetaGeo().fit(ch2)), repeat_share=repeat_share)
    assert verdict2 in {"usable", "rough"}, reasons2


def test_verdicts_for_data_that_cannot_support_a_model():
    holdout = pd.DataFrame({"value": [-0.12, 0.63]}, index=["total error (relative)", "correlation actual vs predicted"])
    few, reasons, _ = assess_model(_bg(), holdout, repeat_share=0.006)
    assert few == "do not use" and reasons[0].startswith("Only 0.6% of customers bought more than once")
    degenerate, reasons, checks = assess_model(_bg(a=4.7e6, b=2.0), holdout, repeat_share=0.3)
    assert degenerate == "do not use" and "a = 4,700,000" in reasons[0]  # never 4.7e+06 on a stakeholder page
    no_dropout, reasons, _ = assess_model(_bg(a=0.003, b=2.0), holdout, repeat_share=0.3)
    assert no_dropout == "rough" and "almost nobody stops buying" in reasons[0]
    assert assess_model(_bg(), None, repeat_share=0.3).verdict == "rough"
    bad = pd.DataFrame({"value": [0.9, 0.014]}, index=holdout.index)
    assert assess_model(_bg(), bad, repeat_share=0.3).verdict == "do not use"
    assert choose_calibration_end("2025-01-01", "2025-02-01") is None  # too short to hold anything out


def test_repeat_tracking_table(cdnow):
    store, _ = cdnow
    bg = BetaGeo().fit(calibration_holdout(store.transactions, "1997-10-01", "1998-07-01"))
    table = repeat_tracking(store.transactions, bg, "1997-10-01", "1998-07-01")
    assert table["actual"].is_monotonic_increasing and table["predicted"].is_monotonic_increasing
    assert table["holdout"].sum() == 39 and len(table) == 78
    # the paper's Figure 2: the model tracks cumulative repeat purchases within a few percent at week 78
    assert table["predicted"].iloc[-1] == pytest.approx(table["actual"].iloc[-1], rel=0.05)
