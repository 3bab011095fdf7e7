"""Behavioural segments chosen by stability, checked honestly, with a reproducible fallback.

:class:`Segmenter` is a scikit-learn estimator: impute -> skew handling (signed log1p or a
quantile transform) -> standard scaling -> optional PCA -> clusterer (KMeans by default;
GaussianMixture, Ward and HDBSCAN offered). :class:`TierSegmenter` is the fallback: fixed
value x status tiers, the same for every seed.

Choosing k by stability
-----------------------
With ``n_clusters="auto"`` every k in ``k_range`` is fitted ``n_boot`` times, each time on another
random ``sample_frac`` of the customers (at most ``stability_sample`` rows) with another seed;
each refit then labels the same customers (all of them, or a fixed random 50,000). For each k:

* ``stability``: mean adjusted Rand index (ARI) over all pairs of refits -- would another seed and
  another sample give the same segments? ``stability_low`` is the worst pair.
* ``silhouette``: mean over the refits, on one cached sample of ``silhouette_sample`` customers.
* ``largest_share``, ``smallest_share``: segment sizes (mean over the refits).

The rule: a k is *eligible* when its largest segment holds at most ``max_largest_share`` and its
smallest at least ``min_segment_share`` of the customers (the guard against "one giant segment"
solutions that score a high silhouette, and against segments too small to act on), and
*reproducible* when ``stability >= min_stability`` (0.9). Among the eligible, reproducible k the
highest silhouette wins; k within 0.01 silhouette of it count as tied and the more stable wins.
All k above 0.9 are treated as equally stable because stability alone favours small k (on the
synthetic store k = 2, 6 and 7 all reach ARI 0.99; von Luxburg 2010): the gate is stability,
silhouette only ranks what passed it. When no k is reproducible, the most stable eligible k is
taken and the verdict below says the structure is weak. If no k passes the size guards, the rule
is applied to every k and the reason says so. ``selection_`` holds the table, its
``attrs["reason"]`` the sentence.

The verdict (``structure_``)
----------------------------
The structure is *weak* when any of these fails (thresholds are parameters):

====================  ========================================================================
check                 passes when
====================  ========================================================================
stability             mean ARI between refits at the chosen k >= ``min_stability`` (0.9)
silhouette            mean silhouette at the chosen k >= ``min_silhouette`` (0.25; Kaufman &
                      Rousseeuw 1990: below 0.25 "no substantial structure")
k agreement           in >= ``min_agreement`` (80%) of 200 bootstrap replicates of the choice
                      (refits drawn with replacement, the rule applied again) the chosen
                      segmentation -- or one that agrees with it at ARI >= 0.9 -- is chosen
                      again (automatic k only): "is k itself reproducible?"
====================  ========================================================================

:func:`segmentation.pipeline.segment_customers` then falls back to :class:`TierSegmenter`.

Stability per segment
---------------------
The refits at the final k also give ``stability_``: per segment the Jaccard similarity with its
best-matching refit segment, averaged over refits (Hennig 2007: >= 0.75 stable, < 0.5 dissolved),
and the ARI of each refit with the final segmentation. :func:`stability` recomputes exactly this
table (same refits for the same ``n_boot``, ``sample_frac`` and ``random_state``), so the k table
and the reported stability come from one set of refits.

Cost
----
Preprocessing O(n d). Selection: ``n_boot`` x |k_range| clusterer fits on at most
``stability_sample`` rows, each labelling at most 50,000 customers (O(m k d)); silhouettes from one
cached s x s distance matrix, s = ``silhouette_sample`` (O(s^2 d) once, O(s^2 k) per refit);
pairwise ARIs O(m) each. Then one fit on all rows. Measured with the defaults (k = 2..10, 8 refits)
on a shared 2-core machine under load (load average 7-12): synthetic store 2,760 customers x 36
features 9 s; Online Retail II 4,312 x 29: 22-37 s; CDNOW 23,502 customers: 17 s (load 7) to
100 s (load 12). Clusterer threads are limited to ``n_threads`` (default 1: the refits are small,
and oversubscribed OpenMP threads made KMeans 4-17 times slower on the shared machine).

Assignment of rows the clusterer did not see
--------------------------------------------
KMeans and GaussianMixture assign new customers with their own ``predict``. Ward clustering is
O(s^2) in memory, so it is fitted on a random sample of at most ``fit_sample`` rows and the other
rows (and new customers) go to the nearest Ward centroid. HDBSCAN is fitted on such a sample too;
its noise keeps the label ``-1`` and other rows take the label of their nearest sampled customer.

Segment ids are ordered by size (0 = largest) after a fit, and can be aligned to a previous run's
ids with :meth:`Segmenter.align_to` so that a persona keeps its number across runs.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import sklearn
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator, clone
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import pairwise_distances
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, QuantileTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

import segmentation
from segmentation import definitions

__all__ = [
    "Segmenter",
    "TierSegmenter",
    "stability",
    "match_segments",
    "explain",
    "top_traits",
    "surrogate_rules",
    "segment_profile",
    "plot_k_selection",
    "plot_segment_profiles",
    "plot_segment_map",
    "plot_segments_2d",
    "METHODS",
    "MIN_STABILITY",
    "MIN_SILHOUETTE",
    "MIN_AGREEMENT",
    "STABLE_JACCARD",
    "TIER_FEATURES",
]

METHODS = ("kmeans", "gmm", "ward", "hdbscan")
#: A k is reproducible when refits agree at a mean adjusted Rand index of at least this.
MIN_STABILITY = 0.9
#: Below this mean silhouette there is no substantial cluster structure (Kaufman & Rousseeuw 1990).
MIN_SILHOUETTE = 0.25
#: Share of bootstrap replicates of the selection that must choose the same segmentation.
MIN_AGREEMENT = 0.8
#: A segment is stable when its mean Jaccard similarity with its refit match is at least this (Hennig 2007).
STABLE_JACCARD = 0.75
#: The inputs of :class:`TierSegmenter` (customer feature columns).
TIER_FEATURES = ["recency_days", "frequency", "monetary", "ipi_mean_days"]

_SILHOUETTE_TIE = 0.01
_EVAL_ROWS = 50_000
_AGREEMENT_DRAWS = 200


def _signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _threads(n: int | None):
    return threadpool_limits(limits=n) if n is not None else contextlib.nullcontext()


# ------------------------------------------------------------------------------ small measures
def _contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Contingency table of two labelings (labels >= -1). O(n)."""
    a = np.asarray(a, dtype=np.int64) + 1
    b = np.asarray(b, dtype=np.int64) + 1
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    return np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb)


def _ari(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) from the contingency table; O(n)."""
    table = _contingency(a, b).astype("float64")

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1) / 2).sum())

    n = table.sum()
    index, rows, cols = pairs(table.ravel()), pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else float((index - expected) / (maximum - expected))


def _silhouette(D: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a precomputed distance matrix (as scikit-learn: 0 for singletons).
    O(s^2 k) instead of recomputing distances for every labelling."""
    codes = np.unique(labels, return_inverse=True)[1]
    k = int(codes.max()) + 1 if len(codes) else 0
    if k < 2:
        return float("nan")
    onehot = np.zeros((len(codes), k))
    onehot[np.arange(len(codes)), codes] = 1.0
    counts = onehot.sum(axis=0)
    sums = D @ onehot
    own_count = counts[codes]
    a = sums[np.arange(len(codes)), codes] / np.maximum(own_count - 1, 1)
    other = sums / counts
    other[np.arange(len(codes)), codes] = np.inf
    b = other.min(axis=1)
    s = (b - a) / np.maximum(np.maximum(a, b), 1e-300)
    s[own_count == 1] = 0.0
    return float(s.mean())


@dataclass
class _Plan:
    """One set of refits: which customers are labelled, which are in the silhouette sample,
    the subsample and seed of every refit. Derived from ``random_state`` only."""

    evaluate: np.ndarray
    silhouette: np.ndarray
    subsamples: list[np.ndarray]
    seeds: np.ndarray


