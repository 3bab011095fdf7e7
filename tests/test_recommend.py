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
    frequent_itemsets,
    leave_last_order_out,
    plot_evaluation,
    plot_rules,
    popularity_baseline,
    recommend_with,
    rule_labels,
)

matplotlib.use("Agg")


def lines(rows: list[tuple]) -> pd.DataFrame:
    """Purchase lines from (customer, order, day, product[, quantity]) tuples; day 0 = 2025-01-01."""
    df = pd.DataFrame([r if len(r) == 5 else (*r, 1.0) for r in rows], columns=["customer_id", "order_id", "day", "product_id", "quantity"])
    df["order_date"] = pd.Timestamp("2025-01-01") + pd.to_timedelta(df.pop("day"), unit="D")
    return df


# ------------------------------------------------------------------------------ rules
def rule(rules: pd.DataFrame, antecedent: tuple, consequent: tuple) -> pd.Series:
    """The one row of ``rules`` with these sides (tuples of items)."""
    hit = [a == antecedent and c == consequent for a, c in zip(rules["antecedent"], rules["consequent"])]
    assert sum(hit) == 1, (antecedent, consequent)
    return rules[hit].iloc[0]


def test_rules_known_support_confidence_lift():
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4, 4, 4], "item": list("abacbcabb")})  # 'b' twice in basket 4
    r = association_rules(baskets, min_support=0.25, min_confidence=0.0)
    # a in {1,2,4}, b in {1,3,4}, c in {2,3}; ab in {1,4}
    ab = rule(r, ("a",), ("b",))
    assert ab["count"] == 2 and ab["antecedent_count"] == 3 and ab["consequent_count"] == 3
    assert ab["support"] == pytest.approx(0.5)
    assert ab["confidence"] == pytest.approx(2 / 3)
    assert ab["lift"] == pytest.approx((2 / 3) / (3 / 4))
    assert ab["leverage"] == pytest.approx(0.5 - 0.75 * 0.75)
    assert ab["conviction"] == pytest.approx((1 - 0.75) / (1 - 2 / 3))
    assert len(r) == 6  # every ordered pair of the 3 items co-occurs once or more; no triple reaches 25%


def test_rules_of_any_length_with_hand_counts():
    # baskets: {a,b,c} x3, {a,b} x1, {c} x1, {a,c} x1
    rows = [(1, "a"), (1, "b"), (1, "c"), (2, "a"), (2, "b"), (2, "c"), (3, "a"), (3, "b"), (3, "c"),
            (4, "a"), (4, "b"), (5, "c"), (6, "a"), (6, "c")]
    baskets = pd.DataFrame(rows, columns=["basket_id", "item"])
    sets = frequent_itemsets(baskets, min_support=0.5)
    assert dict(zip(sets["itemset"], sets["count"])) == {("a",): 5, ("b",): 4, ("c",): 5, ("a", "b"): 4, ("a", "c"): 4,
                                                         ("b", "c"): 3, ("a", "b", "c"): 3}
    r = association_rules(baskets, min_support=0.5, min_confidence=0.0)
    abc = rule(r, ("a", "b"), ("c",))
    assert abc["count"] == 3 and abc["confidence"] == pytest.approx(3 / 4) and abc["lift"] == pytest.approx((3 / 4) / (5 / 6))
    assert rule(r, ("b", "c"), ("a",))["conviction"] == np.inf  # confidence 1
    assert r["antecedent"].map(len).max() == 2 and r["consequent"].map(len).max() == 1
    both_sides = association_rules(baskets, min_support=0.5, min_confidence=0.0, max_consequent=None)
    assert rule(both_sides, ("b",), ("a", "c"))["confidence"] == pytest.approx(3 / 4)
    assert len(both_sides) == len(r) + 3  # {b}->{a,c}, {a}->{b,c}, {c}->{a,b}
    assert association_rules(baskets, min_support=0.5, min_confidence=0.0, max_len=2)["antecedent"].map(len).max() == 1


