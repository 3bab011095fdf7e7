"""Satisfaction: NPS/CSAT arithmetic, the NPS interval's coverage by simulation, any shape of
feedback, the shared lapse definition, small-group rules, themes, planted effects recovered."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from segmentation import definitions
from segmentation import satisfaction as sat


# ------------------------------------------------------------------------------- arithmetic
def test_nps_csat_arithmetic_and_adjusted_wald_by_hand():
    r = sat.nps(pd.Series([10, 9, 9, 8, 7, 6, 0, 10, 3, 9]))
    assert r["promoters"] == 0.5 and r["detractors"] == 0.3 and r["passives"] == pytest.approx(0.2)
    assert r["nps"] == pytest.approx(20.0)
    p, d = (5 + 0.75) / 13, (3 + 0.75) / 13  # Rocks (2016): n + 3, promoters and detractors + 3/4
    half = 1.959964 * np.sqrt((p + d - (p - d) ** 2) / 13)
    assert r["ci_low"] == pytest.approx(100 * (p - d - half), rel=1e-5)
    assert r["ci_high"] == pytest.approx(100 * (p - d + half), rel=1e-5)
    c = sat.csat(pd.Series([5, 4, 3, 1]))
    assert c["mean"] == 3.25 and c["satisfied"] == 0.5
    with pytest.raises(ValueError, match="outside 0-10"):
        sat.nps(pd.Series([11]))
    with pytest.raises(ValueError, match="outside 1-5"):
        sat.csat(pd.Series([0, 3]))
    assert sat.nps_group(pd.Series([9, 7, 6, np.nan])).tolist()[:3] == ["promoter", "passive", "detractor"]
    assert sat.csat_group(pd.Series([5, 3, 2])).tolist() == ["satisfied", "neutral", "dissatisfied"]
    empty = sat.nps(pd.Series([], dtype="float64"))
    assert empty["n"] == 0 and np.isnan(empty["nps"]) and np.isnan(empty["ci_low"])


def test_nps_interval_stays_on_the_scale_and_contains_the_estimate():
    all_promoters = sat.nps(pd.Series([10] * 12))
    assert all_promoters["nps"] == 100 and all_promoters["ci_high"] == 100 and 50 < all_promoters["ci_low"] < 100
    all_detractors = sat.nps(pd.Series([0] * 12))
    assert all_detractors["ci_low"] == -100
    for n in range(2, 41):  # every possible answer mix for n = 2..40
        kp, kd = np.meshgrid(np.arange(n + 1), np.arange(n + 1))
        ok = kp + kd <= n
        lo, hi = sat.nps_interval(kp[ok], kd[ok], np.full(ok.sum(), n))
        value = 100 * (kp[ok] - kd[ok]) / n
        assert (lo >= -100).all() and (hi <= 100).all()
        assert ((lo <= value + 1e-9) & (value <= hi + 1e-9)).all(), n


@pytest.mark.parametrize("probs", [(0.5, 0.3, 0.2), (0.9, 0.08, 0.02), (0.1, 0.2, 0.7), (0.98, 0.02, 0.0), (0.6, 0.4, 0.0)])
@pytest.mark.parametrize("n", [10, 30, 100])
def test_nps_interval_coverage_by_simulation(probs, n):
    """Share of simulated samples whose 95% interval holds the true NPS (promoters, passives,
    detractors = probs). The plain Wald interval falls far short near the ends of the scale."""
    rng = np.random.default_rng(7)
    x = rng.multinomial(n, probs, size=4000)
    true = 100 * (probs[0] - probs[2])
    lo, hi = sat.nps_interval(x[:, 0], x[:, 2], np.full(len(x), n))
    coverage = ((lo <= true + 1e-9) & (true - 1e-9 <= hi)).mean()
    assert 0.92 <= coverage <= 0.995, coverage
    if probs[0] >= 0.9 and n <= 30:  # the test can tell a bad method: Wald misses here
        p, d = x[:, 0] / n, x[:, 2] / n
        half = norm.ppf(0.975) * np.sqrt((p + d - (p - d) ** 2) / n)
        wald = ((p - d - half <= true / 100 + 1e-9) & (true / 100 - 1e-9 <= p - d + half)).mean()
        assert wald < 0.9


# -------------------------------------------------------------------------- any feedback shape
def _features(n: int = 60) -> pd.DataFrame:
    """Repeat buyers with a 10-day gap; every third customer lapsed (silent 40 days = 4 gaps)."""
    ids = [f"c{i:03d}" for i in range(n)]
    lapsed = np.arange(n) % 3 == 0
    recency = np.where(lapsed, 40.0, 5.0)
    return pd.DataFrame({"recency_days": recency, "frequency": 5, "ipi_mean_days": 10.0, "monetary": 100.0 + np.arange(n),
                         "last_purchase": pd.Timestamp("2026-01-01") - pd.to_timedelta(recency, unit="D")}, index=pd.Index(ids, name="customer_id"))


def _feedback(features: pd.DataFrame) -> pd.DataFrame:
    """Two answers per customer: one 200 days and one 30 days before the last purchase; lapsed
    customers answer 8 then 4 (a drop of 4 in the mean 0-10 score), active ones 8 then 8."""
    lapsed = (definitions.customer_status(features) == "lapsed").to_numpy()
    ids = np.repeat(features.index.to_numpy(), 2)
    when = np.repeat(features["last_purchase"].to_numpy(), 2) - np.tile(pd.to_timedelta([200, 30], unit="D").to_numpy(), len(features))
    score = np.where(np.repeat(lapsed, 2) & np.tile([False, True], len(features)), 4.0, 8.0)
    comments = np.tile(["delivery was late again", "friendly staff at the till", "app keeps crashing on login"], len(ids))[: len(ids)]
    return pd.DataFrame({"customer_id": ids, "timestamp": when, "nps": score, "csat": np.where(score > 5, 5.0, 2.0),
                         "comment": comments})


SHAPES = {
    "only csat": lambda fb: fb[["customer_id", "timestamp", "csat"]],
    "only nps": lambda fb: fb[["customer_id", "timestamp", "nps"]],
    "only comment": lambda fb: fb[["customer_id", "timestamp", "comment"]],
    "empty nps column": lambda fb: fb[["customer_id", "timestamp"]].assign(nps=None),
    "blank string nps": lambda fb: fb[["customer_id", "timestamp"]].assign(nps=pd.array([""] * len(fb), dtype="string")),
    "no rows": lambda fb: fb.iloc[:0],
    "no feedback": lambda fb: None,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_function_works_with_any_feedback_shape(shape):
    features = _features()
    fb = SHAPES[shape](_feedback(features))
    groups = pd.Series(np.where(np.arange(len(features)) % 2 == 0, "A", "B"), index=features.index)
    has_nps = fb is not None and "nps" in fb and shape not in ("empty nps column", "blank string nps") and len(fb)
    has_csat = fb is not None and "csat" in fb and len(fb)

    by_group = sat.satisfaction_by_group(fb, groups, min_group_size=5)
    assert by_group["customers"].tolist() == [30, 30]
    assert ("nps" in by_group.columns) == bool(has_nps) and ("csat_mean" in by_group.columns) == bool(has_csat)
    if not has_nps:
        assert any("NPS is not available" in n or "no survey feedback" in n for n in by_group.attrs["notes"])
    assert isinstance(sat.response_bias(fb, groups)["note"], str)

    behaviour = sat.satisfaction_and_behaviour(fb, features, min_group_size=5)
    before = sat.satisfaction_before_lapse(fb, features, min_group_size=5)
    if has_nps or has_csat:
        assert len(behaviour) and len(before)
        assert behaviour.attrs["measure"] == ("nps" if has_nps else "csat")
    else:
        assert behaviour.empty and before.empty
        assert any("not available" in n for n in behaviour.attrs["notes"])
        assert "change" in before.columns  # the documented columns, empty

    coverage = sat.feedback_coverage(fb)
    assert coverage.loc["nps", "available"] == bool(has_nps) and coverage.loc["csat", "available"] == bool(has_csat)
    assert (coverage["note"] != "").sum() == (~coverage["available"]).sum()

    themes, assignment = sat.feedback_themes(fb["comment"] if fb is not None and "comment" in fb else None, n_themes=3)
    assert len(themes) == (3 if shape == "only comment" else 0)
    if len(themes) == 0:
        assert themes.attrs["notes"] and assignment.empty


def test_csat_only_feedback_uses_csat_and_names_the_scale():
    features = _features()
    fb = _feedback(features)[["customer_id", "timestamp", "csat"]]
    before = sat.satisfaction_before_lapse(fb, features, min_group_size=5)
    assert before.attrs["measure"] == "mean 1-5 CSAT score" and before.attrs["scale"] == "1-5"
    assert before.loc["lapsed", "change"] == pytest.approx(-3.0)  # 5 -> 2
    behaviour = sat.satisfaction_and_behaviour(fb, features, min_group_size=5)
    assert behaviour.index.name == "csat_group"
    assert behaviour.loc["dissatisfied", "lapse_rate"] == 1.0 and behaviour.loc["satisfied", "lapse_rate"] == 0.0


# ------------------------------------------------------------------------ definitions and stats
def test_lapse_is_the_shared_definition_with_its_parameters():
    features = _features()
    features.loc[features.index[1::3], "recency_days"] = 25.0  # 2.5 gaps: lapsing by default, lapsed with lapsed_after=2
    fb = _feedback(features)
    default = sat.satisfaction_and_behaviour(fb, features, min_group_size=1)
    status = definitions.customer_status(features)
    assert default["lapsed"].sum() == (status == "lapsed").sum() == 20
    stricter = sat.satisfaction_and_behaviour(fb, features, lapsed_after=2.0, min_group_size=1)
    assert stricter["lapsed"].sum() == (definitions.customer_status(features, lapsed_after=2.0) == "lapsed").sum() == 40
    assert any("3 usual gaps" in n for n in default.attrs["notes"])


def test_change_before_lapse_is_a_mean_score_with_a_clustered_interval():
    features = _features()
    fb = _feedback(features)
    t = sat.satisfaction_before_lapse(fb, features, min_group_size=5)
    assert t.attrs["measure"] == "mean 0-10 likelihood-to-recommend score"
    assert not any("nps" in c for c in t.columns)
    assert t.loc["lapsed", ["mean_score_earlier", "mean_score_before_last", "change"]].tolist() == [8.0, 4.0, -4.0]
    assert t.loc["active", "change"] == 0.0
    assert t.loc["lapsed", ["customers_earlier", "customers_before_last"]].tolist() == [20, 20]
    assert any("not in NPS points" in n for n in t.attrs["notes"])
    # noisy answers: the interval holds the truth and widens when one customer's answers are copied
    rng = np.random.default_rng(3)
    noisy = fb.assign(nps=np.clip(fb["nps"] + rng.normal(0, 1.5, len(fb)), 0, 10))
    t = sat.satisfaction_before_lapse(noisy, features, min_group_size=5)
    assert t.loc["lapsed", "ci_low"] < -4.0 < t.loc["lapsed", "ci_high"]
    copies = pd.concat([noisy] * 5)  # same customers answering five times alike: no new information
    t5 = sat.satisfaction_before_lapse(copies, features, min_group_size=5)
    width = lambda x: x.loc["lapsed", "ci_high"] - x.loc["lapsed", "ci_low"]  # noqa: E731
    assert width(t5) == pytest.approx(width(t), rel=0.15)


def test_min_group_size_in_every_satisfaction_table():
    features = _features()
    fb = _feedback(features)
    groups = pd.Series("big", index=features.index)
    groups.iloc[:6] = "small"  # 6 customers
    by_group = sat.satisfaction_by_group(fb, groups, min_group_size=10)
    assert np.isnan(by_group.loc["small", "nps"]) and np.isnan(by_group.loc["small", "respondents"])
    assert by_group.loc["small", "customers"] == 6 and not np.isnan(by_group.loc["big", "nps"])
    assert any("fewer than 10 customers answering" in n for n in by_group.attrs["notes"])
    behaviour = sat.satisfaction_and_behaviour(fb, features, min_group_size=25)  # latest answers: 20 detractors (4), 40 passives (8)
    assert behaviour.index.tolist() == ["passive"] and behaviour.attrs["notes"]
    themes, assignment = sat.feedback_themes(fb["comment"], n_themes=3)
    by_theme = sat.themes_by_group(fb, assignment, groups, min_group_size=10)
    assert by_theme.index.tolist() == ["big"] and "fewer than 10 customers commenting" in by_theme.attrs["notes"][0]
    assert by_theme.filter(like="theme_").sum(axis=1).iloc[0] == pytest.approx(1.0)


def test_pii_scrubbed_in_themes():
    comments = pd.Series(["delivery was late, call +44 7700 900123"] * 6 + ["staff friendly and helpful"] * 6
                         + ["app crashes at checkout, mail x.y@example.com"] * 6)
    themes, assignment = sat.feedback_themes(comments, n_themes=3)
    text = " ".join(themes[["example_1", "example_2"]].to_numpy().ravel())
    assert "7700" not in text and "example.com" not in text and "[phone]" in text
    assert assignment.nunique() == 3 and themes["comments"].sum() == 18
    few, _ = sat.feedback_themes(comments.head(5), n_themes=3)
    assert few.empty and "at least 9 are needed" in few.attrs["notes"][0]


# ---------------------------------------------------------------------------- planted effects
@pytest.fixture(scope="module")
def synthetic():
    from segmentation.data import load_store
    from segmentation.features import customer_features

    store = load_store("synthetic", n_customers=1500, random_state=42, as_of="2026-01-01", suppress=[])
    return store, customer_features(store.transactions, "2026-01-01")


def test_planted_satisfaction_drop_before_lapse_is_recovered(synthetic):
    from segmentation.synthetic import LAPSE_NPS_DROP

    store, features = synthetic
    t = sat.satisfaction_before_lapse(store.feedback, features)
    assert t.loc["lapsed", "change"] == pytest.approx(-LAPSE_NPS_DROP, abs=0.6)
    assert t.loc["lapsed", "ci_high"] < 0
    assert t.loc["active", "change"] > -1.0
    lapse = sat.satisfaction_and_behaviour(store.feedback, features)
    assert lapse.loc["detractor", "lapse_rate"] > lapse.loc["promoter", "lapse_rate"] + 0.3
    persona = store.truth.set_index("customer_id")["persona"] if "customer_id" in store.truth.columns else store.truth["persona"]
    by_persona = sat.satisfaction_by_group(store.feedback, persona.reindex(features.index).dropna())
    assert by_persona["nps_ci_low"].ge(-100).all() and by_persona["nps_ci_high"].le(100).all()
    assert by_persona["nps"].idxmax() == "vip_loyalists" and by_persona["nps"].idxmin() == "lapsing_one_timers"
