"""Listen: NPS and CSAT with confidence intervals, response bias, satisfaction vs behaviour,
and feedback themes.

Measures
--------
* **NPS** = % promoters (9-10) - % detractors (0-6) of the 0-10 likelihood-to-recommend
  answers, in points from -100 to 100. Its interval is the **adjusted Wald** interval for a
  difference of two multinomial proportions (Rocks 2016, *The American Statistician* 70:365):
  add 3 to n and 3/4 to both the promoters and the detractors, then
  ``centre +- z sqrt((p + d - (p - d)^2) / (n + 3))`` with the adjusted shares, clipped to
  [-100, 100]. Simulated coverage of the nominal 95% stays at 92-99% from 10 answers on, even
  near the ends of the scale, where the plain Wald interval falls below 20%
  (``tests/test_satisfaction.py``).
* **Mean score**: the mean 0-10 answer (or 1-5 CSAT). A change in the mean score is *not* a
  change in NPS points and is always named "mean 0-10 score" (or "mean CSAT").
* **CSAT** (1-5): the mean and the share satisfied (4-5) with a Wilson interval.

Every function works with whatever feedback the data has: only ``nps``, only ``csat``, only
``comment``, empty or all-missing columns. It returns what the data supports and says in
``attrs["notes"]`` (plain sentences) what is missing. ``min_group_size`` is enforced in every
table: statistics resting on fewer customers are blanked or left out, with a note.
"Lapsed" is :func:`segmentation.definitions.customer_status` (status ``lapsed``) with its
parameters passed through. Free text is scrubbed of PII (:func:`segmentation.privacy.scrub_pii`)
before analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, norm
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from segmentation import definitions
from segmentation.journey import wilson_interval
from segmentation.privacy import scrub_pii

__all__ = [
    "plot_nps_by_group",
    "SCALES",
    "feedback_coverage",
    "nps_group",
    "csat_group",
    "nps_interval",
    "nps",
    "csat",
    "satisfaction_by_group",
    "response_bias",
    "satisfaction_and_behaviour",
    "satisfaction_before_lapse",
    "feedback_themes",
    "themes_by_group",
]

#: Score columns, their range and how a report names their mean.
SCALES: dict[str, tuple[float, float, str]] = {
    "nps": (0, 10, "mean 0-10 likelihood-to-recommend score"),
    "csat": (1, 5, "mean 1-5 CSAT score"),
}


# ------------------------------------------------------------------------------------ inputs
def _scores(feedback: pd.DataFrame | None, column: str) -> pd.Series | None:
    """The numeric answers of ``column`` (NaN where missing), or None when there are none.

    Raises ValueError naming the column and example values when answers lie off the scale."""
    if feedback is None or column not in feedback.columns:
        return None
    s = pd.to_numeric(feedback[column].astype("object").where(feedback[column].notna(), np.nan), errors="coerce").astype("float64")
    if s.notna().sum() == 0:
        return None
    lo, hi, _ = SCALES[column]
    bad = s[(s < lo) | (s > hi)]
    if len(bad):
        raise ValueError(f"feedback column {column!r} has {len(bad)} answer(s) outside {lo:g}-{hi:g}, e.g. "
                         f"{bad.head(3).tolist()}; {column} answers must lie on the {lo:g}-{hi:g} scale "
                         "(rescale them, or map another column)")
    return s


def _missing_note(column: str) -> str:
    what = {"nps": "no likelihood-to-recommend (0-10) answers: NPS is not available",
            "csat": "no CSAT (1-5) answers: CSAT is not available",
            "comment": "no free-text comments: themes are not available"}[column]
    return f"The feedback has {what}."


def _comments(feedback: pd.DataFrame | None) -> pd.Series:
    if feedback is None or "comment" not in feedback.columns:
        return pd.Series(dtype="object")
    c = feedback["comment"]
    return c[c.notna() & (c.astype("string").str.strip() != "")]


def feedback_coverage(feedback: pd.DataFrame | None) -> pd.DataFrame:
    """What the feedback can support: one row per ``nps, csat, comment``.

    Returns
    -------
    DataFrame
        Index ``measure``; ``available`` (bool), ``responses``, ``customers``, ``note``
        (a plain sentence, empty when available).
    """
    rows = []
    for col in ("nps", "csat", "comment"):  # three measures
        values = _comments(feedback) if col == "comment" else _scores(feedback, col)
        values = None if values is None or len(values.dropna()) == 0 else values.dropna()
        who = feedback.loc[values.index, "customer_id"].nunique() if values is not None and "customer_id" in feedback else 0
        rows.append({"measure": col, "available": values is not None, "responses": 0 if values is None else len(values),
                     "customers": int(who), "note": "" if values is not None else _missing_note(col)})
    return pd.DataFrame(rows).set_index("measure")


# ------------------------------------------------------------------------------------ scores
def nps_group(scores: pd.Series) -> pd.Series:
    """``promoter`` (9-10), ``passive`` (7-8), ``detractor`` (0-6); missing stays missing."""
    s = pd.to_numeric(scores, errors="coerce")
    return pd.Series(np.select([s >= 9, s >= 7, s >= 0], ["promoter", "passive", "detractor"], None),
                     index=scores.index).where(s.notna())


def csat_group(scores: pd.Series) -> pd.Series:
    """``satisfied`` (4-5), ``neutral`` (3), ``dissatisfied`` (1-2); missing stays missing."""
    s = pd.to_numeric(scores, errors="coerce")
    return pd.Series(np.select([s >= 4, s >= 3, s >= 1], ["satisfied", "neutral", "dissatisfied"], None),
                     index=scores.index).where(s.notna())


def nps_interval(promoters: np.ndarray | pd.Series, detractors: np.ndarray | pd.Series, n: np.ndarray | pd.Series,
                 level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted Wald interval for NPS (see the module docstring), in points, clipped to [-100, 100].

    Parameters
    ----------
    promoters, detractors, n : array-like
        Counts of promoters, detractors and answers, element-wise (n = 0 gives NaN).
    level : float
        Confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds in NPS points.

    >>> lo, hi = nps_interval(np.array([10]), np.array([0]), np.array([10]))
    >>> float(hi[0]), round(float(lo[0]), 1)
    (100.0, 47.5)
    """
    k_p = np.asarray(promoters, dtype="float64")
    k_d = np.asarray(detractors, dtype="float64")
    n = np.asarray(n, dtype="float64")
    z = norm.ppf(0.5 + level / 2)
    m = n + 3.0
    p, d = (k_p + 0.75) / m, (k_d + 0.75) / m
    centre = p - d
    half = z * np.sqrt(np.maximum(p + d - centre**2, 0.0) / m)
    lo = np.clip(100 * (centre - half), -100, 100)
    hi = np.clip(100 * (centre + half), -100, 100)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def nps(scores: pd.Series, level: float = 0.95) -> pd.Series:
    """NPS with its adjusted Wald interval (points, within [-100, 100]).

    Returns ``n, promoters, passives, detractors`` (shares), ``nps, ci_low, ci_high``; all
    NaN (n = 0) without answers.

    >>> nps(pd.Series([10, 9, 8, 3]))[["n", "promoters", "detractors", "nps"]].tolist()
    [4.0, 0.5, 0.25, 25.0]
    """
    s = _scores(pd.DataFrame({"nps": scores}), "nps")
    s = s.dropna() if s is not None else pd.Series(dtype="float64")
    n = len(s)
    k_p, k_d = int((s >= 9).sum()), int((s <= 6).sum())
    lo, hi = nps_interval(np.array([k_p]), np.array([k_d]), np.array([n]), level)
    share = (lambda k: k / n) if n else (lambda k: np.nan)
    return pd.Series({"n": float(n), "promoters": share(k_p), "passives": share(n - k_p - k_d), "detractors": share(k_d),
                      "nps": 100 * (share(k_p) - share(k_d)), "ci_low": lo[0], "ci_high": hi[0]})


