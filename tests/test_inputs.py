"""Bad and awkward input files (issue 15): each is a clear error naming the file, the column and
example values, or a clean load with every change counted. Files are written by hand into
``tmp_path``."""

from __future__ import annotations

import gzip

import ibis
import pandas as pd
import pytest

from segmentation import privacy
from segmentation.data import (
    DataContractError,
    clean_transactions,
    connect,
    customer_id_expr,
    load_store,
    normalize_customer_ids,
    parse_flags,
    to_pandas,
)
from segmentation.features import customer_features

KEY = b"0123456789abcdef0123456789abcdef"
HEADER = "customer_id,order_id,order_date,product_id,category,quantity,unit_price\n"


def _rules(quality: pd.DataFrame, table: str = "transactions") -> dict[str, int]:
    q = quality[quality["table"] == table]
    return q.set_index("rule")["rows"].to_dict()


def _detail(quality: pd.DataFrame, rule: str, table: str = "transactions") -> str:
    q = quality[(quality["table"] == table) & (quality["rule"] == rule)]
    return str(q["detail"].iloc[0])


def _write(path, text: str, encoding: str = "utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _plain(values) -> list:
    return [None if pd.isna(v) else v for v in values]


def _lines(n: int = 6, **overrides) -> pd.DataFrame:
    df = pd.DataFrame({
        "customer_id": [f"c{i % 3}" for i in range(n)], "order_id": [f"o{i}" for i in range(n)],
        "order_date": [f"2025-01-{i + 1:02d} 10:00" for i in range(n)], "product_id": "p1", "category": "food",
        "quantity": 1.0, "unit_price": 2.0,
    })
    return df.assign(**overrides)


# --------------------------------------------------------------------------------------------
# consent and identity
# --------------------------------------------------------------------------------------------
def _shop(tmp_path, customers: str) -> str:
    _write(tmp_path / "transactions.csv", HEADER + "".join(
        f"{c},o{i},2025-01-0{i + 1} 10:00,p,food,1,2\n" for i, c in enumerate(["a", "b", "c", "d", "e", "f"])))
    _write(tmp_path / "customers.csv", customers)
    return str(tmp_path)


def test_consent_flags_written_as_text_are_parsed_case_insensitively(tmp_path):
    source = _shop(tmp_path, "customer_id,consent_profiling,consent_marketing\n"
                             "a,yes,Y\nb,No,n\nc,TRUE,false\nd, y ,\ne,,NO\nf,0,on\n")
    store = load_store(source, as_of="2025-02-01", key=KEY, suppress=[])
    c = store.customers  # in file order a..f
    assert c["consent_profiling"].tolist() == [True, False, True, True, True, False]  # e blank -> default yes
    assert c["consent_marketing"].tolist() == [True, False, False, False, False, True]  # d blank -> default no
    q = _rules(store.quality, "customers")
    assert q["consent_profiling_missing"] == 1 and q["consent_marketing_missing"] == 1
    # the "no" answers are honoured downstream
    allowed, excluded = privacy.consented(store.customers["customer_id"], store.customers, "marketing")
    assert len(allowed) == 2 and excluded == 4
    allowed, excluded = privacy.consented(store.customers["customer_id"], store.customers, "profiling")
    assert excluded == 2


def test_unknown_consent_spelling_is_an_error_naming_file_column_and_values(tmp_path):
    source = _shop(tmp_path, "customer_id,consent_marketing\na,yes\nb,maybe\nc,sometimes\nd,no\ne,\nf,yes\n")
    with pytest.raises(DataContractError) as err:
        load_store(source, as_of="2025-02-01", key=KEY, suppress=[])
    msg = str(err.value)
    assert "consent_marketing" in msg and "customers.csv" in msg and "'maybe'" in msg and "'sometimes'" in msg
    assert "2 rows" in msg and "yes" in msg and "nein" in msg  # the accepted list is named


def test_parse_flags_accepts_the_documented_spellings():
    values = pd.Series(["true", "False", "YES", "no", "y", "N", "1", "0", "t", "F", "on", "OFF", "Ja", "nein", "1.0", None, " "])
    flags, missing = parse_flags(values, column="consent_marketing", default=False)
    assert flags.tolist() == [True, False, True, False, True, False, True, False, True, False, True, False,
                              True, False, True, False, False]
    assert missing == 2
    flags, missing = parse_flags(pd.Series([True, False, None], dtype="boolean"), column="x", default=True)
    assert flags.tolist() == [True, False, True] and missing == 1


def test_customer_ids_are_normalised_before_pseudonymising(tmp_path):
    _write(tmp_path / "transactions.csv", HEADER + (
        " 00017,o1,2025-01-02,p,food,1,2\n"
        "00017,o2,2025-01-03,p,food,1,2\n"
        "00017 ,o3,2025-01-04,p,food,1,2\n"
        "NaN,o4,2025-01-04,p,food,1,2\n"
        "None,o5,2025-01-04,p,food,1,2\n"
        "   ,o6,2025-01-04,p,food,1,2\n"
        "null,o7,2025-01-04,p,food,1,2\n"
        "N/A,o8,2025-01-04,p,food,1,2\n"
        "-,o9,2025-01-04,p,food,1,2\n"
        "42,o10,2025-01-05,p,food,1,2\n"))
    _write(tmp_path / "customers.csv", "customer_id,region\n00017 ,north\n NA,south\n42,east\n00017,north\n")
    _write(tmp_path / "feedback.csv", "customer_id,timestamp,csat\n 00017,2025-01-05,4\nnull,2025-01-05,2\n")
    _write(tmp_path / "events.csv", "customer_id,session_id,timestamp,event\n00017 ,s1,2025-01-01,visit\n,s2,2025-01-01,visit\n")
    store = load_store(str(tmp_path), as_of="2025-02-01", key=KEY, suppress=[])
    tx = to_pandas(store.transactions)
    expected = privacy.pseudonymize(["00017", "42"], KEY).tolist()
    assert sorted(tx["customer_id"].unique()) == sorted(expected)  # " 00017", "00017 " and "00017" are one customer
    assert (tx["customer_id"] == expected[0]).sum() == 3
    assert _rules(store.quality)["missing_customer_id"] == 6
    assert set(store.customers["customer_id"]) == set(expected)
    assert _rules(store.quality, "customers") == {"rows_in": 4, "missing_customer_id": 1, "duplicate_customer": 1, "rows_out": 2}
    assert store.feedback["customer_id"].tolist() == [expected[0]]
    assert store.events["customer_id"].iloc[0] == expected[0] and pd.isna(store.events["customer_id"].iloc[1])


def test_the_public_normaliser_and_the_engine_agree():
    values = [" 00017", "00017", "00017\t", "\xa0x1\xa0", "NaN", "nan", "None", "NULL", "null", "NA", "N/A", "-", "", "   ",
              "<NA>", "a b", "0", None]
    expected = ["00017", "00017", "00017", "x1", None, None, None, None, None, None, None, None, None, None, None, "a b", "0", None]
    assert _plain(normalize_customer_ids(values)) == expected
    t = ibis.memtable(pd.DataFrame({"v": pd.Series(values, dtype="string")}))
    assert _plain(t.select(v=customer_id_expr(t.v)).execute()["v"]) == expected
    floats = pd.Series([13085.0, None, 7.5])
    assert _plain(normalize_customer_ids(floats)) == ["13085", None, "7.5"]
    t = ibis.memtable(pd.DataFrame({"v": floats}))
    assert _plain(t.select(v=customer_id_expr(t.v)).execute()["v"]) == ["13085", None, "7.5"]


# --------------------------------------------------------------------------------------------
# rows that cannot be used
# --------------------------------------------------------------------------------------------
def test_all_ids_missing_is_a_clear_error_at_load(tmp_path):
    path = _write(tmp_path / "t.csv", HEADER + "".join(f",o{i},2025-01-0{i + 1},p,food,1,2\n" for i in range(4)))
    with pytest.raises(DataContractError, match=r"t.csv\): no line left after cleaning \(4 read; dropped: missing_customer_id 4\)"):
        load_store(path, as_of="2025-02-01", pseudonymize=False)


def test_all_dates_unparseable_is_a_clear_error_with_examples(tmp_path):
    path = _write(tmp_path / "t.csv", HEADER + "a,o1,yesterday,p,food,1,2\nb,o2,31/31/2025,p,food,1,2\nc,o3,soon,p,food,1,2\n")
    with pytest.raises(DataContractError) as err:
        load_store(path, as_of="2025-02-01", pseudonymize=False)
    msg = str(err.value)
    assert "no line left" in msg and "unparseable_date 3" in msg and "'31/31/2025'" in msg and "'soon'" in msg


def test_excel_serial_dates_are_named_with_the_conversion(tmp_path):
    numeric = _write(tmp_path / "serial.csv", HEADER + "a,o1,45658,p,food,1,2\nb,o2,45659,p,food,1,2\n")
    with pytest.raises(DataContractError) as err:
        load_store(numeric, as_of="2025-02-01", pseudonymize=False)
    msg = str(err.value)
    assert "order_date" in msg and "serial.csv" in msg and "Excel serial dates" in msg
    assert "45658 = 2025-01-01" in msg and "origin='1899-12-30'" in msg
    # serial numbers among text dates: counted as unparseable, named in the detail
    mixed = _lines(order_date=["2025-01-01", "45659", "2025-01-03", "45661.5", "2025-01-05", "2025-01-06"])
    _, quality = clean_transactions(ibis.memtable(mixed))
    assert _rules(quality)["unparseable_date"] == 2
    assert "2 look like Excel serial dates" in _detail(quality, "unparseable_date")


def test_mixed_time_zones_become_naive_utc_and_are_counted(tmp_path):
    path = _write(tmp_path / "tz.csv", HEADER + "a,o1,2025-01-01 10:00:00+02:00,p,food,1,2\n"
                                                "a,o2,2025-01-02 10:00,p,food,1,2\n"
                                                "b,o3,2025-01-03T10:00:00Z,p,food,1,2\n")
    store = load_store(path, as_of="2025-02-01", pseudonymize=False)
    tx = to_pandas(store.transactions).sort_values("order_id")
    assert tx["order_date"].dt.tz is None
    assert tx["order_date"].tolist() == [pd.Timestamp("2025-01-01 08:00"), pd.Timestamp("2025-01-02 10:00"),
                                         pd.Timestamp("2025-01-03 10:00")]
    assert _rules(store.quality)["timezone_converted"] >= 2
    customer_features(store.transactions, "2025-02-01")  # no "Cannot compare tz-naive and tz-aware"
    # a DataFrame with a tz-aware column, and one mixing aware and naive timestamps in one column
    aware = _lines(order_date=pd.date_range("2025-01-01 10:00", periods=6, freq="D", tz="Europe/Berlin"))
    cleaned, quality = clean_transactions(ibis.memtable(aware))
    assert to_pandas(cleaned)["order_date"].min() == pd.Timestamp("2025-01-01 09:00")
    assert _rules(quality)["timezone_converted"] == 6
    mixed = _lines(order_date=pd.Series([pd.Timestamp("2025-01-01 10:00", tz="Europe/Berlin"), pd.Timestamp("2025-01-02 10:00")] * 3,
                                        dtype=object))
    store = load_store(mixed, as_of="2025-02-01", pseudonymize=False)
    assert to_pandas(store.transactions)["order_date"].min() == pd.Timestamp("2025-01-01 09:00")
    events = pd.DataFrame({"customer_id": ["c0", "c1"], "session_id": ["s1", "s2"], "event": "visit",
                           "timestamp": ["2025-01-01 10:00:00+02:00", "2025-01-05 10:00"]})
    store = load_store({"transactions": _lines(), "events": events}, as_of="2025-02-01", pseudonymize=False)
    assert store.events["timestamp"].tolist() == [pd.Timestamp("2025-01-01 08:00"), pd.Timestamp("2025-01-05 10:00")]
    assert _rules(store.quality, "events")["timezone_converted"] == 1


def test_ambiguous_day_month_values_are_counted_with_examples():
    df = _lines(8, order_date=["13/01/2025", "14/01/2025", "25/02/2025", "03/04/2025", "05/06/2025 10:30",
                               "01/13/2025", "2025-01-20", "07/07/2025"])
    cleaned, quality = clean_transactions(ibis.memtable(df))
    out = to_pandas(cleaned).set_index("order_id")["order_date"]
    assert out["o3"] == pd.Timestamp("2025-04-03") and out["o4"] == pd.Timestamp("2025-06-05 10:30")  # column is day-first
    assert out["o5"] == pd.Timestamp("2025-01-13")  # only readable month-first: read that way ...
    r = _rules(quality)
    assert r["date_order_conflict"] == 1 and "'01/13/2025'" in _detail(quality, "date_order_conflict")  # ... and counted
    assert r["ambiguous_date"] == 2  # 03/04 and 05/06 (07/07 reads the same either way)
    detail = _detail(quality, "ambiguous_date")
    assert "'03/04/2025'" in detail and "read day-first" in detail and "3 values can only be day-first" in detail
    assert r["unparseable_date"] == 0


def test_rows_far_in_the_future_are_counted():
    df = _lines(order_date=["2025-01-01", "2025-01-02", "2025-01-03", "2099-01-01", "2025-03-01", "2030-05-05"])
    _, quality = clean_transactions(ibis.memtable(df), as_of="2025-02-01")
    assert _rules(quality)["after_as_of"] == 3
    assert "2 of them more than a year after as_of (latest 2099-01-01)" in _detail(quality, "after_as_of")
    _, quality = clean_transactions(ibis.memtable(df))  # no as_of: flagged against the moment of loading
    assert _rules(quality)["future_date"] == 2


# --------------------------------------------------------------------------------------------
# files
# --------------------------------------------------------------------------------------------
def test_duplicate_column_names_are_an_error(tmp_path):
    path = _write(tmp_path / "dup.csv", "customer_id,order_id,order_date,product_id,quantity,unit_price,quantity\n"
                                        "a,o1,2025-01-01,p,1,2,3\n")
    with pytest.raises(DataContractError, match=r"dup.csv has duplicate column names \('quantity' in columns \[5, 7\]\)"):
        load_store(path, as_of="2025-02-01", pseudonymize=False)
    frame = pd.DataFrame([["a", "o1", "2025-01-01", "p", 1, 2, 3]],
                         columns=["customer_id", "order_id", "order_date", "product_id", "quantity", "unit_price", "quantity"])
    with pytest.raises(DataContractError, match="duplicate column names"):
        load_store(frame, as_of="2025-02-01", pseudonymize=False)
    with pytest.raises(DataContractError, match=r"maps several columns to \['order_date'\]"):
        load_store(_lines().assign(d2="2025-01-01"), columns={"order_date": "order_date", "d2": "order_date"},
                   as_of="2025-02-01", pseudonymize=False)


def test_latin1_text_is_decoded_with_a_note(tmp_path):
    path = _write(tmp_path / "latin.csv", HEADER + "Jos\xe9,1,2025-01-01,p,caf\xe9,1,1\nJos\xe9,2,2025-01-02,p,th\xe9,1,1\n",
                  encoding="latin-1")
    store = load_store(path, as_of="2025-02-01", pseudonymize=False)
    tx = to_pandas(store.transactions)
    assert set(tx["customer_id"]) == {"José"} and set(tx["category"]) == {"café", "thé"}
    assert any("latin.csv is not UTF-8: read as Latin-1" in n for n in store.notes)
    gz = tmp_path / "latin.csv.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert set(to_pandas(load_store(gz, as_of="2025-02-01", pseudonymize=False).transactions)["customer_id"]) == {"José"}


def test_binary_files_are_refused_by_name(tmp_path):
    blob = tmp_path / "export.bin"
    blob.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DataContractError, match=r"not a CSV/Parquet file: export.bin \(binary content\)"):
        load_store(blob, as_of="2025-02-01", pseudonymize=False)
    xlsx = tmp_path / "shop.xlsx"
    xlsx.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(DataContractError, match=r"not a CSV/Parquet file: shop.xlsx \(it looks like an Excel workbook"):
        load_store(xlsx, as_of="2025-02-01", pseudonymize=False)
    # content decides, not the name: gzip under .csv, Parquet under .dat
    hidden = tmp_path / "t.csv"
    hidden.write_bytes(gzip.compress((HEADER + "a,1,2025-01-01,p,food,1,2\n").encode()))
    assert _rules(load_store(hidden, as_of="2025-02-01", pseudonymize=False).quality)["rows_out"] == 1
    _lines().to_parquet(tmp_path / "t.dat")
    assert _rules(load_store(tmp_path / "t.dat", as_of="2025-02-01", pseudonymize=False).quality)["rows_out"] == 6


