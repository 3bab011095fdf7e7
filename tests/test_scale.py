"""At scale: out-of-core features, sample-fitted segments assigned in batches, value scored in
batches, with the same answers as the in-memory path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from segmentation import scale
from segmentation.data import connect, load_store
from segmentation.features import behaviour_columns, customer_features, lifetime_summary, lifetime_summary_table
from segmentation.segments import Segmenter
from segmentation.synthetic import write_transactions_dataset
from segmentation.value import BetaGeo, GammaGamma, compress_summary, customer_value

AS_OF = "2026-01-01"


@pytest.fixture(scope="module")
def store():
    return load_store("synthetic", n_customers=3000, random_state=11, as_of=AS_OF, suppress=[])


@pytest.fixture(scope="module")
def features(store):
    return customer_features(store.transactions, AS_OF)


def test_features_out_of_core_with_a_memory_limit(tmp_path):
    """A Parquet data set read through DuckDB with a memory limit below its size spills to disk
    and gives exactly the features of an unlimited run."""
    parts = write_transactions_dataset(tmp_path / "lines", 400_000, random_state=3, customers_per_part=800)
    assert len(parts) == 3 and parts["lines"].sum() > 300_000
    results, spilled = {}, {}
    for limit in (None, "40MB"):
        con = connect("duckdb", memory_limit=limit, temp_directory=str(tmp_path / "spill"), threads=2)
        st = load_store(tmp_path / "lines", con=con, pseudonymize=False, as_of=AS_OF, suppress=[])
        assert st.quality.set_index("rule").loc["rows_in", "rows"] == parts["lines"].sum()
        results[limit] = customer_features(st.transactions, AS_OF)
        memory = con.raw_sql("SELECT tag, memory_usage_bytes, temporary_storage_bytes FROM duckdb_memory()").df()
        spilled[limit] = int(memory["temporary_storage_bytes"].sum())
        in_memory = int(memory["memory_usage_bytes"].sum() + memory["temporary_storage_bytes"].sum())
    assert spilled[None] == 0
    assert spilled["40MB"] > 0 and in_memory > 40 * 2**20  # the data did not fit: part of it went to disk
    assert len(results[None]) == parts["customers"].sum()
    pd.testing.assert_frame_equal(results[None], results["40MB"])


def test_batches_are_the_same_from_every_kind_of_source(tmp_path, store):
    summary = lifetime_summary(store.transactions, AS_OF)
    path = tmp_path / "summary.parquet"
    summary.reset_index().to_parquet(path)
    table = lifetime_summary_table(store.transactions, AS_OF)
    for source in (summary, path, table):
        batches = list(scale.iter_batches(source, batch_size=700, columns=["frequency", "T"]))
        assert [len(b) for b in batches] == [700] * (len(summary) // 700) + [len(summary) % 700]
        got = pd.concat(batches)
        assert list(got.columns) == ["frequency", "T"]
        pd.testing.assert_frame_equal(got.sort_index(), summary[["frequency", "T"]], check_dtype=False)
    assert scale.count_rows(path) == scale.count_rows(table) == len(summary)


def test_sample_is_reproducible_and_of_the_expected_size(features):
    a = scale.sample_customers(features, 1000, random_state=5)
    b = scale.sample_customers(features, 1000, random_state=5, batch_size=333)
    c = scale.sample_customers(features, 1000, random_state=6)
    pd.testing.assert_frame_equal(a, b)  # the batch size does not change the sample
    assert not a.index.equals(c.index)
    assert abs(len(a) - 1000) < 4 * np.sqrt(1000)
    assert a.attrs["population"] == len(features) and a.attrs["fraction"] == pytest.approx(1000 / len(features))
    # unbiased: the sample's mean spend is within 4 standard errors of the population's
    se = features["monetary"].std() / np.sqrt(len(a)) * np.sqrt(1 - len(a) / len(features))
    assert abs(a["monetary"].mean() - features["monetary"].mean()) < 4 * se
    assert len(scale.sample_customers(features, 10**6)) == len(features)


def test_segments_fitted_on_a_sample_reproduce_on_all_customers(tmp_path, store, features):
    cols = behaviour_columns(features)
    path = tmp_path / "features.parquet"
    features.reset_index().to_parquet(path)
    seg, sample = scale.fit_on_sample(Segmenter(features=cols, random_state=0), path, n=1000, random_state=0)
    assert len(sample) < 0.45 * len(features)
    labels = scale.assign_segments(seg, path, batch_size=512)
    assert labels.index.equals(features.index) and labels["segment"].dtype == "int64"
    # the same answer from a DataFrame and written to Parquet
    written = scale.assign_segments(seg, features, batch_size=10_000, out=tmp_path / "segments.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(written).set_index("customer_id"), labels)
    # the sample's own labels are kept when the sample is assigned again
    assert (labels.loc[sample.index, "segment"].to_numpy() == seg.labels_).mean() > 0.99

    full = Segmenter(features=cols, random_state=0, n_clusters=seg.n_clusters_).fit(features)
    assert adjusted_rand_score(full.labels_, labels["segment"]) > 0.9
    truth = store.truth.set_index("customer_id")["persona"].reindex(labels.index)
    assert adjusted_rand_score(truth, labels["segment"]) > 0.9

    check = scale.reproduction_check(seg, sample, path, random_state=1, batch_size=512)
    assert check.attrs["customers"] == len(features)
    assert check.attrs["ari"] > 0.9
    assert check["difference"].abs().max() < 0.05
    assert check["best_match_jaccard"].min() > 0.8
    full_share = labels["segment"].value_counts(normalize=True).sort_index()
    np.testing.assert_allclose(check["full_share"], full_share.to_numpy())


def test_reproduction_check_flags_segments_that_do_not_reproduce(features):
    """Pure noise has no segments: two samples give different splits, and the check says so."""
    rng = np.random.default_rng(0)
    noise = pd.DataFrame(rng.normal(size=(4000, 6)), columns=list("abcdef"),
                         index=pd.Index([f"c{i}" for i in range(4000)], name="customer_id"))
    seg, sample = scale.fit_on_sample(Segmenter(n_clusters=6, skew=None, random_state=0), noise, n=300, random_state=0)
    check = scale.reproduction_check(seg, sample, noise, random_state=1)
    assert check.attrs["ari"] < 0.7


def test_ari_from_a_contingency_table_is_sklearns():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 4, 500), rng.integers(0, 3, 500)
    b[:300] = a[:300] % 3
    table = np.zeros((4, 3), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    assert scale._ari_from_contingency(table) == pytest.approx(adjusted_rand_score(a, b))


def test_bgnbd_on_the_compressed_summary_is_exact(store):
    summary = lifetime_summary(store.transactions, AS_OF)
    compressed = compress_summary(summary)
    assert len(compressed) < len(summary) and compressed["weight"].sum() == len(summary)
    in_engine = compress_summary(lifetime_summary_table(store.transactions, AS_OF)).to_pandas()
    pd.testing.assert_frame_equal(in_engine, compressed, check_dtype=False)
    full = BetaGeo().fit(summary)
    weighted = BetaGeo().fit(compressed, sample_weight="weight")
    for name, value in full.params_.items():
        assert weighted.params_[name] == pytest.approx(value, rel=1e-4)
    assert weighted.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-7)
    assert weighted.n_customers_ == len(summary)
    with pytest.raises(ValueError, match="sample_weight"):
        BetaGeo().fit(summary, sample_weight=-np.ones(len(summary)))


def test_value_scored_in_batches_equals_scoring_all_at_once(tmp_path, store):
    summary = lifetime_summary(store.transactions, AS_OF)
    bgf, ggf = BetaGeo().fit(summary), GammaGamma().fit(summary)
    whole = customer_value(summary, bgf, ggf, horizon_weeks=26)
    table = lifetime_summary_table(store.transactions, AS_OF)
    batched = scale.score_value(table, bgf, ggf, horizon_weeks=26, batch_size=450)
    assert batched.index.is_monotonic_increasing
    pd.testing.assert_frame_equal(batched.drop(columns="churn_band"), whole.drop(columns="churn_band"), atol=1e-10)
    assert (batched["churn_band"] == whole["churn_band"].astype("string")).all()
    path = scale.score_value(table, bgf, ggf, horizon_weeks=26, batch_size=450, out=tmp_path / "value.parquet")
    on_disk = pd.read_parquet(path).set_index("customer_id")
    np.testing.assert_allclose(on_disk["clv"], whole["clv"], rtol=1e-12)


def test_clear_errors_for_bad_sources(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such Parquet"):
        scale.count_rows(tmp_path / "absent.parquet")
    with pytest.raises(TypeError, match="expected a DataFrame"):
        list(scale.iter_batches(42))
    with pytest.raises(ValueError, match="batch_size"):
        list(scale.iter_batches(pd.DataFrame({"a": [1]}), batch_size=0))


def test_a_run_above_the_sample_size_evaluates_on_a_sample_and_recommends_to_everyone(store):
    """With more customers than ``sample_size`` the recommender is compared with the baselines
    on a random sample (stated in the results) and every customer still gets recommendations."""
    from segmentation.analysis import offers_stage, personas_stage, segments_stage, value_stage
    from segmentation.params import RunParameters

    params = RunParameters(as_of=AS_OF, sample_size=1000, n_boot=2)
    seg, customers, _ = segments_stage(store, params)
    _, customers = value_stage(store, params, customers)
    _, customers, built = personas_stage(store, params, customers, seg)
    section, _ = offers_stage(store, params, customers, built.summary)
    evaluation = section["recommender_evaluation"]
    assert section.scalars["evaluation_sample"] == 1000
    assert 0 < evaluation["customers"].iloc[0] <= 1000  # held-out customers of the sample only
    assert any("random 1,000 of the" in note for note in section.notes)
    assert set(section["recommendations"]["customer_id"]) == set(customers.index)


def test_batches_of_an_ibis_memtable():
    """An Ibis table built from a DataFrame (a memtable) is streamed like any engine table: in
    customer order, in batches of the asked size (its name must be registered first)."""
    import ibis

    connect()  # the default DuckDB backend
    table = ibis.memtable(pd.DataFrame({"customer_id": ["c", "a", "b"], "x": [3.0, 1.0, 2.0]}))
    batches = list(scale.iter_batches(table, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    assert pd.concat(batches)["x"].to_dict() == {"a": 1.0, "b": 2.0, "c": 3.0}


def test_isin_compares_ids_as_text():
    """Membership through Arrow's hash set, with pandas' answers: any list-like of ids, numbers
    compared as their text, missing ids never members of a set without them."""
    values = pd.Series(["C1", "C2", None, "C3"], dtype="str")
    assert scale.isin(values, pd.Index(["C3", "C1"])).tolist() == [True, False, False, True]
    assert scale.isin(values, ["C2"]).tolist() == values.isin(["C2"]).tolist()
    assert scale.isin(pd.Index([10, 20]), ["20"]).tolist() == [False, True]
    assert scale.isin([], ["C1"]).tolist() == []


def test_position_in_is_get_indexer():
    """Positions of ids among keys through Arrow, -1 when absent: pandas' get_indexer."""
    keys = pd.Index(["C1", "C2", "C3"], dtype="string")
    values = pd.Index(["C3", "C9", "C1"], dtype="string")
    assert scale.position_in(values, keys).tolist() == keys.get_indexer(values).tolist() == [2, -1, 0]
    assert scale.position_in(pd.Index([], dtype="string"), keys).tolist() == []
