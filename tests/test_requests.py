"""Data-subject requests: the run registry, finding run folders, export and erasure through the
library and the command line (same run config as `run`, one clear line for every failure)."""

from __future__ import annotations

import gzip
import json
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from segmentation import cli, privacy, requests, runner
from segmentation.params import RunParameters
from segmentation.registry import RegistryError, known_runs, record_run
from segmentation.requests import RequestError, UnknownCustomer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEMO = privacy.DEMO_KEY


def pseudo(raw: str, key: bytes = DEMO) -> str:
    return str(privacy.pseudonymize([raw], key).iloc[0])


def make_run(folder: Path, customer: str, *, other: str = "ffffffffff0000000000") -> Path:
    """A minimal published run folder holding ``customer`` in results, a table and a page."""
    (folder / "results" / "offers").mkdir(parents=True)
    pd.DataFrame({"segment": [1, 2], "clv": [12.5, 4.0]}, index=pd.Index([customer, other], name="customer_id")).to_parquet(
        folder / "results" / "customers.parquet")
    pd.DataFrame({"customer_id": [customer], "offer": ["tea"]}).to_parquet(folder / "results" / "offers" / "offer_list.parquet")
    (folder / "results" / "profile").mkdir()  # the single-customer profile section is about them
    (folder / "results" / "profile" / "scalars.json").write_text(json.dumps({"scalars": {"customer_id": customer}, "notes": []}))
    pd.DataFrame({"month": ["2025-01"], "spend": [9.5]}).to_parquet(folder / "results" / "profile" / "timeline.parquet")
    (folder / "tables" / "02_segmentation").mkdir(parents=True)
    (folder / "tables" / "02_segmentation" / "segments.csv").write_text("segment,customers\n1,40\n2,60\n")
    (folder / "04_customer_profile.html").write_text(f"<p>{customer}</p>")
    (folder / "index.html").write_text('<a href="04_customer_profile.html">Customer profile</a>')
    (folder / "manifest.json").write_text(json.dumps({"run_id": folder.name, "tables": {}}))
    return folder


# ---------------------------------------------------------------------------------- registry
def test_registry_records_and_lists_runs(tmp_path):
    registry = tmp_path / "privacy" / "runs.txt"
    assert known_runs(registry) == []
    record = record_run(registry, tmp_path / "reports" / "r1")
    record_run(registry, tmp_path / "elsewhere" / "r2", run_id="second")
    record_run(registry, tmp_path / "reports" / "r1")  # recorded twice, listed once
    assert record["run_id"] == "r1" and record["path"] == str((tmp_path / "reports" / "r1").resolve())
    assert known_runs(registry) == [(tmp_path / "reports" / "r1").resolve(), (tmp_path / "elsewhere" / "r2").resolve()]
    assert [json.loads(line)["run_id"] for line in registry.read_text().splitlines()] == ["r1", "second", "r1"]
    with registry.open("a") as fh:
        fh.write('{"path": "/x/y"\n')  # a damaged line must not make erasure skip runs silently
    with pytest.raises(RegistryError, match="line 4"):
        known_runs(registry)


def _append_many(args: tuple[str, int, int]) -> None:
    registry, worker, n = args
    for i in range(n):
        record_run(registry, f"/runs/worker{worker}/{'x' * (i % 50)}run{i}")


def test_registry_appends_from_many_processes_stay_whole(tmp_path):
    registry = tmp_path / "runs.txt"
    with ProcessPoolExecutor(4) as pool:
        list(pool.map(_append_many, [(str(registry), w, 150) for w in range(4)]))
    lines = registry.read_text().splitlines()
    assert len(lines) == 600
    assert all(json.loads(line)["path"].startswith("/runs/worker") for line in lines)
    assert len(known_runs(registry)) == 600


