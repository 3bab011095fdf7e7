"""Customer lifetime value and churn: BG/NBD and Gamma-Gamma, by maximum likelihood.

* :class:`BetaGeo` -- the BG/NBD model of Fader, Hardie & Lee (2005), "Counting your customers
  the easy way": while alive a customer buys at Poisson rate ``lambda ~ Gamma(r, alpha)``; after
  each purchase they drop out with probability ``p ~ Beta(a, b)``.
* :class:`GammaGamma` -- the spend model of Fader, Hardie & Lee (2005), "RFM and CLV": the mean
  transaction value of a repeat buyer, with ``p, q, gamma``; assumes spend is independent of
  purchase frequency (checked by :meth:`GammaGamma.independence_check`).

Both take the lifetime-model summary of :func:`segmentation.features.lifetime_summary`
(``frequency`` = repeat purchase days, ``recency``, ``T``, ``monetary_value``) and are fitted
with scipy on log-parameters; the log-likelihoods use ``gammaln``/``betaln`` and ``logaddexp``
so they stay finite for large frequencies. Everything is vectorized over customers; the CLV sum
is an (customers x periods) array, computed in batches for large customer bases.

Reproduces the published CDNOW estimates (2357 customers, 39 weeks): r = 0.243, alpha = 4.414,
a = 0.793, b = 2.426, LL = -9582.4; Gamma-Gamma p = 6.25, q = 3.74, gamma = 15.44
(``tests/test_value.py``).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from scipy.optimize import minimize
from scipy.special import betaln, gammaln, hyp2f1

from segmentation.data import to_pandas
from segmentation.features import _days, _table, lifetime_summary

__all__ = [
    "BetaGeo",
    "compress_summary",
    "GammaGamma",
    "CHURN_BANDS",
    "customer_value",
    "value_by_group",
    "next_purchase_window",
    "calibration_holdout",
    "holdout_errors",
    "expected_orders_by_group",
    "plot_cumulative_repeat",
    "plot_conditional_expectations",
]

#: Churn-risk bands on 1 - P(alive): upper bounds (inclusive of the lower, exclusive of the upper).
CHURN_BANDS = (("low", 0.3), ("medium", 0.7), ("high", 1.0 + 1e-9))


def _arrays(summary: pd.DataFrame, *cols: str) -> list[np.ndarray]:
    missing = [c for c in cols if c not in summary.columns]
    if missing:
        raise ValueError(f"summary lacks columns {missing}; build it with segmentation.features.lifetime_summary")
    return [summary[c].to_numpy(dtype="float64") for c in cols]


def _weights(summary: pd.DataFrame, sample_weight: np.ndarray | pd.Series | str | None) -> np.ndarray:
    if sample_weight is None:
        return np.ones(len(summary))
    w = summary[sample_weight] if isinstance(sample_weight, str) else sample_weight
    w = np.asarray(w, dtype="float64")
    if w.shape != (len(summary),) or not np.all(np.isfinite(w)) or (w < 0).any():
        raise ValueError(f"sample_weight must be {len(summary)} finite, non-negative numbers")
    return w


def compress_summary(summary: Any) -> Any:
    """Distinct ``(frequency, recency, T)`` rows with ``weight`` = customers sharing them.

    BG/NBD depends on a customer only through these three numbers, so
    ``BetaGeo().fit(compress_summary(s), sample_weight="weight")`` gives exactly the estimates
    of ``BetaGeo().fit(s)``. It pays off for large customer bases (one-time buyers, the
    majority, differ only by their first purchase day); on a few thousand customers nearly
    every row is distinct. Accepts a DataFrame or an
    Ibis table (:func:`segmentation.features.lifetime_summary_table`, compressed in the engine)
    and returns the same kind.
    """
    keys = ["frequency", "recency", "T"]
    if isinstance(summary, pd.DataFrame):
        return summary.groupby(keys, sort=True).size().rename("weight").reset_index()
    return summary.group_by(keys).aggregate(weight=summary.count()).order_by(keys)


class BetaGeo:
    """BG/NBD model (scikit-learn style).

    Parameters
    ----------
    penalizer : float
        L2 penalty on the parameters (0 = plain maximum likelihood, as in the paper).

    Attributes
    ----------
    params_ : dict
        ``r, alpha, a, b``.
    log_likelihood_ : float
        Total log-likelihood at the optimum.
    n_customers_ : int
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    @staticmethod
    def _ll(params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        r, alpha, a, b = params
        a1 = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
        a2 = betaln(a, b + x) - betaln(a, b)
        a3 = -(r + x) * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            a4 = np.where(x > 0, np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) - (r + x) * np.log(alpha + tx), -np.inf)
        return a1 + a2 + np.logaddexp(a3, a4)

    def fit(self, summary: pd.DataFrame, sample_weight: np.ndarray | pd.Series | str | None = None) -> BetaGeo:
        """Maximum-likelihood fit on ``frequency, recency, T``.

        Parameters
        ----------
        summary : DataFrame
            One row per customer, or one row per distinct ``(frequency, recency, T)`` with
            ``sample_weight`` giving how many customers share it (:func:`compress_summary`):
            the same estimates from a table that is far smaller for large customer bases.
        sample_weight : array-like or str, optional
            Customers per row, or the name of the column holding them.
        """
        x, tx, T = _arrays(summary, "frequency", "recency", "T")
        if len(x) == 0:
            raise ValueError("cannot fit BG/NBD on an empty summary")
        w = _weights(summary, sample_weight)

        def nll(logp):
            p = np.exp(logp)
            return -(w * self._ll(p, x, tx, T)).sum() + self.penalizer * (p**2).sum()

        res = minimize(nll, np.zeros(4), method="L-BFGS-B", bounds=[(-10, 10)] * 4)
        res = minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 4000})
        r, alpha, a, b = np.exp(res.x)
        self.params_ = {"r": float(r), "alpha": float(alpha), "a": float(a), "b": float(b)}
        self.log_likelihood_ = float((w * self._ll(np.exp(res.x), x, tx, T)).sum())
        self.n_customers_ = int(round(w.sum()))
        return self

    def _p(self) -> tuple[float, float, float, float]:
        p = self.params_
        return p["r"], p["alpha"], p["a"], p["b"]

    def log_likelihood_per_customer(self, summary: pd.DataFrame) -> pd.Series:
        """Each customer's log-likelihood at the fitted parameters."""
        x, tx, T = _arrays(summary, "frequency", "recency", "T")
        return pd.Series(self._ll(np.array(self._p()), x, tx, T), index=summary.index)

    def probability_alive(self, summary: pd.DataFrame) -> pd.Series:
        """P(alive | x, t_x, T); 1 for customers with no repeat purchase (by construction)."""
        r, alpha, a, b = self._p()
        x, tx, T = _arrays(summary, "frequency", "recency", "T")
        with np.errstate(divide="ignore", invalid="ignore"):
            log_ratio = np.log(a) - np.log(np.maximum(b + x - 1, 1e-300)) + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        p = np.where(x > 0, 1.0 / (1.0 + np.exp(np.minimum(log_ratio, 700))), 1.0)
        return pd.Series(p, index=summary.index, name="p_alive")

    def expected_purchases(self, t: float | np.ndarray, summary: pd.DataFrame) -> pd.Series | np.ndarray:
        """E[purchases in (T, T + t] | x, t_x, T] (equation 10 of the paper).

        ``t`` a scalar gives a Series; ``t`` an array gives a (customers x len(t)) array.
        """
        r, alpha, a, b = self._p()
        x, tx, T = _arrays(summary, "frequency", "recency", "T")
        scalar = np.ndim(t) == 0
        tt = np.atleast_1d(np.asarray(t, dtype="float64"))[None, :]
        x_, tx_, T_ = x[:, None], tx[:, None], T[:, None]
        z = tt / (alpha + T_ + tt)
        hyp = hyp2f1(r + x_, b + x_, a + b + x_ - 1, z)
        num = (a + b + x_ - 1) / (a - 1) * (1 - np.exp((r + x_) * (np.log(alpha + T_) - np.log(alpha + T_ + tt))) * hyp)
        with np.errstate(divide="ignore", invalid="ignore"):
            odds = np.where(x_ > 0, a / np.maximum(b + x_ - 1, 1e-300) * np.exp((r + x_) * (np.log(alpha + T_) - np.log(alpha + tx_))), 0.0)
        out = num / (1 + odds)
        return pd.Series(out[:, 0], index=summary.index, name="expected_purchases") if scalar else out

    def expected_purchases_new(self, t: float | np.ndarray) -> np.ndarray:
        """Unconditional E[X(t)] for a customer acquired at time 0 (equation 9)."""
        r, alpha, a, b = self._p()
        t = np.asarray(t, dtype="float64")
        return (a + b - 1) / (a - 1) * (1 - (alpha / (alpha + t)) ** r * hyp2f1(r, b, a + b - 1, t / (alpha + t)))