def _plan(n: int, n_boot: int, sample_frac: float, stability_sample: int, silhouette_sample: int,
          random_state: int) -> _Plan:
    if not 0 < sample_frac <= 1:
        raise ValueError(f"sample_frac must be in (0, 1], got {sample_frac}")
    rng = np.random.default_rng(random_state)
    evaluate = np.sort(rng.choice(n, size=_EVAL_ROWS, replace=False)) if n > _EVAL_ROWS else np.arange(n)
    size = _refit_size(n, sample_frac, stability_sample)
    subsamples = [rng.choice(n, size=size, replace=False) for _ in range(n_boot)]
    seeds = rng.integers(0, 2**31 - 1, size=n_boot)
    sil = rng.choice(len(evaluate), size=min(len(evaluate), silhouette_sample), replace=False)  # drawn last
    return _Plan(evaluate, sil, subsamples, seeds)


def _refit_size(n: int, sample_frac: float, stability_sample: int) -> int:
    return max(2, min(int(sample_frac * n), stability_sample))


def _stability_table(final: np.ndarray, refits: np.ndarray, ids: np.ndarray, sizes: np.ndarray) -> pd.DataFrame:
    """Per segment (``ids``, noise -1 left out): mean and lowest Jaccard with the best-matching
    segment of each refit; attrs: ARI of each refit with ``final`` (labels on the same rows)."""
    jac = np.zeros((len(refits), len(ids)))
    aris = np.zeros(len(refits))
    pos = pd.Index(ids).get_indexer(final)
    pos = np.where(pos < 0, len(ids), pos)  # noise in its own last row
    for b, other in enumerate(refits):  # n_boot refits, each O(m)
        aris[b] = _ari(final, other)
        codes = np.unique(other, return_inverse=True)[1]
        width = int(codes.max()) + 1
        table = np.bincount(pos * width + codes, minlength=(len(ids) + 1) * width).reshape(len(ids) + 1, width)
        cm = table[: len(ids)].astype("float64")
        union = cm.sum(axis=1)[:, None] + table.sum(axis=0)[None, :] - cm
        with np.errstate(divide="ignore", invalid="ignore"):
            jac[b] = np.where(union > 0, cm / union, 0.0).max(axis=1)
    out = pd.DataFrame({"size": sizes, "jaccard_mean": jac.mean(axis=0), "jaccard_min": jac.min(axis=0)},
                       index=pd.Index(ids, name="segment"))
    out["stable"] = out["jaccard_mean"] >= STABLE_JACCARD
    out.attrs.update(ari=aris.tolist(), ari_mean=float(aris.mean()),
                     ari_ci=(float(np.percentile(aris, 2.5)), float(np.percentile(aris, 97.5))), n_boot=len(refits))
    return out


def _choose(k: np.ndarray, stab: np.ndarray, sil: np.ndarray, eligible: np.ndarray, min_stability: float) -> int:
    """Index of the chosen k (see the module docstring)."""
    pool = eligible if eligible.any() else np.ones_like(eligible)
    candidates = pool & (stab >= min_stability)
    if candidates.any():
        s = np.where(candidates, np.nan_to_num(sil, nan=-np.inf), -np.inf)
        near = candidates & (s >= s.max() - _SILHOUETTE_TIE)
        order = np.lexsort((k, -stab))  # most stable first, then the smaller k
        return int(order[near[order]][0])
    order = np.lexsort((k, -np.nan_to_num(sil, nan=-np.inf), -stab))
    return int(order[pool[order]][0])


