"""Property-based tests (hypothesis) over the data contract and the features, plus the
bad-input catalogue: every kind of bad input gets a clear error."""

from __future__ import annotations

import ibis
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from segmentation.data import DataContractError, clean_transactions, load_store, to_pandas
from segmentation.features import customer_features, lifetime_summary
from segmentation.params import ParameterError, RunParameters

AS_OF = pd.Timestamp("2025-03-01")

line = st.tuples(
    st.sampled_from(["a", "b", "c", "d"]),                      # customer
    st.integers(0, 12),                                          # order number
    st.integers(0, 120),                                         # day offset from 2025-01-01 (some after as_of)
    st.integers(0, 23),                                          # hour
    st.sampled_from(["p1", "p2", "p3"]),
    st.sampled_from(["fresh", "treats", "home"]),
    st.integers(-2, 5).filter(lambda q: q != 0),
    st.sampled_from([1.0, 2.5, 10.0]),
)


def _frame(lines) -> pd.DataFrame:
    rows = [(c, f"{c}{o}", pd.Timestamp("2025-01-01") + pd.Timedelta(days=d, hours=h), p, cat, float(q), price)
            for c, o, d, h, p, cat, q, price in lines]
    df = pd.DataFrame(rows, columns=["customer_id", "order_id", "order_date", "product_id", "category", "quantity", "unit_price"])
    # one timestamp per order, as in real data
    df["order_date"] = df.groupby("order_id")["order_date"].transform("min")
    return df


def _features(df):
    f = customer_features(df, AS_OF)
    return f


SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(st.lists(line, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_features_ignore_rows_after_as_of_and_row_order(lines, rnd):
    df = _frame(lines)
    if not ((df["order_date"] < AS_OF) & (df["quantity"] > 0)).any():
        return
    base = _features(df)
    late = df["order_date"] >= AS_OF
    mutated = df.copy()
    mutated.loc[late, "quantity"] = 99.0
    mutated.loc[late, "unit_price"] = 123.0
    pd.testing.assert_frame_equal(base, _features(mutated))
    shuffled = df.sample(frac=1.0, random_state=rnd.randint(0, 10_000))
    pd.testing.assert_frame_equal(base, _features(shuffled))
    pd.testing.assert_frame_equal(lifetime_summary(df, AS_OF), lifetime_summary(shuffled, AS_OF))


@SETTINGS
@given(st.lists(line, min_size=1, max_size=25))
def test_adding_a_customer_leaves_others_unchanged(lines):
    df = _frame(lines)
    if not ((df["order_date"] < AS_OF) & (df["quantity"] > 0)).any():
        return
    base = _features(df)
    newcomer = df.assign(customer_id="zz", order_id="zz" + df["order_id"])
    both = _features(pd.concat([df, newcomer], ignore_index=True))
    pd.testing.assert_frame_equal(base, both.drop(index="zz")[base.columns])


@SETTINGS
@given(st.lists(line, min_size=1, max_size=30))
def test_cleaning_accounts_for_every_row(lines):
    df = _frame(lines)
    df.loc[::5, "customer_id"] = None
    cleaned, quality = clean_transactions(ibis.memtable(df))
    q = quality.set_index("rule")["rows"]
    dropped = quality.loc[quality["action"] == "dropped", "rows"].sum()
    assert q["rows_in"] == len(df)
    assert q["rows_in"] - dropped == q["rows_out"] == len(to_pandas(cleaned))


def test_bad_parameters_are_refused():
    RunParameters.from_mapping({"source": "synthetic", "as_of": "2026-01-01", "random_state": 1, "n_customers": 100})
    for bad, match in [({"random_state": "1"}, "random_state='1'"), ({"as_of": "last tuesday"}, "not a date"),
                       ({"preset": "retail"}, "preset='retail'"), ({"n_customers": 3}, "n_customers=3"),
                       ({"min_group_size": True}, "min_group_size=True")]:
        with pytest.raises(ParameterError, match=match):
            RunParameters.from_mapping(bad)


def test_as_of_outside_the_data_is_refused_at_load():
    with pytest.raises(DataContractError, match="on or before the first transaction"):
        load_store("synthetic", n_customers=50, random_state=1, suppress=[], as_of="2020-01-01")


def test_mixed_date_formats_parse_what_is_unambiguous():
    df = pd.DataFrame({"customer_id": ["a"] * 5, "order_id": list("12345"), "product_id": "p", "quantity": 1.0, "unit_price": 1.0,
                       "order_date": ["2025-01-13 10:00", "13/01/2025 10:00", "14/01/2025", "garbage", ""]})
    cleaned, quality = clean_transactions(ibis.memtable(df))
    out = to_pandas(cleaned).sort_values("order_id")
    assert out["order_date"].dt.strftime("%Y-%m-%d").tolist() == ["2025-01-13", "2025-01-13", "2025-01-14"]
    assert quality.set_index("rule").loc["unparseable_date", "rows"] == 2