class GammaGamma:
    """Gamma-Gamma model of the mean transaction value (fitted on repeat buyers only).

    Attributes
    ----------
    params_ : dict
        ``p, q, gamma``.
    log_likelihood_ : float
    n_customers_ : int
        Repeat buyers used; ``n_excluded_`` customers (no repeat purchase or non-positive
        spend) were left out, as the model requires.
    """

    def __init__(self, penalizer: float = 0.0):
        self.penalizer = penalizer

    @staticmethod
    def _ll(params, x, m):
        p, q, g = params
        return (gammaln(p * x + q) - gammaln(p * x) - gammaln(q) + q * np.log(g)
                + (p * x - 1) * np.log(m) + p * x * np.log(x) - (p * x + q) * np.log(g + m * x))

    def fit(self, summary: pd.DataFrame) -> GammaGamma:
        """Fit on the customers with ``frequency > 0`` and ``monetary_value > 0``."""
        x, m = _arrays(summary, "frequency", "monetary_value")
        keep = (x > 0) & (m > 0)
        if keep.sum() < 3:
            raise ValueError(f"Gamma-Gamma needs repeat buyers with positive spend; only {int(keep.sum())} found")
        x, m = x[keep], m[keep]

        def nll(logp):
            p = np.exp(logp)
            return -self._ll(p, x, m).sum() + self.penalizer * (p**2).sum()

        res = minimize(nll, np.zeros(3), method="L-BFGS-B", bounds=[(-10, 10)] * 3)
        res = minimize(nll, res.x, method="Nelder-Mead", options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 4000})
        p, q, g = np.exp(res.x)
        self.params_ = {"p": float(p), "q": float(q), "gamma": float(g)}
        self.log_likelihood_ = float(self._ll(np.exp(res.x), x, m).sum())
        self.n_customers_ = int(keep.sum())
        self.n_excluded_ = int((~keep).sum())
        return self

    def conditional_expected_value(self, summary: pd.DataFrame) -> pd.Series:
        """E[mean transaction value | x, m]: a weighted average of the population mean
        ``p gamma / (q - 1)`` and the customer's own mean (population mean when x = 0)."""
        p, q, g = (self.params_[k] for k in ("p", "q", "gamma"))
        x, m = _arrays(summary, "frequency", "monetary_value")
        own = np.where(x > 0, m, 0.0)
        value = (g + own * x) * p / (p * x + q - 1)
        return pd.Series(value, index=summary.index, name="expected_avg_value")

    @staticmethod
    def independence_check(summary: pd.DataFrame) -> float:
        """Pearson correlation of frequency and mean spend among repeat buyers (the model assumes
        ~0; above ~0.3 in absolute value its value predictions are biased)."""
        s = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        return float(s["frequency"].corr(s["monetary_value"]))