# ------------------------------------------------------------------------------ shared base
class _SegmentationModel(BaseEstimator):
    """What every segmentation model shares: size-ordered ids, centroids, identity across runs,
    persistence."""

    def _set_labels(self, Z: np.ndarray, labels: np.ndarray, *, all_codes: np.ndarray | None = None) -> None:
        """Order segment ids by size (0 = largest; noise stays -1) and store centroids. Codes in
        ``all_codes`` that no row has get the ids after the seen ones."""
        sizes = pd.Series(labels[labels >= 0]).value_counts(sort=False)
        order = sizes.sort_index().sort_values(ascending=False, kind="stable").index
        unseen = [] if all_codes is None else [c for c in all_codes if c not in set(order)]
        self.label_map_ = pd.concat([pd.Series(np.arange(len(order) + len(unseen)), index=list(order) + unseen),
                                     pd.Series([-1], index=[-1])])
        self.labels_ = self.label_map_.reindex(labels).to_numpy()
        self.n_clusters_ = int(len(order))
        self.cluster_centers_ = _centroids(Z, self.labels_, self.transformed_columns_)

    def fit_predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X).labels_

    def align_to(self, previous: _SegmentationModel, X: pd.DataFrame, *, max_distance: float | None = None) -> pd.DataFrame:
        """Relabel this fit's segments to the ids of a previous run's model.

        Both sets of centroids are compared in the *previous* model's space (this run's
        customers -- the rows this model was fitted on -- transformed by the previous model,
        averaged per new segment), and matched one-to-one by the Hungarian algorithm. A segment
        with no match (more segments than before, or farther than ``max_distance``) gets a fresh
        id above the previous ones and is flagged in the returned table (also kept as
        ``mapping_``). Tiers are matched to previous tiers by name.
        """
        if isinstance(self, TierSegmenter) and isinstance(previous, TierSegmenter):
            mapping = _match_names(previous.segment_names_, self.segment_names_)
        else:
            Zp = previous.transform(X).to_numpy()
            current = _centroids(Zp, self.labels_, list(previous.transformed_columns_))
            mapping = match_segments(previous.cluster_centers_, current, max_distance=max_distance)
        lookup = pd.concat([mapping.set_index("current")["new_id"], pd.Series([-1], index=[-1])])
        fresh = [i for i in self.label_map_.to_numpy() if i not in lookup.index]  # ids of unseen tier cells
        top = max(int(lookup.max()), -1) + 1
        lookup = pd.concat([lookup, pd.Series(np.arange(top, top + len(fresh)), index=fresh)])
        self._relabel(lookup)
        self.mapping_ = mapping
        return mapping

    def _relabel(self, lookup: pd.Series) -> None:
        self.labels_ = lookup.reindex(self.labels_).to_numpy()
        self.label_map_ = pd.Series(lookup.reindex(self.label_map_).to_numpy(), index=self.label_map_.index)
        self.cluster_centers_.index = lookup.reindex(self.cluster_centers_.index).to_numpy()
        self.cluster_centers_ = self.cluster_centers_.sort_index()
        if getattr(self, "stability_", None) is not None:
            table = self.stability_
            self.stability_ = table.set_axis(lookup.reindex(table.index).to_numpy()).rename_axis("segment").sort_index()
            self.stability_.attrs = table.attrs

    def save(self, path: str | Path) -> Path:
        """Save the fitted model with its feature list and versions (joblib)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"model": self, "features": self.feature_names_in_, "segmentation": segmentation.__version__,
                     "sklearn": sklearn.__version__}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, features: list[str] | None = None) -> Any:
        """Load a saved model (a :class:`Segmenter` or a :class:`TierSegmenter`); with
        ``features``, refuse a model fitted on other columns.

        Warns when the model was saved with another scikit-learn version (pickles are only
        guaranteed within one version)."""
        payload = joblib.load(path)
        if not isinstance(payload, dict) or "model" not in payload:
            raise ValueError(f"{path} is not a saved Segmenter")
        if payload["sklearn"] != sklearn.__version__:
            warnings.warn(f"{path} was saved with scikit-learn {payload['sklearn']}, this is "
                          f"{sklearn.__version__}; refit if predictions look wrong", stacklevel=2)
        if features is not None and list(features) != payload["features"]:
            missing = sorted(set(payload["features"]) - set(features))
            extra = sorted(set(features) - set(payload["features"]))
            raise ValueError(f"{path} was fitted on other features: missing {missing}, new {extra}; refit the model")
        return payload["model"]


def _match_names(previous: pd.Series, current: pd.Series) -> pd.DataFrame:
    """Match segments by name (tiers): ``current, previous, distance, matched, new_id``."""
    by_name = pd.Series(previous.index.to_numpy(), index=previous.to_numpy())
    prev = by_name.reindex(current.to_numpy()).to_numpy()
    out = pd.DataFrame({"current": current.index.to_numpy(), "previous": prev, "distance": np.nan})
    out["matched"] = out["previous"].notna()
    start = int(previous.index.max()) + 1
    out["new_id"] = out["previous"]
    out.loc[~out["matched"], "new_id"] = np.arange(start, start + (~out["matched"]).sum())
    out["new_id"] = out["new_id"].astype("int64")
    return out


# ------------------------------------------------------------------------------ Segmenter
class Segmenter(_SegmentationModel):
    """Customer segmentation pipeline; k chosen by stability across seeds and subsamples.

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of segments, or ``"auto"`` to choose within ``k_range`` (module docstring).
    method : {"kmeans", "gmm", "ward", "hdbscan"}
    k_range : tuple of int
        Inclusive range of k for the automatic choice.
    skew : {"log1p", "quantile", None}
        Skew handling before scaling (signed log1p keeps the sign of trends).
    pca : int, float or None
        PCA components (int) or variance to keep (float in (0, 1)).
    features : list of str, optional
        Columns to use; default: every numeric column.
    random_state : int
        Seed of the final fit and of the refits' plan.
    max_largest_share, min_segment_share : float
        Size guards of the automatic choice.
    n_boot : int
        Refits per k on subsamples (at least 2 for ``"auto"``; 0 skips the checks for a given k:
        no ``selection_``, ``stability_`` or ``structure_``).
    sample_frac : float
        Share of the customers in each refit.
    stability_sample : int
        Most rows in one refit.
    silhouette_sample : int
        Customers of the one cached silhouette sample.
    min_stability, min_silhouette, min_agreement : float
        Thresholds of the rule and of the verdict (module docstring).
    n_init : int
        KMeans / GMM restarts (the refits use the same, so they measure what a rerun would do).
    fit_sample : int
        Most rows Ward and HDBSCAN are fitted on.
    n_threads : int or None
        Threads of the clusterer's numeric libraries during ``fit`` (None: their default).

    Attributes
    ----------
    labels_ : ndarray
        Segment of every training row (0 = largest segment, or aligned ids; ``-1`` = HDBSCAN noise).
    n_clusters_ : int
    cluster_centers_ : DataFrame
        Segment centroids in the transformed space (index = segment id).
    selection_ : DataFrame or None
        One row per k tried (one row for a given k): ``k, stability, stability_low, silhouette,
        largest_share, smallest_share, eligible, reproducible, chosen``; ``attrs``: ``reason``
        (a sentence), ``agreement`` (share of bootstrap replicates choosing the same
        segmentation; NaN for a given k), ``n_boot``.
    stability_ : DataFrame or None
        The final segments' stability (see :func:`stability`), from the refits at the final k.
    structure_ : dict or None
        The verdict: ``weak`` (bool), ``checks`` (list of dicts ``check, value, threshold,
        passed, sentence``), ``summary`` (a sentence).
    feature_names_in_ : list of str
    label_map_ : Series
        Clusterer label -> public segment id (size order, then :meth:`align_to`).
    mapping_ : DataFrame or None
        After :meth:`align_to`: how this fit's segments map to the previous ids.

    Examples
    --------
    >>> seg = Segmenter(random_state=0).fit(features)  # doctest: +SKIP
    >>> seg.selection_.attrs["reason"], seg.structure_["summary"]  # doctest: +SKIP
    """

    def __init__(
        self,
        n_clusters: int | str = "auto",
        *,
        method: str = "kmeans",
        k_range: tuple[int, int] = (2, 10),
        skew: str | None = "log1p",
        pca: int | float | None = None,
        features: list[str] | None = None,
        random_state: int = 0,
        max_largest_share: float = 0.6,
        min_segment_share: float = 0.02,
        n_boot: int = 8,
        sample_frac: float = 0.8,
        stability_sample: int = 10_000,
        silhouette_sample: int = 2000,
        min_stability: float = MIN_STABILITY,
        min_silhouette: float = MIN_SILHOUETTE,
        min_agreement: float = MIN_AGREEMENT,
        n_init: int = 10,
        fit_sample: int = 20_000,
        n_threads: int | None = 1,
    ):
        self.n_clusters = n_clusters
        self.method = method
        self.k_range = k_range
        self.skew = skew
        self.pca = pca
        self.features = features
        self.random_state = random_state
        self.max_largest_share = max_largest_share
        self.min_segment_share = min_segment_share
        self.n_boot = n_boot
        self.sample_frac = sample_frac
        self.stability_sample = stability_sample
        self.silhouette_sample = silhouette_sample
        self.min_stability = min_stability
        self.min_silhouette = min_silhouette
        self.min_agreement = min_agreement
        self.n_init = n_init
        self.fit_sample = fit_sample
        self.n_threads = n_threads

    # ------------------------------------------------------------------ pipeline pieces
    def _preprocessor(self, n_rows: int) -> Pipeline:
        steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
        if self.skew == "log1p":
            steps.append(("skew", FunctionTransformer(_signed_log1p, feature_names_out="one-to-one")))
        elif self.skew == "quantile":
            steps.append(("skew", QuantileTransformer(n_quantiles=min(1000, n_rows), output_distribution="normal",
                                                         random_state=self.random_state)))
        elif self.skew is not None:
            raise ValueError(f"skew must be 'log1p', 'quantile' or None, got {self.skew!r}")
        steps.append(("scale", StandardScaler()))
        if self.pca:
            steps.append(("pca", PCA(n_components=self.pca, random_state=self.random_state)))
        return Pipeline(steps).set_output(transform="pandas")

    def _clusterer(self, k: int, seed: int):
        if self.method == "kmeans":
            return KMeans(n_clusters=k, n_init=self.n_init, random_state=seed)
        if self.method == "gmm":
            return GaussianMixture(n_components=k, n_init=self.n_init, covariance_type="full", random_state=seed)
        if self.method == "ward":
            return AgglomerativeClustering(n_clusters=k, linkage="ward")
        return HDBSCAN(min_cluster_size=max(10, k), copy=True)

    def _fit_labels(self, Z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, Any, Any]:
        """Fit the clusterer (on a sample for Ward/HDBSCAN) and label every row.

        Returns the labels, the clusterer and the *assigner* whose ``predict`` labels new rows
        (the clusterer itself, or a nearest-centroid / nearest-neighbour rule fitted on the sample).
        """
        model = self._clusterer(k, seed)
        if self.method in ("kmeans", "gmm"):
            model.fit(Z)
            return model.predict(Z), model, model
        idx = np.random.default_rng(seed).choice(len(Z), size=min(len(Z), self.fit_sample), replace=False)
        sample_labels = model.fit_predict(Z[idx])
        if self.method == "ward":
            assigner = NearestCentroid().fit(Z[idx], sample_labels)
        else:
            assigner = KNeighborsClassifier(n_neighbors=1).fit(Z[idx], sample_labels)
        labels = assigner.predict(Z)
        labels[idx] = sample_labels
        return labels, model, assigner

    def _check_params(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        auto = self.n_clusters == "auto"
        if not auto and not (isinstance(self.n_clusters, (int, np.integer)) and self.n_clusters >= 1):
            raise ValueError(f"n_clusters must be 'auto' or a whole number >= 1, got {self.n_clusters!r}")
        if self.n_boot < 0 or (auto and self.method != "hdbscan" and self.n_boot < 2):
            raise ValueError(f"n_boot must be at least 2 to choose k by stability (0 only with a given k), got {self.n_boot}")

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: pd.DataFrame, y: Any = None) -> Segmenter:
        """Fit the pipeline, choose k (when ``n_clusters="auto"``) and check the result.

        Parameters
        ----------
        X : DataFrame
            One row per customer; ``features`` (default: every numeric column) must be numeric
            and finite; missing values are imputed with the column median (a column with no
            value at all becomes 0, i.e. carries no information).
        y : ignored
        """
        self._check_params()
        self.feature_names_in_ = list(self.features or [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])])
        if len(X) < 3:
            raise ValueError(f"need at least 3 customers to segment, got {len(X)}")
        self.preprocessor_ = self._preprocessor(len(X))
        Z = self.preprocessor_.fit_transform(self._matrix(X))
        self.transformed_columns_ = list(Z.columns)
        Zv = Z.to_numpy()
        self.selection_ = self.stability_ = self.structure_ = None
        self.mapping_ = None
        hdbscan = self.method == "hdbscan"
        with _threads(self.n_threads):
            ks = self._candidates(len(Zv)) if not hdbscan else [0]
            plan = (_plan(len(Zv), self.n_boot, self.sample_frac, self.stability_sample, self.silhouette_sample,
                          self.random_state) if self.n_boot else None)
            refits = {k: self._refit_labels(Zv, k, plan) for k in ks} if plan else {}
            k = self._select(Zv, ks, refits, plan) if plan and not hdbscan else ks[0]
            labels, self.model_, self.assigner_ = self._fit_labels(Zv, k, self.random_state)
        self._set_labels(Zv, labels)
        if plan:
            ids = self.cluster_centers_.index.to_numpy()
            sizes = pd.Series(self.labels_).value_counts().reindex(ids, fill_value=0).to_numpy()
            self.stability_ = _stability_table(self.labels_[plan.evaluate], refits[k], ids, sizes)
            self.stability_.attrs["note"] = self._stability_note()
            if hdbscan:
                self._hdbscan_selection(Zv, refits[k], plan)
            self.structure_ = self._verdict()
        return self

    def _candidates(self, n: int) -> list[int]:
        """The k to try: ``k_range`` (at most n - 1 and one less than a refit's rows), or the given k."""
        if self.n_clusters != "auto":
            return [int(self.n_clusters)]
        lo, hi = self.k_range
        top = min(hi, n - 1, _refit_size(n, self.sample_frac, self.stability_sample) - 1)
        if top < lo:
            raise ValueError(f"{n} customers are too few to try k_range={self.k_range}; lower k_range or set n_clusters")
        return list(range(lo, top + 1))

    def _refit_labels(self, Z: np.ndarray, k: int, plan: _Plan) -> np.ndarray:
        """Raw clusterer labels of ``plan.evaluate`` from each refit (subsample, seed) of the plan."""
        out = np.empty((len(plan.subsamples), len(plan.evaluate)), dtype=np.int64)
        for b, (idx, seed) in enumerate(zip(plan.subsamples, plan.seeds)):  # n_boot refits
            _, _, assigner = self._fit_labels(Z[idx], k, int(seed))
            out[b] = assigner.predict(Z[plan.evaluate])
        return out

    def _select(self, Z: np.ndarray, ks: list[int], refits: dict[int, np.ndarray], plan: _Plan) -> int:
        """Build ``selection_`` from the refits and return the chosen k."""
        B = self.n_boot
        D = pairwise_distances(Z[plan.evaluate[plan.silhouette]])
        iu = np.triu_indices(B, 1)
        A = np.zeros((len(ks), B, B))
        S = np.zeros((len(ks), B))
        large = np.zeros((len(ks), B))
        small = np.zeros((len(ks), B))
        for i, k in enumerate(ks):
            for b, p in enumerate(refits[k]):
                counts = np.bincount(p[p >= 0]) / len(p)
                large[i, b], small[i, b] = counts.max(), counts[counts > 0].min()
                S[i, b] = _silhouette(D, p[plan.silhouette])
            for a, b in zip(*iu):
                A[i, a, b] = A[i, b, a] = _ari(refits[k][a], refits[k][b])
        karr = np.array(ks)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a k whose refits all found one cluster
            sil = np.nanmean(S, axis=1)
        table = pd.DataFrame({
            "k": karr,
            "stability": A[:, iu[0], iu[1]].mean(axis=1),
            "stability_low": A[:, iu[0], iu[1]].min(axis=1),
            "silhouette": sil,
            "largest_share": large.mean(axis=1),
            "smallest_share": small.mean(axis=1),
        })
        table["eligible"] = self._eligible(table["largest_share"], table["smallest_share"])
        table["reproducible"] = table["stability"] >= self.min_stability
        eligible = table["eligible"].to_numpy()
        chosen = _choose(karr, table["stability"].to_numpy(), sil, eligible, self.min_stability)
        table["chosen"] = np.arange(len(table)) == chosen
        k = int(karr[chosen])
        agreement = np.nan
        if self.n_clusters != "auto":
            reason = f"k = {k} set by the caller (not chosen)"
        else:
            guards = (f"largest segment <= {self.max_largest_share:.0%} and smallest >= "
                      f"{self.min_segment_share:.0%} of customers")
            if not eligible.any():
                warnings.warn(f"no k in {self.k_range} has {guards}; choosing among all k "
                              "(look at the smallest segments, or set n_clusters)", stacklevel=3)
            agreement = self._agreement(karr, A, S, large, small, refits, k)
            reason = self._reason(table, chosen, guards, bool(eligible.any()))
        table.attrs.update(reason=reason, agreement=agreement, n_boot=B)
        self.selection_ = table
        return k

    def _eligible(self, largest: Any, smallest: Any) -> Any:
        """The size guards."""
        return (largest <= self.max_largest_share) & (smallest >= self.min_segment_share)

    def _reason(self, table: pd.DataFrame, chosen: int, guards: str, any_eligible: bool) -> str:
        row = table.iloc[chosen]
        k, B = int(row["k"]), self.n_boot
        pool = table["eligible"] if any_eligible else pd.Series(True, index=table.index)
        scope = f"segment sizes within the guards ({guards})" if any_eligible else f"any segment sizes (no k had {guards})"
        if not row["reproducible"]:
            return (f"k = {k}: no k with {scope} reproduces across {B} refits on subsamples with different seeds "
                    f"(mean ARI >= {self.min_stability} needed); k = {k} is the most stable (mean ARI {row['stability']:.3f})")
        passed = pool & table["reproducible"]
        tied = int((passed & (table["silhouette"] >= table.loc[passed, "silhouette"].max() - _SILHOUETTE_TIE)).sum()) - 1
        tie = f"; {tied} other k within {_SILHOUETTE_TIE} silhouette, the most stable wins" if tied > 0 else ""
        return (f"k = {k}: of the {int(passed.sum())} k with {scope} whose segments reproduce across {B} refits on "
                f"subsamples with different seeds (mean ARI >= {self.min_stability}), k = {k} has the highest silhouette "
                f"({row['silhouette']:.3f}; mean ARI {row['stability']:.3f}){tie}")

    def _agreement(self, karr: np.ndarray, A: np.ndarray, S: np.ndarray, large: np.ndarray, small: np.ndarray,
                   refits: dict[int, np.ndarray], k: int) -> float:
        """Share of bootstrap replicates of the choice (refits drawn with replacement, no
        refitting) that pick the chosen segmentation or one agreeing with it at ARI >= min_stability."""
        B = A.shape[1]
        iu = np.triu_indices(B, 1)
        same = np.array([kk == k or np.mean([_ari(refits[kk][b], refits[k][b]) for b in range(B)]) >= self.min_stability
                         for kk in karr])
        rng = np.random.default_rng([self.random_state, 1])
        votes = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            for _ in range(_AGREEMENT_DRAWS):  # 200 replicates of a choice among |k_range| numbers
                d = rng.integers(0, B, size=B)
                a, b = d[iu[0]], d[iu[1]]
                keep = a != b
                if not keep.any():
                    continue
                elig = self._eligible(large[:, d].mean(axis=1), small[:, d].mean(axis=1))
                votes.append(same[_choose(karr, A[:, a[keep], b[keep]].mean(axis=1), np.nanmean(S[:, d], axis=1), elig,
                                          self.min_stability)])
        return float(np.mean(votes)) if votes else float("nan")

    def _hdbscan_selection(self, Z: np.ndarray, refits: np.ndarray, plan: _Plan) -> None:
        """One-row table for HDBSCAN (it finds its own number of clusters)."""
        B = len(refits)
        iu = np.triu_indices(B, 1)
        pairs = [_ari(refits[a], refits[b]) for a, b in zip(*iu)] or [np.nan]
        D = pairwise_distances(Z[plan.evaluate[plan.silhouette]])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            sil = np.nanmean([_silhouette(D, p[plan.silhouette]) for p in refits])
        counts = pd.Series(self.labels_[self.labels_ >= 0]).value_counts() / len(self.labels_)
        table = pd.DataFrame({"k": [self.n_clusters_], "stability": [np.mean(pairs)], "stability_low": [np.min(pairs)],
                              "silhouette": [sil], "largest_share": [counts.max()], "smallest_share": [counts.min()]})
        table["eligible"] = self._eligible(table["largest_share"], table["smallest_share"])
        table["reproducible"] = table["stability"] >= self.min_stability
        table["chosen"] = True
        table.attrs.update(reason=f"HDBSCAN found {self.n_clusters_} clusters (it chooses their number itself)",
                           agreement=np.nan, n_boot=B)
        self.selection_ = table

    def _stability_note(self) -> str:
        k = "its own number of clusters" if self.method == "hdbscan" else f"k = {self.n_clusters_}"
        how = ("k chosen by stability (see selection_)" if self.n_clusters == "auto" and self.method != "hdbscan"
               else "k set by the caller" if self.method != "hdbscan" else "HDBSCAN")
        return (f"{self.n_boot} refits, each on {self.sample_frac:.0%} of the customers (at most {self.stability_sample:,}) "
                f"with another seed, at {k} ({how}); each refit labels the same customers and is compared with the "
                "final segments.")

    def _verdict(self) -> dict[str, Any]:
        row = self.selection_.loc[self.selection_["chosen"]].iloc[0]
        B = self.n_boot
        checks = []
        stab = float(row["stability"])
        checks.append(dict(
            check="stability", value=stab, threshold=self.min_stability, passed=bool(stab >= self.min_stability),
            sentence=(f"Refits on {B} subsamples with different seeds agree at a mean adjusted Rand index of {stab:.3f} "
                      f"(at least {self.min_stability} needed)." if stab >= self.min_stability else
                      f"Refits on {B} subsamples with different seeds agree only at a mean adjusted Rand index of "
                      f"{stab:.3f} ({self.min_stability} needed): the segments depend on the seed and the sample.")))
        sil = float(row["silhouette"])
        ok = bool(sil >= self.min_silhouette)
        checks.append(dict(
            check="silhouette", value=sil, threshold=self.min_silhouette, passed=ok,
            sentence=(f"Silhouette {sil:.3f} (at least {self.min_silhouette} needed): the segments are separated groups."
                      if ok else
                      f"Silhouette {sil:.3f}, below {self.min_silhouette}: no substantial cluster structure "
                      "(Kaufman & Rousseeuw); the segments would be cuts through one continuous cloud of customers.")))
        agreement = self.selection_.attrs.get("agreement", np.nan)
        if self.n_clusters == "auto" and self.method != "hdbscan" and len(self.selection_) > 1:
            ok = bool(agreement >= self.min_agreement)
            checks.append(dict(
                check="k agreement", value=float(agreement), threshold=self.min_agreement, passed=ok,
                sentence=(f"The same segmentation is chosen in {agreement:.0%} of {_AGREEMENT_DRAWS} bootstrap replicates "
                          f"of the choice (at least {self.min_agreement:.0%} needed)." if ok else
                          f"The same segmentation is chosen in only {agreement:.0%} of {_AGREEMENT_DRAWS} bootstrap "
                          f"replicates of the choice ({self.min_agreement:.0%} needed): k is not reproducible.")))
        weak = not all(c["passed"] for c in checks)
        failed = [c["check"] for c in checks if not c["passed"]]
        summary = (f"Weak structure ({', '.join(failed)} below threshold) at k = {int(row['k'])}." if weak else
                   f"Clear, reproducible structure at k = {int(row['k'])}.")
        return {"weak": weak, "checks": checks, "summary": summary}

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns of ``X`` as float64, with clear errors for bad input."""
        if not self.feature_names_in_:
            raise ValueError("X has no numeric columns to segment on")
        missing = [c for c in self.feature_names_in_ if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the feature columns {missing}; pass the customer feature table "
                             "the model was fitted on (or refit with features=...)")
        data = X[self.feature_names_in_]
        wrong = [c for c in data.columns if not pd.api.types.is_numeric_dtype(data[c])]
        if wrong:
            raise ValueError(f"feature columns {wrong} are not numeric; encode them first "
                             "(e.g. features.encode_demographics) or leave them out of features=")
        data = data.astype("float64")
        infinite = data.columns[np.isinf(data.to_numpy()).any(axis=0)].tolist()
        if infinite:
            raise ValueError(f"feature columns {infinite} hold infinite values; replace them (e.g. by NaN) first")
        return data

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The customers in the model's standardized space (columns ``transformed_columns_``)."""
        return self.preprocessor_.transform(self._matrix(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Assign (new) customers to the fitted segments without refitting, by the rule of the
        method (see the module docstring; KMeans: nearest centre, O(n k d))."""
        raw = self.assigner_.predict(self.transform(X).to_numpy())
        return self.label_map_.reindex(raw).to_numpy()

    # used by stability()
    def _stability_space(self, X: pd.DataFrame) -> np.ndarray:
        return self.transform(X).to_numpy()

    def _stability_refits(self, space: np.ndarray, plan: _Plan) -> np.ndarray:
        with _threads(self.n_threads):
            return self._refit_labels(space, 0 if self.method == "hdbscan" else self.n_clusters_, plan)


# ------------------------------------------------------------------------------ tiers
class TierSegmenter(_SegmentationModel):
    """Value x status tiers: a fixed, reproducible segmentation for when behaviour has no
    reproducible cluster structure.

    Six cells at most: the top ``top_share`` of customers by net spend (``monetary``) versus the
    others, crossed with ``active / lapsing / lapsed`` from
    :func:`segmentation.definitions.customer_status`. When net spend does not vary (no prices),
    the number of orders (``frequency``) ranks the customers instead. The same data give the
    same tiers for every seed; refits on subsamples move only the spend cut.

    Parameters
    ----------
    top_share : float
        Share of customers in the top value tier (0.2: the customers who usually bring most of
        the revenue).
    lapsing_after, lapsed_after : float
        The status thresholds (``definitions``).
    n_boot, sample_frac, stability_sample, random_state
        Refits for :func:`stability` (``stability_``).

    Attributes
    ----------
    labels_, n_clusters_, label_map_, cluster_centers_, feature_names_in_, transformed_columns_
        As :class:`Segmenter` (the space: standardized log value and log silence in usual gaps).
    value_column_ : str
        ``monetary`` or ``frequency``.
    value_cut_ : float
        Customers with a value above it are in the top tier.
    segment_names_ : Series
        Segment id -> name, e.g. ``"active, top 20% by spend"``.
    rules_ : DataFrame
        ``segment, name, rule, customers, share``: each tier's definition as a sentence.
    stability_ : DataFrame
        As :func:`stability`.
    selection_, structure_ : None
        Tiers have no k to choose.
    notes_ : list of str
    """

    def __init__(self, *, top_share: float = 0.2, lapsing_after: float = definitions.LAPSING_AFTER,
                 lapsed_after: float = definitions.LAPSED_AFTER, n_boot: int = 8, sample_frac: float = 0.8,
                 stability_sample: int = 10_000, random_state: int = 0):
        self.top_share = top_share
        self.lapsing_after = lapsing_after
        self.lapsed_after = lapsed_after
        self.n_boot = n_boot
        self.sample_frac = sample_frac
        self.stability_sample = stability_sample
        self.random_state = random_state

    def _inputs(self, X: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in TIER_FEATURES if c not in X.columns]
        if missing:
            raise ValueError(f"X lacks the columns {missing} that tiers need ({TIER_FEATURES}); "
                             "pass the customer feature table (features.customer_features)")
        return X[TIER_FEATURES].astype("float64")

    def _codes(self, X: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
        data = self._inputs(X)
        status = definitions.customer_status(data, lapsing_after=self.lapsing_after, lapsed_after=self.lapsed_after)
        top = data[self.value_column_].to_numpy() > self.value_cut_
        silence = data["recency_days"] / definitions.usual_gap_days(data)
        space = pd.DataFrame({"value": _signed_log1p(data[self.value_column_].to_numpy()),
                              "silence": np.log1p(silence.clip(lower=0).to_numpy())}, index=X.index)
        return status.cat.codes.to_numpy().astype(np.int64) + 3 * top.astype(np.int64), space

    def fit(self, X: pd.DataFrame, y: Any = None) -> TierSegmenter:
        """Learn the value cut and assign the tiers.

        Parameters
        ----------
        X : DataFrame
            Customer features with :data:`TIER_FEATURES` (one row per customer).
        y : ignored
        """
        if not 0 < self.top_share < 1:
            raise ValueError(f"top_share must be in (0, 1), got {self.top_share}")
        data = self._inputs(X)
        if len(data) < 3:
            raise ValueError(f"need at least 3 customers to segment, got {len(data)}")
        self.feature_names_in_ = list(TIER_FEATURES)
        self.notes_ = []
        self.value_column_ = "monetary" if data["monetary"].nunique() > 1 else "frequency"
        if self.value_column_ == "frequency":
            self.notes_.append("Net spend is the same for every customer (no prices): the value tier ranks customers "
                               "by number of orders instead.")
        self.value_cut_ = float(np.quantile(data[self.value_column_], 1 - self.top_share))
        codes, space = self._codes(X)
        self.space_mean_, self.space_sd_ = space.mean(), space.std(ddof=0).replace(0, 1.0)
        self.transformed_columns_ = ["value", "silence"]
        Z = ((space - self.space_mean_) / self.space_sd_).to_numpy()
        self._set_labels(Z, codes, all_codes=np.arange(6))
        self.segment_names_ = pd.Series({int(i): self._cell_name(int(c)) for c, i in self.label_map_.items() if c >= 0},
                                        name="name").sort_index().rename_axis("segment")
        self.rules_ = self._rules()
        self.selection_ = self.structure_ = self.mapping_ = None
        self.stability_ = None
        if self.n_boot:
            plan = _plan(len(X), self.n_boot, self.sample_frac, self.stability_sample, 1, self.random_state)
            ids = self.cluster_centers_.index.to_numpy()
            sizes = pd.Series(self.labels_).value_counts().reindex(ids, fill_value=0).to_numpy()
            self.stability_ = _stability_table(self.labels_[plan.evaluate], self._stability_refits(X, plan), ids, sizes)
            self.stability_.attrs["note"] = (f"The tiers are a fixed rule; {self.n_boot} refits, each on "
                                             f"{self.sample_frac:.0%} of the customers, move only the value cut.")
        return self

    def _value_words(self) -> str:
        return "spend" if self.value_column_ == "monetary" else "orders"

    def _cell_name(self, code: int) -> str:
        status = definitions.STATUSES[code % 3]
        value = (f"top {self.top_share:.0%} by {self._value_words()}" if code >= 3
                 else f"other {1 - self.top_share:.0%}")
        return f"{status}, {value}"

    def _rules(self) -> pd.DataFrame:
        what = "net spend" if self.value_column_ == "monetary" else "orders"
        status_words = {
            "active": f"last order at most {self.lapsing_after:g} usual gaps ago",
            "lapsing": f"last order {self.lapsing_after:g} to {self.lapsed_after:g} usual gaps ago",
            "lapsed": f"last order more than {self.lapsed_after:g} usual gaps ago",
        }
        rows = []
        sizes = pd.Series(self.labels_).value_counts()
        for code, seg in self.label_map_.items():
            if code < 0 or seg >= self.n_clusters_:
                continue
            value = (f"{what} above {_number(self.value_cut_)}" if code >= 3 else f"{what} at most {_number(self.value_cut_)}")
            rows.append({"segment": int(seg), "name": self._cell_name(int(code)),
                         "rule": f"{value} and {status_words[definitions.STATUSES[code % 3]]}",
                         "customers": int(sizes.get(seg, 0)), "share": float(sizes.get(seg, 0) / len(self.labels_))})
        return pd.DataFrame(rows).sort_values("segment").reset_index(drop=True)

    def _relabel(self, lookup: pd.Series) -> None:
        super()._relabel(lookup)
        self.segment_names_ = self.segment_names_.set_axis(lookup.reindex(self.segment_names_.index).to_numpy()).sort_index()
        self.segment_names_.index.name = "segment"
        self.rules_ = self.rules_.assign(segment=lookup.reindex(self.rules_["segment"]).to_numpy()).sort_values("segment")

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Standardized log value and log silence (days since the last order / usual gap)."""
        _, space = self._codes(X)
        return (space - self.space_mean_) / self.space_sd_

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Tier of (new) customers: the value cut learned at fit; the status of
        :func:`segmentation.definitions.customer_status` on ``X`` (its typical gap for one-order
        customers comes from the repeat buyers of ``X``). A cell no training customer was in gets
        an id from ``n_clusters_`` on."""
        codes, _ = self._codes(X)
        return self.label_map_.reindex(codes).to_numpy()

    # used by stability()
    def _stability_space(self, X: pd.DataFrame) -> pd.DataFrame:
        return X

    def _stability_refits(self, X: pd.DataFrame, plan: _Plan) -> np.ndarray:
        out = np.empty((len(plan.subsamples), len(plan.evaluate)), dtype=np.int64)
        rows = X.iloc[plan.evaluate]
        for b, idx in enumerate(plan.subsamples):  # n_boot refits, each O(n)
            out[b] = clone(self).set_params(n_boot=0).fit(X.iloc[idx]).predict(rows)
        return out


def _centroids(Z: np.ndarray, labels: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """Mean of each segment (noise, -1, left out). O(n d)."""
    keep = labels >= 0
    return pd.DataFrame(Z[keep], columns=columns).groupby(labels[keep]).mean().sort_index()


def match_segments(previous: pd.DataFrame, current: pd.DataFrame, *, max_distance: float | None = None) -> pd.DataFrame:
    """Match current segment centroids to previous ones (Hungarian algorithm).

    Parameters
    ----------
    previous, current : DataFrame
        Centroids (index = segment id) in the same space.
    max_distance : float, optional
        A pair farther apart is not a match. Default: the median distance from each previous
        centroid to its nearest other previous centroid (a segment that moved further than its
        neighbours are apart is not the same people-type).

    Returns
    -------
    DataFrame
        ``current, previous (NaN when unmatched), distance, matched, new_id``.
    """
    P, C = previous.to_numpy(), current.to_numpy()
    dist = np.sqrt(((C[:, None, :] - P[None, :, :]) ** 2).sum(axis=2))
    if max_distance is None:
        pp = np.sqrt(((P[:, None, :] - P[None, :, :]) ** 2).sum(axis=2))
        np.fill_diagonal(pp, np.inf)
        max_distance = float(np.median(pp.min(axis=1))) if len(P) > 1 else np.inf
    rows, cols = linear_sum_assignment(dist)
    out = pd.DataFrame({"current": current.index.to_numpy(), "previous": np.nan, "distance": np.nan})
    out.loc[rows, "previous"] = previous.index.to_numpy()[cols]
    out.loc[rows, "distance"] = dist[rows, cols]
    out["matched"] = out["distance"].le(max_distance)
    out.loc[~out["matched"], "previous"] = np.nan
    next_id = int(previous.index.max()) + 1
    fresh = np.arange(next_id, next_id + (~out["matched"]).sum())
    out["new_id"] = out["previous"]
    out.loc[~out["matched"], "new_id"] = fresh
    out["new_id"] = out["new_id"].astype("int64")
    return out


def stability(segmenter: Segmenter | TierSegmenter, X: pd.DataFrame, *, n_boot: int | None = None,
              sample_frac: float | None = None, random_state: int | None = None) -> pd.DataFrame:
    """How well the segments reproduce when the model is refitted on subsamples with other seeds.

    Each of ``n_boot`` refits uses a random ``sample_frac`` of the customers (at most the model's
    ``stability_sample``) and another seed, at the model's k (a :class:`TierSegmenter` relearns
    its value cut); every refit then labels the same customers (all, or a fixed random 50,000),
    which are compared with the model's segments. Per segment, the Jaccard similarity with its
    best-matching refit segment is averaged over refits (Hennig 2007: >= 0.75 stable, < 0.5
    dissolved). With the model's own settings (the defaults) this is exactly the model's
    ``stability_``: the refits behind the automatic choice of k. The choice of k itself is
    checked in ``selection_`` (``attrs["agreement"]``); here k is fixed, and ``attrs["note"]``
    says so. Cost: ``n_boot`` clusterer fits.

    Parameters
    ----------
    segmenter : Segmenter or TierSegmenter
        Fitted on ``X``.
    X : DataFrame
        The table the segmenter was fitted on.
    n_boot, sample_frac, random_state
        Number of refits, share of customers in each, seed; default: the model's.

    Returns
    -------
    DataFrame
        Index ``segment`` (HDBSCAN noise left out); ``size, jaccard_mean, jaccard_min, stable``
        (``jaccard_mean >= 0.75``). ``attrs``: ``ari`` (each refit's adjusted Rand index with the
        model's segments), ``ari_mean``, ``ari_ci`` (2.5% and 97.5% percentiles over refits),
        ``n_boot``, ``note``.
    """
    if len(X) != len(segmenter.labels_):
        raise ValueError(f"X has {len(X)} rows but the segmenter was fitted on {len(segmenter.labels_)}; "
                         "pass the table it was fitted on")
    n_boot = segmenter.n_boot if n_boot is None else n_boot
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    plan = _plan(len(X), n_boot, segmenter.sample_frac if sample_frac is None else sample_frac,
                 segmenter.stability_sample, getattr(segmenter, "silhouette_sample", 1),
                 segmenter.random_state if random_state is None else random_state)
    ids = segmenter.cluster_centers_.index.to_numpy()
    sizes = pd.Series(segmenter.labels_).value_counts().reindex(ids, fill_value=0).to_numpy()
    refits = segmenter._stability_refits(segmenter._stability_space(X), plan)
    out = _stability_table(segmenter.labels_[plan.evaluate], refits, ids, sizes)
    own = getattr(segmenter, "stability_", None)
    same = own is not None and n_boot == segmenter.n_boot and sample_frac in (None, segmenter.sample_frac)
    out.attrs["note"] = (own.attrs.get("note", "") if same else
                         f"{n_boot} refits on subsamples with other seeds, at the model's k (fixed in the refits).")
    return out


def _labels(segmenter: Any, X: pd.DataFrame, labels: np.ndarray | pd.Series | None) -> np.ndarray:
    """``labels``, or the segmenter's training labels when ``X`` is its training table."""
    if labels is None:
        if len(X) != len(segmenter.labels_):
            raise ValueError(f"X has {len(X)} rows but the segmenter was fitted on {len(segmenter.labels_)}; "
                             "pass labels=segmenter.predict(X) for other customers")
        labels = segmenter.labels_
    return np.asarray(labels)


def explain(segmenter: Segmenter | TierSegmenter, X: pd.DataFrame, *,
            labels: np.ndarray | pd.Series | None = None) -> pd.DataFrame:
    """Standardized mean difference of every model feature per segment:
    ``(segment mean - population mean) / population sd`` on the raw feature scale. O(n d).

    Parameters
    ----------
    segmenter : Segmenter or TierSegmenter
        Fitted; its ``feature_names_in_`` are explained.
    X : DataFrame
        The customers (default: the training table, labelled by ``labels_``).
    labels : array, optional
        Segment per row of ``X`` (e.g. ``segmenter.predict(X)`` for other customers).

    Returns
    -------
    DataFrame
        Index ``segment`` (including ``-1`` for HDBSCAN noise), one column per feature;
        0 for a constant feature.
    """
    labels = _labels(segmenter, X, labels)
    data = X[segmenter.feature_names_in_].astype("float64")
    mu, sd = data.mean(), data.std(ddof=0).replace(0, np.nan)
    out = (data.groupby(labels).mean() - mu) / sd
    out.index.name = "segment"
    return out.fillna(0.0)


def top_traits(explanation: pd.DataFrame, n: int = 5) -> pd.DataFrame:
    """The ``n`` most distinctive features per segment (largest absolute standardized
    difference): ``segment, rank, feature, difference, direction``."""
    long = explanation.stack().rename("difference").reset_index()
    long.columns = ["segment", "feature", "difference"]
    long["abs"] = long["difference"].abs()
    long = long.sort_values(["segment", "abs"], ascending=[True, False])
    long["rank"] = long.groupby("segment").cumcount() + 1
    out = long[long["rank"] <= n].drop(columns="abs")
    out["direction"] = np.where(out["difference"] > 0, "higher", "lower")
    return out[["segment", "rank", "feature", "difference", "direction"]].reset_index(drop=True)


# ------------------------------------------------------------------------------ readable rules
_SHARE_PREFIXES = ("cat_", "channel_", "tod_")


def _number(v: float) -> str:
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _value_text(feature: str, v: float) -> str:
    """A threshold as text: shares (``cat_*, channel_*, tod_*, *_share, return_rate``) as percentages."""
    if feature.startswith(_SHARE_PREFIXES) or feature.endswith("_share") or feature == "return_rate":
        return f"{v * 100:.3g}%"
    return _number(v)


def _condition_sentence(label: str, feature: str, low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f"{label} more than {_value_text(feature, low)} and at most {_value_text(feature, high)}"
    if low is not None:
        return f"{label} more than {_value_text(feature, low)}"
    return f"{label} at most {_value_text(feature, high)}"


def surrogate_rules(segmenter: Segmenter | TierSegmenter, X: pd.DataFrame, *,
                    labels: np.ndarray | pd.Series | None = None, feature_labels: Mapping[str, str] | None = None,
                    max_depth: int = 3, random_state: int = 0, sample_size: int | None = None) -> tuple[pd.DataFrame, float]:
    """Readable rules: a shallow decision tree on the raw model features that imitates the
    segmentation, one plain sentence per leaf. O(n d max_depth log n) for the fit on n customers
    (at most ``sample_size``), O(N max_depth) to place all N customers in the leaves.

    Parameters
    ----------
    segmenter : Segmenter or TierSegmenter
        Fitted.
    X : DataFrame
        The customers (default: the training table, labelled by ``labels_``).
    labels : array, optional
        Segment per row of ``X``.
    feature_labels : mapping, optional
        ``{feature: human label}`` (e.g. ``{"cat_baby": "share of spend on baby"}``); a feature
        without one is named by its column name with underscores as spaces.
    max_depth, random_state
        Of the decision tree (missing values filled with the column median).
    sample_size : int, optional
        With more customers than this, the tree is fitted on a random sample of this many
        (seed ``random_state``); the leaf counts, coverage, precision and fidelity still count
        every customer.

    Returns
    -------
    rules : DataFrame
        One row per leaf: ``segment`` (the leaf's majority segment), ``rule`` (the conditions
        as one sentence, e.g. "share of spend on baby more than 26% and orders per customer at
        most 3"; shares in %), ``conditions`` (list of the
        sentences), ``customers`` (in the leaf), ``coverage`` (share of the segment's customers
        the rule covers), ``precision`` (share of the leaf's customers in the segment). Ordered
        by segment, then coverage. A segment no leaf predicts gets one row with rule
        "no simple rule isolates this segment" and coverage 0. ``attrs["fidelity"]``.
    fidelity : float
        Share of customers the tree puts in their actual segment.
    """
    labels = _labels(segmenter, X, labels)
    names = dict(feature_labels or {})
    features = segmenter.feature_names_in_
    data = X[features].astype("float64")
    data = data.fillna(data.median()).fillna(0.0).to_numpy(dtype=np.float32)  # the tree's own precision, converted once
    fit_on = (np.sort(np.random.default_rng(random_state).choice(len(data), sample_size, replace=False))
              if sample_size is not None and len(data) > sample_size else slice(None))
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=random_state).fit(data[fit_on], labels[fit_on])
    fidelity = float((tree.predict(data) == labels).mean())
    t = tree.tree_
    bounds: dict[int, dict[str, list]] = {0: {}}
    leaves = []
    stack = [0]
    while stack:  # over the tree's nodes (at most 2^(max_depth+1)), not over customers
        node = stack.pop()
        left, right = t.children_left[node], t.children_right[node]
        if left == -1:
            leaves.append(node)
            continue
        f, thr = features[t.feature[node]], float(t.threshold[node])
        for child, side in ((left, 1), (right, 0)):
            b = {k: list(v) for k, v in bounds[node].items()}
            low, high = b.get(f, [None, None])
            b[f] = [low, thr if high is None else min(high, thr)] if side else [thr if low is None else max(low, thr), high]
            bounds[child] = b
            stack.append(child)
    leaf_of = tree.apply(data)
    counts = pd.crosstab(leaf_of, labels)
    segment_size = pd.Series(labels).value_counts()
    rows = []
    for leaf in leaves:
        if leaf not in counts.index:
            continue
        seg = tree.classes_[int(np.argmax(t.value[leaf][0]))]
        in_leaf = int(counts.loc[leaf].sum())
        hit = int(counts.loc[leaf].get(seg, 0))
        conditions = [_condition_sentence(names.get(f, f.replace("_", " ")), f, lo, hi)
                      for f, (lo, hi) in bounds[leaf].items()]
        rows.append({"segment": seg, "rule": " and ".join(conditions) or "every customer", "conditions": conditions,
                     "customers": in_leaf, "coverage": hit / segment_size[seg], "precision": hit / in_leaf})
    found = {r["segment"] for r in rows}
    for seg in sorted(set(segment_size.index) - found):
        rows.append({"segment": seg, "rule": "no simple rule isolates this segment", "conditions": [],
                     "customers": 0, "coverage": 0.0, "precision": np.nan})
    out = pd.DataFrame(rows, columns=["segment", "rule", "conditions", "customers", "coverage", "precision"])
    out = out.sort_values(["segment", "coverage"], ascending=[True, False], kind="stable").reset_index(drop=True)
    out.attrs["fidelity"] = fidelity
    return out, fidelity


def segment_profile(X: pd.DataFrame, labels: np.ndarray | pd.Series, columns: list[str] | None = None) -> pd.DataFrame:
    """Size, share and mean of ``columns`` per segment. O(n).

    Parameters
    ----------
    X : DataFrame
        Customer table (e.g. ``segment_customers(...).table``).
    labels : array or Series
        Segment per row of ``X``.
    columns : list of str, optional
        Columns to average; default the RFM basics present in ``X``.

    Returns
    -------
    DataFrame
        Index ``segment``; ``customers, share`` and the mean of each column. Not suppressed:
        pass it through ``report.safe_table`` before showing it to stakeholders.
    """
    columns = columns or ["recency_days", "frequency", "monetary", "avg_order_value"]
    columns = [c for c in columns if c in X.columns]
    g = X[columns].groupby(np.asarray(labels))
    out = g.mean()
    out.insert(0, "share", g.size() / len(X))
    out.insert(0, "customers", g.size())
    out.index.name = "segment"
    return out


def plot_k_selection(selection: pd.DataFrame, *, min_stability: float = MIN_STABILITY,
                     min_silhouette: float = MIN_SILHOUETTE) -> plt.Figure:
    """Stability (mean and worst pair of refits), silhouette and the largest segment's share over
    k, with the thresholds drawn, the chosen k marked and the k outside the size guards greyed."""
    panels = [("stability", "agreement of refits (ARI)", min_stability),
              ("silhouette", "silhouette (separation)", min_silhouette),
              ("largest_share", "largest segment's share", None)]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4))
    chosen = int(selection.loc[selection["chosen"], "k"].iloc[0])
    bad = selection[~selection["eligible"]]
    for ax, (m, title, line) in zip(np.atleast_1d(axes), panels):
        ax.plot(selection["k"], selection[m], marker="o", color="tab:blue", label="mean")
        if m == "stability":
            ax.plot(selection["k"], selection["stability_low"], marker=".", ls=":", color="tab:blue", label="worst pair")
        ax.scatter(bad["k"], bad[m], color="lightgrey", zorder=3, label="outside the size guards")
        if line is not None:
            ax.axhline(line, color="grey", ls="--", lw=1)
        ax.axvline(chosen, color="tab:red", ls="--", lw=1)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("k")
    np.atleast_1d(axes)[0].legend(fontsize=7)
    fig.suptitle(f"Choosing the number of segments: k = {chosen}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_segment_profiles(explanation: pd.DataFrame, n_features: int = 15, *,
                          names: Mapping | pd.Series | None = None,
                          feature_labels: Mapping[str, str] | None = None) -> plt.Figure:
    """Heatmap of the most distinctive features (standardized difference from the average), rows
    named by ``names`` (segment id -> name) and columns by ``feature_labels``."""
    top = explanation.abs().max(axis=0).sort_values(ascending=False).index[:n_features]
    data = explanation[top]
    if names is not None:
        data = data.set_axis([str(dict(names).get(i, i)) for i in data.index])
    data = data.set_axis([(feature_labels or {}).get(c, str(c).replace("_", " ")) for c in data.columns], axis=1)
    fig, ax = plt.subplots(figsize=(2.5 + 0.7 * len(top), 2.5 + 0.5 * len(data)))
    sns.heatmap(data, cmap="RdBu_r", center=0, vmin=-2, vmax=2, annot=True, fmt=".1f", ax=ax,
                cbar_kws={"label": "difference from the average customer (standard deviations)"})
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=60)
    plt.setp(ax.get_xticklabels(), ha="right")
    ax.set_title("What distinguishes each segment (red: above average, blue: below)")
    fig.tight_layout()
    return fig


