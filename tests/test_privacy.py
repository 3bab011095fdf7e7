"""Privacy: keyed pseudonyms, keys, consent, small groups and complementary
suppression, PII scan, erasure of run folders, access."""

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
    locate_customer,
    pseudonymize,
    scan_for_pii,
    suppress_cells,
    suppress_small_groups,
)

KEY = b"0123456789abcdef-test"
GOOD_KEY = "k3y-Rk2v9QxL0pZs7Tb4Wm1Nc8Hd6Jf5Ga"  # 34 characters, many different ones


def test_pseudonym_is_hmac_sha256_truncated():
    out = pseudonymize(pd.Series(["13085", "13085", None, "7"]), KEY)
    expected = hmac.new(KEY, b"13085", hashlib.sha256).hexdigest()[:20]
    assert out.iloc[0] == expected == out.iloc[1]
    assert pd.isna(out.iloc[2])
    assert out.iloc[3] != expected and len(out.iloc[3]) == 20
    # a different key gives unrelated pseudonyms
    assert pseudonymize(pd.Series(["13085"]), b"another-key-of-16b").iloc[0] != expected


@pytest.fixture
def no_key(monkeypatch):
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    monkeypatch.delenv(privacy.KEY_FILE_ENV, raising=False)
    return monkeypatch


def test_load_key_sources(no_key, tmp_path):
    with pytest.raises(PrivacyError, match="no pseudonymization key.*token_urlsafe"):
        load_key()
    assert load_key(demo=True) == DEMO_KEY
    no_key.setenv(privacy.KEY_ENV, GOOD_KEY)
    assert load_key() == GOOD_KEY.encode()
    key_file = tmp_path / "key"
    key_file.write_text(GOOD_KEY[::-1] + "\n")
    no_key.setenv(privacy.KEY_FILE_ENV, str(key_file))
    assert load_key() == GOOD_KEY[::-1].encode()  # the file wins, surrounding whitespace ignored
    with pytest.raises(PrivacyError, match="does not exist"):
        load_key(key_file=tmp_path / "missing")


@pytest.mark.parametrize("key, reason", [
    ("a-long-enough-secret", "has 20 characters; at least 32"),            # 20 characters
    (" " * 40, "has 0 characters"),                                         # blank
    (DEMO_KEY.decode(), "public demo key"),                                  # the documented demo key
    ("abababababababababababababababababab", "only 2 different characters"),
])
def test_weak_keys_are_refused_outside_the_synthetic_store(no_key, key, reason):
    no_key.setenv(privacy.KEY_ENV, key)
    with pytest.raises(PrivacyError, match=reason) as err:
        load_key()
    assert 'python -c "import secrets; print(secrets.token_urlsafe(48))"' in str(err.value)
    assert load_key(demo=True) == key.encode()  # the synthetic demo store accepts any configured key


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


def test_lists_built_from_a_profile_need_both_consents():
    ids = pd.Index(["a", "b", "c"])
    customers = pd.DataFrame({"customer_id": ["a", "b", "c"],
                              "consent_profiling": [True, False, True],
                              "consent_marketing": [True, True, False]})
    allowed, excluded = consented(ids, customers, ("profiling", "marketing"))
    assert list(allowed) == ["a"] and excluded == 2  # b: marketing yes but profiling no


def test_consent_written_as_text_is_refused_not_read_as_yes():
    customers = pd.DataFrame({"customer_id": ["a", "b"], "consent_marketing": ["yes", "no"]})
    with pytest.raises(ValueError, match=r"consent_marketing.*'yes'.*'no'"):
        consented(pd.Index(["a", "b"]), customers, "marketing")
    numeric = pd.DataFrame({"customer_id": ["a", "b", "c"], "consent_marketing": [1.0, 0.0, np.nan]})
    assert list(consented(pd.Index(["a", "b", "c"]), numeric, "marketing")[0]) == ["a"]