def customer_value(summary: pd.DataFrame, bgf: BetaGeo, ggf: GammaGamma, *, horizon: int = 52,
                   discount_rate: float = 0.01, batch_size: int = 100_000) -> pd.DataFrame:
    """Per customer: expected purchases over ``horizon`` periods, P(alive), expected spend, CLV.

    ``clv = sum_{t=1..H} (E[X(t)] - E[X(t-1)]) x expected value / (1 + d)^t`` (periods in the
    summary's time unit, ``d`` per period). Computed in batches of ``batch_size`` customers
    (memory O(batch x horizon)).

    Returns
    -------
    DataFrame
        ``expected_purchases, p_alive, expected_avg_value, expected_spend, clv, churn_risk,
        churn_band``.
    """
    periods = np.arange(0, horizon + 1, dtype="float64")
    disc = (1 + discount_rate) ** -periods[1:]
    clv = np.empty(len(summary))
    for start in range(0, len(summary), batch_size):  # batches, each fully vectorized
        part = summary.iloc[start:start + batch_size]
        cum = bgf.expected_purchases(periods, part)
        cum[:, 0] = 0.0
        clv[start:start + len(part)] = (np.diff(cum, axis=1) * disc).sum(axis=1)
    out = pd.DataFrame(index=summary.index)
    out["expected_purchases"] = bgf.expected_purchases(float(horizon), summary)
    out["p_alive"] = bgf.probability_alive(summary)
    out["expected_avg_value"] = ggf.conditional_expected_value(summary)
    out["expected_spend"] = out["expected_purchases"] * out["expected_avg_value"]
    out["clv"] = clv * out["expected_avg_value"].to_numpy()
    out["churn_risk"] = 1 - out["p_alive"]
    labels, edges = zip(*CHURN_BANDS)
    out["churn_band"] = pd.cut(out["churn_risk"], bins=[-1e-9, *edges], labels=labels, right=False)
    return out


