"""Behavioural segmentation with honest model selection, stability and stable identities.

:class:`Segmenter` is a scikit-learn estimator: impute -> skew handling (signed log1p or a
quantile transform) -> standard scaling -> optional PCA -> clusterer (KMeans by default;
GaussianMixture, Ward agglomerative and HDBSCAN offered). With ``n_clusters="auto"`` it scores
every k in ``k_range`` and picks one by a documented rule; the table is in ``selection_``.

The automatic choice
--------------------
Among the k whose largest segment holds at most ``max_largest_share`` of customers (the guard
against the degenerate "one giant cluster" solutions that score a high silhouette) and whose
smallest segment holds at least ``min_segment_share`` (no segment too small to act on or to
report), take the k with the highest silhouette; when two k are within 0.01 silhouette, the one with the higher
Calinski-Harabasz score wins. Override with an integer ``n_clusters``.

Cost: the pipeline is O(n d); KMeans O(n k d n_init) per k; silhouette is O(s^2) on one cached
sample of ``s = min(n, silhouette_sample)`` rows reused for every k (NOTES: it is quadratic);
Calinski-Harabasz and Davies-Bouldin are O(n k d).

Assignment of rows the clusterer did not see
--------------------------------------------
KMeans and GaussianMixture fit on every row and assign new customers with their own ``predict``.
Ward agglomerative clustering is O(s^2) in memory, so it is fitted on a random sample of at most
``fit_sample`` rows; the other rows (and new customers) go to the nearest Ward centroid
(O(n k d)). HDBSCAN is fitted on such a sample too; its noise keeps the label ``-1`` and the other
rows (and new customers) take the label of their nearest sampled customer, noise included
(O(n log s) with a tree index in low dimension, up to O(n s d) brute force in high dimension).
If no k passes the guards, the rule is applied to every k and the reason says so.

Segment ids are ordered by size (0 = largest) after a fit, and can be aligned to a previous
run's ids with :meth:`Segmenter.align_to` so that a persona keeps its number across runs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import warnings

import joblib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
import sklearn
from scipy.optimize import linear_sum_assignment
from sklearn.base import BaseEstimator
from sklearn.cluster import HDBSCAN, AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.metrics import adjusted_rand_score, calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.metrics.cluster import contingency_matrix
from sklearn.mixture import GaussianMixture
from sklearn.neighbors import KNeighborsClassifier, NearestCentroid
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, QuantileTransformer, StandardScaler
from sklearn.tree import DecisionTreeClassifier, export_text

import segmentation

__all__ = [
    "Segmenter",
    "stability",
    "match_segments",
    "explain",
    "top_traits",
    "surrogate_rules",
    "segment_profile",
    "plot_k_selection",
    "plot_segment_profiles",
    "plot_segments_2d",
]

METHODS = ("kmeans", "gmm", "agglomerative", "hdbscan")


def _signed_log1p(x):
    return np.sign(x) * np.log1p(np.abs(x))


class Segmenter(BaseEstimator):
    """Customer segmentation pipeline with automatic, guarded choice of k.

    Parameters
    ----------
    n_clusters : int or "auto"
        Number of segments, or ``"auto"`` to choose within ``k_range``.
    method : {"kmeans", "gmm", "agglomerative", "hdbscan"}
    k_range : tuple of int
        Inclusive range of k for the automatic choice.
    skew : {"log1p", "quantile", None}
        Skew handling before scaling (signed log1p keeps the sign of trends).
    pca : int, float or None
        PCA components (int) or variance to keep (float in (0, 1)).
    features : list of str, optional
        Columns to use; default: every numeric column.
    random_state : int
    max_largest_share, min_segment_share : float
        Guards of the automatic choice (see the module docstring).
    silhouette_sample : int
        Rows of the one cached silhouette sample.
    n_init : int
        KMeans / GMM restarts.
    fit_sample : int
        Most rows agglomerative and HDBSCAN are fitted on.

    Attributes
    ----------
    labels_ : ndarray
        Segment of every training row (0 = largest segment, or aligned ids; ``-1`` = HDBSCAN
        noise).
    n_clusters_ : int
    cluster_centers_ : DataFrame
        Segment centroids in the transformed space (index = segment id).
    selection_ : DataFrame or None
        One row per k: ``silhouette, calinski_harabasz, davies_bouldin, inertia, bic,
        largest_share, smallest_share, eligible, chosen``; ``selection_.attrs["reason"]`` says
        in words why the chosen k won.
    feature_names_in_ : list of str
    label_map_ : Series
        Clusterer label -> public segment id (size order, then :meth:`align_to`).
    mapping_ : DataFrame or None
        After :meth:`align_to`: how this fit's segments map to the previous ids.

    Examples
    --------
    >>> seg = Segmenter(random_state=0).fit(features)  # doctest: +SKIP
    >>> seg.selection_.attrs["reason"], seg.predict(new_customers)  # doctest: +SKIP
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
        silhouette_sample: int = 10000,
        n_init: int = 10,
        fit_sample: int = 20000,
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
        self.silhouette_sample = silhouette_sample
        self.n_init = n_init
        self.fit_sample = fit_sample

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
        if self.method == "agglomerative":
            return AgglomerativeClustering(n_clusters=k, linkage="ward")
        if self.method == "hdbscan":
            return HDBSCAN(min_cluster_size=max(10, k), copy=True)
        raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")

    def _fit_labels(self, Z: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, Any, Any]:
        """Fit the clusterer (on a sample for agglomerative/HDBSCAN) and label every row.

        Returns the labels, the clusterer and the *assigner* whose ``predict`` labels new rows
        (the clusterer itself, or a nearest-centroid / nearest-neighbour rule fitted on the sample).
        """
        model = self._clusterer(k, seed)
        if self.method in ("kmeans", "gmm"):
            model.fit(Z)
            return model.predict(Z), model, model
        idx = np.random.default_rng(seed).choice(len(Z), size=min(len(Z), self.fit_sample), replace=False)
        sample_labels = model.fit_predict(Z[idx])
        if self.method == "agglomerative":
            assigner = NearestCentroid().fit(Z[idx], sample_labels)
        else:
            assigner = KNeighborsClassifier(n_neighbors=1).fit(Z[idx], sample_labels)
        labels = assigner.predict(Z)
        labels[idx] = sample_labels
        return labels, model, assigner

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X: pd.DataFrame, y: Any = None) -> Segmenter:
        """Fit the pipeline and choose k (when ``n_clusters="auto"``).

        Parameters
        ----------
        X : DataFrame
            One row per customer; ``features`` (default: every numeric column) must be numeric
            and finite; missing values are imputed with the column median (a column with no
            value at all becomes 0, i.e. carries no information).
        y : ignored
        """
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        self.feature_names_in_ = list(self.features or [c for c in X.columns if pd.api.types.is_numeric_dtype(X[c])])
        if len(X) < 3:
            raise ValueError(f"need at least 3 customers to segment, got {len(X)}")
        self.preprocessor_ = self._preprocessor(len(X))
        Z = self.preprocessor_.fit_transform(self._matrix(X))
        self.transformed_columns_ = list(Z.columns)
        Zv = Z.to_numpy()
        self.selection_ = None
        if self.n_clusters == "auto" and self.method != "hdbscan":
            self.selection_ = self._select_k(Zv)
            k = int(self.selection_.loc[self.selection_["chosen"], "k"].iloc[0])
        elif self.method == "hdbscan":
            k = 0
        else:
            k = int(self.n_clusters)
        labels, self.model_, self.assigner_ = self._fit_labels(Zv, k, self.random_state)
        self._set_labels(Zv, labels)
        self.mapping_ = None
        return self

    def _set_labels(self, Z: np.ndarray, labels: np.ndarray) -> None:
        """Order segment ids by size (0 = largest; noise stays -1) and store centroids."""
        sizes = pd.Series(labels[labels >= 0]).value_counts(sort=False)
        order = sizes.sort_index().sort_values(ascending=False, kind="stable").index
        self.label_map_ = pd.concat([pd.Series(np.arange(len(order)), index=order), pd.Series([-1], index=[-1])])
        self.labels_ = self.label_map_.reindex(labels).to_numpy()
        self.n_clusters_ = int(len(order))
        self.cluster_centers_ = _centroids(Z, self.labels_, self.transformed_columns_)

    def _select_k(self, Z: np.ndarray) -> pd.DataFrame:
        lo, hi = self.k_range
        hi = min(hi, len(Z) - 1)
        rng = np.random.default_rng(self.random_state)
        sample = rng.choice(len(Z), size=min(len(Z), self.silhouette_sample), replace=False)
        rows = []
        for k in range(lo, hi + 1):
            labels, model, _ = self._fit_labels(Z, k, self.random_state)
            n_labels = len(np.unique(labels))
            rows.append({
                "k": k,
                "silhouette": silhouette_score(Z[sample], labels[sample]) if len(np.unique(labels[sample])) > 1 else np.nan,
                "calinski_harabasz": calinski_harabasz_score(Z, labels) if n_labels > 1 else np.nan,
                "davies_bouldin": davies_bouldin_score(Z, labels) if n_labels > 1 else np.nan,
                "inertia": getattr(model, "inertia_", np.nan),
                "bic": model.bic(Z) if self.method == "gmm" else np.nan,
                "largest_share": np.bincount(labels).max() / len(labels),
                "smallest_share": np.bincount(labels).min() / len(labels),
            })
        table = pd.DataFrame(rows)
        table["eligible"] = (table["largest_share"] <= self.max_largest_share) & (table["smallest_share"] >= self.min_segment_share)
        guards = (f"largest segment <= {self.max_largest_share:.0%} and smallest >= "
                  f"{self.min_segment_share:.0%} of customers")
        if table["eligible"].any():
            pool, scope = table[table["eligible"]], f"among the k with {guards}"
        else:
            warnings.warn(f"no k in {self.k_range} has {guards}; choosing among all k "
                          "(look at the smallest segments, or set n_clusters)", stacklevel=3)
            pool, scope = table, f"among all k (none had {guards})"
        best = pool["silhouette"].max()
        near = pool[pool["silhouette"] >= best - 0.01]
        chosen = near.sort_values(["calinski_harabasz", "k"], ascending=[False, True]).iloc[0]
        table["chosen"] = table["k"] == chosen["k"]
        tie = (f"; {len(near) - 1} other k within 0.01 silhouette, higher Calinski-Harabasz wins"
               if len(near) > 1 else "")
        table.attrs["reason"] = (f"k = {int(chosen['k'])}: highest silhouette ({chosen['silhouette']:.3f}) "
                                 f"{scope}{tie}")
        return table

    def _matrix(self, X: pd.DataFrame) -> pd.DataFrame:
        """The model's feature columns of ``X`` as float64, with clear errors for bad input."""
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
        if not self.feature_names_in_:
            raise ValueError("X has no numeric columns to segment on")
        return data

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """The customers in the model's standardized space (columns ``transformed_columns_``)."""
        return self.preprocessor_.transform(self._matrix(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Assign (new) customers to the fitted segments without refitting, by the rule of the
        method (see the module docstring; KMeans: nearest centre, O(n k d))."""
        raw = self.assigner_.predict(self.transform(X).to_numpy())
        return self.label_map_.reindex(raw).to_numpy()

    def fit_predict(self, X: pd.DataFrame, y: Any = None) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X).labels_

    # ------------------------------------------------------------------ identity across runs
    def align_to(self, previous: Segmenter, X: pd.DataFrame, *, max_distance: float | None = None) -> pd.DataFrame:
        """Relabel this fit's segments to the ids of a previous run's model.

        Both sets of centroids are compared in the *previous* model's space (this run's
        customers transformed by the previous preprocessor, averaged per new segment), and
        matched one-to-one by the Hungarian algorithm. A segment with no match (more segments
        than before, or farther than ``max_distance``) gets a fresh id above the previous ones
        and is flagged in the returned table (also kept as ``mapping_``).
        """
        Zp = previous.transform(X).to_numpy()
        current = _centroids(Zp, self.labels_, previous.transformed_columns_)
        mapping = match_segments(previous.cluster_centers_, current, max_distance=max_distance)
        lookup = pd.concat([mapping.set_index("current")["new_id"], pd.Series([-1], index=[-1])])
        self.labels_ = lookup.reindex(self.labels_).to_numpy()
        self.label_map_ = pd.Series(lookup.reindex(self.label_map_).to_numpy(), index=self.label_map_.index)
        self.cluster_centers_.index = lookup.reindex(self.cluster_centers_.index).to_numpy()
        self.cluster_centers_ = self.cluster_centers_.sort_index()
        self.mapping_ = mapping
        return mapping

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | Path) -> Path:
        """Save the fitted model with its feature list and versions (joblib)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"model": self, "features": self.feature_names_in_, "segmentation": segmentation.__version__,
                     "sklearn": sklearn.__version__}, path)
        return path

    @classmethod
    def load(cls, path: str | Path, *, features: list[str] | None = None) -> Segmenter:
        """Load a saved model; with ``features``, refuse a model fitted on other columns.

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


def stability(segmenter: Segmenter, X: pd.DataFrame, *, n_boot: int = 20, sample_frac: float = 0.8,
              random_state: int = 0) -> pd.DataFrame:
    """How well segments reproduce when the model is refitted on subsamples.

    Each of ``n_boot`` refits uses a random ``sample_frac`` of the customers (without
    replacement), the same k and the same pipeline (the preprocessing is not refitted). Per
    segment, the Jaccard similarity with its best-matching refit segment is averaged over refits
    (Hennig 2007: >= 0.75 stable, < 0.5 dissolved). Cost: ``n_boot`` clusterer fits.

    Parameters
    ----------
    segmenter : Segmenter
        Fitted on ``X``.
    X : DataFrame
        The table the segmenter was fitted on.
    n_boot, sample_frac, random_state
        Number of refits, share of customers in each, seed.

    Returns
    -------
    DataFrame
        Index ``segment`` (HDBSCAN noise left out); ``size, jaccard_mean, jaccard_min, stable``.
        The overall agreement of each refit with the full fit on the common customers (adjusted
        Rand index) is in ``.attrs``: ``ari`` (one per refit), ``ari_mean`` and ``ari_ci``
        (2.5% and 97.5% percentiles over refits).
    """
    if len(X) != len(segmenter.labels_):
        raise ValueError(f"X has {len(X)} rows but the segmenter was fitted on {len(segmenter.labels_)}; "
                         "pass the table it was fitted on")
    Z = segmenter.transform(X).to_numpy()
    full = segmenter.labels_
    ids = segmenter.cluster_centers_.index.to_numpy()
    rng = np.random.default_rng(random_state)
    jac = np.zeros((n_boot, len(ids)))
    aris = np.zeros(n_boot)
    for b in range(n_boot):  # n_boot refits, each vectorized
        idx = rng.choice(len(Z), size=int(sample_frac * len(Z)), replace=False)
        labels, _, _ = segmenter._fit_labels(Z[idx], segmenter.n_clusters_, random_state + b + 1)
        aris[b] = adjusted_rand_score(full[idx], labels)
        segs, full_codes = np.unique(full[idx], return_inverse=True)
        cm = contingency_matrix(full_codes, labels)
        j = cm / (cm.sum(axis=1)[:, None] + cm.sum(axis=0)[None, :] - cm)
        real = segs >= 0
        jac[b, np.searchsorted(ids, segs[real])] = j[real].max(axis=1)
    out = pd.DataFrame({
        "size": pd.Series(full).value_counts().reindex(ids, fill_value=0).to_numpy(),
        "jaccard_mean": jac.mean(axis=0),
        "jaccard_min": jac.min(axis=0),
    }, index=pd.Index(ids, name="segment"))
    out["stable"] = out["jaccard_mean"] >= 0.75
    out.attrs.update(ari=aris.tolist(), ari_mean=float(aris.mean()),
                     ari_ci=(float(np.percentile(aris, 2.5)), float(np.percentile(aris, 97.5))))
    return out


def _labels(segmenter: Segmenter, X: pd.DataFrame, labels: np.ndarray | pd.Series | None) -> np.ndarray:
    """``labels``, or the segmenter's training labels when ``X`` is its training table."""
    if labels is None:
        if len(X) != len(segmenter.labels_):
            raise ValueError(f"X has {len(X)} rows but the segmenter was fitted on {len(segmenter.labels_)}; "
                             "pass labels=segmenter.predict(X) for other customers")
        labels = segmenter.labels_
    return np.asarray(labels)