def csat(scores: pd.Series, level: float = 0.95) -> pd.Series:
    """Mean CSAT (1-5) and share satisfied (4-5) with a Wilson interval; NaN without answers."""
    s = _scores(pd.DataFrame({"csat": scores}), "csat")
    s = s.dropna() if s is not None else pd.Series(dtype="float64")
    k, n = int((s >= 4).sum()), len(s)
    lo, hi = wilson_interval(np.array([k]), np.array([n]), level)
    return pd.Series({"n": float(n), "mean": s.mean() if n else np.nan, "satisfied": k / n if n else np.nan,
                      "ci_low": lo[0], "ci_high": hi[0]})


# ------------------------------------------------------------------------------------ groups
def satisfaction_by_group(feedback: pd.DataFrame | None, groups: pd.Series, *, min_group_size: int = 10,
                          level: float = 0.95) -> pd.DataFrame:
    """NPS and CSAT per group (segment or persona) with intervals and response rates.

    Parameters
    ----------
    feedback : DataFrame or None
        Canonical feedback (``customer_id`` and any of ``nps``, ``csat``, ``comment``).
    groups : Series
        Every analysed customer (responding or not) -> group, so the response rate is
        respondents / customers.
    min_group_size : int
        A measure is blanked for a group with fewer *customers* answering it; the response
        counts are blanked when fewer customers responded at all.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        Index ``group`` (every group of ``groups``); ``customers, respondents, response_rate``;
        with NPS answers ``nps_responses, nps_respondents, nps_promoters, nps_passives,
        nps_detractors, nps, nps_ci_low, nps_ci_high``; with CSAT answers ``csat_responses,
        csat_respondents, csat_mean, csat_satisfied, csat_ci_low, csat_ci_high``.
        ``attrs["notes"]`` says what is missing or hidden.
    """
    notes: list[str] = [] if feedback is not None and len(feedback) else ["This data set has no survey feedback."]
    size = groups.dropna().groupby(groups.dropna(), observed=True).size()
    out = pd.DataFrame({"customers": size})
    out.index.name = "group"
    fb = _with_group(feedback, groups)
    responded = fb.groupby("group", observed=True)["customer_id"].nunique()
    out["respondents"] = responded.reindex(out.index).fillna(0).astype("int64")
    out["response_rate"] = out["respondents"] / out["customers"]
    for col in ("nps", "csat"):  # two measures
        s = _scores(fb, col)
        if s is None:
            notes.append(_missing_note(col))
            continue
        d = fb.assign(score=s).dropna(subset=["score"])
        g = d.groupby("group", observed=True)
        stats = pd.DataFrame({"responses": g.size(), "respondents": g["customer_id"].nunique()})
        if col == "nps":
            stats["k_p"] = d["score"].ge(9).groupby(d["group"], observed=True).sum()
            stats["k_d"] = d["score"].le(6).groupby(d["group"], observed=True).sum()
            stats = stats.reindex(out.index).fillna(0)
            n = stats["responses"].to_numpy()
            with np.errstate(divide="ignore", invalid="ignore"):
                p, dd = stats["k_p"] / stats["responses"], stats["k_d"] / stats["responses"]
            lo, hi = nps_interval(stats["k_p"], stats["k_d"], n, level)
            part = pd.DataFrame({"nps_responses": n, "nps_respondents": stats["respondents"], "nps_promoters": p,
                                 "nps_passives": 1 - p - dd, "nps_detractors": dd, "nps": 100 * (p - dd),
                                 "nps_ci_low": lo, "nps_ci_high": hi}, index=out.index)
        else:
            stats["mean"] = g["score"].mean()
            stats["k"] = d["score"].ge(4).groupby(d["group"], observed=True).sum()
            stats = stats.reindex(out.index)
            stats[["responses", "respondents", "k"]] = stats[["responses", "respondents", "k"]].fillna(0)
            n = stats["responses"].to_numpy()
            lo, hi = wilson_interval(stats["k"], n, level)
            with np.errstate(divide="ignore", invalid="ignore"):
                part = pd.DataFrame({"csat_responses": n, "csat_respondents": stats["respondents"], "csat_mean": stats["mean"],
                                     "csat_satisfied": stats["k"] / stats["responses"], "csat_ci_low": lo, "csat_ci_high": hi},
                                    index=out.index)
        part[[f"{col}_responses", f"{col}_respondents"]] = part[[f"{col}_responses", f"{col}_respondents"]].astype("int64")
        small = part[f"{col}_respondents"] < min_group_size
        stat_cols = [c for c in part.columns if c not in (f"{col}_responses", f"{col}_respondents")]
        part.loc[small, stat_cols] = np.nan
        if small.any():
            label = "NPS" if col == "nps" else "CSAT"
            notes.append(f"{label} is not shown for {int(small.sum())} group(s) with fewer than {min_group_size} customers answering.")
        out = out.join(part)
    few = (out["respondents"] > 0) & (out["respondents"] < min_group_size)
    if few.any():
        out["respondents"] = out["respondents"].astype("float64").mask(few)
        out["response_rate"] = out["response_rate"].mask(few)
        count_cols = [c for c in out.columns if c.endswith(("_responses", "_respondents"))]
        out[count_cols] = out[count_cols].astype("float64").mask(few, axis=0)
    out.attrs["notes"] = notes
    return out