def test_rules_thresholds_are_exact_and_stated():
    # a in 5 baskets, b with it in 4: confidence exactly 0.8 passes min_confidence=0.8
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4, 4, 5, 6, 6, 7], "item": list("ababababacbc")})
    r = association_rules(baskets, min_support=0.1, min_confidence=0.8)
    assert rule(r, ("a",), ("b",))["confidence"] == 0.8
    assert r.attrs["min_lift"] is None and "no lift filter" in r.attrs["filters"]
    # the default keeps negative associations (lift < 1), as arules and mlxtend do
    everything = association_rules(baskets, min_support=0.1, min_confidence=0.0)
    assert (everything["lift"] < 1).any()
    positive = association_rules(baskets, min_support=0.1, min_confidence=0.0, min_lift=1.0)
    assert (positive["lift"] >= 1).all() and len(positive) < len(everything) and "lift >= 1" in positive.attrs["filters"]


def test_rules_thresholds_prune():
    baskets = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4, 4], "item": list("abacbcab")})
    r = association_rules(baskets, min_support=0.5, min_confidence=0.0)
    assert set(zip(r.antecedent, r.consequent)) == {(("a",), ("b",)), (("b",), ("a",))}
    assert association_rules(baskets, min_support=0.25, min_lift=1.01).empty  # every lift here is < 1
    assert set(association_rules(baskets, min_support=0.25, min_confidence=0, max_items=2).antecedent) == {("a",), ("b",)}
    with pytest.raises(ValueError, match="max_consequent"):
        association_rules(baskets, max_consequent=0)


def test_rules_clear_errors():
    with pytest.raises(ValueError, match="no column 'item'"):
        association_rules(pd.DataFrame({"basket_id": [1], "sku": ["a"]}))
    with pytest.raises(ValueError, match="missing values in column 'item'"):
        association_rules(pd.DataFrame({"basket_id": [1, 2], "item": ["a", None]}))


@pytest.fixture(scope="module")
def groceries(shared_data) -> pd.DataFrame:
    return pd.read_csv(shared_data / "groceries_arules" / "groceries_transactions_long.csv")


def test_rules_match_published_groceries_values(groceries):
    r = association_rules(groceries, basket="transaction_id", min_support=0.001, min_confidence=0.0, max_len=2)
    assert r.attrs["n_baskets"] == 9835
    pair = rule(r, ("other vegetables",), ("whole milk",))
    assert pair["count"] == 736
    assert pair["support"] == pytest.approx(0.0748, abs=5e-5)
    assert pair["confidence"] == pytest.approx(0.3868, abs=5e-5)
    assert pair["lift"] == pytest.approx(1.5136, abs=5e-4)
    assert pair["support"] / pair["confidence"] == pytest.approx(0.1935, abs=5e-5)  # support(other vegetables)
    assert pair["confidence"] / pair["lift"] == pytest.approx(0.2555, abs=5e-5)  # support(whole milk)
    assert plot_rules(r).axes[0].get_title().startswith("Top 15")


def _sig3(x: float) -> float:
    return float(f"{x:.3g}")