# ---------------------------------------------------------------------------------- small groups
def test_small_groups_are_hidden_with_a_complement():
    t = pd.DataFrame({"customers": [120, 4, 10], "revenue": [1e4, 50.0, 300.0], "name": ["A", "B", "C"]})
    out = suppress_small_groups(t, "customers", 10)
    # B (4) is small; with the total known, B = total - A - C, so C (the next smallest) goes too
    assert out["revenue"].isna().tolist() == [False, True, True]
    assert out["customers"].isna().tolist() == [False, True, True]
    assert out.loc[1, "name"] == "" and out.loc[1, "note"].startswith("suppressed")
    assert "total" in out.loc[2, "note"] and out.loc[0, "note"] == ""
    # without a total anywhere only the small group is hidden
    assert suppress_small_groups(t, "customers", 10, total_shown=False)["revenue"].isna().tolist() == [False, True, False]
    # two small groups protect each other; an empty group hidden alongside is no protection
    two = pd.DataFrame({"customers": [120, 4, 6, 50]})
    assert suppress_small_groups(two, "customers", 10)["customers"].isna().tolist() == [False, True, True, False]
    empty = pd.DataFrame({"customers": [120, 4, 0, 50]})
    assert suppress_small_groups(empty, "customers", 10)["customers"].isna().tolist() == [False, True, True, True]
    assert "note" not in suppress_small_groups(t, "customers", 3).columns


def _determined_by_totals(counts: pd.DataFrame, hidden: np.ndarray) -> np.ndarray:
    """Independent check: a hidden cell is recoverable when its unit vector lies in the row space
    of the row- and column-total equations restricted to the hidden cells (least squares)."""
    cells = np.argwhere(hidden)
    a = np.vstack([(cells[:, 0][None, :] == np.arange(hidden.shape[0])[:, None]),
                   (cells[:, 1][None, :] == np.arange(hidden.shape[1])[:, None])]).astype(float)
    out = np.zeros(hidden.shape, dtype=bool)
    for k, (i, j) in enumerate(cells):
        e = np.zeros(len(cells))
        e[k] = 1.0
        coef, *_ = np.linalg.lstsq(a.T, e, rcond=None)
        out[i, j] = np.allclose(a.T @ coef, e, atol=1e-8)
    return out


def test_cells_of_a_cross_table_with_complements():
    counts = pd.DataFrame({"a": [50, 3], "b": [40, 30], "c": [60, 25]}, index=["x", "y"])
    out = suppress_cells(counts, 10)
    # (y, a) = 3 is small; row y's next smallest is c (25); columns a and c then need x's cells
    expected = pd.DataFrame({"a": [True, True], "b": [False, False], "c": [True, True]}, index=["x", "y"])
    pd.testing.assert_frame_equal(out.hidden, expected)
    assert out.complementary.to_numpy().sum() == 3 and not out.recoverable.to_numpy().any()
    assert out.table.loc["x", "b"] == 40 and np.isnan(out.table.loc["y", "a"])
    assert out.note.startswith("1 cell(s) resting on fewer than 10 customers are hidden, and 3 more")
    # hiding the small cell alone would leak it (row total 58 - 30 - 25 = 3); the pattern found does not
    assert _determined_by_totals(counts, (counts < 10).to_numpy())[1, 0]
    assert not _determined_by_totals(counts, out.hidden.to_numpy()).any()


def test_lifts_and_shares_follow_the_counts_they_rest_on():
    counts = pd.DataFrame({"uk": [400, 1], "fr": [30, 12]}, index=["p1", "p2"])
    lifts = pd.DataFrame({"uk": [0.99, 3.62], "fr": [1.1, 0.8]}, index=["p1", "p2"])
    out = suppress_cells(counts, 10, values=lifts, row_totals=False, column_totals=False)
    assert out.table.isna().to_numpy().tolist() == [[False, False], [True, False]]  # the lift 3.62 of one customer
    assert out.apply(lifts * 2).isna().equals(out.table.isna())
    # a share table of a tiny group: every cell hidden, zeros included
    shares = pd.DataFrame({"tea": [0.5, 0.0], "cake": [0.5, 1.0]}, index=["big", "tiny"])
    n = pd.DataFrame({"tea": [60, 0], "cake": [60, 4]}, index=["big", "tiny"])
    out = suppress_cells(n, 10, values=shares, group_sizes=pd.Series({"big": 120, "tiny": 4}), column_totals=False)
    assert out.hidden.loc["tiny"].all() and not out.hidden.loc["big"].any()


