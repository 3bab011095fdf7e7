"""Segmenter on hand-made data with known answers: k choice and its guards, methods, predict,
persistence, stability, identity across runs, explanations. The synthetic-store and real-data
runs are in test_pipeline.py."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score, silhouette_score

from segmentation.segments import (
    Segmenter,
    explain,
    match_segments,
    plot_k_selection,
    plot_segment_profiles,
    plot_segments_2d,
    stability,
    surrogate_rules,
    top_traits,
)

matplotlib.use("Agg")


def _blobs(n=900, k=4, seed=0) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_blobs(n_samples=n, centers=k, n_features=5, cluster_std=0.6, random_state=seed)
    return pd.DataFrame(np.exp(X / 3), columns=[f"f{i}" for i in range(5)]), y  # positive, skewed


def test_auto_k_finds_blobs_and_table():
    X, y = _blobs()
    seg = Segmenter(random_state=0).fit(X)
    assert seg.n_clusters_ == 4
    assert adjusted_rand_score(y, seg.labels_) > 0.95
    assert set(seg.selection_.columns) >= {"k", "silhouette", "calinski_harabasz", "davies_bouldin", "inertia", "largest_share", "chosen"}
    assert seg.selection_["chosen"].sum() == 1
    assert seg.selection_.attrs["reason"].startswith("k = 4: highest silhouette")
    assert np.bincount(seg.labels_).tolist() == sorted(np.bincount(seg.labels_).tolist(), reverse=True)
    assert plot_k_selection(seg.selection_).axes


def test_largest_share_guard_rejects_degenerate_k():
    rng = np.random.default_rng(1)
    # one huge tight mass + small far groups: k=2 gives a high silhouette with ~97% in one segment
    big = rng.normal(0, 0.3, (970, 2))
    small = np.vstack([rng.normal(8, 0.3, (10, 2)), rng.normal(-8, 0.3, (10, 2)), rng.normal([8, -8], 0.3, (10, 2))])
    X = pd.DataFrame(np.vstack([big, small]), columns=["a", "b"])
    unguarded = Segmenter(skew=None, max_largest_share=1.0, min_segment_share=0.0, k_range=(2, 6)).fit(X)
    guarded = Segmenter(skew=None, max_largest_share=0.6, min_segment_share=0.0, k_range=(2, 6)).fit(X)
    assert unguarded.selection_.set_index("k").loc[unguarded.n_clusters_, "largest_share"] > 0.9
    assert guarded.selection_.set_index("k").loc[guarded.n_clusters_, "largest_share"] <= 0.6
    assert (guarded.selection_["eligible"] == (guarded.selection_["largest_share"] <= 0.6)).all()
    with pytest.warns(UserWarning, match="no k in"):
        Segmenter(skew=None, max_largest_share=0.1, k_range=(2, 3)).fit(X)


def test_auto_k_avoids_the_unscaled_silhouette_trap():
    """NOTES.md: on raw spend-like data silhouette prefers 'whales vs everyone'."""
    rng = np.random.default_rng(0)
    groups = np.repeat([0, 1, 2], 330)
    logs = np.array([[1.0, 4.0], [3.0, 1.0], [5.0, 3.0]])[groups] + rng.normal(0, 0.3, (990, 2))
    whales = rng.lognormal(9, 0.3, (10, 2))
    X = pd.DataFrame(np.vstack([np.exp(logs), whales]), columns=["frequency", "monetary"])
    raw = {k: KMeans(k, n_init=4, random_state=0).fit_predict(X) for k in range(2, 7)}
    raw_best = max(raw, key=lambda k: silhouette_score(X, raw[k]))
    assert np.bincount(raw[raw_best]).max() / len(X) >= 0.99  # the degenerate choice
    seg = Segmenter(k_range=(2, 6), random_state=0).fit(X)
    table = seg.selection_.set_index("k")
    assert seg.n_clusters_ == 3 and adjusted_rand_score(groups, seg.labels_[:990]) == 1.0
    # k = 4 (the 10 whales apart) scores a higher silhouette but fails the smallest-segment guard
    assert table.loc[4, "silhouette"] > table.loc[3, "silhouette"] and not table.loc[4, "eligible"]


def test_small_segment_guard():
    X, _ = _blobs(n=1000, k=3)
    outliers = pd.DataFrame(np.full((5, 5), 50.0), columns=X.columns)  # 0.5% far away
    data = pd.concat([X, outliers], ignore_index=True)
    free = Segmenter(min_segment_share=0.0, k_range=(2, 6)).fit(data)
    guarded = Segmenter(k_range=(2, 6)).fit(data)
    assert free.selection_.set_index("k").loc[free.n_clusters_, "smallest_share"] < 0.02
    assert guarded.selection_.set_index("k").loc[guarded.n_clusters_, "smallest_share"] >= 0.02


@pytest.mark.parametrize("method", ["gmm", "agglomerative", "hdbscan"])
def test_other_methods(method):
    X, y = _blobs(n=600)
    seg = Segmenter(4 if method != "hdbscan" else "auto", method=method, random_state=0, fit_sample=400).fit(X)
    assert adjusted_rand_score(y, seg.labels_) > 0.9
    # new customers are assigned by the method's own rule, consistently with the fit
    assert (seg.predict(X) == seg.labels_).mean() > 0.99
    if method == "gmm":
        seg = Segmenter(method="gmm", k_range=(2, 6)).fit(X)
        assert seg.selection_["bic"].notna().all()


def test_hdbscan_keeps_noise_apart():
    X, y = _blobs(n=600)
    far = pd.DataFrame(np.exp(np.random.default_rng(0).uniform(-40, 40, (6, 5)) / 3), columns=X.columns)
    data = pd.concat([X, far], ignore_index=True)
    seg = Segmenter(method="hdbscan", random_state=0).fit(data)
    assert (seg.labels_[-6:] == -1).all() and seg.n_clusters_ == 4
    assert adjusted_rand_score(y, seg.labels_[:600]) > 0.9
    assert -1 not in seg.cluster_centers_.index
    st = stability(seg, data, n_boot=3)
    assert st.index.tolist() == [0, 1, 2, 3] and st["stable"].all()


def test_predict_new_customers_and_save_load(tmp_path):
    X, y = _blobs(n=1000)
    seg = Segmenter(4, random_state=0).fit(X.iloc[:800])
    pred = seg.predict(X.iloc[800:])
    assert adjusted_rand_score(y[800:], pred) > 0.95
    np.testing.assert_array_equal(seg.predict(X.iloc[:800]), seg.labels_)
    path = seg.save(tmp_path / "m.joblib")
    loaded = Segmenter.load(path, features=list(X.columns))
    np.testing.assert_array_equal(loaded.predict(X.iloc[800:]), pred)
    with pytest.raises(ValueError, match=r"other features: missing \['f1', 'f2', 'f3', 'f4'\], new \['zz'\]"):
        Segmenter.load(path, features=["f0", "zz"])
    # the same inputs give the same numbers
    again = Segmenter(4, random_state=0).fit(X.iloc[:800])
    np.testing.assert_array_equal(again.labels_, seg.labels_)
    pd.testing.assert_frame_equal(again.cluster_centers_, seg.cluster_centers_)


def test_match_segments_recovers_permutation():
    prev = pd.DataFrame(np.eye(4) * 5, index=[0, 1, 2, 3])
    cur = pd.DataFrame(np.vstack([prev.to_numpy()[[2, 0, 3, 1]] + 0.1, np.full(4, 20.0)]), index=[0, 1, 2, 3, 4])
    m = match_segments(prev, cur)
    assert m["new_id"].tolist() == [2, 0, 3, 1, 4]
    assert m["matched"].tolist() == [True, True, True, True, False]


def test_align_to_keeps_ids_of_a_permuted_refit():
    X, y = _blobs(n=900, k=4)
    first = Segmenter(4, random_state=0).fit(X)
    later = X.sample(frac=1.0, random_state=3).iloc[:700]  # other customers, other order
    second = Segmenter(4, random_state=5).fit(later)
    mapping = second.align_to(first, later)
    assert mapping["matched"].all()
    np.testing.assert_array_equal(second.labels_, first.predict(later))
    np.testing.assert_array_equal(second.predict(X), first.labels_)  # predict follows the new ids
    assert second.cluster_centers_.index.tolist() == [0, 1, 2, 3]


def test_stability_flags_noise_segment():
    X, _ = _blobs(n=800, k=3)
    seg = Segmenter(3, random_state=0).fit(X)
    st = stability(seg, X, n_boot=8)
    assert st["stable"].all() and st.attrs["ari_mean"] > 0.95
    assert len(st.attrs["ari"]) == 8 and st.attrs["ari_ci"][0] <= st.attrs["ari_mean"] <= st.attrs["ari_ci"][1]
    assert st["size"].sum() == len(X)
    # three real groups plus a diffuse cloud of noise forced into two more segments
    rng = np.random.default_rng(0)
    blobs, _ = make_blobs(n_samples=800, centers=3, n_features=5, cluster_std=0.6, random_state=0)
    noise = rng.uniform(blobs.min(0) - 5, blobs.max(0) + 5, (200, 5))
    data = pd.DataFrame(np.vstack([blobs, noise]), columns=list("abcde"))
    seg = Segmenter(5, skew=None, random_state=0).fit(data)
    st = stability(seg, data, n_boot=8)
    assert st.loc[[0, 1, 2], "stable"].all()  # the three real groups reproduce
    assert not st.loc[[3, 4], "stable"].any()  # the noise segments do not
    # a single Gaussian cut into three is unstable everywhere
    gauss = pd.DataFrame(rng.normal(size=(800, 5)), columns=list("abcde"))
    st = stability(Segmenter(3, skew=None, random_state=0).fit(gauss), gauss, n_boot=8)
    assert not st["stable"].any() and st.attrs["ari_mean"] < 0.6


def test_explanations():
    X, y = _blobs(n=600, k=3)
    seg = Segmenter(3, random_state=0).fit(X)
    e = explain(seg, X)
    assert e.shape == (3, 5)
    # a hand-computed standardized difference
    member = seg.labels_ == 0
    expected = (X.loc[member, "f0"].mean() - X["f0"].mean()) / X["f0"].std(ddof=0)
    assert e.loc[0, "f0"] == pytest.approx(expected)
    traits = top_traits(e, n=2)
    assert traits.groupby("segment").size().tolist() == [2, 2, 2]
    assert (traits["difference"].abs().groupby(traits["segment"]).is_monotonic_decreasing).all()
    rules, fidelity = surrogate_rules(seg, X)
    assert "class:" in rules and fidelity > 0.9
    with pytest.raises(ValueError, match="labels=segmenter.predict"):
        explain(seg, X.iloc[:10])
    assert explain(seg, X.iloc[:100], labels=seg.predict(X.iloc[:100])).shape[1] == 5
    assert plot_segment_profiles(e).axes and plot_segments_2d(seg, X).axes


def test_options_and_bad_input():
    X, y = _blobs(n=600)
    quantile = Segmenter(4, skew="quantile", random_state=0).fit(X)
    assert adjusted_rand_score(y, quantile.labels_) > 0.95
    pca = Segmenter(4, pca=2, random_state=0).fit(X)
    assert pca.cluster_centers_.shape == (4, 2) and pca.transform(X).shape == (600, 2)
    X2 = X.assign(empty=np.nan, name="x")  # an all-missing feature is kept (as 0), a text column ignored
    seg = Segmenter(4, random_state=0).fit(X2)
    assert "name" not in seg.feature_names_in_ and (seg.transform(X2)["empty"] == 0).all()
    with pytest.raises(ValueError, match=r"lacks the feature columns \['f4'\]"):
        seg.predict(X2.drop(columns="f4"))
    with pytest.raises(ValueError, match=r"\['name'\] are not numeric"):
        Segmenter(features=["f0", "name"]).fit(X2)
    with pytest.raises(ValueError, match=r"\['f1'\] hold infinite"):
        Segmenter().fit(X.assign(f1=np.inf))
    with pytest.raises(ValueError, match="skew must be"):
        Segmenter(skew="log").fit(X)
    with pytest.raises(ValueError, match="method must be"):
        Segmenter(method="dbscan").fit(X)


def test_load_warns_on_other_sklearn_version(tmp_path):
    import joblib

    X, _ = _blobs(n=300)
    path = Segmenter(3, random_state=0).fit(X).save(tmp_path / "m.joblib")
    payload = joblib.load(path)
    assert set(payload) == {"model", "features", "segmentation", "sklearn"}
    joblib.dump({**payload, "sklearn": "0.0"}, path)
    with pytest.warns(UserWarning, match="saved with scikit-learn 0.0"):
        Segmenter.load(path)
