"""Segmentation: recovery of planted personas, k choice guard, predict, persistence, stability, identity."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from segmentation.data import load_store
from segmentation.pipeline import segment_customers
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


@pytest.fixture(scope="module")
def synthetic():
    store = load_store("synthetic", n_customers=2500, seed=42, suppress=[])
    return store, segment_customers(store, "2026-01-01", random_state=0)


def test_planted_personas_are_recovered(synthetic):
    store, result = synthetic
    truth = store.truth.set_index("customer_id").reindex(result.table.index)["persona"]
    ari = adjusted_rand_score(truth, result.table["segment"])
    print(f"ARI vs planted personas: {ari:.3f}, k = {result.model.n_clusters_}")
    assert result.model.n_clusters_ == 7
    assert ari >= 0.9


def test_consent_is_honoured(synthetic):
    store, result = synthetic
    no = set(store.customers.loc[~store.customers["consent_profiling"], "customer_id"])
    assert no and not no & set(result.table.index)
    assert result.excluded_no_consent == len(no & set(store.truth["customer_id"]))


def test_auto_k_finds_blobs_and_table():
    X, y = _blobs()
    seg = Segmenter(random_state=0).fit(X)
    assert seg.n_clusters_ == 4
    assert adjusted_rand_score(y, seg.labels_) > 0.95
    assert set(seg.selection_.columns) >= {"k", "silhouette", "calinski_harabasz", "davies_bouldin", "inertia", "largest_share", "chosen"}
    assert seg.selection_["chosen"].sum() == 1
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
    if method == "gmm":
        seg = Segmenter(method="gmm", k_range=(2, 6)).fit(X)
        assert seg.selection_["bic"].notna().all()


def test_predict_new_customers_and_save_load(tmp_path):
    X, y = _blobs(n=1000)
    seg = Segmenter(4, random_state=0).fit(X.iloc[:800])
    pred = seg.predict(X.iloc[800:])
    assert adjusted_rand_score(y[800:], pred) > 0.95
    np.testing.assert_array_equal(seg.predict(X.iloc[:800]), seg.labels_)
    path = seg.save(tmp_path / "m.joblib")
    loaded = Segmenter.load(path, features=list(X.columns))
    np.testing.assert_array_equal(loaded.predict(X.iloc[800:]), pred)
    with pytest.raises(ValueError, match="other features"):
        Segmenter.load(path, features=["f0", "zz"])


def test_match_segments_recovers_permutation():
    prev = pd.DataFrame(np.eye(4) * 5, index=[0, 1, 2, 3])
    cur = pd.DataFrame(np.vstack([prev.to_numpy()[[2, 0, 3, 1]] + 0.1, np.full(4, 20.0)]), index=[0, 1, 2, 3, 4])
    m = match_segments(prev, cur)
    assert m["new_id"].tolist() == [2, 0, 3, 1, 4]
    assert m["matched"].tolist() == [True, True, True, True, False]


def test_identity_is_stable_across_runs(tmp_path):
    store = load_store("synthetic", n_customers=2000, seed=42, suppress=[])
    first = segment_customers(store, "2025-10-01", random_state=0, model_dir=tmp_path)
    second = segment_customers(store, "2026-01-01", random_state=1, model_dir=tmp_path)
    m = second.mapping
    assert m is not None
    # every previous segment is found again; a segment the previous run did not have is new and flagged
    assert sorted(m.loc[m["matched"], "new_id"]) == list(range(first.model.n_clusters_))
    assert (m.loc[~m["matched"], "new_id"] >= first.model.n_clusters_).all()
    assert sorted(second.table["segment"].unique()) == sorted(m["new_id"])
    truth = store.truth.set_index("customer_id")["persona"]
    # the same planted persona keeps the same segment id in both runs
    a = first.table["segment"].groupby(truth.reindex(first.table.index)).agg(lambda s: s.mode()[0])
    b = second.table["segment"].groupby(truth.reindex(second.table.index)).agg(lambda s: s.mode()[0])
    assert (a == b).all()


def test_stability_flags_noise_segment():
    X, _ = _blobs(n=800, k=3)
    seg = Segmenter(3, random_state=0).fit(X)
    st = stability(seg, X, n_boot=8)
    assert st["stable"].all() and st.attrs["ari_mean"] > 0.95
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
    e = explain(X, seg.labels_)
    assert e.shape == (3, 5)
    traits = top_traits(e, n=2)
    assert traits.groupby("segment").size().tolist() == [2, 2, 2]
    rules, fidelity = surrogate_rules(X, seg.labels_)
    assert "class:" in rules and fidelity > 0.9
    assert plot_segment_profiles(e).axes and plot_segments_2d(seg, X).axes