def test_groceries_rules_of_any_length_equal_arules(groceries):
    """arules: apriori(Groceries, parameter = list(supp = 0.001, conf = 0.8)) -> 410 rules, all with
    2+ items on the left; rule lengths 3/4/5/6: 29/229/140/12; the top rules by lift below."""
    r = association_rules(groceries, basket="transaction_id", min_support=0.001, min_confidence=0.8)
    assert len(r) == 410
    assert (r["antecedent"].map(len) >= 2).all() and (r["consequent"].map(len) == 1).all()
    assert (r["antecedent"].map(len) + 1).value_counts().sort_index().to_dict() == {3: 29, 4: 229, 5: 140, 6: 12}
    published = [  # (lhs, rhs, support, confidence, lift) as printed by inspect(sort(rules, by = "lift"))
        (("liquor", "red/blush wine"), "bottled beer", 0.001931876, 0.9047619, 11.235269),
        (("citrus fruit", "fruit/vegetable juice", "other vegetables", "soda"), "root vegetables", 0.001016777, 0.9090909, 8.340400),
        (("oil", "other vegetables", "tropical fruit", "whole milk", "yogurt"), "root vegetables", 0.001016777, 0.9090909, 8.340400),
        (("citrus fruit", "fruit/vegetable juice", "grapes"), "tropical fruit", 0.001118454, 0.8461538, 8.063879),
        (("oil", "other vegetables", "tropical fruit", "whole milk"), "root vegetables", 0.001321810, 0.8666667, 7.951182),
    ]
    top = r.head(5)
    assert {(a, c[0]) for a, c in zip(top["antecedent"], top["consequent"])} == {(a, c) for a, c, *_ in published}
    for lhs, rhs, support, confidence, lift in published:
        got = rule(r, lhs, (rhs,))
        assert (_sig3(got["support"]), _sig3(got["confidence"]), _sig3(got["lift"])) == (_sig3(support), _sig3(confidence), _sig3(lift))
    beer = rule(r, ("liquor", "red/blush wine"), ("bottled beer",))
    assert beer["count"] == 19 and round(beer["support"], 4) == 0.0019 and round(beer["lift"], 2) == 11.24
    # a pairs-only miner finds none of them
    assert association_rules(groceries, basket="transaction_id", min_support=0.001, min_confidence=0.8, max_len=2).empty
    labelled = rule_labels(r.head(1))
    assert labelled["antecedent_name"].iloc[0] == "liquor + red/blush wine" and labelled["consequent_name"].iloc[0] == "bottled beer"


def test_instacart_rules_of_any_length_in_seconds(shared_data):
    import time

    lines = pd.read_csv(shared_data / "instacart_sample" / "order_products__prior.csv")
    started = time.perf_counter()
    r = association_rules(lines, basket="order_id", item="product_id", min_support=0.002, min_confidence=0.3)
    elapsed = time.perf_counter() - started
    assert r.attrs["n_baskets"] == 15_169 and len(r) > 100
    assert r["antecedent"].map(len).max() >= 3  # itemsets of 4 and more items
    assert elapsed < 10, elapsed  # about 0.2 s on an idle 2-core machine
    products = pd.read_csv(shared_data / "instacart_sample" / "products.csv").set_index("product_id")["product_name"]
    named = rule_labels(r, products)
    assert named["consequent_name"].str.contains("Banana|Organic|Milk|Yogurt", regex=True).any()


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


def test_top_n_equals_the_top_of_the_full_ranking():
    """Each customer keeps only the segment candidates its top n can need; the result must be
    the first n of the full ranking (a model whose n covers every item keeps them all)."""
    from segmentation.synthetic import generate_store

    tx = generate_store(300, random_state=5)["transactions"]
    customers = pd.Index(tx["customer_id"].unique(), dtype="string")
    segments = pd.Series(np.arange(len(customers)) % 3, index=customers)
    full = Recommender(n=tx["product_id"].nunique(), random_state=2).fit(tx, "2026-01-01", segments=segments)
    assert len(full.candidates_) > 10 * len(customers)  # long lists: the cut below matters
    for n in (1, 5, 10):
        short = Recommender(n=n, random_state=2).fit(tx, "2026-01-01", segments=segments)
        assert len(short.candidates_) < len(full.candidates_)
        expected = full.recommend(n=n)
        pd.testing.assert_frame_equal(short.recommend(), expected)


