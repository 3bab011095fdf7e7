"""The whole report through the report runner, as ``make report`` runs it, on a small synthetic store.

One full run (module-scoped fixture) is shared by the assertions: the analysis is computed once
into ``results/``, every notebook renders it with papermill, the stakeholder HTML is written and
the run is published. The store carries recognizable names, e-mails and phone numbers in its
customers table; none of them may appear in any output file. A second run with
``n_clusters=5`` checks that one parameter reaches every report.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, assert_pages_fit_for_a_manager
from segmentation.params import RunParameters
from segmentation.runner import RunConfig, discover_notebooks, run_reports

PARAMS = {"n_customers": 600, "random_state": 7, "min_group_size": 10}


def _run(tmp: Path, run_id: str, **params) -> Path:
    config = RunConfig(parameters=RunParameters(**{**PARAMS, **params}), output=tmp, notebook_dir=ROOT / "notebooks",
                       kernel="segmentation", timeout=900, registry=tmp / "runs.txt")
    return run_reports(config, run_id=run_id, log=print)


@pytest.fixture(scope="module")
def report_run(tmp_path_factory) -> Path:
    return _run(tmp_path_factory.mktemp("reports"), "test-run")


def test_all_notebooks_ran_and_rendered_from_one_results_set(report_run):
    manifest = json.loads((report_run / "manifest.json").read_text())
    names = [n["notebook"] for n in manifest["notebooks"]]
    assert names == [p.name for p in discover_notebooks(ROOT / "notebooks")]
    assert all(n["status"] == "ok" for n in manifest["notebooks"])
    assert set(manifest["compute_seconds"]) >= {"load", "segments", "value", "personas", "offers", "journey", "profile"}
    for n in manifest["notebooks"]:
        html = (report_run / n["html"]).read_text()
        assert "<img" in html or "data:image/png" in html, f"{n['notebook']} shows no figure"
        assert "Traceback" not in html
        assert n["parameters"] == {"results_dir": n["parameters"]["results_dir"]}  # notebooks only render the results
    customers = pd.read_parquet(report_run / "results" / "customers.parquet")
    for column in ("segment", "persona", "rfm_segment", "status", "p_alive", "clv", "churn_band", "consent_marketing",
                   "offer", "win_back"):
        assert column in customers.columns, column


def test_persona_tables_agree_with_the_customer_table(report_run):
    """Every persona table published in tables/ counts the same customers per persona as
    results/customers.parquet (counts agree across reports by construction)."""
    customers = pd.read_parquet(report_run / "results" / "customers.parquet")
    truth = customers["persona"].value_counts()
    checked = 0
    for path in sorted((report_run / "tables").rglob("*.csv")):
        table = pd.read_csv(path)
        key = next((c for c in ("persona", "name", "group") if c in table.columns), None)
        if key is None or "customers" not in table.columns or not table[key].isin(truth.index).any():
            continue
        if table[key].duplicated().any():  # cells within personas (a category, a country): not the persona's size
            continue
        shown = table.dropna(subset=["customers"]).set_index(key)["customers"]
        shown = shown[shown.index.isin(truth.index)]
        assert (shown == truth.reindex(shown.index)).all(), f"{path.name}: {shown.to_dict()} vs {truth.to_dict()}"
        checked += 1
    assert checked >= 4, "expected persona tables in several reports"


def test_rendered_pages_are_fit_for_a_manager(report_run):
    """The checks of :func:`conftest.assert_pages_fit_for_a_manager`, and an index that starts
    with key findings, the next steps and the demonstration-data banner."""
    index = (report_run / "index.html").read_text()
    assert "Key findings" in index and index.index("Key findings") < index.index("Reports")
    assert "What to do next" in index and "Demonstration data" in index
    assert_pages_fit_for_a_manager(report_run)


def test_value_figures_and_order_plan_read_cleanly(report_run):
    """Money ticks few enough not to run into each other, the churn legend beside the bars (not
    over one), and the order plan's weeks named."""
    import matplotlib

    matplotlib.use("agg")
    from segmentation import report

    results = report.open_results(str(report_run / "results"))
    fig = report.plot_value_by_persona(results)
    fig.canvas.draw()
    money_axis, churn_axis = fig.axes[:2]
    ticks = [t for t in money_axis.get_xticklabels() if t.get_text()]
    boxes = [t.get_window_extent() for t in ticks]
    assert len(ticks) <= 6 and all(a.x1 < b.x0 for a, b in zip(boxes, boxes[1:]))  # no label touches the next
    assert churn_axis.get_legend().get_window_extent().x0 > churn_axis.get_window_extent().x1
    assert "<th>week 1</th>" in (report_run / "05_customer_value.html").read_text()


def test_a_notebook_opened_by_hand_shows_the_run_s_numbers(report_run, tmp_path):
    """Opened in JupyterLab without a results folder, a notebook computes the results from the
    run config: the same config gives the same customers, segments and personas."""
    from segmentation.report import open_results

    config = tmp_path / "configs" / "run.yaml"
    config.parent.mkdir()
    config.write_text("parameters:\n" + "".join(f"  {k}: {v}\n" for k, v in PARAMS.items()))
    by_hand = open_results(None, str(config)).customers
    scheduled = pd.read_parquet(report_run / "results" / "customers.parquet")
    assert by_hand.index.equals(scheduled.index)
    assert (by_hand["persona"].astype(str) == scheduled["persona"].astype(str)).all()
    assert (by_hand["segment"] == scheduled["segment"]).all()


def test_report_carries_no_pii(report_run):
    from segmentation.privacy import scan_for_pii
    from segmentation.synthetic import generate_store

    customers = generate_store(n_customers=PARAMS["n_customers"], random_state=PARAMS["random_state"])["customers"]
    needles = set(customers["email"]) | set(customers["phone"]) | set(customers["name"])
    hits = scan_for_pii(report_run, needles)
    assert hits.empty, hits.head(20).to_string()


def test_one_parameter_reaches_every_report(tmp_path):
    """--set n_clusters=5: every report shows the same 5 segments."""
    run = _run(tmp_path, "five", n_clusters=5, n_customers=400)
    customers = pd.read_parquet(run / "results" / "customers.parquet")
    assert customers["segment"].nunique() == 5
    personas = customers["persona"].unique()
    assert len(personas) == 5
    seen = {}
    for path in sorted((run / "tables").rglob("*.csv")):
        table = pd.read_csv(path)
        for key in ("persona", "name", "group"):
            if key in table.columns and table[key].isin(personas).any():
                seen[path.parent.name] = set(table[key].dropna()) & set(personas)
    assert {"03_personas", "05_customer_value", "06_recommendations_and_offers", "07_journey_and_feedback"} <= set(seen)
    assert all(names <= set(personas) for names in seen.values())
    assert len(seen["03_personas"]) == 5


def test_same_inputs_give_byte_identical_tables(tmp_path):
    hashes = []
    for run in ("a", "b"):
        config = RunConfig(parameters=RunParameters(**{**PARAMS, "n_customers": 300}), output=tmp_path,
                           notebook_dir=ROOT / "notebooks", notebooks=["02"], kernel="segmentation", timeout=600,
                           registry=tmp_path / "runs.txt")
        run_dir = run_reports(config, run_id=run, log=lambda _: None)
        hashes.append(json.loads((run_dir / "manifest.json").read_text())["tables"])
    assert hashes[0] and hashes[0] == hashes[1]
    assert "tables/02_segmentation/k_selection.csv" in hashes[0]
