"""Every report notebook runs end to end through the report runner on a small synthetic store.

One full run (module-scoped fixture) is shared by the assertions: it executes all notebooks with
papermill exactly as ``make report`` does, renders the stakeholder HTML, and publishes. The store
carries recognizable names, e-mails and phone numbers in its customers table; none of them may
appear in any output file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import ROOT
from segmentation.runner import RunConfig, discover_notebooks, run_reports

PARAMS = {"source": "synthetic", "as_of": "2026-01-01", "seed": 7, "n_customers": 600, "min_group_size": 10}


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    config = RunConfig(parameters=PARAMS, output=out, notebook_dir=ROOT / "notebooks", kernel="segmentation", timeout=900)
    return run_reports(config, run_id="test-run", log=print)


def test_all_notebooks_ran_and_rendered(report_run):
    manifest = json.loads((report_run / "manifest.json").read_text())
    names = [n["notebook"] for n in manifest["notebooks"]]
    assert names == [p.name for p in discover_notebooks(ROOT / "notebooks")]
    assert all(n["status"] == "ok" for n in manifest["notebooks"])
    for n in manifest["notebooks"]:
        html = (report_run / n["html"]).read_text()
        assert "<img" in html or "data:image/png" in html, f"{n['notebook']} shows no figure"
        assert "Traceback" not in html


def test_report_carries_no_pii(report_run):
    from segmentation.privacy import scan_for_pii
    from segmentation.synthetic import generate_store

    customers = generate_store(n_customers=PARAMS["n_customers"], random_state=PARAMS["seed"])["customers"]
    needles = set(customers["email"]) | set(customers["phone"]) | set(customers["name"])
    hits = scan_for_pii(report_run, needles)
    assert hits.empty, hits.head(20).to_string()


def test_same_inputs_give_byte_identical_tables(tmp_path):
    params = {**PARAMS, "n_customers": 300, "n_boot": 3}
    hashes = []
    for run in ("a", "b"):
        config = RunConfig(parameters=params, output=tmp_path, notebook_dir=ROOT / "notebooks", notebooks=["02"],
                           kernel="segmentation", timeout=600)
        run_dir = run_reports(config, run_id=run, log=lambda _: None)
        hashes.append(json.loads((run_dir / "manifest.json").read_text())["tables"])
    assert hashes[0] and hashes[0] == hashes[1]
    assert "tables/02_segmentation/stability.csv" in hashes[0]
