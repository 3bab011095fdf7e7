"""The same data layer and customer features on Spark (local mode) give identical results."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation.data import connect, connect_from_environment, load_store
from segmentation.features import customer_features, lifetime_summary
from segmentation.synthetic import generate_store

pytestmark = pytest.mark.spark
KEY = b"0123456789abcdef"


@pytest.fixture(scope="module")
def spark_con():
    return connect("pyspark")


def test_features_identical_on_spark_and_duckdb(spark_con):
    tables = generate_store(150, seed=3)
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
    monkeypatch.setenv("SEGMENTATION_BACKEND", "oracle")
    with pytest.raises(ValueError, match="unknown backend 'oracle'"):
        connect_from_environment()
