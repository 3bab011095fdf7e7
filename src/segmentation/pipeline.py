"""The one place where "transactions -> customer features -> segments" is wired.

Every report gets the segments from :func:`segment_customers` (same data, same ``as_of``, same
seed -> same numbers).

Which segmentation, and why
---------------------------
1. **Behavioural clusters** (path ``"clusters"``): :class:`~segmentation.segments.Segmenter`
   chooses k by stability across seeds and subsamples and checks the result
   (``Segmenter.structure_``: stability, silhouette, agreement of the choice; thresholds in
   :mod:`segmentation.segments`).
2. **Value x status tiers** (path ``"tiers"``): when that check finds weak structure and k was
   chosen automatically, the clusters would be seed-dependent cuts through one cloud of
   customers, and naming them would over-interpret noise. The fallback is
   :class:`~segmentation.segments.TierSegmenter`: the top 20% of customers by net spend versus
   the rest, crossed with active / lapsing / lapsed (:mod:`segmentation.definitions`). It is a
   stated rule, explainable customer by customer, and the same for every seed (pairwise ARI 1
   across seeds by construction). Simple value/recency tiers were preferred over clustering fewer
   features (recency, frequency, spend), which on such data still cuts a continuum at places that
   move with the seed and the chosen k.

With a given ``n_clusters`` (or ``use="demographics"``) there is no fallback; the diagnostics
still say when the structure is weak. ``CustomerSegments.diagnostics`` states the path and why,
in sentences and numbers, for the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from segmentation import definitions, privacy, scale
from segmentation.data import Store
from segmentation.features import behaviour_columns, customer_features, demographics, encode_demographics
from segmentation.rfm import rfm_scores, rfm_segments
from segmentation.segments import (
    MIN_AGREEMENT,
    MIN_SILHOUETTE,
    MIN_STABILITY,
    STABLE_JACCARD,
    TIER_FEATURES,
    Segmenter,
    TierSegmenter,
)

__all__ = ["CustomerSegments", "segment_customers", "customer_inputs", "USES", "PATHS"]

USES = ("behaviour", "demographics", "both")
PATHS = ("clusters", "tiers")


@dataclass
class CustomerSegments:
    """Result of :func:`segment_customers`.

    Attributes
    ----------
    table : DataFrame
        Index ``customer_id`` (customers who consented to profiling and bought before
        ``as_of``): the behaviour features, the demographics (when known), ``r_score, f_score,
        m_score, fm_score, rfm_cell, rfm_segment`` and ``segment``.
    model : Segmenter or TierSegmenter
        The model behind ``segment``.
    features : list of str
        The columns ``model`` uses (``table[features]`` is what to pass to ``explain``,
        ``surrogate_rules``, ``model.transform``).
    excluded_no_consent : int
        Customers left out for lack of profiling consent (counted in aggregates only).
    mapping : DataFrame or None
        How this run's segments were matched to ``previous_model``'s ids.
    sample_check : DataFrame or None
        When the clusters were fitted on a sample (more customers than ``sample_size``): the
        :func:`segmentation.scale.reproduction_check` table (``attrs["ari"]``).
    path : {"clusters", "tiers"}
        Which segmentation ``segment`` is (module docstring).
    diagnostics : dict
        JSON-able: ``path``, ``reason`` (one sentence), ``weak_structure`` (bool), ``checks``
        (list of ``check, value, threshold, passed, sentence`` of the clustering),
        ``k`` (segments in ``segment``), ``k_clusters`` (the clustering's k), ``k_reason``,
        ``stability_ari`` (mean ARI of refits with the final segments), ``silhouette``,
        ``agreement``, ``unstable_segments`` (ids with mean Jaccard < 0.75),
        ``segment_names`` (tiers: ``{"0": "active, other 80%", ...}``; clusters: empty),
        ``tier_rules`` (tiers: one sentence per segment), ``thresholds``, ``rfm`` (the RFM
        score notes) and ``notes`` (other sentences for the report).
    selection : DataFrame or None
        The clustering's k table (also when the tiers replaced it: it shows why).
    stability : DataFrame
        Stability of the final segments (:func:`segmentation.segments.stability`): index
        ``segment``; ``size, jaccard_mean, jaccard_min, stable``; attrs ``ari_mean``, ``note``.
    """

    table: pd.DataFrame
    model: Segmenter | TierSegmenter
    features: list[str]
    excluded_no_consent: int
    mapping: pd.DataFrame | None = None
    sample_check: pd.DataFrame | None = None
    path: str = "clusters"
    diagnostics: dict[str, Any] = field(default_factory=dict)
    selection: pd.DataFrame | None = None
    stability: pd.DataFrame | None = None


def customer_inputs(store: Store, as_of: str | pd.Timestamp, *, use: str = "behaviour"
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, int]:
    """What segmentation works on, for the customers who consented to profiling.

    Returns
    -------
    (features, demographics, model_input, excluded_no_consent)
        ``features`` (:func:`segmentation.features.customer_features`), ``demographics``
        (aligned to them), ``model_input`` (the behaviour columns and/or the encoded
        demographics, per ``use``) and the number of customers left out for lack of consent.
    """
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    features = customer_features(store.transactions, as_of)
    allowed, excluded = privacy.consented(features.index, store.customers, "profiling")
    if excluded:  # (a copy of the customer-sized table, only when someone is left out)
        features = features.loc[allowed]
    demo = demographics(store.customers, as_of).reindex(features.index)
    parts = [features[behaviour_columns(features)]] if use in ("behaviour", "both") else []
    if use in ("demographics", "both"):
        if demo.shape[1] == 0:
            raise ValueError(f"use={use!r} needs a customers table with age, region or household; "
                             "load one with the store or use='behaviour'")
        parts.append(encode_demographics(demo))
    return features, demo, parts[0] if len(parts) == 1 else pd.concat(parts, axis=1), excluded


def segment_customers(
    store: Store,
    as_of: str | pd.Timestamp,
    *,
    random_state: int = 0,
    n_clusters: int | str = "auto",
    method: str = "kmeans",
    k_range: tuple[int, int] = (2, 10),
    use: str = "behaviour",
    n_boot: int = 8,
    fallback: bool = True,
    lapsing_after: float = definitions.LAPSING_AFTER,
    lapsed_after: float = definitions.LAPSED_AFTER,
    previous_model: Segmenter | TierSegmenter | None = None,
    sample_size: int = 200_000,
) -> CustomerSegments:
    """Customer features, RFM segments and segments for every consenting customer, with the
    diagnostics that say which segmentation was used and why.

    Parameters
    ----------
    store : Store
        From :func:`segmentation.data.load_store`.
    as_of : str or Timestamp
        Analysis date.
    random_state, n_clusters, method, k_range, n_boot
        Passed to :class:`~segmentation.segments.Segmenter` (``n_boot``: refits per k, which
        also give the reported stability).
    use : {"behaviour", "demographics", "both"}
        What to segment on; demographics need a customers table.
    fallback : bool
        Use value x status tiers when the automatic clustering finds weak structure (module
        docstring). Never with a given ``n_clusters`` or ``use="demographics"``.
    lapsing_after, lapsed_after : float
        The status thresholds (:func:`segmentation.definitions.customer_status`) of the tiers and
        of the one-time-buyer RFM labels.
    previous_model : Segmenter or TierSegmenter, optional
        The previous run's model: this run's segment ids are aligned to it (stable identity
        across scheduled runs, :meth:`Segmenter.align_to`). A feature the previous model used but
        this run lacks counts as 0 for the alignment (``mapping.attrs["missing_features"]``).
    sample_size : int
        With more consenting customers than this, the clusters are fitted on a simple random
        sample of about this many (seed ``random_state``), every customer is assigned in
        batches, and a second sample checks that the segments reproduce (``sample_check``); see
        :mod:`segmentation.scale`. Tiers are always computed on every customer (O(n)).

    Returns
    -------
    CustomerSegments
        See :class:`CustomerSegments`.

    Notes
    -----
    Features are computed in the engine (Ibis); the clustering costs ``n_boot`` refits per k
    (see :mod:`segmentation.segments`). Deterministic for the same store, ``as_of`` and
    ``random_state``.

    Examples
    --------
    >>> result = segment_customers(load_store("synthetic"), "2026-01-01", random_state=42)  # doctest: +SKIP
    >>> result.path, result.diagnostics["reason"]  # doctest: +SKIP
    """
    features, demo, model_input, excluded = customer_inputs(store, as_of, use=use)
    columns = list(model_input.columns)
    clusters = Segmenter(n_clusters, method=method, k_range=k_range, features=columns, random_state=random_state,
                         n_boot=n_boot)
    sampled = len(model_input) > sample_size
    if sampled:
        clusters, fitted_on = scale.fit_on_sample(clusters, model_input, n=sample_size, random_state=random_state)
    else:
        clusters, fitted_on = clusters.fit(model_input), model_input
    verdict = clusters.structure_ or {"weak": False, "checks": [], "summary": "not checked (n_boot=0)"}
    use_tiers = fallback and n_clusters == "auto" and use != "demographics" and verdict["weak"]
    model: Segmenter | TierSegmenter = clusters
    if use_tiers:
        model = TierSegmenter(lapsing_after=lapsing_after, lapsed_after=lapsed_after, n_boot=max(n_boot, 1),
                              random_state=random_state).fit(features)
        fitted_on, columns, sampled = features[TIER_FEATURES], list(TIER_FEATURES), False
    mapping = None
    if previous_model is not None:
        missing = [c for c in previous_model.feature_names_in_ if c not in features.columns and c not in fitted_on.columns]
        source = fitted_on.join(features.drop(columns=fitted_on.columns, errors="ignore"))
        mapping = model.align_to(previous_model, source.reindex(columns=previous_model.feature_names_in_, fill_value=0.0))
        mapping.attrs["missing_features"] = missing
    check = scale.reproduction_check(clusters, fitted_on, model_input, random_state=random_state + 1) if sampled else None
    scores = rfm_scores(features)
    table = features.join(demo).join(scores)
    table["rfm_segment"] = rfm_segments(scores, features=features, lapsing_after=lapsing_after, lapsed_after=lapsed_after)
    table["segment"] = (model.labels_ if not sampled else
                        scale.assign_segments(model, model_input)["segment"].reindex(table.index).to_numpy())
    table["segment"] = table["segment"].astype("int64")
    diagnostics = _diagnostics(clusters, model, verdict, use_tiers, n_clusters=n_clusters, use=use, fallback=fallback,
                               scores=scores)
    return CustomerSegments(table=table, model=model, features=columns, excluded_no_consent=excluded, mapping=mapping,
                            sample_check=check, path="tiers" if use_tiers else "clusters", diagnostics=diagnostics,
                            selection=clusters.selection_, stability=model.stability_)


def _diagnostics(clusters: Segmenter, model: Segmenter | TierSegmenter, verdict: dict[str, Any], use_tiers: bool, *,
                 n_clusters: int | str, use: str, fallback: bool, scores: pd.DataFrame) -> dict[str, Any]:
    """The plain-language record of which segmentation was used and why (JSON-able)."""
    selection = clusters.selection_
    row = selection.loc[selection["chosen"]].iloc[0] if selection is not None else None
    failed = [c["sentence"] for c in verdict["checks"] if not c["passed"]]
    notes: list[str] = []
    k_clusters = int(clusters.n_clusters_)
    if use_tiers:
        reason = (f"Segments are value x status tiers, not behavioural clusters: the automatic clustering found weak "
                  f"structure at k = {k_clusters}. " + " ".join(failed) + " The tiers are a stated rule (top "
                  f"{model.top_share:.0%} of customers by {'net spend' if model.value_column_ == 'monetary' else 'orders'} "
                  "versus the rest, crossed with active / lapsing / lapsed) and the same for every seed.")
        notes.extend(model.notes_)
    elif verdict["weak"]:
        why = ("k was set by the caller" if n_clusters != "auto" else "demographic segments have no fallback"
               if use == "demographics" else "the fallback is switched off")
        reason = (f"Behavioural clusters (k = {k_clusters}) are kept although the structure is weak ({why}): "
                  + " ".join(failed) + " Read them as tendencies, not as distinct groups.")
    else:
        passed = " ".join(c["sentence"] for c in verdict["checks"])
        reason = (f"Behavioural clusters (k = {k_clusters}) are used: {selection.attrs['reason']}. {passed}"
                  if selection is not None else f"Behavioural clusters (k = {k_clusters}) are used (not checked: n_boot=0).")
    stab = model.stability_
    names = model.segment_names_ if use_tiers else pd.Series(dtype=object)
    present = set(int(s) for s in np.unique(model.labels_) if s >= 0)
    return {
        "path": "tiers" if use_tiers else "clusters",
        "reason": reason,
        "weak_structure": bool(verdict["weak"]),
        "summary": verdict["summary"],
        "checks": [{**c, "value": float(c["value"]), "threshold": float(c["threshold"])} for c in verdict["checks"]],
        "k": int(model.n_clusters_),
        "k_clusters": k_clusters,
        "k_reason": selection.attrs["reason"] if selection is not None else f"k = {k_clusters}",
        "stability_ari": float(stab.attrs["ari_mean"]) if stab is not None else float("nan"),
        "silhouette": float(row["silhouette"]) if row is not None else float("nan"),
        "agreement": float(selection.attrs.get("agreement", np.nan)) if selection is not None else float("nan"),
        "unstable_segments": [int(s) for s in stab.index[~stab["stable"]]] if stab is not None else [],
        "segment_names": {str(int(i)): str(n) for i, n in names.items() if int(i) in present},
        "tier_rules": {str(int(r.segment)): f"{r.name}: {r.rule}" for r in model.rules_.itertuples()} if use_tiers else {},
        "thresholds": {"min_stability": MIN_STABILITY, "min_silhouette": MIN_SILHOUETTE, "min_agreement": MIN_AGREEMENT,
                       "stable_jaccard": STABLE_JACCARD},
        "fallback": bool(fallback),
        "rfm": {"repeat_share": float(scores.attrs["repeat_share"]), "f_informative": bool(scores.attrs["f_informative"]),
                "note": scores.attrs["note"]},
        "notes": notes,
    }