def test_a_single_extreme_line_in_a_tiny_file_is_flagged(tmp_path):
    rows = [f"c{i % 5},o{i},2011-01-{i % 28 + 1:02d},p{i % 4},gifts,{q},2.1\n"
            for i, q in enumerate([1, 2, 3, 4, 6, 12, 12, 24, 1, 2, 6, 48, 3, 2, 1, 12, 6, 4, 2, 1])]
    path = _write(tmp_path / "tiny.csv", HEADER + "".join(rows) + "c9,o99,2011-01-18,p9,gifts,80995,2.08\n"
                                                                     "c9,Co99,2011-01-18,p9,gifts,-80995,2.08\n")
    store = load_store(path, as_of="2011-02-01", pseudonymize=False)
    tx = to_pandas(store.transactions)
    assert tx.loc[tx["is_outlier"], "quantity"].abs().tolist() == [80995.0, 80995.0]
    assert _rules(store.quality)["wholesale_outlier"] == 2
    # the old rule, 10 x the 99.9th percentile, sits on the extreme line itself and flags nothing
    assert 10 * tx["quantity"].abs().quantile(0.999) > 80995


# --------------------------------------------------------------------------------------------
# as_of
# --------------------------------------------------------------------------------------------
def test_as_of_is_required_for_real_data_and_must_follow_the_first_transaction(tmp_path):
    path = _write(tmp_path / "t.csv", HEADER + "a,o1,2025-01-05,p,food,1,2\nb,o2,2025-03-09 17:00,p,food,1,2\n")
    with pytest.raises(DataContractError, match=r"as_of is required for t.csv"):
        load_store(path, pseudonymize=False)
    with pytest.raises(DataContractError) as err:
        load_store(path, as_of="2024-12-31", pseudonymize=False)
    msg = str(err.value)
    assert "lies on or before the first transaction" in msg and "2025-01-05 to 2025-03-09" in msg and "2025-03-10" in msg
    with pytest.raises(DataContractError, match="not a date"):
        load_store(path, as_of="last tuesday", pseudonymize=False)
    synthetic = load_store("synthetic", n_customers=50, random_state=1, con=connect())  # the demo store has a default
    assert synthetic.as_of == pd.Timestamp("2026-01-01")
