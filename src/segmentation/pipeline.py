"""The one place where "transactions -> customer features -> segments" is wired.

Notebooks 03-07 call :func:`segment_customers` to get exactly the segments notebook 02 shows
(same data, same ``as_of``, same seed -> same numbers).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from segmentation import privacy, scale
from segmentation.data import Store
from segmentation.features import behaviour_columns, customer_features, demographics, encode_demographics
from segmentation.rfm import rfm_scores, rfm_segments
from segmentation.segments import Segmenter

__all__ = ["CustomerSegments", "segment_customers", "USES"]

USES = ("behaviour", "demographics", "both")


@dataclass
class CustomerSegments:
    """Result of :func:`segment_customers`.

    Attributes
    ----------
    table : DataFrame
        Index ``customer_id`` (customers who consented to profiling and bought before
        ``as_of``): the behaviour features, the demographics (when known), ``r_score, f_score,
        m_score, fm_score, rfm_cell, rfm_segment`` and ``segment``.
    model : Segmenter
        The fitted segmenter (its ``selection_`` holds the k table).
    features : list of str
        The columns the model was fitted on.
    excluded_no_consent : int
        Customers left out for lack of profiling consent (counted in aggregates only).
    mapping : DataFrame or None
        How this run's segments were matched to the previous run's (``model_dir``).
    sample_check : DataFrame or None
        When the model was fitted on a sample (more customers than ``sample_size``): the
        :func:`segmentation.scale.reproduction_check` table (``attrs["ari"]``).
    """

    table: pd.DataFrame
    model: Segmenter
    features: list[str]
    excluded_no_consent: int
    mapping: pd.DataFrame | None = None
    sample_check: pd.DataFrame | None = None


def segment_customers(
    store: Store,
    as_of: str | pd.Timestamp,
    *,
    random_state: int = 0,
    n_clusters: int | str = "auto",
    method: str = "kmeans",
    k_range: tuple[int, int] = (2, 10),
    use: str = "behaviour",
    model_dir: str | Path | None = None,
    sample_size: int = 200_000,
) -> CustomerSegments:
    """Customer features, RFM segments and behavioural segments for every consenting customer.

    Parameters
    ----------
    store : Store
        From :func:`segmentation.data.load_store`.
    as_of : str or Timestamp
        Analysis date.
    random_state, n_clusters, method, k_range
        Passed to :class:`~segmentation.segments.Segmenter`.
    use : {"behaviour", "demographics", "both"}
        What to segment on; demographics need a customers table.
    model_dir : path, optional
        Where the previous run's model lives (``segmenter.joblib``): when present, this run's
        segment ids are aligned to it (stable identity across scheduled runs, see
        :meth:`Segmenter.align_to`); the new model, with its ``mapping_``, replaces it there.
        A feature the previous model used but this run lacks (e.g. a category no longer sold)
        counts as 0 for the alignment; such columns are listed in
        ``mapping.attrs["missing_features"]``.
    sample_size : int
        With more consenting customers than this, the model is fitted on a simple random sample
        of about this many (seed ``random_state``), every customer is assigned in batches, and a
        second sample checks that the segments reproduce (``sample_check``); see
        :mod:`segmentation.scale`.

    Returns
    -------
    CustomerSegments
        ``table`` indexed by ``customer_id`` with the features, demographics, RFM scores,
        ``rfm_segment`` and ``segment`` (int); ``model``, ``features``, ``excluded_no_consent``,
        ``mapping`` (see :class:`CustomerSegments`).

    Notes
    -----
    Features are computed in the engine (Ibis); the clustering is O(n k d) per k plus one
    O(s^2) silhouette sample per k (see :mod:`segmentation.segments`). Deterministic for the
    same store, ``as_of`` and ``random_state``.

    Examples
    --------
    >>> result = segment_customers(load_store("synthetic"), "2026-01-01", random_state=42)  # doctest: +SKIP
    >>> result.table.groupby("segment").size()  # doctest: +SKIP
    """
    if use not in USES:
        raise ValueError(f"use must be one of {USES}, got {use!r}")
    features = customer_features(store.transactions, as_of)
    allowed, excluded = privacy.consented(features.index, store.customers, "profiling")
    features = features.loc[allowed]
    demo = demographics(store.customers, as_of).reindex(features.index)
    parts = [features[behaviour_columns(features)]] if use in ("behaviour", "both") else []
    if use in ("demographics", "both"):
        if demo.shape[1] == 0:
            raise ValueError(f"use={use!r} needs a customers table with age, region or household; "
                             "load one with the store or use='behaviour'")
        parts.append(encode_demographics(demo))
    model_input = pd.concat(parts, axis=1)
    columns = list(model_input.columns)
    model = Segmenter(n_clusters, method=method, k_range=k_range, features=columns, random_state=random_state)
    check = None
    if len(model_input) > sample_size:
        model, fitted_on = scale.fit_on_sample(model, model_input, n=sample_size, random_state=random_state)
        check = scale.reproduction_check(model, fitted_on, model_input, random_state=random_state + 1)
    else:
        model, fitted_on = model.fit(model_input), model_input
    mapping = None
    if model_dir is not None:
        path = Path(model_dir) / "segmenter.joblib"
        if path.is_file():
            previous = Segmenter.load(path)
            missing = [c for c in previous.feature_names_in_ if c not in fitted_on.columns]
            mapping = model.align_to(previous, fitted_on.reindex(columns=previous.feature_names_in_, fill_value=0.0))
            mapping.attrs["missing_features"] = missing
        model.save(path)
    scores = rfm_scores(features)
    table = features.join(demo).join(scores)
    table["rfm_segment"] = rfm_segments(scores)
    table["segment"] = model.labels_ if fitted_on is model_input else scale.assign_segments(model, model_input)["segment"]
    return CustomerSegments(table=table, model=model, features=columns, excluded_no_consent=excluded, mapping=mapping,
                            sample_check=check)