def test_segment_items_behind_excluded_ones_are_still_found():
    """The segment's best sellers are a > b > c > d; customer z's last order held a and b (so
    they are not suggested as new): z's top 2 are c and d, found behind the excluded items."""
    counts = {"a": 8, "b": 6, "c": 4, "d": 2}
    rows = [(f"x{i}", f"x{i}-{p}", 1, p) for p, k in counts.items() for i in range(k)]
    rows += [("z", "z1", 3, "a"), ("z", "z1", 3, "b")]
    segs = pd.Series("X", index=[*{r[0] for r in rows}])
    model = Recommender(n=2, min_pair_count=100, smoothing=0.0).fit(lines(rows), "2025-02-01", segments=segs)
    recs = model.recommend(["z"])
    assert recs["product_id"].tolist() == ["c", "d"] and recs["source"].eq("segment").all()


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

    return to_pandas(load_store(path / "instacart_sample", preset="instacart", pseudonymize=False, as_of="2026-01-01").transactions)


def test_beats_baselines_on_instacart(shared_data):
    tx = _instacart(shared_data)
    table = evaluation_table(tx, recommender=Recommender(habit_orders=1, half_life_days=30), k=10, random_state=3)
    assert table.loc["recommender", "customers"] == 592
    for metric in ("recall@10", "hit_rate@10"):
        assert table.loc["recommender", metric] > table.loc["buy_again", metric] > table.loc["popularity", metric]
    assert table.loc["recommender", "recall@10"] > 0.36
    best = table.attrs["best_baseline"]
    assert best == "buy_again"
    gap = table.loc[best]
    assert gap["recall_difference"] == pytest.approx(table.loc["recommender", "recall@10"] - table.loc[best, "recall@10"])
    assert gap["recall_difference_low"] < gap["recall_difference"] < gap["recall_difference_high"]
    clearly = gap["recall_difference_low"] > 0 and gap["hit_rate_difference_high"] >= 0
    assert table.attrs["winner"] == ("recommender" if clearly else "buy_again")
    assert table["winner"].sum() == 1 and table.loc[table.attrs["winner"], "winner"]
    assert table.attrs["note"].startswith("On the last orders of 592 customers")
    again = evaluation_table(tx, recommender=Recommender(habit_orders=1, half_life_days=30), k=10, random_state=3)
    pd.testing.assert_frame_equal(table, again)
    ax = plot_evaluation(table).axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "our recommender", "buy again (each customer's own favourites)", "best sellers for everyone"]
    assert ax.get_yticklabels()[-1].get_text().startswith("share of the next order")  # recall on top


def test_a_tie_goes_to_the_simpler_baseline():
    """Everyone buys the same two items every time: buy-again is perfect and the recommender can
    only tie, so the winner is buy-again (the interval of the difference contains 0)."""
    rows = [(c, f"{c}{k}", 7 * k, p) for c in [f"c{i}" for i in range(30)] for k in range(4) for p in (f"{c}-x", f"{c}-y")]
    tx = lines(rows)
    table = evaluation_table(tx, k=2, n_boot=200)
    assert table.loc["buy_again", "hit_rate@2"] == 1.0
    assert table.loc["recommender", "hit_rate@2"] == 1.0
    assert table.attrs["winner"] == "buy_again" and "not clearly better" in table.attrs["note"]
    assert table.loc["buy_again", ["hit_rate_difference_low", "hit_rate_difference_high"]].tolist() == [0.0, 0.0]
    recs = recommend_with(table.attrs["winner"], tx, "2025-03-01", customers=["c1"], n=2)
    assert set(recs["product_id"]) == {"c1-x", "c1-y"} and recs["source"].eq("buy_again").all()
    with pytest.raises(ValueError, match="method must be one of"):
        recommend_with("magic", tx, "2025-03-01")


@pytest.mark.slow
def test_beats_baselines_on_online_retail(shared_data):
    from segmentation.data import load_store, to_pandas

    path = shared_data / "uci_online_retail_ii" / "online_retail_ii_year_2009_2010.csv.gz"
    tx = to_pandas(load_store(path, preset="online_retail", pseudonymize=False, as_of="2010-12-10").transactions)
    table = evaluation_table(tx, recommender=Recommender(habit_orders=1, half_life_days=365, co_purchase_weight=0.6, segment_weight=0.1), k=10)
    for metric in ("recall@10", "hit_rate@10"):
        assert table.loc["recommender", metric] > table.loc["buy_again", metric] > table.loc["popularity", metric]