def explain(segmenter: Segmenter, X: pd.DataFrame, *, labels: np.ndarray | pd.Series | None = None) -> pd.DataFrame:
    """Standardized mean difference of every model feature per segment:
    ``(segment mean - population mean) / population sd`` on the raw feature scale. O(n d).

    Parameters
    ----------
    segmenter : Segmenter
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


def surrogate_rules(segmenter: Segmenter, X: pd.DataFrame, *, labels: np.ndarray | pd.Series | None = None,
                    max_depth: int = 3, random_state: int = 0) -> tuple[str, float]:
    """Readable if-then rules: a shallow decision tree on the raw model features that imitates
    the segmentation. O(n d max_depth log n).

    Parameters
    ----------
    segmenter : Segmenter
        Fitted.
    X : DataFrame
        The customers (default: the training table, labelled by ``labels_``).
    labels : array, optional
        Segment per row of ``X``.
    max_depth, random_state
        Of the decision tree (missing values filled with the column median).

    Returns
    -------
    rules : str
        ``sklearn.tree.export_text`` of the tree (``class: <segment>`` at the leaves).
    fidelity : float
        Share of customers the tree puts in their actual segment.
    """
    labels = _labels(segmenter, X, labels)
    features = segmenter.feature_names_in_
    data = X[features].astype("float64")
    data = data.fillna(data.median())
    tree = DecisionTreeClassifier(max_depth=max_depth, random_state=random_state).fit(data, labels)
    fidelity = float((tree.predict(data) == labels).mean())
    return export_text(tree, feature_names=features, decimals=2), fidelity


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


def plot_k_selection(selection: pd.DataFrame) -> plt.Figure:
    """Silhouette, Calinski-Harabasz, Davies-Bouldin, inertia (elbow) and BIC over k, with the
    chosen k marked and the k outside the guards (segment shares) greyed."""
    metrics = [m for m in ("silhouette", "calinski_harabasz", "davies_bouldin", "inertia", "bic", "largest_share")
               if m in selection and selection[m].notna().any()]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.2 * len(metrics), 3.2))
    chosen = int(selection.loc[selection["chosen"], "k"].iloc[0])
    better = {"silhouette": "higher is better", "calinski_harabasz": "higher is better", "davies_bouldin": "lower is better",
              "inertia": "look for the elbow", "bic": "lower is better", "largest_share": "guard: lower is safer"}
    for ax, m in zip(np.atleast_1d(axes), metrics):
        ax.plot(selection["k"], selection[m], marker="o", color="tab:blue")
        bad = selection[~selection["eligible"]]
        ax.scatter(bad["k"], bad[m], color="lightgrey", zorder=3, label="outside the share guards")
        ax.axvline(chosen, color="tab:red", ls="--", lw=1)
        ax.set_title(f"{m.replace('_', ' ')}\n({better[m]})", fontsize=9)
        ax.set_xlabel("k")
    fig.suptitle(f"Choosing the number of segments: k = {chosen}", fontsize=11)
    fig.tight_layout()
    return fig


def plot_segment_profiles(explanation: pd.DataFrame, n_features: int = 15) -> plt.Figure:
    """Heatmap of the most distinctive features (standardized difference from the average)."""
    top = explanation.abs().max(axis=0).sort_values(ascending=False).index[:n_features]
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(top), 1 + 0.5 * len(explanation)))
    sns.heatmap(explanation[top], cmap="RdBu_r", center=0, vmin=-2, vmax=2, annot=True, fmt=".1f", ax=ax,
                cbar_kws={"label": "difference from average (sd)"})
    ax.set_ylabel("segment")
    ax.set_title("What distinguishes each segment")
    fig.tight_layout()
    return fig


def plot_segments_2d(segmenter: Segmenter, X: pd.DataFrame, *, labels: np.ndarray | pd.Series | None = None,
                     sample: int = 5000, random_state: int = 0) -> plt.Figure:
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
