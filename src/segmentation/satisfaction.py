"""Listen: NPS and CSAT with confidence intervals, response bias, satisfaction vs behaviour,
and feedback themes.

NPS = % promoters (9-10) - % detractors (0-6), in points (-100..100). Its 95% interval uses the
variance of a difference of two multinomial proportions,
``var = (p_prom + p_detr - (p_prom - p_detr)^2) / n`` (normal approximation).
CSAT is reported as the mean score and the share satisfied (4-5) with a Wilson interval.
Free text is scrubbed of PII (:func:`segmentation.privacy.scrub_pii`) before analysis.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency, norm
from sklearn.decomposition import NMF
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, TfidfVectorizer

from segmentation.journey import wilson_interval
from segmentation.privacy import scrub_pii

__all__ = ["nps", "csat", "satisfaction_by_group", "response_bias", "satisfaction_and_behaviour", "satisfaction_before_lapse", "feedback_themes", "nps_group"]


def nps_group(scores: pd.Series) -> pd.Series:
    """``promoter`` (9-10), ``passive`` (7-8), ``detractor`` (0-6); missing stays missing."""
    s = pd.to_numeric(scores, errors="coerce")
    return pd.Series(np.select([s >= 9, s >= 7, s >= 0], ["promoter", "passive", "detractor"], None),
                     index=scores.index).where(s.notna())


def nps(scores: pd.Series, level: float = 0.95) -> pd.Series:
    """NPS with its confidence interval.

    >>> nps(pd.Series([10, 9, 8, 3]))[["n", "promoters", "detractors", "nps"]].tolist()
    [4.0, 0.5, 0.25, 25.0]
    """
    s = pd.to_numeric(scores, errors="coerce").dropna()
    if ((s < 0) | (s > 10)).any():
        raise ValueError("NPS scores must lie between 0 and 10")
    n = len(s)
    p, d = (s >= 9).mean() if n else np.nan, (s <= 6).mean() if n else np.nan
    value = 100 * (p - d)
    half = norm.ppf(0.5 + level / 2) * 100 * np.sqrt(max(p + d - (p - d) ** 2, 0) / n) if n else np.nan
    return pd.Series({"n": float(n), "promoters": p, "passives": 1 - p - d if n else np.nan, "detractors": d,
                      "nps": value, "ci_low": value - half, "ci_high": value + half})


def csat(scores: pd.Series) -> pd.Series:
    """Mean CSAT (1-5) and share satisfied (4-5) with a Wilson 95% interval."""
    s = pd.to_numeric(scores, errors="coerce").dropna()
    if ((s < 1) | (s > 5)).any():
        raise ValueError("CSAT scores must lie between 1 and 5")
    k, n = int((s >= 4).sum()), len(s)
    lo, hi = wilson_interval(np.array([k]), np.array([n]))
    return pd.Series({"n": float(n), "mean": s.mean() if n else np.nan, "satisfied": k / n if n else np.nan,
                      "ci_low": lo[0], "ci_high": hi[0]})


def satisfaction_by_group(feedback: pd.DataFrame, groups: pd.Series, *, min_group_size: int = 10) -> pd.DataFrame:
    """NPS and CSAT per group (segment or persona) with intervals and response rates.

    ``groups`` maps every customer (responding or not) to a group, so the response rate is
    respondents / customers. Groups with fewer than ``min_group_size`` respondents are blanked.
    """
    fb = feedback.assign(group=feedback["customer_id"].map(groups)).dropna(subset=["group"])
    fb["group"] = fb["group"].astype(groups.dtype)
    parts = {g: pd.concat([nps(d["nps"]).add_prefix("nps_") if "nps" in d else pd.Series(dtype=float),
                           csat(d["csat"]).add_prefix("csat_") if "csat" in d else pd.Series(dtype=float)])
             for g, d in fb.groupby("group")}  # one per group
    out = pd.DataFrame(parts).T
    out.index.name = "group"
    size = groups.value_counts()
    resp = fb.groupby("group")["customer_id"].nunique()
    out.insert(0, "customers", size.reindex(out.index))
    out.insert(1, "respondents", resp.reindex(out.index))
    out.insert(2, "response_rate", out["respondents"] / out["customers"])
    small = out["respondents"] < min_group_size
    out.loc[small, [c for c in out.columns if c not in ("customers",)]] = np.nan
    return out


def response_bias(feedback: pd.DataFrame, groups: pd.Series) -> dict[str, float]:
    """Does the response rate differ between groups? Chi-square test of responded x group.
    Returns ``chi2, p_value, dof``; a small p-value means satisfaction figures over-represent
    some groups (weight them before comparing to the whole customer base)."""
    responded = groups.index.isin(feedback["customer_id"].unique())
    table = pd.crosstab(groups.to_numpy(), responded)
    chi2, p, dof, _ = chi2_contingency(table)
    return {"chi2": float(chi2), "p_value": float(p), "dof": int(dof)}


def satisfaction_and_behaviour(feedback: pd.DataFrame, features: pd.DataFrame, *, lapse_days: float | None = None) -> pd.DataFrame:
    """Lapse rate and spend by each customer's *latest* NPS group.

    A customer has lapsed when ``recency_days`` exceeds ``lapse_days`` (default: three times their
    own mean inter-purchase interval, or 90 days without one). Returns per NPS group:
    ``customers, lapse_rate (with Wilson interval), mean_monetary``.
    """
    latest = feedback.dropna(subset=["nps"]).sort_values("timestamp").groupby("customer_id")["nps"].last()
    group = nps_group(latest).rename("nps_group")
    f = features.join(group, how="inner")
    limit = lapse_days if lapse_days is not None else (3 * f["ipi_mean_days"]).fillna(90.0)
    f["lapsed"] = f["recency_days"] > limit
    out = f.groupby("nps_group").agg(customers=("lapsed", "size"), lapsed=("lapsed", "sum"), mean_monetary=("monetary", "mean"))
    out["lapse_rate"] = out["lapsed"] / out["customers"]
    out["ci_low"], out["ci_high"] = wilson_interval(out["lapsed"], out["customers"])
    return out.reindex(["detractor", "passive", "promoter"]).dropna(how="all")


def feedback_themes(comments: pd.Series, *, n_themes: int = 6, top_terms: int = 6, random_state: int = 0,
                    groups: pd.Series | None = None) -> tuple[pd.DataFrame, pd.Series]:
    """Themes in free-text comments: TF-IDF (unigrams and bigrams, English stop words) + NMF.

    Comments are scrubbed of PII first. Returns ``(themes, assignment)``: per theme its top
    terms, number of comments and two example comments; and each comment's theme (index as
    ``comments``). With ``groups`` (aligned to ``comments``), themes also get their share per group
    via :func:`pandas.crosstab` on the assignment.
    """
    text = scrub_pii(comments.dropna().astype(str))
    if len(text) < n_themes * 3:
        raise ValueError(f"need at least {n_themes * 3} comments for {n_themes} themes, got {len(text)}")
    stop = sorted(ENGLISH_STOP_WORDS | {"email", "phone", "url", "number", "please"})  # scrub placeholders are not themes
    vec = TfidfVectorizer(stop_words=stop, ngram_range=(1, 2), min_df=2, max_df=0.5)
    X = vec.fit_transform(text)
    model = NMF(n_components=n_themes, init="nndsvda", random_state=random_state, max_iter=400)
    W = model.fit_transform(X)
    terms = np.array(vec.get_feature_names_out())
    top = np.argsort(-model.components_, axis=1)[:, :top_terms]
    assignment = pd.Series(W.argmax(axis=1), index=text.index, name="theme")
    strength = W.max(axis=1)
    rows = []
    for k in range(n_themes):  # one per theme
        members = np.flatnonzero(assignment.to_numpy() == k)
        best = members[np.argsort(-strength[members])]
        examples = text.iloc[best].drop_duplicates().head(2).tolist()
        rows.append({"theme": k, "terms": ", ".join(terms[top[k]]), "comments": len(members),
                     "example_1": examples[0] if examples else "", "example_2": examples[1] if len(examples) > 1 else ""})
    themes = pd.DataFrame(rows).set_index("theme")
    themes["share"] = themes["comments"] / len(text)
    return themes, assignment


def satisfaction_before_lapse(feedback: pd.DataFrame, features: pd.DataFrame, *, window_days: int = 120,
                              lapse_days: float | None = None) -> pd.DataFrame:
    """Does satisfaction fall before customers lapse?

    For lapsed and active customers (lapse rule as in :func:`satisfaction_and_behaviour`), the
    mean NPS of feedback given in the ``window_days`` before their last purchase against the
    feedback given earlier. Returns rows ``lapsed, active`` with ``nps_earlier, nps_before_last,
    change, responses``.
    """
    limit = lapse_days if lapse_days is not None else (3 * features["ipi_mean_days"]).fillna(90.0)
    lapsed = (features["recency_days"] > limit).rename("lapsed")
    fb = feedback.dropna(subset=["nps"]).merge(features[["last_purchase"]].join(lapsed), left_on="customer_id", right_index=True)
    late = fb["timestamp"] >= fb["last_purchase"] - pd.Timedelta(days=window_days)
    fb = fb.assign(period=np.where(late, "nps_before_last", "nps_earlier"), status=np.where(fb["lapsed"], "lapsed", "active"))
    out = fb.pivot_table(index="status", columns="period", values="nps", aggfunc="mean")
    out["change"] = out["nps_before_last"] - out["nps_earlier"]
    out["responses"] = fb.groupby("status").size()
    return out[["nps_earlier", "nps_before_last", "change", "responses"]]