def _with_group(feedback: pd.DataFrame | None, groups: pd.Series) -> pd.DataFrame:
    """Feedback rows of customers with a group, with a ``group`` column (empty frame without feedback)."""
    if feedback is None or len(feedback) == 0 or "customer_id" not in feedback.columns:
        return pd.DataFrame({"customer_id": pd.Series(dtype="object"), "group": pd.Series(dtype=groups.dtype)})
    fb = feedback.assign(group=feedback["customer_id"].map(groups))
    return fb[fb["group"].notna()]


def response_bias(feedback: pd.DataFrame | None, groups: pd.Series) -> dict[str, float | int | str]:
    """Does the response rate differ between groups? Chi-square test of responded x group.

    Returns
    -------
    dict
        ``chi2, p_value, dof, note``; a small p-value means satisfaction figures over-represent
        some groups (weight them before comparing to the whole customer base). NaN with a note
        when the test cannot be made (no feedback, one group, everyone or nobody responded).
    """
    if feedback is None or "customer_id" not in feedback.columns or len(feedback) == 0:
        return {"chi2": np.nan, "p_value": np.nan, "dof": 0, "note": "No feedback: response bias cannot be tested."}
    g = groups.dropna()
    responded = g.index.isin(feedback["customer_id"].dropna().unique())
    table = pd.crosstab(g.to_numpy(), responded)
    if table.shape[0] < 2 or table.shape[1] < 2:
        why = "only one group" if table.shape[0] < 2 else ("every customer responded" if responded.all() else "no analysed customer responded")
        return {"chi2": np.nan, "p_value": np.nan, "dof": 0, "note": f"Response bias cannot be tested: {why}."}
    chi2, p, dof, _ = chi2_contingency(table)
    return {"chi2": float(chi2), "p_value": float(p), "dof": int(dof), "note": ""}