def test_a_bridge_between_two_hidden_blocks_is_closed():
    # small cells: two 2x2 blocks joined by (1, 2); every line already has two hidden cells, but
    # the joining cell equals (rows 0-1 totals - shown) - (columns 0-1 totals - shown)
    counts = np.full((4, 4), 100)
    for i, j in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (1, 2)]:
        counts[i, j] = 2 + i + j
    counts = pd.DataFrame(counts)
    primary = (counts < 10).to_numpy()
    assert _determined_by_totals(counts, primary)[1, 2]  # the naive pattern leaks it
    out = suppress_cells(counts, 10)
    hidden = out.hidden.to_numpy()
    assert (hidden >= primary).all() and out.complementary.to_numpy().sum() >= 1
    assert not _determined_by_totals(counts, hidden).any() and not out.recoverable.to_numpy().any()


def test_random_tables_never_leak_a_hidden_cell():
    rng = np.random.default_rng(7)
    for n in range(300):  # about 2% of these need the cycle rule on top of the line rule
        shape, share_small = tuple(rng.integers(2, 7, size=2)), (0.05, 0.15, 0.3)[n % 3]
        counts = pd.DataFrame(np.where(rng.random(shape) < share_small, rng.integers(0, 10, shape), rng.integers(10, 200, shape)))
        out = suppress_cells(counts, 10)
        hidden, c = out.hidden.to_numpy(), counts.to_numpy()
        assert hidden[(c > 0) & (c < 10)].all()  # every small cell hidden
        assert not hidden[(c == 0) & ~out.complementary.to_numpy()].any()  # zeros only as complements
        for h in (hidden, hidden.T):  # no line with a lone hidden cell
            assert not (h.sum(axis=1) == 1).any()
        leaked = _determined_by_totals(counts, hidden) & (c > 0)
        assert not leaked.any(), counts


def test_a_cell_alone_in_its_line_is_reported_as_recoverable():
    counts = pd.DataFrame({"customers": [120, 4, 50]})
    out = suppress_cells(counts, 10, column_totals=False)  # row totals of a one-column table = the cells
    assert out.recoverable["customers"].tolist() == [False, True, False]
    assert "do not show that total" in out.note


def test_scan_finds_identifying_strings(tmp_path):
    (tmp_path / "a.html").write_text("<p>Contact ALICE.SMITH@example.com</p>")
    (tmp_path / "b.txt").write_text("clean")
    hits = scan_for_pii(tmp_path, ["alice.smith@example.com", "+44 7700 900123"])
    assert hits.to_dict("records") == [{"file": str(tmp_path / "a.html"), "needle": "alice.smith@example.com"}]


# ---------------------------------------------------------------------------------- erasure
X1, X2 = "aaaaaaaaaa1111111111", "bbbbbbbbbb2222222222"