def plot_segment_map(points: pd.DataFrame, names: Mapping | pd.Series | None = None) -> plt.Figure:
    """The customers on the two main axes of the model space (``x, y, segment`` per customer,
    e.g. a reproducible sample), coloured by segment name."""
    labels = points["segment"].map(lambda v: str(dict(names).get(v, f"segment {v}")) if names is not None else f"segment {v}")
    fig, ax = plt.subplots(figsize=(9, 6.5))
    for name, d in points.groupby(labels, sort=True):
        ax.scatter(d["x"], d["y"], s=8, alpha=0.6, label=f"{name} ({len(d):,})")
    ax.set_xlabel("first main axis of the segment space")
    ax.set_ylabel("second main axis")
    ax.set_title("A map of the customers: segments that overlap here differ in other directions")
    ax.legend(fontsize=9, markerscale=2, loc="best")
    fig.tight_layout()
    return fig


def plot_segments_2d(segmenter: Segmenter | TierSegmenter, X: pd.DataFrame, *,
                     labels: np.ndarray | pd.Series | None = None, sample: int = 5000,
                     random_state: int = 0) -> plt.Figure:
    """The customers (a random ``sample`` of them) on the first two principal components of the
    model's space, coloured by segment (``labels`` as in :func:`explain`). O(sample d^2)."""
    labels = _labels(segmenter, X, labels)
    rng = np.random.default_rng(random_state)
    idx = rng.choice(len(X), size=min(sample, len(X)), replace=False)
    xy = PCA(n_components=2, random_state=random_state).fit_transform(segmenter.transform(X.iloc[idx]).to_numpy())
    labels = labels[idx]
    fig, ax = plt.subplots(figsize=(7, 5.5))
    sns.scatterplot(x=xy[:, 0], y=xy[:, 1], hue=labels.astype(str), hue_order=np.unique(labels).astype(str),
                    s=12, alpha=0.7, ax=ax, palette="tab10")
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title("Customers on a map of their behaviour (PCA), by segment")
    ax.legend(title="segment", fontsize=8)
    fig.tight_layout()
    return fig
