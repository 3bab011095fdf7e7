"""The same data layer and customer features on Spark (local mode) give identical results."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from segmentation.data import connect, connect_from_environment, load_store
from segmentation.features import customer_features, lifetime_summary, lifetime_summary_table
from segmentation.synthetic import generate_store

pytestmark = pytest.mark.spark
KEY = b"0123456789abcdef"


@pytest.fixture(scope="module")
def spark_con():
    return connect("pyspark")


def test_features_identical_on_spark_and_duckdb(spark_con):
    tables = generate_store(150, random_state=3)
    on_spark = load_store(tables, con=spark_con, key=KEY, suppress=[], as_of="2026-01-01")
    on_duckdb = load_store(tables, key=KEY, suppress=[], as_of="2026-01-01")
    pd.testing.assert_frame_equal(on_duckdb.quality, on_spark.quality)
    fd = customer_features(on_duckdb.transactions, "2026-01-01")
    fs = customer_features(on_spark.transactions, "2026-01-01")
    pd.testing.assert_frame_equal(fd, fs[fd.columns], check_dtype=False, atol=1e-9)
    pd.testing.assert_frame_equal(lifetime_summary(on_duckdb.transactions, "2026-01-01"),
                                  lifetime_summary(on_spark.transactions, "2026-01-01"), check_dtype=False)


def test_backend_from_the_run_config(monkeypatch):
    monkeypatch.setenv("SEGMENTATION_BACKEND", "duckdb")
    monkeypatch.setenv("SEGMENTATION_BACKEND_OPTIONS", '{"memory_limit": "1GB", "threads": 1}')
    con = connect_from_environment()
    assert con.raw_sql("SELECT current_setting('threads')").fetchone()[0] == 1
    monkeypatch.setenv("SEGMENTATION_BACKEND", "nosuch")
    with pytest.raises(ValueError, match="unknown backend 'nosuch'"):
        connect_from_environment()


def test_scale_steps_on_spark(spark_con, tmp_path):
    """A Parquet data set read by Spark, co-occurrence counted by Spark, and value scores
    streamed from Spark in batches: the same answers as on DuckDB."""
    from segmentation import scale
    from segmentation.recommend import association_rules_in_engine
    from segmentation.synthetic import write_transactions_dataset
    from segmentation.value import BetaGeo, GammaGamma

    write_transactions_dataset(tmp_path / "lines", 60_000, random_state=4, customers_per_part=150)
    on_spark = load_store(tmp_path / "lines", con=spark_con, pseudonymize=False, suppress=[], as_of="2026-01-01")
    on_duckdb = load_store(tmp_path / "lines", pseudonymize=False, suppress=[], as_of="2026-01-01")
    pd.testing.assert_frame_equal(on_duckdb.quality, on_spark.quality)

    rules = {}
    for name, st in (("spark", on_spark), ("duckdb", on_duckdb)):
        t = st.transactions
        rules[name] = association_rules_in_engine(t.filter(~t.is_return), min_support=0.005, min_confidence=0.05)
    assert len(rules["duckdb"]) > 20
    pd.testing.assert_frame_equal(rules["spark"], rules["duckdb"], check_dtype=False)

    summary = lifetime_summary(on_duckdb.transactions, "2026-01-01")
    bgf, ggf = BetaGeo().fit(summary), GammaGamma().fit(summary)
    table = lifetime_summary_table(on_spark.transactions, "2026-01-01")
    scores = scale.score_value(table, bgf, ggf, batch_size=100)
    expected = scale.score_value(summary, bgf, ggf, batch_size=100)
    pd.testing.assert_frame_equal(scores, expected, check_dtype=False, atol=1e-9)


def test_report_run_on_spark_gives_the_duckdb_tables(tmp_path):
    """The same analysis computed by the report runner with ``backend: pyspark`` publishes the same
    tables as with DuckDB (notebooks unchanged)."""
    from conftest import ROOT
    from segmentation.params import RunParameters
    from segmentation.runner import RunConfig, run_reports

    params = RunParameters(random_state=5, n_customers=300, n_boot=3)
    runs = {}
    for backend, options in (("duckdb", {}), ("pyspark", {"master": "local[2]"})):
        config = RunConfig(parameters=params, output=tmp_path / backend, notebook_dir=ROOT / "notebooks",
                           notebooks=["01", "02"], kernel="segmentation", timeout=900, backend=backend,
                           backend_options=options, registry=tmp_path / "runs.txt")
        runs[backend] = run_reports(config, run_id="r", log=lambda _: None)
    manifest = json.loads((runs["pyspark"] / "manifest.json").read_text())
    assert manifest["backend"] == {"name": "pyspark", "options": {"master": "local[2]"}}
    tables = sorted(p.relative_to(runs["duckdb"]) for p in runs["duckdb"].glob("tables/**/*.csv"))
    assert len(tables) >= 5
    assert tables == sorted(p.relative_to(runs["pyspark"]) for p in runs["pyspark"].glob("tables/**/*.csv"))
    # Tables are written with 6 significant digits and the engines add floats in different orders,
    # so a sum may land on either side of a rounding boundary: compare to the written precision.
    for rel in tables:
        pd.testing.assert_frame_equal(pd.read_csv(runs["pyspark"] / rel), pd.read_csv(runs["duckdb"] / rel),
                                      check_dtype=False, rtol=1e-5, obj=str(rel))