def make_run(folder, *, profiled=X1):
    """A run folder laid out as the runner writes it, with customer X1 in every kind of place."""
    results = folder / "results"
    (results / "offers").mkdir(parents=True)
    (results / "profile").mkdir()
    customers = pd.DataFrame({"segment": [1, 2, 1], "clv": [10.5, 3.25, 7.0], "consent_marketing": [True, False, True]},
                             index=pd.Index([X1, X2, "cccccccccc3333333333"], name="customer_id"))
    customers.to_parquet(results / "customers.parquet")
    pd.DataFrame({"customer_id": [X2, X1, X1], "offer": ["a", "b", "c"]}).to_parquet(results / "offers" / "offer_list.parquet", index=False)
    pd.DataFrame({"segment": [1, 2], "customers": [2, 1]}).to_parquet(results / "segments.parquet", index=False)
    (results / "profile" / "scalars.json").write_text(json.dumps({"scalars": {"customer_id": profiled, "persona": "p"}, "notes": []}))
    pd.DataFrame({"product": ["tea"], "spend": [12.0]}).to_parquet(results / "profile" / "favourites.parquet", index=False)
    (results / "parameters.json").write_text(json.dumps({"customer_id": profiled, "as_of": "2026-01-01"}))
    tables = folder / "tables"
    (tables / "02_segmentation").mkdir(parents=True)
    (tables / "04_customer_profile").mkdir()
    (tables / "02_segmentation" / "segments.csv").write_text("segment,customers,share\n1,2,0.666667\n2,1,0.333333\n")
    (tables / "06_offers").mkdir()
    (tables / "06_offers" / "internal_list.csv").write_text(f'customer_id,offer,text\n{X2},a,"x, y"\n{X1},b,plain\n')
    (tables / "04_customer_profile" / "timeline.csv").write_text("month,spend\n2025-01,12\n")
    (folder / "01_purchase_history.html").write_text("<p>aggregate only</p>")
    (folder / "04_customer_profile.html").write_text(f"<p>Customer {profiled}</p>")
    (folder / "04_customer_profile.ipynb").write_text(json.dumps({"cells": [{"source": f"customer_id = '{profiled}'"}]}))
    (folder / "index.html").write_text(
        '<table><tr><td><a href="01_purchase_history.html">Purchase history</a></td></tr>'
        '<tr><td><a href="04_customer_profile.html">Customer profile</a></td></tr></table>'
        f"<h2>Parameters</h2><table><tr><td>customer_id</td><td>{profiled}</td></tr></table>")
    manifest = {"run_id": folder.name, "parameters": {"customer_id": profiled},
                "notebooks": [{"notebook": "01_purchase_history.ipynb", "html": "01_purchase_history.html", "status": "ok"},
                              {"notebook": "04_customer_profile.ipynb", "html": "04_customer_profile.html", "status": "ok"}],
                "tables": {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                           for p in sorted(tables.rglob("*.csv"))}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def test_locate_lists_every_place_and_changes_nothing(tmp_path):
    run = make_run(tmp_path / "reports" / "run1")
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    found = locate_customer(X1, run_dirs=[run])
    kinds = dict(zip(found["path"].map(lambda p: str(privacy.Path(p).relative_to(run))), found["kind"]))
    assert kinds == {
        "results/customers.parquet": "rows", "results/offers/offer_list.parquet": "rows",
        "results/profile/scalars.json": "section", "results/parameters.json": "mention",
        "tables/06_offers/internal_list.csv": "rows", "04_customer_profile.html": "page",
        "04_customer_profile.ipynb": "page", "index.html": "mention", "manifest.json": "mention",
    }
    assert found.loc[found["path"].str.endswith("offer_list.parquet"), "rows"].item() == 2
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    assert locate_customer("nobody", run_dirs=[run]).empty


def test_erasure_cleans_a_run_folder(tmp_path):
    run = make_run(tmp_path / "reports" / "run1")
    suppression = SuppressionList(tmp_path / "privacy" / "suppression.txt")
    audit = tmp_path / "privacy" / "audit.jsonl"
    untouched = (run / "tables" / "02_segmentation" / "segments.csv").read_bytes()
    removed = erase_customer(X1, run_dirs=[run], suppression=suppression, audit_log=audit)

    customers = pd.read_parquet(run / "results" / "customers.parquet")
    assert customers.index.name == "customer_id" and customers.index.tolist() == [X2, "cccccccccc3333333333"]
    assert customers["clv"].tolist() == [3.25, 7.0] and customers["consent_marketing"].dtype == bool
    assert pd.read_parquet(run / "results" / "offers" / "offer_list.parquet").to_dict("list") == {"customer_id": [X2], "offer": ["a"]}
    # the rest of a stakeholder CSV keeps its exact bytes (quoting included)
    assert (run / "tables" / "06_offers" / "internal_list.csv").read_text() == f'customer_id,offer,text\n{X2},a,"x, y"\n'
    assert (run / "tables" / "02_segmentation" / "segments.csv").read_bytes() == untouched
    # the profile: pages and their tables deleted, the results section emptied
    assert not (run / "04_customer_profile.html").exists() and not (run / "04_customer_profile.ipynb").exists()
    assert not (run / "tables" / "04_customer_profile").exists()
    assert not (run / "results" / "profile" / "favourites.parquet").exists()
    assert json.loads((run / "results" / "profile" / "scalars.json").read_text()) == {"scalars": {}, "notes": ["removed on request"]}
    # index: the dead link is plain text, the other link stays, the parameter is redacted
    index = (run / "index.html").read_text()
    assert "Customer profile (removed on request)" in index and 'href="04_customer_profile.html"' not in index
    assert '<a href="01_purchase_history.html">Purchase history</a>' in index
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["parameters"]["customer_id"] == "[erased]"
    assert manifest["notebooks"][1]["html"] is None and manifest["notebooks"][1]["status"] == "removed on request"
    assert set(manifest["tables"]) == {"tables/02_segmentation/segments.csv", "tables/06_offers/internal_list.csv"}
    assert manifest["tables"]["tables/06_offers/internal_list.csv"] == hashlib.sha256(
        (run / "tables" / "06_offers" / "internal_list.csv").read_bytes()).hexdigest()
    # nothing in the folder mentions the customer any more; every change is listed and audited
    assert scan_for_pii(run, [X1]).empty
    assert locate_customer(X1, run_dirs=[run]).empty
    assert (run / "01_purchase_history.html").exists()
    assert removed.loc[removed["path"].str.endswith("offer_list.parquet"), "rows"].item() == 2
    line = json.loads(audit.read_text().splitlines()[-1])
    assert line["customer_id"] == X1 and line["forced"] is False and len(line["removed"]) == len(removed)
    assert suppression.ids() == {X1}


def test_erasure_of_a_customer_who_is_not_the_profiled_one(tmp_path):
    run = make_run(tmp_path / "run1", profiled=X2)
    erase_customer(X1, run_dirs=[run], suppression=SuppressionList(tmp_path / "s.txt"), audit_log=tmp_path / "a.jsonl")
    assert (run / "04_customer_profile.html").exists()  # X2's profile stays
    assert (run / "results" / "profile" / "favourites.parquet").exists()
    assert pd.read_parquet(run / "results" / "customers.parquet").index.tolist() == [X2, "cccccccccc3333333333"]


def test_erasure_removes_processed_rows_and_is_audited(tmp_path):
    data = tmp_path / "data" / "processed"
    data.mkdir(parents=True)
    pd.DataFrame({"customer_id": ["x1", "x2", "x1"], "v": [1, 2, 3]}).to_parquet(data / "features.parquet")
    pd.DataFrame({"customer_id": ["x2", "x1"], "offer": ["a", "b"]}).to_csv(data / "offers.csv", index=False)
    suppression = SuppressionList(tmp_path / "privacy" / "suppression.txt")
    audit = tmp_path / "privacy" / "audit.jsonl"
    removed = erase_customer("x1", data_dirs=[tmp_path / "data"], suppression=suppression, audit_log=audit)
    assert pd.read_parquet(data / "features.parquet")["customer_id"].tolist() == ["x2"]
    assert pd.read_csv(data / "offers.csv")["customer_id"].tolist() == ["x2"]
    assert removed["rows"].tolist() == [2, 1, 1]
    erase_customer("x1", data_dirs=[tmp_path / "data"], suppression=suppression, audit_log=audit, forced=True)
    assert suppression.path.read_text().splitlines() == ["x1"]  # idempotent
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert len(lines) == 2 and lines[1]["forced"] is True  # every request audited


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
