"""The presentation layer: every number formatted for a stakeholder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from segmentation import report


@pytest.mark.parametrize("value, kind, text", [
    (2943210.4, "money", "€2,943,210"),
    (68.655, "money", "€68.66"),
    (-1234.0, "money", "-€1,234"),
    (0.005, "share", "0.5%"),
    (0.4567, "share", "46%"),
    (0.0004, "share", "<0.1%"),
    (6939.0, "auto", "6,939"),
    (15234.56, "auto", "15,235"),
    (0.000012, "auto", "0.000012"),
    (1.2345, "lift", "1.2×"),
    (np.nan, "money", "—"),
    (None, "text", "—"),
    (pd.NA, "auto", "—"),
    (True, "auto", "yes"),
    (pd.Timestamp("2026-01-05"), "auto", "05 Jan 2026"),
    ("premium_deli", "label", "premium deli"),
    ("12.5", "money", "€12.50"),
])
def test_format_value(value, kind, text):
    assert report.format_value(value, kind) == text


def test_no_scientific_notation_anywhere():
    for x in [1e-9, 3.3e-7, 2.94e6, 1.52e4, 5.00e-3, 123456789.0]:
        for kind in ("auto", "number", "money", "share", "count"):
            assert "e+" not in report.format_value(x, kind) and "e-" not in report.format_value(x, kind)


def test_currency_codes():
    assert report.money(10, "GBP") == "£10.00" and report.money(1500, "CHF") == "CHF 1,500"
    assert report.money(1500, "") == "1,500"  # data without prices: items


def test_differences_of_shares_are_signed_points_and_short_cells_never_break():
    assert report.points(-0.006) == "-0.6" and report.points(0.023) == "+2.3" and report.points(-0.0004) == "-0.04"
    assert report.points(0.0) == "0.0" and report.points(float("nan")) == report.MISSING
    assert report.share(0.0) == "0%" and report.share(0.045) == "4.5%" and report.share(0.0004) == "<0.1%"
    assert report.difference_with_interval(-0.006, -0.011, -0.0004) == "-0.6 points (95% interval -1.1 to -0.04)"
    html = report.table(pd.DataFrame({"split": ["80/20"], "offer": ["Multi-buy deal on baby"]})).data
    assert '<td class="short">80/20</td>' in html and "<td>Multi-buy deal on baby</td>" in html


def test_labels():
    assert report.label("cat_health_beauty") == "share of spend on health beauty"
    assert report.label("recency_days") == "days since last order"
    assert report.label("channel_app") == "share of orders via app"


def test_table_hides_small_groups_and_the_index_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv(report.TABLES_ENV, str(tmp_path))
    df = pd.DataFrame({"customers": [120, 4], "revenue": [1e4, 50.0], "customer_share": [0.968, 0.032]},
                      index=pd.Index(["A", "B"], name="persona"))
    html = report.table(df, index=True, count="customers", min_group_size=10, name="t", total_shown=False).data
    assert "€10,000" in html and "97%" in html and "<th>persona</th>" in html and '<td class="short">B</td>' in html
    assert "€50" not in html and "fewer than 10 customers" in html
    saved = pd.read_csv(tmp_path / "t.csv")
    assert saved["revenue"].isna().tolist() == [False, True]  # the CSV hides the small group too
    three = pd.concat([df, pd.DataFrame({"customers": [40], "revenue": [900.0], "customer_share": [0.1]}, index=pd.Index(["C"], name="persona"))])
    html = report.table(three, index=True, count="customers", min_group_size=10).data  # total implied: hide C too
    assert "€900" not in html and "€10,000" in html and "worked out from the total" in html


def test_long_tables_show_top_rows_and_where_the_rest_is():
    df = pd.DataFrame({"customers": range(100)})
    html = report.table(df, max_rows=10, name="big").data
    assert html.count("<tr>") == 11 and "first 10 of 100 rows" in html and "big.csv" in html


def test_saved_tables_are_byte_identical_despite_float_noise(tmp_path, monkeypatch):
    monkeypatch.setenv(report.TABLES_ENV, str(tmp_path))
    a = pd.DataFrame({"revenue": [183208.5 + 1e-10]})
    b = pd.DataFrame({"revenue": [183208.5 - 1e-10]})
    report.save_table(a, "a")
    report.save_table(b, "b")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()


def test_index_actions_name_the_plays_left_out_of_the_short_list():
    from segmentation.analysis import Results, Section
    from segmentation.findings import index_actions
    from segmentation.params import RunParameters

    plan = pd.DataFrame({"persona": [f"P{i}" for i in range(7)], "offer": "Voucher", "channel": "email",
                         "customers": [700, 600, 500, 400, 300, 200, 100], "reachable": [70, 60, 50, 40, 30, 20, 10],
                         "control": 5, "value_at_stake": 1000.0})
    results = Results(params=RunParameters(), customers=pd.DataFrame(),
                      sections={"offers": Section(tables={"action_plan": plan})})
    lines = index_actions(results, top=5)
    assert len(lines) == 6 and lines[0].startswith("**P0**: Voucher via email to 70 reachable customers")
    assert lines[-1] == "2 more plays (P5, P6; 300 customers) in the full plan."
    assert len(index_actions(results, top=7)) == 7


def test_a_table_without_rows_says_so_instead_of_showing_a_bare_header():
    html = report.table(pd.DataFrame({"a": [], "lift": []}), empty="No two categories are bought together.").data
    assert "<table" not in html and "No two categories are bought together." in html


def test_a_table_of_mixed_figures_formats_each_row_by_its_kind():
    checks = pd.DataFrame({"check": ["repeat buyers", "holdout correlation", "mean drop-out probability"],
                           "value": [0.67, 0.77, 0.0018], "kind": ["share", "number", "share"]})
    cells = [c for c in report.table(checks, ["check", "value"], value_kinds="kind").data.split("<td") if "</td>" in c]
    values = [c.split(">", 1)[1].split("<")[0] for c in cells[1::2]]
    assert values == ["67%", "0.77", "0.2%"]


def test_the_index_is_shown_under_the_label_given_even_an_empty_one():
    facts = pd.DataFrame({"value": ["Active buyers", "£572"]}, index=["persona", "net spend"])
    for label in ("figure", ""):
        html = report.table(facts, index=label, kinds={"value": "text"}).data
        assert f"<th>{label}</th>" in html and ">net spend</td>" in html and ">£572</td>" in html