def test_rules_counted_in_the_engine_equal_the_in_memory_rules(groceries):
    import ibis

    kwargs = dict(min_support=0.002, min_confidence=0.3)
    expected = association_rules(groceries, basket="transaction_id", **kwargs)
    got = association_rules_in_engine(ibis.memtable(groceries), basket="transaction_id", item="item", **kwargs)
    assert len(expected) > 500 and expected["antecedent"].map(len).max() >= 3
    assert got.attrs == expected.attrs and got.attrs["n_baskets"] == 9835
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    # max_items: the most frequent items only (ties by item id); whole milk is the most frequent
    top = association_rules_in_engine(ibis.memtable(groceries), basket="transaction_id", item="item", max_items=5,
                                      min_support=0.001, min_confidence=0, max_len=2)
    assert top["antecedent"].nunique() == 5 and ("whole milk",) in set(top["antecedent"])
    with pytest.raises(ValueError, match="no column 'product_id'"):
        association_rules_in_engine(ibis.memtable(groceries), basket="transaction_id")


def test_returned_since_bought_known_answer():
    """Key 1: returned after its last purchase (gone); key 2: bought again after the return (back);
    key 3: returned on the day of its last purchase (gone); key 4: returned, never bought (gone);
    key 5: bought only."""
    from segmentation.recommend import _returned_since_bought

    key = np.array([1, 1, 2, 2, 3, 3, 4, 5])
    date = np.array(["2025-01-01", "2025-01-05", "2025-01-01", "2025-01-09", "2025-01-03", "2025-01-03",
                     "2025-01-02", "2025-01-02"], dtype="datetime64[us]")
    is_buy = np.array([True, False, False, True, True, False, False, True])
    assert _returned_since_bought(key, date, is_buy).tolist() == [1, 3, 4]


def test_customers_in_batches_give_the_same_candidates_and_recommendations(monkeypatch):
    """Candidates and rankings are computed for customers in batches (bounded memory at
    millions of customers); any batch size gives the same candidates and recommendations."""
    from segmentation import recommend
    from segmentation.synthetic import generate_store

    tx = generate_store(300, random_state=5)["transactions"]
    customers = pd.Index(tx["customer_id"].unique(), dtype="string")
    segments = pd.Series(np.arange(len(customers)) % 3, index=customers)
    whole = Recommender(n=5, random_state=2).fit(tx, "2026-01-01", segments=segments)
    expected = whole.recommend(list(customers[::-1]) + ["unknown"])
    monkeypatch.setattr(recommend, "_BATCH", 7)
    batched = Recommender(n=5, random_state=2).fit(tx, "2026-01-01", segments=segments)
    pd.testing.assert_frame_equal(batched.candidates_, whole.candidates_)
    got = batched.recommend(list(customers[::-1]) + ["unknown"])
    pd.testing.assert_frame_equal(got, expected)
    assert got.groupby("customer_id")["rank"].apply(lambda r: r.tolist() == list(range(1, len(r) + 1))).all()
    assert got.loc[got["customer_id"] == "unknown", "source"].eq("popular").all()


def test_rules_of_many_items_are_drawn_with_whole_labels_and_no_warning():
    import warnings

    from segmentation.recommend import plot_rules

    long = " + ".join(f"CHILDS GARDEN TROWEL COLOUR {i}" for i in range(4))
    rules = pd.DataFrame({"antecedent_name": [long, "A"], "consequent_name": ["CHILDRENS GARDEN GLOVES BLUE", "B"],
                          "lift": [96.5, 3.0], "confidence": [0.95, 0.5]})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied" reached the stakeholder page once
        fig = plot_rules(rules)
        fig.canvas.draw()
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[-1].replace("\n", " ") == f"{long} \u2192 CHILDRENS GARDEN GLOVES BLUE" and "\n" in labels[-1]