# ------------------------------------------------------------------------------- behaviour
def _measure(feedback: pd.DataFrame | None) -> tuple[str | None, pd.Series | None, list[str]]:
    """NPS answers when present, else CSAT; with notes on what is missing."""
    notes = []
    for col in ("nps", "csat"):  # preference order
        s = _scores(feedback, col)
        if s is not None:
            return col, s, notes
        notes.append(_missing_note(col))
    return None, None, notes


def _status(features: pd.DataFrame, lapsing_after: float, lapsed_after: float) -> pd.Series:
    return definitions.customer_status(features, lapsing_after=lapsing_after, lapsed_after=lapsed_after)


def _lapse_note(lapsed_after: float) -> str:
    return (f"Lapsed = last order more than {lapsed_after:g} usual gaps ago (the shared definition of the run, "
            "relative to each customer's own rhythm).")


def satisfaction_and_behaviour(feedback: pd.DataFrame | None, features: pd.DataFrame, *,
                               lapsing_after: float = definitions.LAPSING_AFTER,
                               lapsed_after: float = definitions.LAPSED_AFTER,
                               min_group_size: int = 10, level: float = 0.95) -> pd.DataFrame:
    """Lapse rate and spend by each customer's *latest* answer group.

    The answer group is the NPS group (detractor / passive / promoter) of the latest 0-10
    answer, or without NPS answers the CSAT group (dissatisfied / neutral / satisfied).

    Parameters
    ----------
    feedback : DataFrame or None
        Canonical feedback (``customer_id``, ``timestamp``, ``nps`` and/or ``csat``).
    features : DataFrame
        Customer features (``recency_days, frequency, ipi_mean_days, monetary``), index
        ``customer_id``.
    lapsing_after, lapsed_after : float
        Passed to :func:`segmentation.definitions.customer_status`; lapsed = status ``lapsed``.
    min_group_size : int
        Answer groups with fewer customers are left out, with a note.
    level : float
        Confidence level of the Wilson interval.

    Returns
    -------
    DataFrame
        Index ``nps_group`` or ``csat_group``; ``customers, lapsed, lapse_rate, ci_low,
        ci_high, mean_monetary``. ``attrs``: ``measure``, ``notes``.
    """
    columns = ["customers", "lapsed", "lapse_rate", "ci_low", "ci_high", "mean_monetary"]
    col, s, notes = _measure(feedback)
    if col is None:
        return _empty(columns, notes + ["Satisfaction cannot be related to lapsing."], measure=None)
    fb = feedback.assign(score=s).dropna(subset=["score", "customer_id"])
    if "timestamp" in fb.columns:
        fb = fb.sort_values("timestamp", kind="stable")
    else:
        notes.append("The feedback has no timestamps: the last answer in file order is taken as the latest.")
    latest = fb.groupby("customer_id")["score"].last()
    group_of, name, order = ((nps_group, "nps_group", ["detractor", "passive", "promoter"]) if col == "nps"
                             else (csat_group, "csat_group", ["dissatisfied", "neutral", "satisfied"]))
    lapsed = (_status(features, lapsing_after, lapsed_after) == "lapsed").rename("is_lapsed")  # on all customers
    f = features[["monetary"]].join(lapsed).join(group_of(latest).rename("answer_group"), how="inner")
    out = f.groupby("answer_group").agg(customers=("is_lapsed", "size"), lapsed=("is_lapsed", "sum"),
                                        mean_monetary=("monetary", "mean"))
    out = out.reindex([g for g in order if g in out.index])
    out["lapse_rate"] = out["lapsed"] / out["customers"]
    out["ci_low"], out["ci_high"] = wilson_interval(out["lapsed"], out["customers"], level)
    small = out["customers"] < min_group_size
    if small.any():
        notes.append(f"Answer group(s) {', '.join(out.index[small])} have fewer than {min_group_size} customers and are not shown.")
        out = out[~small]
    out.index.name = name
    out = out[columns]
    out.attrs.update(measure=col, notes=notes + [_lapse_note(lapsed_after)])
    return out