# ---------------------------------------------------------------------------------- run folders
def test_run_folders_from_output_and_registry(tmp_path):
    out = tmp_path / "reports"
    r1 = make_run(out / "2026-01-01_a", "a" * 20)
    failed = make_run(out / "2026-01-01_b.failed", "a" * 20)
    internal = make_run(out / "INTERNAL-contains-personal-data" / "2026-01-01_c", "a" * 20)
    (out / ".staging-2026-01-02_d" / "results").mkdir(parents=True)
    (out / "latest").symlink_to(r1.name)
    (out / "index.html").write_text("all runs")  # an index of runs beside them is not a run
    elsewhere = make_run(tmp_path / "other" / "2026-01-01_e", "a" * 20)
    registry = tmp_path / "runs.txt"
    record_run(registry, elsewhere)
    record_run(registry, r1)  # also below the output folder: listed once
    record_run(registry, tmp_path / "deleted_run")  # gone: skipped
    runs, staging = requests.run_folders(out, registry)
    assert sorted(runs) == sorted([r1, failed, internal, elsewhere])
    assert staging == [out / ".staging-2026-01-02_d"]
    assert requests.run_folders(tmp_path / "missing", None) == ([], [])


# ---------------------------------------------------------------------------------- ids
def test_request_ids_are_normalised_before_hashing():
    key = b"x" * 8 + b"0123456789abcdefghijklmnopqrstuvw"
    assert requests.request_customer_id(raw_customer=" 13085 ", key=key) == pseudo("13085", key)
    assert requests.request_customer_id(customer=" abc ") == "abc"
    for bad in ("NaN", "  ", "n/a", "NULL"):
        with pytest.raises(RequestError, match="empty or a spelling of 'missing'"):
            requests.request_customer_id(raw_customer=bad, key=key)
    with pytest.raises(RequestError, match="exactly one"):
        requests.request_customer_id(customer="a", raw_customer="b")


def test_a_raw_request_id_finds_the_customer_the_load_made():
    from segmentation.data import load_store, to_pandas

    key = b"x" * 8 + b"0123456789abcdefghijklmnopqrstuvw"
    lines = pd.DataFrame({"customer_id": [" 00017", "00017", "NaN"], "order_id": ["o1", "o2", "o3"],
                          "order_date": ["2025-01-02", "2025-02-03", "2025-02-04"], "product_id": ["p"] * 3,
                          "category": ["c"] * 3, "quantity": [1, 2, 1], "unit_price": [2.0, 2.0, 2.0]})
    store = load_store(lines, key=key, suppress=[], as_of="2026-01-01")
    ids = to_pandas(store.transactions)["customer_id"]
    assert ids.tolist() == [requests.request_customer_id(raw_customer="00017 ", key=key)] * 2


# ---------------------------------------------------------------------------------- erase (library)
def test_unknown_id_is_an_error_and_changes_nothing(tmp_path):
    run = make_run(tmp_path / "reports" / "r1", "a" * 20)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(UnknownCustomer, match="not found.*1 run folders.*--force") as err:
        requests.erase("b" * 20, run_dirs=[run], privacy_dir=tmp_path / "privacy", in_source=lambda: False)
    assert "\n" not in str(err.value)
    assert not (tmp_path / "privacy").exists()
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(UnknownCustomer, match="not a pseudonymous id.*--raw-customer"):
        requests.erase("C00042", run_dirs=[run], privacy_dir=tmp_path / "privacy")
    # --force: suppressed anyway, and the audit says so
    removed = requests.erase("b" * 20, run_dirs=[run], privacy_dir=tmp_path / "privacy", force=True)
    assert removed["action"].tolist() == ["added to suppression list"]
    assert privacy.SuppressionList(tmp_path / "privacy" / "suppression.txt").ids() == {"b" * 20}
    assert json.loads((tmp_path / "privacy" / "audit.jsonl").read_text())["forced"] is True


def test_a_customer_only_in_the_source_or_already_erased_is_known(tmp_path):
    asked = []
    removed = requests.erase("c" * 20, privacy_dir=tmp_path, in_source=lambda: asked.append(1) or True)
    assert asked == [1] and removed["action"].tolist() == ["added to suppression list"]
    again = requests.erase("c" * 20, privacy_dir=tmp_path, in_source=lambda: pytest.fail("not asked: already suppressed"))
    assert again["action"].tolist() == ["added to suppression list"]
    audit = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert [a["forced"] for a in audit] == [False, False]


def test_erase_lists_runs_in_progress(tmp_path):
    run = make_run(tmp_path / "r1", "a" * 20)
    removed = requests.erase("a" * 20, run_dirs=[run], privacy_dir=tmp_path / "p", in_progress=[tmp_path / ".staging-x"])
    assert removed["action"].iloc[-1].startswith("run in progress: not searched")


