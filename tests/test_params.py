"""The run parameters: one typed, validated set; clear errors; defaults documented."""

from __future__ import annotations

import pandas as pd
import pytest

from segmentation.params import PARAMETER_DOCS, ParameterError, RunParameters, parameter_table


def test_defaults_and_synthetic_as_of():
    p = RunParameters()
    assert p.as_of == "2026-01-01" and p.random_state == 42 and p.n_clusters == "auto"
    assert p.comparison_date == pd.Timestamp("2025-07-01")  # 6 months before as_of by default
    assert p.horizon_weeks == 52 and RunParameters(horizon_months=6).horizon_weeks == 26


def test_own_data_needs_as_of():
    p = RunParameters(source="/data/shop")
    assert p.as_of is None
    with pytest.raises(ParameterError, match="as_of is required"):
        _ = p.analysis_date


@pytest.mark.parametrize("values, match", [
    ({"n_clusters": "five"}, "n_clusters='five'"),
    ({"n_clusters": 1}, "at least 2"),
    ({"random_state": "1"}, r"random_state='1' \(str\): expected int"),
    ({"random_state": True}, "expected int"),
    ({"as_of": "last tuesday"}, "not a date"),
    ({"annual_discount_rate": 10}, "yearly rate"),
    ({"k_min": 5, "k_max": 3}, "k_max must be at least k_min"),
    ({"method": "dbscan"}, "expected one of"),
    ({"compare_as_of": "2026-03-01"}, "must lie before as_of"),
    ({"lapsing_after": 4.0}, "lapsing_after < lapsed_after"),
    ({"min_group_size": 0}, "at least 1"),
])
def test_bad_values_are_clear_errors(values, match):
    with pytest.raises(ParameterError, match=match):
        RunParameters(**values)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(ParameterError, match=r"'n_cluster' \(did you mean 'n_clusters'\?\)"):
        RunParameters.from_mapping({"n_cluster": 5})


def test_from_mapping_takes_yaml_dates_and_ints_for_floats():
    import datetime as dt

    p = RunParameters.from_mapping({"as_of": dt.date(2026, 2, 1), "annual_discount_rate": 0, "n_clusters": 5})
    assert p.as_of == "2026-02-01" and p.annual_discount_rate == 0 and p.n_clusters == 5
    assert RunParameters.from_mapping(p.to_dict()) == p  # round trip (as saved with the results)


def test_every_parameter_is_documented():
    table = parameter_table()
    assert list(table["parameter"]) == list(RunParameters.__dataclass_fields__)
    assert set(PARAMETER_DOCS) == set(RunParameters.__dataclass_fields__)
    assert (table["meaning"].str.len() > 10).all()


def test_readme_parameter_table_is_current():
    from conftest import ROOT

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for row in parameter_table().itertuples():
        assert f"| `{row.parameter}` |" in readme, f"README's run parameter table lacks {row.parameter}"