def satisfaction_before_lapse(feedback: pd.DataFrame | None, features: pd.DataFrame, *, window_days: int = 120,
                              lapsing_after: float = definitions.LAPSING_AFTER,
                              lapsed_after: float = definitions.LAPSED_AFTER,
                              min_group_size: int = 10, level: float = 0.95) -> pd.DataFrame:
    """Does satisfaction fall before customers lapse?

    Per customer status (:func:`segmentation.definitions.customer_status`), the **mean score**
    of answers given in the ``window_days`` before the customer's last purchase against the
    answers given earlier. The score is the 0-10 likelihood-to-recommend answer (a change in
    the *mean 0-10 score*, not in NPS points), or without it the 1-5 CSAT. The interval of the
    change is a normal interval with customer-clustered standard errors (several answers of one
    customer are not independent).

    Parameters
    ----------
    feedback : DataFrame or None
        Canonical feedback with ``customer_id, timestamp`` and ``nps`` and/or ``csat``.
    features : DataFrame
        Customer features with ``last_purchase, recency_days, frequency, ipi_mean_days``.
    window_days : int
        Length of the window before the last purchase.
    lapsing_after, lapsed_after : float
        Passed to :func:`segmentation.definitions.customer_status`.
    min_group_size : int
        A status is shown only when at least this many customers answered in each period.
    level : float
        Confidence level.

    Returns
    -------
    DataFrame
        Index ``status`` (``active, lapsing, lapsed`` as available); ``mean_score_earlier,
        mean_score_before_last, change, ci_low, ci_high, responses_earlier,
        responses_before_last, customers_earlier, customers_before_last``. ``attrs``:
        ``measure`` (e.g. "mean 0-10 likelihood-to-recommend score"), ``scale``, ``notes``.
    """
    columns = ["mean_score_earlier", "mean_score_before_last", "change", "ci_low", "ci_high", "responses_earlier",
               "responses_before_last", "customers_earlier", "customers_before_last"]
    col, s, notes = _measure(feedback)
    if col is None:
        return _empty(columns, notes + ["A change in satisfaction before lapsing cannot be measured."], measure=None, scale=None)
    if "timestamp" not in feedback.columns:
        return _empty(columns, notes + ["The feedback has no timestamps: a change before the last purchase cannot be measured."],
                      measure=col, scale=None)
    lo_s, hi_s, label = SCALES[col]
    status = _status(features, lapsing_after, lapsed_after).rename("status")
    fb = feedback.assign(score=s, timestamp=pd.to_datetime(feedback["timestamp"], errors="coerce"))
    fb = fb.dropna(subset=["score", "timestamp", "customer_id"])
    fb = fb.merge(features[["last_purchase"]].join(status), left_on="customer_id", right_index=True)
    late = fb["timestamp"] >= fb["last_purchase"] - pd.Timedelta(days=window_days)
    fb = fb.assign(period=np.where(late, "before_last", "earlier"))
    # customer-clustered variance of each (status, period) mean
    cells = fb.groupby(["status", "period"], observed=True)
    stats = pd.DataFrame({"mean": cells["score"].mean(), "responses": cells.size(), "customers": cells["customer_id"].nunique()})
    fb = fb.join(stats["mean"].rename("cell_mean"), on=["status", "period"])
    resid = (fb["score"] - fb["cell_mean"]).groupby([fb["status"], fb["period"], fb["customer_id"]], observed=True).sum()
    ss = (resid**2).groupby(level=["status", "period"], observed=True).sum()
    g = stats["customers"]
    stats["var"] = ss / stats["responses"] ** 2 * (g / (g - 1)).where(g > 1)
    wide = stats.unstack("period")
    wide = wide.reindex(columns=pd.MultiIndex.from_product([stats.columns, ["earlier", "before_last"]]))
    out = pd.DataFrame({
        "mean_score_earlier": wide[("mean", "earlier")], "mean_score_before_last": wide[("mean", "before_last")],
        "responses_earlier": wide[("responses", "earlier")].fillna(0).astype("int64"),
        "responses_before_last": wide[("responses", "before_last")].fillna(0).astype("int64"),
        "customers_earlier": wide[("customers", "earlier")].fillna(0).astype("int64"),
        "customers_before_last": wide[("customers", "before_last")].fillna(0).astype("int64"),
    })
    out["change"] = out["mean_score_before_last"] - out["mean_score_earlier"]
    half = norm.ppf(0.5 + level / 2) * np.sqrt(wide[("var", "earlier")] + wide[("var", "before_last")])
    out["ci_low"], out["ci_high"] = out["change"] - half, out["change"] + half
    out = out.reindex([st for st in definitions.STATUSES if st in out.index])
    out.index.name = "status"
    small = (out["customers_earlier"] < min_group_size) | (out["customers_before_last"] < min_group_size)
    if small.any():
        notes.append(f"Status(es) {', '.join(out.index[small])} have fewer than {min_group_size} customers answering in one "
                     "of the two periods and are not shown.")
        out = out[~small]
    out = out[columns]
    if "lapsed" in out.index:
        r = out.loc["lapsed"]
        direction = "lower" if r["change"] < 0 else "higher"
        notes.append(f"Lapsed customers' {label} was {abs(r['change']):.1f} points {direction} in the {window_days} days before "
                     f"their last purchase than earlier ({level:.0%} interval {r['ci_low']:+.1f} to {r['ci_high']:+.1f}); "
                     f"this is a change in the mean score on the {lo_s:g}-{hi_s:g} scale, not in NPS points.")
    out.attrs.update(measure=label, scale=f"{lo_s:g}-{hi_s:g}", notes=notes + [_lapse_note(lapsed_after)])
    return out