# ---------------------------------------------------------------------------------- command line
@pytest.fixture
def project(tmp_path, monkeypatch):
    """A config like configs/default.yaml (small synthetic store) with its own output, privacy
    and data folders, and no key in the environment."""
    monkeypatch.delenv(privacy.KEY_ENV, raising=False)
    monkeypatch.delenv(privacy.KEY_FILE_ENV, raising=False)
    monkeypatch.setattr(requests, "PRIVACY_DIR", tmp_path / "data" / "privacy")
    monkeypatch.setattr(requests, "DATA_DIR", tmp_path / "data")
    monkeypatch.setattr(runner, "RUN_REGISTRY", tmp_path / "data" / "privacy" / "runs.txt")
    (tmp_path / "configs").mkdir()
    config = tmp_path / "configs" / "small.yaml"
    config.write_text("parameters:\n  source: synthetic\n  as_of: '2026-01-01'\n  random_state: 5\n  n_customers: 150\n"
                      "output: reports\n")
    return tmp_path, config


def run_cli(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_export_uses_the_run_config_and_reads_saved_results(project, capsys):
    root, config = project
    who = pseudo("C00007")
    make_run(root / "reports" / "2026-01-01_run", who)
    elsewhere = make_run(root / "elsewhere" / "2026-01-01_other", who)
    record_run(runner.RUN_REGISTRY, elsewhere)
    code, out, err = run_cli(["export", "--raw-customer", " C00007 ", "--config", str(config)], capsys)
    assert code == 0, err
    record = json.loads(out)
    params = RunParameters.from_mapping({"source": "synthetic", "as_of": "2026-01-01", "random_state": 5, "n_customers": 150})
    store = runner.load_run_store(params, suppression_list=root / "none.txt")
    from segmentation.data import to_pandas

    tx = to_pandas(store.transactions)
    assert record["customer_id"] == who and record["as_of"] == "2026-01-01"
    assert len(record["held"]["transactions"]) == int((tx["customer_id"] == who).sum()) > 0
    assert record["held"]["pii"][0]["email"] == store.pii.loc[store.pii["customer_id"] == who, "email"].item()
    assert record["held"]["customers"][0]["customer_id"] == who
    runs = {d["run_id"]: d["tables"] for d in record["derived"]}
    assert set(runs) == {"2026-01-01_run", "2026-01-01_other"}
    assert runs["2026-01-01_run"]["results/customers.parquet"] == [{"customer_id": who, "segment": 1, "clv": 12.5}]
    assert runs["2026-01-01_other"]["results/offers/offer_list.parquet"] == [{"customer_id": who, "offer": "tea"}]
    assert runs["2026-01-01_run"]["results/profile/timeline.parquet"] == [{"month": "2025-01", "spend": 9.5}]
    assert runs["2026-01-01_run"]["results/profile/scalars.json"]["scalars"] == {"customer_id": who}
    assert set(record["consent"]) == {"profiling", "marketing"}


def test_export_answers_one_line_for_every_failure(project, capsys, monkeypatch):
    root, config = project
    cases = [
        (["export", "--customer", "0" * 20, "--config", str(config)], "not found in the source data"),
        (["export", "--customer", "abc", "--config", str(config)], "not a pseudonymous id"),
        (["export", "--customer", "0" * 20, "--config", str(root / "missing.yaml")], "run config .*missing.yaml not found"),
        (["export", "--customer", "0" * 20, "--config", str(config), "--set", "seed=3"], "unknown run parameter.*'seed'"),
        (["export", "--raw-customer", "NaN", "--config", str(config)], "empty or a spelling of 'missing'"),
    ]
    shop = root / "shop"
    shop.mkdir()
    pd.DataFrame({"customer_id": ["1"], "order_id": ["o"], "order_date": ["2025-01-01"], "product_id": ["p"],
                  "category": ["c"], "quantity": [1], "unit_price": [2.0]}).to_csv(shop / "transactions.csv", index=False)
    cases.append((["export", "--raw-customer", "1", "--config", str(config), "--set", f"source={shop}"], "no pseudonymization key"))
    cases.append((["erase", "--raw-customer", "1", "--config", str(config), "--set", f"source={shop}"], "no pseudonymization key"))
    (root / "binary.csv").write_bytes(bytes(range(256)) * 4)
    bad_sources = [
        (["export", "--customer", "0" * 20, "--config", str(config), "--set", f"source={root / 'nowhere'}"], "nowhere"),
        (["export", "--customer", "0" * 20, "--config", str(config), "--set", f"source={root / 'binary.csv'}"], "binary.csv"),
        (["erase", "--customer", "0" * 20, "--config", str(config), "--set", f"source={root / 'nowhere'}"],
         "source data could not be read.*--force"),
    ]
    for i, (argv, message) in enumerate(cases + bad_sources):
        if i == len(cases):
            monkeypatch.setenv(privacy.KEY_ENV, "Zq8-real-data-key-kept-outside-the-repo-01")
        code, out, err = run_cli(argv, capsys)
        assert code == 1 and out == "", argv
        assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
        assert re.search(message, err), (message, err)


@pytest.mark.shared_data
def test_export_on_small_real_data_needs_no_model(project, capsys, monkeypatch):
    """A few hundred real lines (too few for Gamma-Gamma): export still answers, from the data."""
    root, config = project
    lines = gzip.open(SHARED / "uci_online_retail_ii" / "online_retail_ii_year_2009_2010.csv.gz", "rt").readlines()[:301]
    source = root / "retail.csv"
    source.write_text("".join(lines))
    key = "Zq8-real-data-key-kept-outside-the-repo-01"
    monkeypatch.setenv(privacy.KEY_ENV, key)
    argv = ["export", "--raw-customer", "13085", "--config", str(config), "--set", f"source={source}",
            "--set", "preset=online_retail", "--set", "as_of=2010-01-01"]
    code, out, err = run_cli(argv, capsys)
    assert code == 0, err
    record = json.loads(out)
    expected = sum(1 for line in lines[1:] if line.rstrip().split(",")[-2] == "13085")
    assert record["customer_id"] == pseudo("13085", key.encode()) and record["derived"] == []
    assert len(record["held"]["transactions"]) == expected > 0


def test_erase_covers_the_config_output_and_registered_runs(project, capsys):
    root, config = project
    who = pseudo("C00003")
    mine = make_run(root / "reports" / "2026-01-01_run", who)
    elsewhere = make_run(root / "elsewhere" / "2026-01-01_other", who)  # written with --output
    record_run(runner.RUN_REGISTRY, elsewhere)
    processed = root / "data" / "processed"
    processed.mkdir(parents=True)
    pd.DataFrame({"customer_id": [who, "x"], "v": [1, 2]}).to_parquet(processed / "scores.parquet", index=False)
    code, out, err = run_cli(["erase", "--raw-customer", "C00003", "--config", str(config)], capsys)
    assert code == 0, err
    for run in (mine, elsewhere):
        assert pd.read_parquet(run / "results" / "customers.parquet").index.tolist() == ["ffffffffff0000000000"]
        assert not (run / "04_customer_profile.html").exists()
        assert (run / "index.html").read_text() == "Customer profile (removed on request)"
        assert privacy.locate_customer(who, run_dirs=[run]).empty
        assert not (run / "results" / "profile" / "timeline.parquet").exists()
    assert pd.read_parquet(processed / "scores.parquet")["customer_id"].tolist() == ["x"]
    assert privacy.SuppressionList(root / "data" / "privacy" / "suppression.txt").ids() == {who}
    assert f"customer {who} erased from 2 run folder(s)" in out
    # the suppression list now keeps the customer out of what export sees
    code, out, err = run_cli(["export", "--customer", who, "--config", str(config)], capsys)
    assert code == 1 and "not found" in err


def test_erase_cli_unknown_id_force_and_source_only(project, capsys):
    root, config = project
    suppression = root / "data" / "privacy" / "suppression.txt"
    code, out, err = run_cli(["erase", "--customer", "0" * 20, "--config", str(config)], capsys)
    assert code == 1 and err.count("\n") == 1 and "--force" in err and not suppression.exists()
    code, out, err = run_cli(["erase", "--customer", "0" * 20, "--config", str(config), "--force"], capsys)
    assert code == 0 and privacy.SuppressionList(suppression).ids() == {"0" * 20}
    # a customer in the source data but in no run folder (e.g. never analysed) is found there
    code, out, err = run_cli(["erase", "--raw-customer", "C00011", "--config", str(config)], capsys)
    assert code == 0, err
    assert pseudo("C00011") in privacy.SuppressionList(suppression).ids()
    audit = [json.loads(line) for line in (root / "data" / "privacy" / "audit.jsonl").read_text().splitlines()]
    assert [a["forced"] for a in audit] == [True, False]