def value_by_group(values: pd.DataFrame, groups: pd.Series) -> pd.DataFrame:
    """Totals and distribution of value per group (segment or persona): customers, expected
    purchases and spend, total and quartiles of CLV, mean P(alive), share in the high churn band."""
    v = values.join(groups.rename("group"), how="inner")
    g = v.groupby("group", observed=True)
    out = pd.DataFrame({
        "customers": g.size(),
        "expected_purchases": g["expected_purchases"].sum(),
        "expected_spend": g["expected_spend"].sum(),
        "clv_total": g["clv"].sum(),
        "clv_p25": g["clv"].quantile(0.25),
        "clv_median": g["clv"].median(),
        "clv_p75": g["clv"].quantile(0.75),
        "p_alive_mean": g["p_alive"].mean(),
        "high_churn_share": g["churn_band"].apply(lambda s: (s == "high").mean()),
    })
    return out.sort_values("clv_total", ascending=False)


def next_purchase_window(summary: pd.DataFrame, bgf: BetaGeo) -> pd.DataFrame:
    """Most likely next-purchase window of each customer, *if still active*.

    Given alive, the purchase rate's posterior is Gamma(r + x, alpha + T), so the waiting time
    to the next purchase has survival ``((alpha+T)/(alpha+T+t))^(r+x)``; its quantiles are
    ``t_q = (alpha + T) ((1 - q)^(-1/(r+x)) - 1)``. Returned: ``window_start`` (25%),
    ``window_median`` (50%), ``window_end`` (75%) in periods after ``as_of``, with ``p_alive``.
    """
    r, alpha = bgf.params_["r"], bgf.params_["alpha"]
    x, T = _arrays(summary, "frequency", "T")
    base = alpha + T
    q = lambda p: base * ((1 - p) ** (-1 / (r + x)) - 1)  # noqa: E731
    return pd.DataFrame({"window_start": q(0.25), "window_median": q(0.5), "window_end": q(0.75),
                         "p_alive": bgf.probability_alive(summary).to_numpy()}, index=summary.index)


def calibration_holdout(transactions, calibration_end: str | pd.Timestamp, holdout_end: str | pd.Timestamp,
                        *, time_unit: str = "W") -> pd.DataFrame:
    """Calibration summary at ``calibration_end`` plus the actual repeat purchase days in
    ``[calibration_end, holdout_end)`` for the same customers.

    Returns ``frequency, recency, T, monetary_value, frequency_holdout, duration_holdout``.
    """
    cal = lifetime_summary(transactions, calibration_end, time_unit=time_unit)
    t = _table(transactions)
    lo, hi = pd.Timestamp(calibration_end), pd.Timestamp(holdout_end)
    h = t.filter((t.order_date >= lo.to_pydatetime()) & (t.order_date < hi.to_pydatetime()) & ~t.is_return)
    counts = to_pandas(h.group_by("customer_id").aggregate(n=_days(h.order_date).nunique())).set_index("customer_id")["n"]
    counts.index = counts.index.astype("str")
    out = cal.copy()
    out["frequency_holdout"] = counts.reindex(out.index).fillna(0).astype("float64")
    out["duration_holdout"] = (hi - lo).days / {"D": 1.0, "W": 7.0}[time_unit]
    return out


def holdout_errors(ch: pd.DataFrame, bgf: BetaGeo) -> pd.DataFrame:
    """Prediction error on the holdout: per customer MAE and RMSE, total actual vs predicted."""
    pred = bgf.expected_purchases(float(ch["duration_holdout"].iloc[0]), ch)
    err = pred - ch["frequency_holdout"]
    return pd.DataFrame({"value": [
        float(ch["frequency_holdout"].sum()), float(pred.sum()), float(pred.sum() / max(ch["frequency_holdout"].sum(), 1e-9) - 1),
        float(err.abs().mean()), float(np.sqrt((err**2).mean())),
        float(np.corrcoef(pred, ch["frequency_holdout"])[0, 1]),
    ]}, index=["actual holdout purchases", "predicted holdout purchases", "total error (relative)",
               "MAE per customer", "RMSE per customer", "correlation actual vs predicted"])


