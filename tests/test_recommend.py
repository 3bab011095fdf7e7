"""Co-purchase rules, the hybrid recommender and its offline evaluation."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest

from segmentation.recommend import (
    Recommender,
    association_rules,
    association_rules_in_engine,
    buy_again_baseline,
    evaluate,
    evaluation_table,
    leave_last_order_out,
    plot_evaluation,
    plot_rules,
    popularity_baseline,
)

matplotlib.use("Agg")


def lines(rows: list[tuple]) -> pd.DataFrame:
    """Purchase lines from (customer, order, day, product[, quantity]) tuples; day 0 = 2025-01-01."""
    df = pd.DataFrame([r if len(r) == 5 else (*r, 1.0) for r in rows], columns=["customer_id", "order_id", "day", "product_id", "quantity"])
    df["order_date"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(df.pop("day"), unit="D")
    return df


# ------------------------------------------------------------------------------ rules
def test_rules_known_support_confidence_lift():
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4, 4, 4], "item": list("abacbcabb")})  # 'b' twice in basket 4
    r = association_rules(baskets, min_support=0.25, min_confidence=0.0, min_lift=0.0).set_index(["antecedent", "consequent"])
    # a in {1,2,4}, b in {1,3,4}, c in {2,3}; ab in {1,4}
    assert r.loc[("a", "b"), "count"] == 2
    assert r.loc[("a", "b"), "support"] == pytest.approx(0.5)
    assert r.loc[("a", "b"), "confidence"] == pytest.approx(2 / 3)
    assert r.loc[("a", "b"), "lift"] == pytest.approx((2 / 3) / (3 / 4))
    assert len(r) == 6  # every ordered pair of the 3 items co-occurs once or more


def test_rules_thresholds_prune():
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4, 4], "item": list("abacbcab")})
    r = association_rules(baskets, min_support=0.5, min_confidence=0.0, min_lift=0.0)
    assert set(zip(r.antecedent, r.consequent)) == {("a", "b"), ("b", "a")}
    assert association_rules(baskets, min_support=0.25, min_lift=1.01).empty  # every lift here is < 1
    assert set(association_rules(baskets, min_support=0.25, min_confidence=0, min_lift=0, max_items=2).antecedent) == {"a", "b"}


def test_rules_clear_errors():
    with pytest.raises(ValueError, match="no column 'item'"):
        association_rules(pd.DataFrame({"basket_id": [1], "sku": ["a"]}))
    with pytest.raises(ValueError, match="missing values in column 'item'"):
        association_rules(pd.DataFrame({"basket_id": [1, 2], "item": ["a", None]}))


def test_rules_match_published_groceries_values(shared_data):
    g = pd.read_csv(shared_data / "groceries_arules" / "groceries_transactions_long.csv")
    r = association_rules(g, basket="transaction_id", min_support=0.001, min_confidence=0.0, min_lift=0.0)
    assert r.attrs["n_baskets"] == 9835
    rule = r.set_index(["antecedent", "consequent"]).loc[("other vegetables", "whole milk")]
    assert rule["count"] == 736
    assert rule["support"] == pytest.approx(0.0748, abs=5e-5)
    assert rule["confidence"] == pytest.approx(0.3868, abs=5e-5)
    assert rule["lift"] == pytest.approx(1.5136, abs=5e-4)
    assert rule["support"] / rule["confidence"] == pytest.approx(0.1935, abs=5e-5)  # support(other vegetables)
    assert rule["confidence"] / rule["lift"] == pytest.approx(0.2555, abs=5e-5)  # support(whole milk)
    assert plot_rules(r).axes[0].get_title().startswith("Top 15")


# ------------------------------------------------------------------------------ recommender
@pytest.fixture
def shop() -> pd.DataFrame:
    rows = [
        # a: milk every time, bread in the last order only, returned jam, bought cereal twice
        ("a", "a1", 0, "milk"), ("a", "a1", 0, "cereal"), ("a", "a2", 10, "milk"), ("a", "a2", 10, "jam"),
        ("a", "a2", 11, "jam", -1.0), ("a", "a3", 20, "milk"), ("a", "a3", 20, "cereal"), ("a", "a3", 20, "bread"),
        # others: milk goes with butter, tea is popular
        *[(c, f"{c}{k}", k, p) for c in "bcde" for k in range(2) for p in ("milk", "butter", "tea")],
        ("b", "b9", 25, "jam"),
        # after as_of: must be ignored
        ("a", "a4", 40, "caviar"),
    ]
    return lines(rows)


def test_recommender_mixes_sources_and_applies_exclusions(shop):
    model = Recommender(n=5, co_purchase_weight=0.5, segment_weight=0.1).fit(shop, "2025-02-01")
    recs = model.recommend(["a"])
    assert recs["rank"].tolist() == list(range(1, len(recs) + 1))
    assert recs["score"].is_monotonic_decreasing
    got = recs.set_index("product_id")
    assert got.loc["milk", "reason"] == "buy again" and got.index[0] == "milk"
    assert got.loc["cereal", "reason"] == "buy again"
    assert got.loc["butter", "reason"] == "often bought with milk"
    assert got.loc["tea", "source"] in {"co_purchase", "segment"}
    assert "jam" not in got.index  # returned, not bought since
    assert "bread" not in got.index  # in the last order, bought once: not habitual
    assert "caviar" not in got.index  # on/after as_of
    assert model.exclusions_["returned_items"] == 1


def test_habitual_last_order_items_come_back_and_rebought_returns_are_allowed(shop):
    extra = lines([("a", "a0", -5, "bread"), ("b", "b8", 30, "jam")])  # a bought bread before; b re-bought jam
    model = Recommender(n=10).fit(pd.concat([shop, extra]), "2025-02-01")
    assert "bread" in set(model.recommend(["a"])["product_id"])
    assert model.exclusions_["returned_items"] == 1


def test_recommender_is_deterministic_and_handles_unknown_customers(shop):
    a = Recommender(n=3, random_state=1).fit(shop, "2025-02-01").recommend()
    b = Recommender(n=3, random_state=1).fit(shop, "2025-02-01").recommend()
    pd.testing.assert_frame_equal(a, b)
    cold = Recommender(n=2).fit(shop, "2025-02-01").recommend(["zz"])
    assert cold["reason"].eq("popular now").all() and set(cold["product_id"]) <= {"milk", "butter", "tea"}
    with pytest.raises(RuntimeError, match="not fitted"):
        Recommender().recommend()


def test_segments_change_the_popular_items():
    rows = [(c, f"{c}{k}", k, p) for k in range(2) for c, p in [*[(f"x{i}", "tea") for i in range(6)], *[(f"y{i}", "coffee") for i in range(3)]]]
    rows += [("x_new", "xn", 5, "milk"), ("y_new", "yn", 5, "milk")]
    tx = lines(rows)
    segs = pd.Series(["X"] * 7 + ["Y"] * 4, index=[*[f"x{i}" for i in range(6)], "x_new", *[f"y{i}" for i in range(3)], "y_new"])
    model = Recommender(n=1, co_purchase_weight=0.0, smoothing=1.0).fit(tx, "2025-02-01", segments=segs)
    recs = model.recommend(["x_new", "y_new"]).set_index("customer_id")
    assert recs.loc["x_new", "product_id"] == "tea" and recs.loc["y_new", "product_id"] == "coffee"
    assert recs["reason"].eq("customers like you also buy").all()


def test_fit_rejects_bad_input(shop):
    with pytest.raises(ValueError, match="no column 'order_date'"):
        Recommender().fit(shop.drop(columns="order_date"), "2025-02-01")
    with pytest.raises(ValueError, match="no purchase"):
        Recommender().fit(shop, "2024-01-01")


# ------------------------------------------------------------------------------ evaluation
def test_leave_last_order_out_and_baselines(shop):
    train, holdout = leave_last_order_out(shop)
    assert set(holdout.loc[holdout.customer_id == "a", "product_id"]) == {"caviar"}
    assert set(holdout.loc[holdout.customer_id == "b", "product_id"]) == {"jam"}
    assert not (train.customer_id.eq("a") & train.order_date.ge(pd.Timestamp("2025-02-10"))).any()
    assert len(train) == len(shop) - 1 - 1 - 3 * 3  # a, b, and the 3-line last orders of c, d, e
    ba = buy_again_baseline(train, "2025-03-01", customers=["a"], n=2)
    assert ba["product_id"].tolist() == ["milk", "cereal"] and ba["score"].tolist() == [1.0, pytest.approx(2 / 3)]
    pop = popularity_baseline(train, "2025-03-01", customers=["a", "b"], n=1)
    assert pop["product_id"].tolist() == ["milk", "milk"]


def test_evaluate_known_numbers():
    recs = pd.DataFrame({"customer_id": ["a", "a", "a", "b"], "rank": [1, 2, 3, 1], "product_id": ["x", "y", "z", "q"]})
    held = pd.DataFrame({"customer_id": ["a", "a", "b", "c"], "product_id": ["y", "z", "z", "x"]})
    m = evaluate(recs, held, k=2)
    assert m == {"recall@2": pytest.approx((0.5 + 0 + 0) / 3), "precision@2": pytest.approx(0.5 / 3), "hit_rate@2": pytest.approx(1 / 3), "customers": 3}
    assert evaluate(recs, held, k=3)["recall@3"] == pytest.approx(1 / 3)


def _instacart(path) -> pd.DataFrame:
    from segmentation.data import load_store, to_pandas

    return to_pandas(load_store(path / "instacart_sample", preset="instacart", pseudonymize=False).transactions)


def test_beats_baselines_on_instacart(shared_data):
    table = evaluation_table(_instacart(shared_data), recommender=Recommender(habit_orders=1, half_life_days=30), k=10)
    assert table.loc["recommender", "customers"] == 592
    for metric in ("recall@10", "hit_rate@10"):
        assert table.loc["recommender", metric] > table.loc["buy_again", metric] > table.loc["popularity", metric]
    assert table.loc["recommender", "recall@10"] > 0.36
    assert plot_evaluation(table).axes[0].get_legend() is not None


@pytest.mark.slow
def test_beats_baselines_on_online_retail(shared_data):
    from segmentation.data import load_store, to_pandas

    path = shared_data / "uci_online_retail_ii" / "online_retail_ii_year_2009_2010.csv.gz"
    tx = to_pandas(load_store(path, preset="online_retail", pseudonymize=False).transactions)
    table = evaluation_table(tx, recommender=Recommender(habit_orders=1, half_life_days=365, co_purchase_weight=0.6, segment_weight=0.1), k=10)
    for metric in ("recall@10", "hit_rate@10"):
        assert table.loc["recommender", metric] > table.loc["buy_again", metric] > table.loc["popularity", metric]


def test_rules_counted_in_the_engine_equal_the_in_memory_rules(shared_data):
    import ibis

    g = pd.read_csv(shared_data / "groceries_arules" / "groceries_transactions_long.csv")
    kwargs = dict(min_support=0.002, min_confidence=0.05, min_lift=1.0)
    expected = association_rules(g, basket="transaction_id", **kwargs)
    got = association_rules_in_engine(ibis.memtable(g), basket="transaction_id", item="item", **kwargs)
    assert len(expected) > 1000 and got.attrs["n_baskets"] == expected.attrs["n_baskets"] == 9835
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # max_items: the most frequent items only (ties by item id); whole milk is the most frequent
    top = association_rules_in_engine(ibis.memtable(g), basket="transaction_id", item="item", max_items=5, min_support=0.001,
                                      min_confidence=0, min_lift=0)
    assert top["antecedent"].nunique() == 5 and "whole milk" in set(top["antecedent"])
    with pytest.raises(ValueError, match="no column 'product_id'"):
        association_rules_in_engine(ibis.memtable(g), basket="transaction_id")
