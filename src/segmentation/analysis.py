"""A run computes once: the analysis as a chain of pure stages producing one results set.

:func:`run_analysis` takes a loaded :class:`~segmentation.data.Store` and the run's
:class:`~segmentation.params.RunParameters` and returns :class:`Results`; the report notebooks
only render them. Every stage is a pure function (tables in, tables out: no file I/O, no
environment variables); :meth:`Results.save` / :meth:`Results.load` are the only I/O, called by
the runner and the notebooks.

Stages, in order (each adds a :class:`Section`; the per-customer table ``customers`` grows as
they go, so every table grouped by persona is derived from the same rows)::

    data          quality report, notes, currency, period, what each report can show
    purchases     headline figures, concentration, category mix, baskets, rhythm, seasonality
    segments      features, RFM, behavioural segments, k selection, stability, explanations
    value         lifetime-model check on a holdout, verdict, CLV and churn per customer
    personas      one persona per segment, representative customers
    offers        co-purchase rules, recommender evaluation, action plan, lists, loyalty tiers
    journey       funnels, paths, attribution, support, satisfaction, cohorts, migration
    profile       one customer (``customer_id`` or the representative of the largest persona)

``results/customers.parquet`` has one row per analysed customer (pseudonymous id): features,
``segment, persona, rfm_segment, status, repeat_buyer, new_customer, p_alive, clv, churn_band``,
consent flags and the list flags (``offer``, ``win_back``, ``senior_discount``, ``key_date``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmentation import definitions, explore
from segmentation.data import Store, to_pandas
from segmentation.params import RunParameters

__all__ = ["Section", "Results", "run_analysis", "STAGES", "RESULTS_VERSION"]

RESULTS_VERSION = 1


@dataclass
class Section:
    """What one stage produced: named tables, JSON-able scalars and plain-language notes."""

    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    scalars: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __getitem__(self, name: str) -> Any:
        if name in self.tables:
            return self.tables[name]
        if name in self.scalars:
            return self.scalars[name]
        raise KeyError(f"no table or value {name!r} here; tables: {sorted(self.tables)}, values: {sorted(self.scalars)}")

    def get(self, name: str, default: Any = None) -> Any:
        try:
            return self[name]
        except KeyError:
            return default


@dataclass
class Results:
    """The results of one run (see the module docstring).

    Attributes
    ----------
    params : RunParameters
    customers : DataFrame
        One row per analysed customer, index ``customer_id``.
    sections : dict of str to Section
        ``data, purchases, segments, value, personas, offers, journey, profile``.
    model : Segmenter or None
        The fitted segmentation model.
    timings : dict of str to float
        Seconds per stage.
    """

    params: RunParameters
    customers: pd.DataFrame
    sections: dict[str, Section] = field(default_factory=dict)
    model: Any = None
    timings: dict[str, float] = field(default_factory=dict)

    def __getitem__(self, section: str) -> Section:
        return self.sections[section]

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path) -> Path:
        """Write ``parameters.json``, ``customers.parquet``, ``segmenter.joblib`` and one folder
        per section (``<table>.parquet`` + ``scalars.json``) under ``folder``."""
        folder = Path(folder)
        if folder.exists() and any(folder.iterdir()):
            import shutil

            if not (folder / "run.json").is_file():
                raise FileExistsError(f"{folder} is not empty and holds no results: choose an empty folder")
            shutil.rmtree(folder)  # results of an earlier save: replaced whole, no stale tables
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "parameters.json").write_text(json.dumps(self.params.to_dict(), indent=2, sort_keys=True), encoding="utf-8")
        _write_parquet(self.customers, folder / "customers.parquet")
        for name, section in self.sections.items():
            sub = folder / name
            sub.mkdir(exist_ok=True)
            for tname, table in section.tables.items():
                _write_parquet(table, sub / f"{tname}.parquet")
            meta = {"scalars": section.scalars, "notes": section.notes}
            (sub / "scalars.json").write_text(json.dumps(meta, indent=2, sort_keys=True, default=_json_default), encoding="utf-8")
        (folder / "run.json").write_text(json.dumps({"version": RESULTS_VERSION, "sections": list(self.sections),
                                                     "timings": self.timings}, indent=2), encoding="utf-8")
        if self.model is not None:
            self.model.save(folder / "segmenter.joblib")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Results:
        """Read results written by :meth:`save`."""
        folder = Path(folder)
        meta_path = folder / "run.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{folder} holds no results of a run (run.json missing); run `segmentation run` first")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("version") != RESULTS_VERSION:
            raise ValueError(f"{folder} was written by another version of the results format ({meta.get('version')}); re-run")
        params = RunParameters.from_mapping(json.loads((folder / "parameters.json").read_text(encoding="utf-8")))
        sections = {}
        for name in meta["sections"]:
            sub = folder / name
            extra = json.loads((sub / "scalars.json").read_text(encoding="utf-8"))
            tables = {p.stem: _read_parquet(p) for p in sorted(sub.glob("*.parquet"))}
            sections[name] = Section(tables=tables, scalars=extra["scalars"], notes=extra["notes"])
        model = None
        if (folder / "segmenter.joblib").is_file():
            from segmentation.segments import Segmenter

            model = Segmenter.load(folder / "segmenter.joblib")
        return cls(params=params, customers=_read_parquet(folder / "customers.parquet"), sections=sections,
                   model=model, timings=meta.get("timings", {}))


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, (pd.Timestamp, np.datetime64)):
        return str(pd.Timestamp(value).date()) if pd.Timestamp(value) == pd.Timestamp(value).normalize() else str(pd.Timestamp(value))
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (set, tuple, np.ndarray)):
        return list(value)
    raise TypeError(f"cannot save {type(value).__name__} in scalars.json")


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    """Parquet with string column names; Period and interval values as text."""
    out = df.copy(deep=False)  # copy-on-write: columns replaced below are new, the data is not copied
    out.columns = [str(c) for c in out.columns]
    for col in out.columns:
        if isinstance(out[col].dtype, (pd.PeriodDtype, pd.IntervalDtype)):
            out[col] = out[col].astype("string")
        elif out[col].dtype == object and out[col].map(type).nunique() > 1:  # mixed values (e.g. figures) as text
            out[col] = out[col].map(_as_text).astype("string")
    if not isinstance(out.index, pd.MultiIndex) and out.index.dtype == object and out.index.map(type).nunique() > 1:
        out.index = out.index.map(str)  # e.g. segment ids and a "total" row
    if isinstance(out.index, pd.MultiIndex):
        out.index = out.index.set_names([str(n) if n is not None else f"level_{i}" for i, n in enumerate(out.index.names)])
    elif out.index.name is not None:
        out.index.name = str(out.index.name)
    out.attrs = {}
    out.to_parquet(path)


def _as_text(value: Any) -> str | None:
    """A value of a mixed column as text; floats rounded to 6 decimals first, so sums added in
    another order by a parallel engine give the same text."""
    if value is None or value is pd.NA:
        return None
    if isinstance(value, (float, np.floating)):
        return f"{round(float(value), 6):.10g}"
    return str(value)


def _read_parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


# ============================================================================ stages
def data_stage(store: Store, params: RunParameters) -> Section:
    """Quality report, notes, the period covered and the currency."""
    t = store.transactions
    span = to_pandas(t.aggregate(first=t.order_date.min(), last=t.order_date.max(), lines=t.count())).iloc[0]
    currency = params.currency or getattr(store, "currency", None) or ("" if store.name == "instacart" else "EUR")
    scalars = {
        "source": params.source,
        "name": store.name,
        "synthetic": store.truth is not None,
        "first_purchase": pd.Timestamp(span["first"]),
        "last_purchase": pd.Timestamp(span["last"]),
        "lines": int(span["lines"]),
        "currency": currency,
        "has_events": store.events is not None,
        "has_feedback": store.feedback is not None,
        "has_customers": store.customers is not None,
        "has_products": store.products is not None,
        "derived_dates": bool(getattr(store, "derived_dates", False)),
    }
    return Section(tables={"quality": store.quality.reset_index(drop=True)}, scalars=scalars, notes=list(store.notes))


#: The notes of the journey section when an input is missing (the report's findings repeat them).
NO_JOURNEY_EVENTS = "This data set has no journey events: funnels, paths, attribution and support contacts cannot be shown."
NO_SURVEY_FEEDBACK = "This data set has no survey feedback: satisfaction cannot be shown."


def purchases_stage(store: Store, params: RunParameters) -> Section:
    """What people buy, how much, how often, when (report 01)."""
    t, as_of, n = store.transactions, params.analysis_date, params.min_group_size
    curve, concentration = explore.revenue_concentration(t, as_of)
    mix = explore.category_mix(t, as_of, min_group_size=n)
    trend = explore.monthly_trend(t, as_of)
    nvr = explore.new_vs_returning(t, as_of)
    trend["new_revenue_share"] = explore.new_revenue_share(nvr).reindex(trend.index)
    rhythm = explore.weekly_rhythm(t, as_of)
    if store.derived_dates:  # dates rebuilt from the gaps between orders: no real weekday, month or season
        trend["comparable"] = trend["peak"] = False
        rhythm = rhythm.sum().to_frame("any day").T.rename_axis("day")
    wave = explore.first_time_peaks(trend)  # a wave of first-time buyers, not a season
    tables = {
        "overview": explore.overview(t, as_of),
        "lorenz": curve,
        "category_mix": mix,
        "category_pairs": explore.category_pairs(t, as_of, top=10, min_group_size=n),
        "basket_summary": explore.basket_summary(t, as_of),
        "basket_histogram": explore.basket_histogram(t, as_of),
        "weekly_rhythm": rhythm,
        "monthly_trend": trend,
        "new_vs_returning": nvr,
    }
    if store.derived_dates:  # every customer's first order sits at the start of the rebuilt calendar
        del tables["new_vs_returning"]
    later = explore.after_first_month(nvr)
    returning = later["returning_revenue"].sum() / max(later["returning_revenue"].sum() + later["new_revenue"].sum(), 1e-9)
    scalars = {
        **concentration,
        "pooled_categories": int(mix.attrs.get("pooled_categories", 0)),
        "busiest_day": None if store.derived_dates else str(rhythm.sum(axis=1).idxmax()),
        "comparable_months": bool(trend["comparable"].any()),
        "busiest_hour": int(rhythm.sum(axis=0).idxmax()) if explore.has_time_of_day(rhythm) else None,
        "peak_months": [m.strftime("%b %Y") for m in trend.index[trend["peak"] & ~wave]],
        "acquisition_peaks": [m.strftime("%b %Y") for m in trend.index[wave]],
        "returning_revenue_share": None if store.derived_dates else float(returning),
        "partial_months": [m.strftime("%b %Y") for m in trend.index[~trend["complete"]]],
        "months": int(len(trend)),
    }
    return Section(tables=tables, scalars=scalars)


def segments_stage(store: Store, params: RunParameters, *, previous_model: Any = None) -> tuple[Section, pd.DataFrame, Any]:
    """Features, RFM and segments (report 02): behavioural clusters when they reproduce, else the
    value x status tiers, with the diagnostics that say which and why. Returns the section, the
    first version of the per-customer table and the fitted model."""
    from segmentation import pipeline, privacy, rfm, scale, segments

    result = pipeline.segment_customers(
        store, params.analysis_date, random_state=params.random_state, n_clusters=params.n_clusters,
        method=params.method, k_range=(params.k_min, params.k_max), use=params.feature_set, n_boot=params.n_boot,
        lapsing_after=params.lapsing_after, lapsed_after=params.lapsed_after, previous_model=previous_model,
        sample_size=params.sample_size,
    )
    table, model = result.table, result.model
    X = table[result.features]
    labels = {c: definitions.column_label(c) for c in result.features}
    assigned = table["segment"].to_numpy()  # every customer's segment (above sample_size the model saw a sample)
    rules, fidelity = segments.surrogate_rules(model, X, labels=assigned, feature_labels=labels, max_depth=3,
                                               random_state=params.random_state, sample_size=params.sample_size)
    tables = {
        "rfm_summary": rfm.rfm_summary(table, table["rfm_segment"]),
        "segment_profile": segments.segment_profile(table, table["segment"]),
        "explanation": segments.explain(model, X, labels=assigned),
        "features_used": pd.DataFrame({"feature": result.features}),
        "rules": rules.rename(columns={"customers": "matching_customers"}),
        "checks": pd.DataFrame(result.diagnostics.get("checks", []), columns=["check", "value", "threshold", "passed", "sentence"]),
        "segment_map": _segment_map(model, X, table["segment"], params.random_state),
    }
    if result.selection is not None:
        tables["k_selection"] = result.selection
    if result.stability is not None:
        tables["stability"] = result.stability
    if result.mapping is not None:
        tables["alignment"] = result.mapping
    diag = result.diagnostics
    scalars: dict[str, Any] = {
        "k": int(model.n_clusters_),
        "path": result.path,
        "method": params.method if result.path == "clusters" else "value x status tiers",
        "segmented": int(len(table)),
        "excluded_no_consent": int(result.excluded_no_consent),
        "rules_fidelity": float(fidelity),
        "diagnostics": diag,
        "segment_names": {str(k): v for k, v in diag.get("segment_names", {}).items()},
    }
    if result.stability is not None:
        scalars.update(stability_ari_mean=float(result.stability.attrs.get("ari_mean", np.nan)),
                       unstable_segments=[int(s) for s in result.stability.index[~result.stability["stable"].astype(bool)]])
    if result.sample_check is not None:
        scalars["sample_check_ari"] = float(result.sample_check.attrs.get("ari", np.nan))
    if store.truth is not None:
        from sklearn.metrics import adjusted_rand_score

        truth = store.truth.set_index("customer_id")["persona"].reindex(table.index)
        known = truth.notna()
        scalars["truth_ari"] = float(adjusted_rand_score(truth[known], table.loc[known, "segment"]))
        tables["truth_crosstab"] = pd.crosstab(truth[known].rename("planted persona"), table.loc[known, "segment"])
    customers = table.copy(deep=False)  # copy-on-write: new columns only, no copy of the customer-sized data
    customers["consent_profiling"] = True  # only customers who consented are segmented
    allowed, _ = privacy.consented(customers.index, store.customers, "marketing")
    customers["consent_marketing"] = scale.isin(customers.index, allowed)
    customers["status"] = definitions.customer_status(customers, lapsing_after=params.lapsing_after, lapsed_after=params.lapsed_after)
    customers["repeat_buyer"] = definitions.is_repeat_buyer(customers)
    customers["new_customer"] = definitions.is_new_customer(customers, new_customer_days=params.new_customer_days)
    scalars["repeat_share"] = float(customers["repeat_buyer"].mean()) if len(customers) else 0.0
    scalars["status_counts"] = customers["status"].value_counts().reindex(list(definitions.STATUSES), fill_value=0).astype(int).to_dict()
    notes = list(diag.get("notes", []))
    if diag.get("rfm", {}).get("note"):
        notes.append(diag["rfm"]["note"])
    return Section(tables=tables, scalars=scalars, notes=notes), customers, model


def _segment_map(model: Any, X: pd.DataFrame, segment: pd.Series, random_state: int, n: int = 4000) -> pd.DataFrame:
    """Two principal components of the model space for a reproducible sample of customers."""
    from sklearn.decomposition import PCA

    sample = X.sample(n=min(n, len(X)), random_state=random_state) if len(X) > n else X
    Z = model.transform(sample).to_numpy()
    coords = PCA(n_components=2, random_state=random_state).fit_transform(Z) if Z.shape[1] >= 2 else np.c_[Z, np.zeros(len(Z))]
    return pd.DataFrame({"x": coords[:, 0], "y": coords[:, 1], "segment": segment.reindex(sample.index).to_numpy()},
                        index=sample.index)


# ---------------------------------------------------------------------------- value
def value_stage(store: Store, params: RunParameters, customers: pd.DataFrame) -> tuple[Section, pd.DataFrame]:
    """BG/NBD + Gamma-Gamma: checked on a holdout and judged (:func:`segmentation.value.assess_model`),
    then CLV and churn per customer with intervals per persona (report 05). With a model judged
    "do not use" the section says why and no CLV is added."""
    from segmentation import value
    from segmentation.features import lifetime_summary

    as_of = params.analysis_date
    tables: dict[str, pd.DataFrame] = {}
    notes: list[str] = []
    scalars: dict[str, Any] = {"horizon_months": params.horizon_months, "annual_discount_rate": params.annual_discount_rate}
    repeat_share = float(customers["repeat_buyer"].mean()) if len(customers) else 0.0
    first = pd.Timestamp(customers["first_purchase"].min()) if len(customers) else as_of
    summary = lifetime_summary(store.transactions, as_of, time_unit="W")
    summary = summary.loc[summary.index.intersection(customers.index)]
    holdout = None
    cal_end = value.choose_calibration_end(first, as_of, holdout_weeks=params.holdout_weeks)
    bg = gg = None
    large = len(summary) > params.sample_size

    def fit_bgnbd(s: pd.DataFrame) -> Any:  # above sample_size on the distinct (x, t_x, T) rows: the same estimates
        return value.BetaGeo().fit(value.compress_summary(s), sample_weight="weight") if large else value.BetaGeo().fit(s)
    if repeat_share >= value.VERDICT_THRESHOLDS["min_repeat_share"]:
        if cal_end is not None:
            ch = value.calibration_holdout(store.transactions, cal_end, as_of, time_unit="W")
            ch = ch.loc[ch.index.intersection(customers.index)]
            try:
                bg_cal = fit_bgnbd(ch)
                holdout = value.holdout_errors(ch, bg_cal)
                tables["holdout"] = holdout
                tables["conditional_expectations"] = value.conditional_expectations(ch, bg_cal)
                tables["repeat_tracking"] = value.repeat_tracking(store.transactions, bg_cal, cal_end, as_of)
                scalars["calibration_end"] = cal_end
            except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:  # a failed fit is a verdict, not a crash
                notes.append(f"The model could not be checked on a holdout: {exc}.")
        try:
            bg = fit_bgnbd(summary)
            gg = value.GammaGamma().fit(summary.sample(n=params.sample_size, random_state=params.random_state)
                                        if large else summary)
            if large:
                scalars["gg_sample"] = int(params.sample_size)
                notes.append(f"The spend model was fitted on a random {params.sample_size:,} of the {len(summary):,} "
                             "customers, the purchase model on all of them.")
        except (ValueError, FloatingPointError, np.linalg.LinAlgError) as exc:
            notes.append(f"The lifetime model could not be fitted: {exc}.")
            bg = gg = None
    assessment = value.assess_model(bg, holdout, repeat_share=repeat_share, ggf=gg)
    tables["checks"] = assessment.checks
    decisive = assessment.checks.loc[assessment.checks["outcome"] == assessment.verdict, "reason"].dropna()
    decisive = [r for r in decisive if r] or list(assessment.reasons[:1])
    scalars.update(verdict=assessment.verdict, verdict_reasons=decisive, all_reasons=list(assessment.reasons),
                   repeat_share=repeat_share)
    if assessment.verdict == "do not use" or bg is None or gg is None:
        scalars["verdict"] = "do not use"
        notes.append("No lifetime values are shown: " + " ".join(assessment.reasons))
        return Section(tables=tables, scalars=scalars, notes=notes), customers
    values = value.customer_value(summary, bg, gg, horizon_months=params.horizon_months,
                                  annual_discount_rate=params.annual_discount_rate)
    scalars["clv_note"] = values.attrs.get("note", "")
    tables["parameters"] = pd.concat([bg.param_intervals(level=0.9), gg.param_intervals(level=0.9)]).rename_axis("parameter")
    scalars.update(independence_corr=float(value.GammaGamma.independence_check(summary)),
                   gg_customers=int(gg.n_customers_), gg_excluded=int(gg.n_excluded_))
    window = value.next_purchase_window(summary, bg)
    customers = customers.join(values[["expected_purchases", "p_alive", "expected_spend", "clv", "churn_risk", "churn_band"]])
    customers["next_purchase_weeks"] = window["window_median"].where(customers["repeat_buyer"])
    persona_less = customers["segment"].reindex(summary.index)
    tables["intervals_by_segment"] = value.value_intervals(summary, bg, gg, persona_less, horizon_months=params.horizon_months,
                                                           annual_discount_rate=params.annual_discount_rate,
                                                           random_state=params.random_state)
    tables["expected_orders"] = value.expected_orders_by_group(summary, bg, gg, persona_less, weeks=12)
    if store.truth is not None:
        truth = store.truth.set_index("customer_id").reindex(values.index)
        scalars["truth_p_alive_corr"] = float(values["p_alive"].corr((~truth["churned"].astype(bool)).astype(float)))
    return Section(tables=tables, scalars=scalars, notes=notes), customers


# ---------------------------------------------------------------------------- personas
def personas_stage(store: Store, params: RunParameters, customers: pd.DataFrame, segments: Section) -> tuple[Section, pd.DataFrame, Any]:
    """One persona per segment (report 03); adds ``persona`` to the per-customer table. Returns
    the section, the table and the :class:`~segmentation.personas.Personas`."""
    from segmentation import personas as ps

    values = customers[["p_alive", "clv"]] if "clv" in customers else None
    built = ps.build_personas(customers, store.transactions, products=store.products, feedback=store.feedback,
                              events=store.events, values=values, status=customers["status"],
                              stability=segments.tables.get("stability"), min_group_size=params.min_group_size)
    summary = built.summary.copy()
    customers = customers.copy(deep=False)
    customers["persona"] = customers["segment"].map(summary["name"]).astype("string")
    tables = built.tables()
    return Section(tables=tables, scalars={"visible": [int(s) for s in built.visible()]}, notes=list(built.notes)), customers, built


# ---------------------------------------------------------------------------- offers
def offers_stage(store: Store, params: RunParameters, customers: pd.DataFrame,
                 personas_summary: pd.DataFrame) -> tuple[Section, pd.DataFrame]:
    """Co-purchase rules, recommender evaluation and recommendations, promotions, lists, loyalty
    tiers and key dates (report 06)."""
    from segmentation import offers, recommend, scale

    as_of, n = params.analysis_date, params.min_group_size
    tables: dict[str, pd.DataFrame] = {}
    scalars: dict[str, Any] = {}
    notes: list[str] = []
    lines = store.transactions
    lines = lines.filter(lines.order_date < as_of.to_pydatetime())
    large = len(customers) > params.sample_size
    thresholds = dict(basket="order_id", item="product_id", min_support=params.min_support,
                      min_confidence=params.min_confidence, min_lift=1.0)
    if large:  # the same rules, counted in the engine (only the frequent itemsets come back)
        rules = recommend.association_rules_in_engine(lines.filter(~lines.is_return), **thresholds)
    tx = to_pandas(lines.select("customer_id", "order_id", "order_date", "product_id", "quantity", "is_return"))
    if not large:
        rules = recommend.association_rules(tx[~tx["is_return"]], **thresholds)
    scalars["rule_baskets"] = int(rules.attrs["n_baskets"])
    rules = rules[rules["count"] >= n]
    names = (store.products.dropna(subset=["name"]).set_index("product_id")["name"]
             if store.products is not None and "name" in store.products.columns else None)
    shown = recommend.rule_labels(rules.sort_values(["lift", "support"], ascending=False).head(50), names)
    tables["rules"] = shown.assign(antecedent=shown["antecedent"].map(" + ".join), consequent=shown["consequent"].map(" + ".join))
    member = scale.isin(tx["customer_id"], customers.index)
    segmented = tx if member.all() else tx[member]  # millions of lines: copied only when someone is left out
    del tx
    model = recommend.Recommender(n=params.n_recommendations, random_state=params.random_state)
    tried = segmented
    if large:  # the evaluation on a random sample of customers (all their lines)
        picked = np.random.default_rng(params.random_state).choice(len(customers), params.sample_size, replace=False)
        tried = segmented[scale.isin(segmented["customer_id"], customers.index[np.sort(picked)])]
        scalars["evaluation_sample"] = int(params.sample_size)
        notes.append(f"The recommender was compared with the baselines on a random {params.sample_size:,} of the "
                     f"{len(customers):,} customers (all their purchases); the recommendations cover everyone.")
    evaluation = recommend.evaluation_table(tried, recommender=model, k=params.n_recommendations, segments=customers["segment"])
    tables["recommender_evaluation"] = evaluation
    model.fit(segmented, as_of, segments=customers["segment"], products=store.products)
    del segmented, tried  # the lines are done with before the list of recommendations is built
    recs = model.recommend(customers.index)
    tables["recommendations"] = recs.reset_index(drop=True)
    scalars["exclusions"] = {k: int(v) for k, v in model.exclusions_.items()}
    del model, recs  # the fitted candidates (O(customers x n)) are not needed by the plans and lists
    persona = customers["persona"]
    promotions = offers.promotion_plan(customers, persona, min_group_size=n)
    tables["promotion_plan"] = promotions
    values = customers[["clv"]] if "clv" in customers.columns else None
    plan = offers.action_plan(customers, personas_summary, values=values, consents=store.customers, promotions=promotions,
                              min_group_size=n, horizon_months=params.horizon_months)
    tables["action_plan"] = plan
    notes.extend(plan.attrs.get("notes", []))
    offer_customers, offer_left_out = offers.offer_list(customers, plan, consents=store.customers,
                                                        random_state=params.random_state)
    tables["offer_counts"] = offers.offer_counts(offer_customers)
    customers = customers.copy(deep=False)
    assigned = offer_customers.set_index("customer_id")
    customers["offer"] = assigned["offer"].where(assigned["arm"] == "offer").reindex(customers.index).astype("string")
    customers["offer_arm"] = assigned["arm"].reindex(customers.index).astype("string")
    customers["loyalty_tier"] = offers.loyalty_tiers(customers)["tier"].astype("string")
    tables["loyalty_tiers"] = offers.loyalty_tier_table(customers, min_group_size=n)
    lists = {"offer": (offer_customers, offer_left_out)}
    lists["win-back"] = offers.win_back_list(customers, consents=store.customers)
    customers["win_back"] = scale.isin(customers.index, lists["win-back"][0]["customer_id"])
    if store.customers is not None and {"age_band", "birth_date"} & set(store.customers.columns):
        lists["senior discount"] = offers.senior_discount_list(store.customers, as_of)
        customers["senior_discount"] = scale.isin(customers.index, lists["senior discount"][0]["customer_id"])
    if store.customers is not None and {"birth_date", "signup_date"} & set(store.customers.columns):
        lists["key dates"] = offers.upcoming_key_dates(store.customers, as_of, days=params.key_date_days)
        key_dates = lists["key dates"][0]
        key_dates = key_dates[scale.isin(key_dates["customer_id"], customers.index)]
        customers["key_date"] = scale.isin(customers.index, key_dates["customer_id"])
        week = key_dates["date"].dt.to_period("W").dt.start_time.rename("week")
        tables["key_dates"] = pd.crosstab(week, key_dates["event"])
    else:
        notes.append("No birth or signup dates in this data: key dates cannot be listed.")
    tables["eligibility"] = offers.list_summary(lists)
    return Section(tables=tables, scalars=scalars, notes=notes), customers


# ---------------------------------------------------------------------------- journey
def journey_stage(store: Store, params: RunParameters, customers: pd.DataFrame, model: Any) -> Section:
    """Funnels, paths, attribution, support, satisfaction, themes, cohorts, migration and
    category trends (report 07)."""
    from segmentation import journey, satisfaction

    tables: dict[str, pd.DataFrame] = {}
    scalars: dict[str, Any] = {}
    notes: list[str] = []
    persona = customers["persona"]
    n = params.min_group_size
    if store.events is not None:
        ev = journey.code_events(store.events)  # coded once for every call below
        overall = journey.funnel(ev, min_group_size=n)
        scalars["duplicate_events"] = int(overall.attrs.get("duplicates", 0))
        tables["funnel"] = overall
        tables["funnel_by_channel"] = journey.funnel(ev, by="channel", min_group_size=n)
        tables["funnel_by_persona"] = journey.funnel(ev, by=persona, min_group_size=n)
        tables["paths"] = journey.common_paths(ev, top=5)
        tables["converting_vs_not"] = journey.converting_vs_not(ev)
        tables["attribution"] = journey.attribution(ev)
        tables["support_by_persona"] = journey.post_purchase(ev, customers["frequency"], persona, min_group_size=n)
    else:
        notes.append(NO_JOURNEY_EVENTS)
    if store.feedback is not None:
        fb = store.feedback
        tables["satisfaction_by_persona"] = satisfaction.satisfaction_by_group(fb, persona, min_group_size=n)
        scalars["response_bias"] = satisfaction.response_bias(fb, persona)
        lapse = dict(lapsing_after=params.lapsing_after, lapsed_after=params.lapsed_after, min_group_size=n)
        tables["satisfaction_and_behaviour"] = satisfaction.satisfaction_and_behaviour(fb, customers, **lapse)
        tables["satisfaction_before_lapse"] = satisfaction.satisfaction_before_lapse(fb, customers, **lapse)
        comments = fb["comment"] if "comment" in fb.columns else pd.Series(dtype="string")
        if comments.notna().sum() >= 3 * params.n_themes:
            themes, assignment = satisfaction.feedback_themes(comments, n_themes=params.n_themes, random_state=params.random_state)
            tables["themes"] = themes
            tables["themes_by_persona"] = satisfaction.themes_by_group(fb, assignment, persona, min_group_size=n).rename(
                columns={"customers": "customers_commenting"})
        else:
            notes.append("Too few comments to find themes.")
    else:
        notes.append(NO_SURVEY_FEEDBACK)
    retention, revenue = journey.cohort_retention(store.transactions, params.analysis_date, min_group_size=n)
    tables["cohort_retention"] = retention
    tables["cohort_revenue"] = revenue
    notes.extend(retention.attrs.get("notes", []))
    scalars["second_month_return"] = journey.second_month_return(retention)
    tables["category_trends"] = journey.category_trends(store.transactions, params.analysis_date, persona, min_group_size=n)
    migration, why = _migration(store, params, customers, model)
    if migration is None:
        notes.append(why)
    else:
        tables.update(migration_counts=migration.counts, migration_summary=migration.summary,
                      migration_flows=migration.flows, migration_new_segments=migration.new_segments)
        scalars["migration"] = {**migration.scalars(), "compare_as_of": params.comparison_date}
        notes.extend(migration.notes)
    for table in tables.values():  # what each table could not show, in plain words
        notes.extend(n for n in table.attrs.get("notes", []) if n not in notes)
    return Section(tables=tables, scalars=scalars, notes=notes)


def _migration(store: Store, params: RunParameters, customers: pd.DataFrame, model: Any) -> tuple[Any, str]:
    """Today's segments applied to the customers as they were at the comparison date (the same
    segment definitions, so the same names), against today: who stayed, who moved, who is new.
    Returns ``(Migration, "")`` or ``(None, reason)``."""
    from segmentation import journey, pipeline

    when = params.comparison_date
    first = pd.Timestamp(customers["first_purchase"].min()) if len(customers) else params.analysis_date
    if when <= first + pd.Timedelta(days=90):
        return None, (f"How customers moved between segments is not shown: the data start on {first:%d %b %Y}, too close to "
                      f"the comparison date {when:%d %b %Y} (set compare_as_of to a later date).")
    features, _, model_input, _ = pipeline.customer_inputs(store, when, use=params.feature_set)
    source = model_input.join(features.drop(columns=model_input.columns, errors="ignore"))
    X = source.reindex(columns=list(model.feature_names_in_), fill_value=0.0)
    before = pd.Series(model.predict(X), index=X.index).astype("int64")
    names = customers.groupby("segment")["persona"].first()
    migration = journey.migration_matrix(before, customers["segment"], names=names, revenue=customers["monetary"],
                                         min_group_size=params.min_group_size)
    return migration, ""


# ---------------------------------------------------------------------------- profile
def profile_stage(store: Store, params: RunParameters, customers: pd.DataFrame, model: Any, built: Any,
                  features: list[str], recommendations: pd.DataFrame | None) -> Section:
    """One customer: ``customer_id`` or the representative of the largest persona (report 04),
    and one representative customer with their story per persona (for the persona cards)."""
    from segmentation import profile as pr

    values = customers[["p_alive", "clv"]] if "clv" in customers else None
    currency = params.currency or getattr(store, "currency", None)
    cards = pr.representative_stories(customers, store.transactions, model, features, built, as_of=params.analysis_date,
                                      customers=store.customers, values=values, recommendations=recommendations,
                                      products=store.products, feedback=store.feedback, currency=currency)
    who = params.customer_id or pr.example_customer(customers, model, features, customers=store.customers)
    if who not in customers.index:
        raise KeyError(f"customer {who!r} is not among the analysed customers (unknown id, no purchase before "
                       f"{params.as_of}, or no profiling consent)")
    prof = pr.customer_profile(who, customers, store.transactions, built, model, features, as_of=params.analysis_date,
                               customers=store.customers, feedback=store.feedback, events=store.events,
                               products=store.products, key_date_days=params.key_date_days,
                               values=values, recommendations=recommendations, status=customers["status"],
                               labels=definitions.COLUMN_LABELS, currency=currency)
    products = prof.products.copy()
    if "name" not in products.columns:  # data without product names: products are shown by id
        products["name"] = products.index.astype(str)
    products["name"] = products["name"].fillna(pd.Series(products.index.astype(str), index=products.index))
    tables = {"facts": prof.facts, "differences": prof.differences, "products": products,
              "timeline": prof.timeline, "categories": prof.categories, "representatives": cards}
    if prof.feedback is not None:
        from segmentation.privacy import scrub_pii

        fb = prof.feedback.copy()
        if "comment" in fb.columns:  # a customer's own words may hold contact details
            fb["comment"] = scrub_pii(fb["comment"].astype("string"))
        tables["feedback"] = fb
    if len(prof.key_dates):
        tables["key_dates"] = prof.key_dates
    scalars = {"customer_id": prof.customer_id, "persona": prof.persona, "segment": int(prof.segment),
               "strength": float(prof.strength), "membership": prof.membership, "story": list(prof.story.sentences),
               "story_numbers": prof.story.numbers, "chosen": "given" if params.customer_id else "representative"}
    return Section(tables=tables, scalars=scalars, notes=list(prof.notes))


# ============================================================================ the chain
STAGES = ("data", "purchases", "segments", "value", "personas", "offers", "journey", "profile")


def run_analysis(store: Store, params: RunParameters, *, previous_model: Any = None,
                 progress: Callable[[str], None] | None = None) -> Results:
    """Run every stage once and return the results of the run.

    Parameters
    ----------
    store : Store
        From :func:`segmentation.data.load_store` (loaded with the same ``params``).
    params : RunParameters
        The run's parameters.
    previous_model : Segmenter, optional
        The previous run's model: this run's segment ids are aligned to it (stable identity
        across scheduled runs).
    progress : callable, optional
        Receives one line per finished stage (name and seconds).

    Returns
    -------
    Results
        Deterministic for the same store and parameters.
    """
    say = progress or (lambda _: None)
    timings: dict[str, float] = {}
    sections: dict[str, Section] = {}

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        timings[name] = round(time.perf_counter() - t0, 2)
        say(f"{name}: {timings[name]:.1f} s")
        return out

    sections["data"] = timed("data", lambda: data_stage(store, params))
    sections["purchases"] = timed("purchases", lambda: purchases_stage(store, params))
    sections["segments"], customers, model = timed("segments", lambda: segments_stage(store, params, previous_model=previous_model))
    sections["value"], customers = timed("value", lambda: value_stage(store, params, customers))
    sections["personas"], customers, built = timed("personas", lambda: personas_stage(store, params, customers, sections["segments"]))
    sections["offers"], customers = timed("offers", lambda: offers_stage(store, params, customers, sections["personas"]["summary"]))
    sections["journey"] = timed("journey", lambda: journey_stage(store, params, customers, model))
    features = sections["segments"]["features_used"]["feature"].tolist()
    sections["profile"] = timed("profile", lambda: profile_stage(store, params, customers, model, built, features,
                                                                 sections["offers"].tables.get("recommendations")))
    return Results(params=params, customers=customers, sections=sections, model=model, timings=timings)