def expected_orders_by_group(summary: pd.DataFrame, bgf: BetaGeo, ggf: GammaGamma, groups: pd.Series,
                             weeks: int = 12, periods_per_week: float = 1.0) -> pd.DataFrame:
    """Expected orders and revenue per group for each of the next ``weeks`` weeks (for stock
    and staff planning). Columns: ``group, week, expected_orders, expected_revenue``."""
    ends = np.arange(0, weeks + 1) * periods_per_week
    cum = bgf.expected_purchases(ends, summary)
    per_week = np.diff(cum, axis=1)
    value = ggf.conditional_expected_value(summary).to_numpy()[:, None]
    g = groups.reindex(summary.index).to_numpy()
    orders = pd.DataFrame(per_week, index=summary.index).groupby(g).sum()
    revenue = pd.DataFrame(per_week * value, index=summary.index).groupby(g).sum()
    out = orders.stack().rename("expected_orders").to_frame().join(revenue.stack().rename("expected_revenue"))
    out.index.names = ["group", "week"]
    out = out.reset_index()
    out["week"] += 1
    return out


def plot_cumulative_repeat(transactions, bgf: BetaGeo, calibration_end, holdout_end, *, time_unit: str = "W") -> plt.Figure:
    """Actual vs predicted cumulative repeat purchases by week (Figure 2 of the paper).

    Predicted: sum over customers of E[X(t - s_i)], s_i their first purchase; customers are
    grouped by acquisition period, so the cost is O(periods^2), not O(customers x periods)."""
    div = {"D": 1.0, "W": 7.0}[time_unit]
    t = _table(transactions)
    end = pd.Timestamp(holdout_end)
    buys = t.filter((t.order_date < end.to_pydatetime()) & ~t.is_return)
    days = to_pandas(buys.group_by(["customer_id", _days(buys.order_date).name("day")]).aggregate(n=buys.count()))
    first = days.groupby("customer_id")["day"].transform("min")
    cal_first = days.groupby("customer_id")["day"].min()
    cal_end_day = (pd.Timestamp(calibration_end) - pd.Timestamp(0)).days
    cohort = cal_first[cal_first < cal_end_day]
    days = days[days["customer_id"].isin(cohort.index)]
    start = cohort.min()
    horizon = int(np.ceil(((end - pd.Timestamp(0)).days - start) / div))
    repeat = days[days["day"] > first.loc[days.index]]
    actual = np.bincount(((repeat["day"] - start) // div).astype(int), minlength=horizon)[:horizon].cumsum()
    births = np.bincount(((cohort - start) // div).astype(int), minlength=horizon)[:horizon]
    grid = np.arange(1, horizon + 1)
    lag = grid[:, None] - np.arange(horizon)[None, :]  # t - s for every birth period s
    ex = np.where(lag > 0, bgf.expected_purchases_new(np.maximum(lag, 0)), 0.0)
    predicted = ex @ births
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(grid, actual, label="actual", color="black")
    ax.plot(grid, predicted, label="BG/NBD", ls="--", color="tab:red")
    ax.axvline((cal_end_day - start) / div, color="grey", ls=":", label="end of calibration")
    ax.set_xlabel("weeks" if time_unit == "W" else "days")
    ax.set_ylabel("cumulative repeat purchases")
    ax.set_title("Tracking repeat purchases: actual vs model")
    ax.legend()
    fig.tight_layout()
    return fig


def plot_conditional_expectations(ch: pd.DataFrame, bgf: BetaGeo, max_frequency: int = 7) -> plt.Figure:
    """Mean holdout purchases, actual vs predicted, by calibration frequency (0..7+; Figure 4)."""
    pred = bgf.expected_purchases(float(ch["duration_holdout"].iloc[0]), ch)
    group = ch["frequency"].clip(upper=max_frequency).astype(int)
    table = pd.DataFrame({"actual": ch["frequency_holdout"], "predicted": pred}).groupby(group).mean()
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.plot(table.index, table["actual"], marker="o", color="black", label="actual")
    ax.plot(table.index, table["predicted"], marker="s", ls="--", color="tab:red", label="BG/NBD")
    ax.set_xticks(table.index, [str(i) if i < max_frequency else f"{max_frequency}+" for i in table.index])
    ax.set_xlabel("repeat purchases in the calibration period")
    ax.set_ylabel("mean purchases in the holdout")
    ax.set_title("Conditional expectations: actual vs predicted")
    ax.legend()
    fig.tight_layout()
    return fig
