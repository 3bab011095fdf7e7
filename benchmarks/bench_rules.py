"""Benchmark: association rules of any length -- ours (in memory and in DuckDB) against mlxtend.

For the arules Groceries data (support 0.001, confidence 0.8: arules finds 410 rules) and the
Instacart sample (orders as baskets, products as items), prints for each miner the wall time
(best of ``--repeat`` runs), the number of frequent itemsets and rules, and how the rule sets
compare: rules found by one and not the other, with their confidence, so a disagreement can
be traced to its cause.

mlxtend (``pip install mlxtend``; not a dependency of the project) is timed from the same
(basket, item) lines: first the one-hot encoding it needs (``encode``), then ``fpgrowth`` and
``association_rules`` (``mine``); its rules are restricted to one item on the right-hand side,
as arules and our default.

Usage::

    python benchmarks/bench_rules.py [--repeat 3] [--instacart-support 0.002 0.001]

Not part of the test suite: it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def best_time(fn, repeat: int):
    """(result of the last run, best wall time in seconds over ``repeat`` runs)."""
    best, result = float("inf"), None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - started)
    return result, best


def rule_keys(antecedents, consequents) -> set[tuple[frozenset, frozenset]]:
    return {(frozenset(a), frozenset(c)) for a, c in zip(antecedents, consequents)}


def ours(lines: pd.DataFrame, basket: str, item: str, support: float, confidence: float, repeat: int) -> dict:
    from segmentation.recommend import association_rules, frequent_itemsets

    rules, seconds = best_time(lambda: association_rules(lines, basket=basket, item=item, min_support=support,
                                                         min_confidence=confidence), repeat)
    itemsets = frequent_itemsets(lines, basket=basket, item=item, min_support=support)
    return {"miner": "ours (memory)", "seconds": seconds, "itemsets": len(itemsets), "rules": len(rules),
            "longest": int(itemsets["size"].max()), "keys": rule_keys(rules["antecedent"], rules["consequent"]),
            "table": rules}


def ours_in_engine(lines: pd.DataFrame, basket: str, item: str, support: float, confidence: float, repeat: int) -> dict:
    import ibis

    from segmentation.recommend import association_rules_in_engine

    table = ibis.duckdb.connect().create_table("lines", ibis.memtable(lines[[basket, item]]))
    rules, seconds = best_time(lambda: association_rules_in_engine(table, basket=basket, item=item, min_support=support,
                                                                   min_confidence=confidence), repeat)
    return {"miner": "ours (DuckDB)", "seconds": seconds, "itemsets": None, "rules": len(rules), "longest": None,
            "keys": rule_keys(rules["antecedent"], rules["consequent"])}


def mlxtend(lines: pd.DataFrame, basket: str, item: str, support: float, confidence: float, repeat: int) -> dict | None:
    try:
        from mlxtend.frequent_patterns import association_rules, fpgrowth
    except ImportError:
        return None
    import scipy.sparse as sp

    def encode() -> pd.DataFrame:
        b, baskets = pd.factorize(lines[basket])
        i, items = pd.factorize(lines[item])
        m = sp.csr_matrix((np.ones(len(b), dtype=bool), (b, i)), shape=(len(baskets), len(items)))
        if len(items) > 1000:  # a wide catalogue: mlxtend's sparse input
            return pd.DataFrame.sparse.from_spmatrix(m, columns=items.astype(str))
        return pd.DataFrame(m.toarray(), columns=items.astype(str))

    onehot, encode_seconds = best_time(encode, repeat)

    def mine():
        itemsets = fpgrowth(onehot, min_support=support, use_colnames=True)
        rules = association_rules(itemsets, metric="confidence", min_threshold=confidence)
        return itemsets, rules[rules["consequents"].map(len) == 1]

    (itemsets, rules), seconds = best_time(mine, repeat)
    to_item = {str(v): v for v in pd.unique(lines[item])}
    keys = {(frozenset(to_item[x] for x in a), frozenset(to_item[x] for x in c))
            for a, c in zip(rules["antecedents"], rules["consequents"])}
    return {"miner": "mlxtend fpgrowth", "seconds": seconds, "encode_seconds": encode_seconds, "itemsets": len(itemsets),
            "rules": len(rules), "longest": int(itemsets["itemsets"].map(len).max()), "keys": keys}


def compare(name: str, lines: pd.DataFrame, basket: str, item: str, support: float, confidence: float, repeat: int) -> None:
    n = lines[basket].nunique()
    print(f"\n== {name}: {n:,} baskets, {lines[item].nunique():,} items, support {support} "
          f"(>= {int(np.ceil(support * n - 1e-9))} baskets), confidence {confidence}")
    results = [ours(lines, basket, item, support, confidence, repeat),
               ours_in_engine(lines, basket, item, support, confidence, repeat)]
    other = mlxtend(lines, basket, item, support, confidence, repeat)
    if other is not None:
        results.append(other)
    print(f"{'miner':<18}{'seconds':>9}{'encode s':>10}{'itemsets':>10}{'rules':>8}{'longest':>9}")
    for r in results:
        enc = f"{r['encode_seconds']:.2f}" if "encode_seconds" in r else "-"
        print(f"{r['miner']:<18}{r['seconds']:>9.2f}{enc:>10}{r['itemsets'] if r['itemsets'] is not None else '-':>10}"
              f"{r['rules']:>8}{r['longest'] if r['longest'] is not None else '-':>9}")
    mine_keys, table = results[0]["keys"], results[0]["table"]
    print(f"ours in DuckDB == ours in memory: {results[1]['keys'] == mine_keys}")
    if other is not None:
        only_ours, only_theirs = mine_keys - other["keys"], other["keys"] - mine_keys
        print(f"rules only ours: {len(only_ours)}, only mlxtend: {len(only_theirs)}")
        if only_ours:
            keyed = table.assign(key=[(frozenset(a), frozenset(c)) for a, c in zip(table["antecedent"], table["consequent"])])
            missing = keyed[keyed["key"].isin(only_ours)]
            print("  confidence of the rules mlxtend misses (exact integer ratios):",
                  ", ".join(f"{c}/{a} = {c / a:.6f}" for c, a in zip(missing["count"], missing["antecedent_count"])))
            print("  (mlxtend divides float supports, so a ratio exactly at the threshold can fall just below it)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--instacart-support", type=float, nargs="+", default=[0.002, 0.001])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # raised inside ibis under DuckDB 2.0
    groceries = pd.read_csv(DATA / "groceries_arules" / "groceries_transactions_long.csv")
    compare("Groceries (arules)", groceries, "transaction_id", "item", 0.001, 0.8, args.repeat)
    instacart = pd.read_csv(DATA / "instacart_sample" / "order_products__prior.csv")
    for support in args.instacart_support:
        compare("Instacart sample", instacart, "order_id", "product_id", support, 0.3, args.repeat)


if __name__ == "__main__":
    main()
