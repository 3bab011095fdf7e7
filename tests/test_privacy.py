"""Privacy: keyed pseudonyms, consent, small groups, PII scan, erasure, access."""

from __future__ import annotations

import hashlib
import hmac
import json

import numpy as np
import pandas as pd
import pytest

from segmentation import privacy
from segmentation.privacy import (
    DEMO_KEY,
    PrivacyError,
    SuppressionList,
    consented,
    erase_customer,
    export_customer,
    load_key,
    pseudonymize,
    scan_for_pii,
    suppress_small_groups,
)

KEY = b"0123456789abcdef-test"


def test_pseudonym_is_hmac_sha256_truncated():
    out = pseudonymize(pd.Series(["13085", "13085", None, "7"]), KEY)
    expected = hmac.new(KEY, b"13085", hashlib.sha256).hexdigest()[:20]
    assert out.iloc[0] == expected == out.iloc[1]
    assert pd.isna(out.iloc[2])
    assert out.iloc[3] != expected and len(out.iloc[3]) == 20
    # a different key gives unrelated pseudonyms
    assert pseudonymize(pd.Series(["13085"]), b"another-key-of-16b").iloc[0] != expected


def test_load_key_sources(monkeypatch, tmp_path):
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    monkeypatch.delenv(privacy.KEY_FILE_ENV, raising=False)
    with pytest.raises(PrivacyError, match="no pseudonymization key"):
        load_key()
    assert load_key(demo=True) == DEMO_KEY
    monkeypatch.setenv(privacy.KEY_ENV, "short")
    with pytest.raises(PrivacyError, match="at least 16"):
        load_key()
    monkeypatch.setenv(privacy.KEY_ENV, "a-long-enough-secret")
    assert load_key() == b"a-long-enough-secret"
    key_file = tmp_path / "key"
    key_file.write_text("file-secret-0123456789\n")
    monkeypatch.setenv(privacy.KEY_FILE_ENV, str(key_file))
    assert load_key() == b"file-secret-0123456789"
    with pytest.raises(PrivacyError, match="does not exist"):
        load_key(key_file=tmp_path / "missing")


def test_key_file_inside_repository_is_refused(tmp_path):
    inside = privacy.Path(privacy.__file__).resolve().parents[2] / "pyproject.toml"
    with pytest.raises(PrivacyError, match="inside the project folder"):
        load_key(key_file=inside)


def test_consent_defaults_and_flags():
    ids = pd.Index(["a", "b", "c", "d"])
    customers = pd.DataFrame({
        "customer_id": ["a", "b", "c"],
        "consent_profiling": [True, False, True],
        "consent_marketing": [True, False, False],
    })
    allowed, excluded = consented(ids, customers, "profiling")
    assert list(allowed) == ["a", "c", "d"] and excluded == 1  # unknown 'd' defaults to allowed
    allowed, excluded = consented(ids, customers, "marketing")
    assert list(allowed) == ["a"] and excluded == 3  # marketing needs an explicit yes
    allowed, excluded = consented(ids, None, "marketing")
    assert len(allowed) == 0 and excluded == 4
    with pytest.raises(ValueError, match="purpose"):
        consented(ids, customers, "selling")


def test_small_groups_are_hidden():
    t = pd.DataFrame({"customers": [120, 4, 10], "revenue": [1e4, 50.0, 300.0], "name": ["A", "B", "C"]})
    out = suppress_small_groups(t, "customers", 10)
    assert out["revenue"].isna().tolist() == [False, True, False]
    assert out["customers"].isna().tolist() == [False, True, False]
    assert out.loc[1, "name"] == "" and out.loc[1, "note"].startswith("suppressed")
    assert "note" not in suppress_small_groups(t, "customers", 3).columns


def test_scan_finds_identifying_strings(tmp_path):
    (tmp_path / "a.html").write_text("<p>Contact ALICE.SMITH@example.com</p>")
    (tmp_path / "b.txt").write_text("clean")
    hits = scan_for_pii(tmp_path, ["alice.smith@example.com", "+44 7700 900123"])
    assert hits.to_dict("records") == [{"file": str(tmp_path / "a.html"), "needle": "alice.smith@example.com"}]