def _empty(columns: list[str], notes: list[str], **attrs) -> pd.DataFrame:
    out = pd.DataFrame({c: pd.Series(dtype="float64") for c in columns})
    out.attrs.update(attrs, notes=list(notes))
    return out


# ------------------------------------------------------------------------------------ themes
def feedback_themes(comments: pd.Series | None, *, n_themes: int = 6, top_terms: int = 6,
                    random_state: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    """Themes in free-text comments: TF-IDF (unigrams and bigrams, English stop words) + NMF.

    Comments are scrubbed of PII first.

    Parameters
    ----------
    comments : Series or None
        Free text (missing and blank comments are ignored).
    n_themes, top_terms : int
        Number of themes and terms shown per theme.
    random_state : int
        Seed of the NMF initialisation.

    Returns
    -------
    (DataFrame, Series)
        ``themes``: index ``theme``; ``terms, comments, example_1, example_2, share``; and each
        comment's theme (index as ``comments``). With fewer than ``3 * n_themes`` comments, or
        no usable words, both are empty and ``themes.attrs["notes"]`` says why.
    """
    columns = ["terms", "comments", "example_1", "example_2", "share"]
    text = scrub_pii(_comments(pd.DataFrame({"comment": comments}) if comments is not None else None).astype(str))
    none = pd.Series(dtype="int64", name="theme")
    if len(text) < n_themes * 3:
        note = ("The feedback has no free-text comments: themes are not available." if len(text) == 0 else
                f"Only {len(text)} comments: at least {n_themes * 3} are needed for {n_themes} themes.")
        return _empty(columns, [note]).rename_axis("theme"), none
    stop = sorted(ENGLISH_STOP_WORDS | {"email", "phone", "url", "number", "please"})  # scrub placeholders are not themes
    vec = TfidfVectorizer(stop_words=stop, ngram_range=(1, 2), min_df=2, max_df=0.5)
    try:
        X = vec.fit_transform(text)
    except ValueError:  # every word pruned (e.g. all comments alike)
        return _empty(columns, ["The comments share too few distinct words to find themes."]).rename_axis("theme"), none
    n_themes = min(n_themes, X.shape[1])
    model = NMF(n_components=n_themes, init="nndsvda", random_state=random_state, max_iter=400)
    with np.errstate(invalid="ignore"):  # sklearn's loss takes sqrt of a rounding-level negative on duplicate texts
        W = model.fit_transform(X)
    terms = np.array(vec.get_feature_names_out())
    top = np.argsort(-model.components_, axis=1)[:, :top_terms]
    assignment = pd.Series(W.argmax(axis=1), index=text.index, name="theme")
    # two strongest distinct comments per theme
    ranked = pd.DataFrame({"theme": assignment.to_numpy(), "strength": W.max(axis=1), "text": text.to_numpy()})
    ranked = ranked.sort_values(["theme", "strength"], ascending=[True, False], kind="stable").drop_duplicates(["theme", "text"])
    ranked["k"] = ranked.groupby("theme").cumcount()
    examples = ranked[ranked["k"] < 2].pivot(index="theme", columns="k", values="text").reindex(index=range(n_themes), columns=[0, 1]).astype(object)
    themes = pd.DataFrame({
        "terms": pd.Series(terms[top].tolist()).str.join(", ").to_numpy(),
        "comments": np.bincount(assignment.to_numpy(), minlength=n_themes),
        "example_1": examples[0].fillna("").to_numpy(), "example_2": examples[1].fillna("").to_numpy(),
    }, index=pd.RangeIndex(n_themes, name="theme"))
    themes["share"] = themes["comments"] / len(text)
    themes.attrs["notes"] = []
    return themes, assignment


def themes_by_group(feedback: pd.DataFrame, assignment: pd.Series, groups: pd.Series, *,
                    min_group_size: int = 10) -> pd.DataFrame:
    """Share of each theme among a group's comments, for groups with enough commenters.

    Parameters
    ----------
    feedback : DataFrame
        The feedback the comments came from (``customer_id``; index as ``assignment``).
    assignment : Series
        Each comment's theme, from :func:`feedback_themes`.
    groups : Series
        customer_id -> group (persona).
    min_group_size : int
        Groups with fewer distinct customers commenting are left out, with a note.

    Returns
    -------
    DataFrame
        Index ``group``; ``customers, comments`` and one column per theme (share of the
        group's comments). ``attrs["notes"]``.
    """
    if len(assignment) == 0:
        out = pd.DataFrame(columns=["customers", "comments"]).rename_axis("group")
        out.attrs["notes"] = ["No comment themes to split by group."]
        return out
    who = feedback.loc[assignment.index, "customer_id"]
    d = pd.DataFrame({"group": who.map(groups).to_numpy(), "customer_id": who.to_numpy(), "theme": assignment.to_numpy()})
    d = d.dropna(subset=["group"])
    shares = pd.crosstab(d["group"], d["theme"], normalize="index")
    shares.columns = [f"theme_{t}" for t in shares.columns]
    out = pd.DataFrame({"customers": d.groupby("group", observed=True)["customer_id"].nunique(),
                        "comments": d.groupby("group", observed=True).size()}).join(shares)
    out.index.name = "group"
    small = out["customers"] < min_group_size
    notes = []
    if small.any():
        notes.append(f"Themes are not shown for {int(small.sum())} group(s) with fewer than {min_group_size} customers commenting.")
        out = out[~small]
    out.attrs["notes"] = notes
    return out


# ------------------------------------------------------------------------------------ figures
def plot_nps_by_group(table: pd.DataFrame) -> "plt.Figure":
    """NPS per group with its interval (rows of :func:`satisfaction_by_group` with an NPS),
    lowest first; the title names the lowest and highest group."""
    import matplotlib.pyplot as plt

    d = table.dropna(subset=["nps"]).sort_values("nps")
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(d) + 1.6))
    if d.empty:
        ax.axis("off")
        ax.set_title("No group has enough survey answers for an NPS")
        return fig
    ax.errorbar(d["nps"], d.index.astype(str), xerr=[d["nps"] - d["nps_ci_low"], d["nps_ci_high"] - d["nps"]],
                fmt="o", capsize=3, color="tab:blue")
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlim(-100, 100)
    ax.set_xlabel("Net Promoter Score (-100 to 100), with 95% interval")
    ax.set_title(f"Lowest NPS: {d.index[0]} ({d['nps'].iloc[0]:.0f}); highest: {d.index[-1]} ({d['nps'].iloc[-1]:.0f})")
    fig.tight_layout()
    return fig
