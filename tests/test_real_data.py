"""The main job end to end on every real data set in ``../shared/data`` (issue 14).

Each case runs ``segmentation run`` exactly as a user would (all seven reports, computed once,
rendered, published) and checks that every report rendered and a few figures known from the
data: customer counts, the segmentation path taken, the lifetime model's verdict. A source with
almost no repeat buyers must say so and show no lifetime values.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, assert_pages_fit_for_a_manager
from segmentation.analysis import Results
from segmentation.params import RunParameters
from segmentation.runner import RunConfig, run_reports

pytestmark = [pytest.mark.slow, pytest.mark.shared_data]

TEST_KEY = "test-only-pseudonym-key-0123456789-abcdefghijklmnop"


def _main_job(tmp_path: Path, monkeypatch, **params) -> tuple[Path, Results]:
    monkeypatch.setenv("SEGMENTATION_PSEUDONYM_KEY", TEST_KEY)
    config = RunConfig(parameters=RunParameters(**params), output=tmp_path / "reports", notebook_dir=ROOT / "notebooks",
                       kernel="segmentation", timeout=900, registry=tmp_path / "runs.txt")
    run = run_reports(config, run_id="real", log=print)
    manifest = json.loads((run / "manifest.json").read_text())
    assert [n["status"] for n in manifest["notebooks"]] == ["ok"] * 7
    assert_pages_fit_for_a_manager(run)
    return run, Results.load(run / "results")


def test_online_retail_ii(shared_data, tmp_path, monkeypatch):
    run, r = _main_job(tmp_path, monkeypatch, source=str(shared_data / "uci_online_retail_ii" / "online_retail_ii_year_2009_2010.csv.gz"),
                       preset="online_retail", as_of="2010-12-10")
    overview = r["purchases"]["overview"].set_index("figure")["value"]
    # 4,312 customers have a purchase line in the plain cleaning (no C invoice, quantity and price > 0);
    # 27 of them bought only non-products (M manual, ADJUST, POST, C2 carriage), which are excluded
    assert int(overview["customers"]) == 4285 == len(r.customers)
    assert int(overview["customers with only returns"]) == 29  # counted, not called customers who ordered
    assert r["data"].scalars["currency"] == "GBP" and "£" in (run / "01_purchase_history.html").read_text()
    assert ">net spend</td>" in (run / "04_customer_profile.html").read_text()  # the one customer's facts are labelled
    # no reproducible behavioural clusters on this data: the report says so and uses the tiers
    assert r["segments"].scalars["path"] == "tiers"
    assert "value x status tiers" in (run / "02_segmentation.html").read_text()
    assert r["value"].scalars["verdict"] in ("usable", "rough")
    # no marketing consent is recorded: nobody may be contacted, and the index says so
    assert (r["offers"]["action_plan"]["reachable"].fillna(0) == 0).all()
    assert "no marketing consent" in (run / "index.html").read_text()


def test_cdnow(shared_data, tmp_path, monkeypatch):
    run, r = _main_job(tmp_path, monkeypatch, source=str(shared_data / "cdnow" / "CDNOW_sample.txt"), preset="cdnow",
                       as_of="1998-07-01")
    assert len(r.customers) == 2357
    assert r["value"].scalars["verdict"] == "usable"
    assert "clv" in r.customers and r.customers["clv"].sum() > 0
    assert "Verdict: usable" in (run / "05_customer_value.html").read_text()
    # one category (music) and dates without times: nothing is claimed about the mix or the hour
    narratives = " ".join(r["personas"].tables["summary"]["narrative"].dropna())
    assert "across the range" not in narratives and "music" not in narratives
    assert r["purchases"].scalars["busiest_hour"] is None
    page = (run / "01_purchase_history.html").read_text()
    assert "All purchases are in one category" in page and "around 0:00" not in page


def test_instacart(shared_data, tmp_path, monkeypatch):
    run, r = _main_job(tmp_path, monkeypatch, source=str(shared_data / "instacart_sample"), preset="instacart",
                       as_of="2018-01-01")
    assert len(r.customers) == 592
    assert r["data"].scalars["currency"] == ""  # no prices: money is counted in items
    assert "no prices" in (run / "index.html").read_text()
    assert len(r["offers"]["rules"]) > 0


def test_almost_no_repeat_buyers_gives_no_lifetime_values(shared_data, tmp_path, monkeypatch):
    """CDNOW cut to each customer's first purchase day, but for 1% of customers: < 2% repeat buyers."""
    lines = pd.read_csv(shared_data / "cdnow" / "CDNOW_sample.txt", sep=r"\s+", header=None,
                        names=["customer", "sample_id", "date", "quantity", "value"], dtype={"date": "str"})
    first = lines.groupby("customer")["date"].transform("min")
    keep_all = lines["customer"].isin(lines["customer"].drop_duplicates().sample(frac=0.01, random_state=0))
    lines = lines[(lines["date"] == first) | keep_all]
    source = tmp_path / "one_timers.csv"
    pd.DataFrame({"customer_id": lines["customer"], "order_id": lines["customer"].astype(str) + "-" + lines["date"],
                  "order_date": pd.to_datetime(lines["date"], format="%Y%m%d"), "product_id": "cd", "category": "music",
                  "quantity": lines["quantity"], "unit_price": lines["value"] / lines["quantity"].where(lines["quantity"] > 0)}
                 ).dropna().to_csv(source, index=False)
    run, r = _main_job(tmp_path, monkeypatch, source=str(source), as_of="1998-07-01")
    assert r["segments"].scalars["repeat_share"] < 0.02
    assert r["value"].scalars["verdict"] == "do not use"
    assert "clv" not in r.customers
    page = (run / "05_customer_value.html").read_text()
    assert "Verdict: do not use" in page and "No lifetime values" in page
    names = " ".join(r["personas"]["summary"]["name"].astype(str))
    assert "VIP" not in names and "loyal" not in names.lower()


def test_baskets_without_customers_are_refused_with_the_way_forward(shared_data, tmp_path, monkeypatch):
    """Groceries has baskets but no customers or dates: the main job stops before any report with
    one clear message naming the file, the missing columns and what this data can be used for."""
    from segmentation.runner import RunFailed

    source = shared_data / "groceries_arules" / "groceries_transactions_long.csv"
    with pytest.raises(RunFailed) as err:
        _main_job(tmp_path, monkeypatch, source=str(source), as_of="2020-01-01")
    message = str(err.value)
    assert "missing required column 'customer_id'" in message and "groceries_transactions_long.csv" in message
    assert "cannot be segmented" in message and "association_rules" in message
    assert not (tmp_path / "reports" / "latest").exists()