def test_erasure_removes_rows_files_and_is_audited(tmp_path):
    data = tmp_path / "data" / "processed"
    data.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["x1", "x2", "x1"], "v": [1, 2, 3]}).to_parquet(data / "features.parquet")
    pd.DataFrame({"customer_id": ["x2", "x1"], "offer": ["a", "b"]}).to_csv(data / "offers.csv", index=False)
    reports = tmp_path / "reports" / "run1"
    reports.mkdir(parents=True)
    (reports / "04_customer_profile.ipynb").write_text('{"customer": "x1"}')
    (reports / "01_purchase_history.html").write_text("aggregate only")
    suppression = SuppressionList(tmp_path / "privacy" / "suppression.txt")
    audit = tmp_path / "privacy" / "audit.jsonl"
    removed = erase_customer("x1", data_dirs=[tmp_path / "data"], report_dirs=[tmp_path / "reports"],
                             suppression=suppression, audit_log=audit)
    assert pd.read_parquet(data / "features.parquet")["customer_id"].tolist() == ["x2"]
    assert pd.read_csv(data / "offers.csv")["customer_id"].tolist() == ["x2"]
    assert not (reports / "04_customer_profile.ipynb").exists()
    assert (reports / "01_purchase_history.html").exists()
    assert suppression.ids() == {"x1"}
    assert removed["rows"].tolist()[:2] == [2, 1]
    line = json.loads(audit.read_text().splitlines()[-1])
    assert line["customer_id"] == "x1" and len(line["removed"]) == 4
    erase_customer("x1", data_dirs=[tmp_path / "data"], suppression=suppression, audit_log=audit)
    assert suppression.path.read_text().splitlines() == ["x1"]  # idempotent
    assert len(audit.read_text().splitlines()) == 2  # every request audited


def test_export_gathers_every_table():
    tables = {
        "transactions": pd.DataFrame({"customer_id": ["x1", "x2"], "amount": [3.5, 1.0],
                                      "order_date": pd.to_datetime(["2025-01-02", "2025-01-03"])}),
        "features": pd.DataFrame({"frequency": [4, 2]}, index=pd.Index(["x1", "x2"], name="customer_id")),
        "feedback": None,
        "recommendations": pd.DataFrame({"customer_id": ["x2"], "product_id": ["p"]}),
    }
    doc = export_customer("x1", tables)
    assert doc["tables"]["transactions"] == [{"customer_id": "x1", "amount": 3.5, "order_date": "2025-01-02T00:00:00.000"}]
    assert doc["tables"]["features"] == [{"customer_id": "x1", "frequency": 4}]
    assert doc["tables"]["recommendations"] == [] and doc["tables"]["feedback"] == []
    json.dumps(doc)
    with pytest.raises(KeyError, match="not found"):
        export_customer("nobody", tables)


def test_subject_requests_end_to_end(tmp_path):
    from segmentation.data import load_store, to_pandas
    from segmentation.requests import customer_record, erase

    store = load_store("synthetic", n_customers=300, seed=11, suppress=[])
    cid = store.customers.loc[store.customers["consent_profiling"], "customer_id"].iloc[0]
    record = customer_record(store, cid, "2026-01-01", seed=11)
    tables = record["tables"]
    assert len(tables["transactions"]) == int((to_pandas(store.transactions)["customer_id"] == cid).sum())
    assert tables["features_and_segments"][0]["persona"] and len(tables["recommendations"]) > 0
    assert tables["value_scores"][0]["customer_id"] == cid and tables["pii"][0]["email"].endswith("@example.com")
    json.dumps(record, default=str)
    # erasure: stored tables lose the customer, the next load drops them, the audit has a line
    processed = tmp_path / "data" / "processed"
    processed.mkdir(parents=True)
    pd.DataFrame({"customer_id": [cid, "other"], "segment": [1, 2]}).to_parquet(processed / "assignments.parquet")
    erase(cid, data_dir=tmp_path / "data", reports_dir=tmp_path / "reports", privacy_dir=tmp_path / "data" / "privacy")
    assert pd.read_parquet(processed / "assignments.parquet")["customer_id"].tolist() == ["other"]
    suppressed = SuppressionList(tmp_path / "data" / "privacy" / "suppression.txt").ids()
    again = load_store("synthetic", n_customers=300, seed=11, suppress=suppressed)
    assert cid not in set(to_pandas(again.transactions)["customer_id"]) and cid not in set(again.customers["customer_id"])
    assert json.loads((tmp_path / "data" / "privacy" / "audit.jsonl").read_text())["customer_id"] == cid
