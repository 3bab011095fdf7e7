"""Recommendations from purchase history: co-purchase rules, a hybrid recommender, offline evaluation.

Everything works on pandas purchase lines (``customer_id, order_id, order_date, product_id,
quantity``; a negative quantity is a return) and on sparse ``scipy.sparse`` matrices; there is no
Python loop over baskets, customers or rows.

* :func:`frequent_itemsets`, :func:`association_rules` -- itemsets and rules of any length
  (support, confidence, lift, leverage, conviction, counts), mined exactly and level-wise on a
  sparse basket x item matrix; :func:`association_rules_in_engine` counts the itemsets in the
  engine (DuckDB, Spark) for data that does not fit in memory and gives the same rules;
  :func:`rule_labels` makes them readable. Checked against arules on the Groceries data
  (410 rules at support 0.001 / confidence 0.8) and timed against mlxtend in
  ``benchmarks/bench_rules.py``.
* :class:`Recommender` -- a mix of (a) *buy again* (the customer's decayed repeat frequency),
  (b) *customers like you also buy* (items popular in the customer's segment, i.e. overall
  popularity re-weighted by the segment's lift) and (c) *often bought with X* (item-to-item
  co-purchase from the customer's own items: ``profile @ similarity``, sparse, top-N per row).
* :func:`leave_last_order_out`, :func:`evaluate`, :func:`popularity_baseline`,
  :func:`buy_again_baseline`, :func:`evaluation_table` -- offline evaluation: every customer's
  last order is held out and the recommendations made from the earlier orders are scored by
  recall@k and hit-rate@k against it; the recommender must beat the best baseline with a
  paired bootstrap interval above 0 to be used, otherwise the simpler baseline is the winner
  (:func:`recommend_with` makes the winner's recommendations).

Example
-------
>>> lines = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3], "item": ["milk", "bread", "milk", "bread", "milk"]})
>>> association_rules(lines, min_support=0.5)[["antecedent", "consequent", "count"]].to_dict("records")
[{'antecedent': ('bread',), 'consequent': ('milk',), 'count': 2}, {'antecedent': ('milk',), 'consequent': ('bread',), 'count': 2}]
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure
from sklearn.base import BaseEstimator

from segmentation import scale
from segmentation.definitions import METHOD_NAMES

if TYPE_CHECKING:
    import ibis.expr.types as ir

__all__ = [
    "REASONS",
    "RULE_COLUMNS",
    "METHODS",
    "frequent_itemsets",
    "association_rules",
    "association_rules_in_engine",
    "rule_labels",
    "Recommender",
    "leave_last_order_out",
    "evaluate",
    "popularity_baseline",
    "buy_again_baseline",
    "evaluation_table",
    "recommend_with",
    "plot_rules",
    "plot_evaluation",
]

#: The ``reason`` of each recommendation source (``often bought with`` is followed by the item).
REASONS: dict[str, str] = {
    "buy_again": "buy again",
    "segment": "customers like you also buy",
    "co_purchase": "often bought with {item}",
    "popular": "popular now",
}
REC_COLUMNS = ["customer_id", "rank", "product_id", "score", "reason", "source"]
TX_COLUMNS = ["customer_id", "order_id", "order_date", "product_id", "quantity"]
#: Candidates kept per customer and per source before mixing (bounds memory at O(customers x 200)).
_CANDIDATES = 200
#: Customers whose candidates are computed (and ranked) together: memory O(batch x candidates).
_BATCH = 250_000


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"{name} must be a pandas DataFrame, got {type(df).__name__}")
    _require_columns(list(df.columns), columns, name)
    nulls = df[columns].isna().sum()
    if nulls.any():
        col = nulls.index[nulls.to_numpy() > 0][0]
        raise ValueError(f"{name} has {int(nulls[col])} missing values in column {col!r}; drop or fill those rows first.")


def _purchases(transactions: pd.DataFrame, as_of: str | pd.Timestamp) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Validated lines strictly before ``as_of`` with string ids and a datetime ``order_date``."""
    _require(transactions, TX_COLUMNS, "transactions")
    as_of = pd.Timestamp(as_of)
    tx = transactions[TX_COLUMNS].astype({"customer_id": "string", "order_id": "string", "product_id": "string", "quantity": "float64"})
    tx["order_date"] = pd.to_datetime(tx["order_date"])
    before = (tx["order_date"] < as_of).to_numpy()
    if not before.all():  # (millions of lines: no copy when every line is before as_of)
        tx = tx[before]
    if not (tx["quantity"] > 0).any():
        raise ValueError(f"transactions has no purchase (quantity > 0) before as_of={as_of.date()}; choose a later as_of.")
    return tx, as_of


def _top_per_row(rows: np.ndarray, scores: np.ndarray, k: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Positions of the ``k`` highest ``scores`` within each value of ``rows`` (best first per row).

    One ``np.lexsort``: O(m log m) for m entries; ties are broken by ``tiebreak`` (ascending).
    """
    keys = (tiebreak if tiebreak is not None else np.zeros(len(rows)), -scores, rows)
    order = np.lexsort(keys)
    sorted_rows = rows[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_rows)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    return order[rank < k]


def _sorted_isin(values: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    """``values`` found in the ascending array ``sorted_keys`` (binary search, O(n log m))."""
    if len(sorted_keys) == 0:
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_keys, values), len(sorted_keys) - 1)
    return sorted_keys[at] == values


def _sum_by_key(parts: list[tuple[np.ndarray, np.ndarray, str]], n_i: int) -> pd.DataFrame:
    """Candidates summed over their sources: ``customer, item, score, source`` (the source of
    the largest contribution; on equal contributions the earlier part), rows with a positive
    score, sorted by customer and item. ``parts`` are ``(key, value, source)`` with ``key =
    customer * n_items + item``; one sort of the concatenated keys."""
    key = np.concatenate([k for k, _, _ in parts])
    value = np.concatenate([v for _, v, _ in parts])
    source = np.repeat(np.arange(len(parts)), [len(k) for k, _, _ in parts])
    order = np.lexsort((-value, key))  # stable: equal values keep the order of the parts
    key, value, source = key[order], value[order], source[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]]) if len(key) else np.zeros(0, dtype=np.int64)
    score = np.add.reduceat(value, starts) if len(key) else np.zeros(0)
    customer, item = np.divmod(key[starts], n_i)
    names = [name for _, _, name in parts]
    out = pd.DataFrame({"customer": customer, "item": item, "score": score,
                        "source": pd.Categorical.from_codes(source[starts], categories=names)})
    return out[out["score"].to_numpy() > 0].reset_index(drop=True)


def _last_per_key(key: np.ndarray, date: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct keys (ascending) and the latest date of each."""
    order = np.lexsort((date, key))
    key, date = key[order], date[order]
    last = np.r_[key[1:] != key[:-1], True] if len(key) else np.zeros(0, dtype=bool)
    return key[last], date[last]


def _returned_since_bought(key: np.ndarray, date: np.ndarray, is_buy: np.ndarray) -> np.ndarray:
    """The keys (customer x item) whose last return is at or after their last purchase (or that
    were never bought), ascending. Sorts the returns and the purchases of returned keys only:
    O(n log m) for n lines and m return lines."""
    returned, last_return = _last_per_key(key[~is_buy], date[~is_buy])
    bought = is_buy & _sorted_isin(key, returned)
    keys, last_buy = _last_per_key(key[bought], date[bought])
    at = np.searchsorted(keys, returned)
    found = at < len(keys)
    found[found] = keys[at[found]] == returned[found]
    never = np.array(np.datetime64("NaT"), dtype=last_return.dtype)
    buy_date = np.where(found, last_buy[np.minimum(at, max(len(keys) - 1, 0))] if len(keys) else never, never)
    return returned[~found | (last_return >= buy_date)]


def _binary_matrix(row: np.ndarray, col: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
    m = sp.csr_matrix((np.ones(len(row), dtype=np.int32), (row, col)), shape=shape)
    m.data[:] = 1  # duplicates (row, col) summed by csr: back to 0/1
    return m


def _pair_counts(basket: np.ndarray, item: np.ndarray, n_baskets: int, n_items: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """Co-occurrence counts ``C = B.T @ B`` (zero diagonal) and item counts of basket x item lines.

    O(sum over baskets of (items in basket)^2) for the product.
    """
    b = _binary_matrix(basket, item, (n_baskets, n_items))
    counts = np.asarray(b.sum(axis=0)).ravel()
    c = (b.T @ b).tocsr()
    c.setdiag(0)
    c.eliminate_zeros()
    return c, counts


# --------------------------------------------------------------------------------------------
# frequent itemsets and association rules
# --------------------------------------------------------------------------------------------
RULE_COLUMNS = ["antecedent", "consequent", "support", "confidence", "lift", "leverage", "conviction", "count",
                "antecedent_count", "consequent_count"]


def _require_columns(found: list[str], columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (needs {columns}); found {found}. Rename your columns to these names.")


def _check_support(min_support: float) -> None:
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")


def _check_lengths(max_len: int | None, max_consequent: int | None) -> None:
    if max_len is not None and max_len < 1:
        raise ValueError(f"max_len must be at least 1 (items in an itemset) or None for any length, got {max_len}")
    if max_consequent is not None and max_consequent < 1:
        raise ValueError(f"max_consequent must be at least 1 or None for any size, got {max_consequent}")


def _min_count(min_support: float, n_baskets: int) -> int:
    """Baskets an itemset must be in to reach ``min_support`` (at least 1)."""
    return max(1, math.ceil(min_support * n_baskets - 1e-9))


def _label_order(labels: np.ndarray) -> np.ndarray:
    """Positions that sort the item labels (by value; as text when the values do not compare)."""
    try:
        return np.argsort(labels, kind="stable")
    except TypeError:
        return np.argsort(labels.astype(str), kind="stable")


# A level: (itemsets as an (f x k) array of item codes, ascending within each row; their basket counts).
_Level = tuple[np.ndarray, np.ndarray]


def _mine_levels(basket_codes: np.ndarray, item_codes: np.ndarray, n_baskets: int, n_items: int, min_count: int,
                 max_len: int | None) -> list[_Level]:
    """Every itemset in at least ``min_count`` baskets, level by level (exact counts).

    ``M`` is the basket x itemset 0/1 matrix of the frequent (k-1)-itemsets and ``B`` the basket
    x item matrix; ``M.T @ B`` counts every extension of a (k-1)-itemset by one item at once.
    Extensions by an item after the itemset's last item give each k-itemset exactly once, and
    since every subset of a frequent itemset is frequent (Apriori), none is missed. The new
    ``M`` holds, per basket, the frequent k-itemsets among its (itemset, item) pairs
    (:func:`_occurrences`).
    """
    b = _binary_matrix(basket_codes, item_codes, (n_baskets, n_items))
    counts = np.asarray(b.sum(axis=0)).ravel().astype(np.int64)
    levels: list[_Level] = [(np.arange(n_items)[:, None], counts)]
    m = b
    while max_len is None or len(levels) < max_len:
        sets, _ = levels[-1]
        # an extension item must itself lie in a frequent (k-1)-itemset (its subsets are frequent)
        useful = np.zeros(n_items, dtype=bool)
        useful[np.unique(sets)] = True
        b_useful = b[:, useful].tocsr()
        to_item = np.flatnonzero(useful)
        c = (m.T.tocsr() @ b_useful).tocoo()
        item = to_item[c.col]
        keep = (item > sets[c.row, -1]) & (c.data >= min_count)
        if not keep.any():
            break
        parent, item, count = c.row[keep], item[keep], c.data[keep].astype(np.int64)
        order = np.lexsort((item, parent))  # lexicographic order of the itemsets = order of the keys below
        parent, item, count = parent[order], item[order], count[order]
        levels.append((np.column_stack([sets[parent], item]), count))
        m = _occurrences(m, b_useful, to_item, parent.astype(np.int64) * n_items + item, sets[:, -1], n_items)
    return levels


def _occurrences(m: sp.csr_matrix, b: sp.csr_matrix, to_item: np.ndarray, keys: np.ndarray, last: np.ndarray,
                 n_items: int, chunk: int = 4_000_000) -> sp.csr_matrix:
    """Basket x new-itemset 0/1 matrix: in each basket, every (frequent (k-1)-itemset ``X``,
    item ``j > last[X]``) pair whose key ``X * n_items + j`` is in the sorted ``keys``.

    The pairs are enumerated per basket (one vectorized pass per chunk of baskets holding at
    most ``chunk`` pairs), so the cost is that of the product ``M.T @ B`` and the memory
    O(chunk + nnz of the result).
    """
    pairs_per_row = np.diff(m.indptr) * np.diff(b.indptr)
    ends = np.searchsorted(np.cumsum(pairs_per_row), np.arange(chunk, pairs_per_row.sum() + chunk, chunk), side="right")
    bounds = np.unique(np.r_[0, np.minimum(ends, len(pairs_per_row)), len(pairs_per_row)])
    rows_out, cols_out = [], []
    b_len = np.diff(b.indptr)
    for lo, hi in zip(bounds[:-1], bounds[1:]):  # chunks of baskets, not single baskets
        rows = np.repeat(np.arange(lo, hi), np.diff(m.indptr[lo:hi + 1]))
        parents = m.indices[m.indptr[lo]:m.indptr[hi]]
        reps = b_len[rows]
        row_rep, parent_rep = np.repeat(rows, reps), np.repeat(parents, reps)
        offset = np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps)
        item = to_item[b.indices[np.repeat(b.indptr[rows], reps) + offset]]
        ok = item > last[parent_rep]
        key = parent_rep[ok].astype(np.int64) * n_items + item[ok]
        pos = np.minimum(np.searchsorted(keys, key), len(keys) - 1)
        hit = keys[pos] == key
        rows_out.append(row_rep[ok][hit])
        cols_out.append(pos[hit])
    rows, cols = np.concatenate(rows_out), np.concatenate(cols_out)
    return sp.csr_matrix((np.ones(len(rows), dtype=np.int32), (rows, cols)), shape=(m.shape[0], len(keys)))


def _lookup(levels: list[_Level], sets: np.ndarray) -> np.ndarray:
    """Basket counts of ``sets`` (rows of ascending item codes, all frequent) from ``levels``."""
    k = sets.shape[1]
    known, counts = levels[k - 1]
    if k == 1:
        return counts[sets[:, 0]]
    index = pd.MultiIndex.from_arrays(list(known.T))
    pos = index.get_indexer(pd.MultiIndex.from_arrays(list(sets.T)))
    if (pos < 0).any():  # impossible for exact counts (every subset of a frequent itemset is frequent)
        raise AssertionError("an itemset's subset is missing from the frequent itemsets")
    return counts[pos]


def _tuples(labels: np.ndarray, sets: np.ndarray) -> list[tuple]:
    return list(zip(*(labels[sets[:, j]] for j in range(sets.shape[1]))))


def _filters_note(n: int, min_count: int, min_support: float, min_confidence: float, min_lift: float | None,
                  max_len: int | None, max_consequent: int | None, max_items: int | None) -> str:
    parts = [f"support >= {min_support:.2%} (at least {min_count:,} of {n:,} baskets)", f"confidence >= {min_confidence:.0%}",
             "no lift filter (negative associations, lift < 1, kept)" if min_lift is None else f"lift >= {min_lift:g}",
             "itemsets of any length" if max_len is None else f"itemsets of at most {max_len} items",
             "one item on the right-hand side" if max_consequent == 1 else
             ("any number of items on the right-hand side" if max_consequent is None else f"at most {max_consequent} items on the right-hand side")]
    if max_items is not None:
        parts.append(f"only the {max_items} most frequent items")
    return "Rules with " + ", ".join(parts) + "."


def _rules_from_levels(levels: list[_Level], labels: np.ndarray, n: int, *, min_confidence: float, min_lift: float | None,
                       max_consequent: int | None) -> pd.DataFrame:
    """Rules ``X -> Y`` from every frequent itemset ``X u Y`` (``|Y| <= max_consequent``)."""
    parts = []
    for k in range(2, len(levels) + 1):
        sets, both = levels[k - 1]
        for size in range(1, k if max_consequent is None else min(k - 1, max_consequent) + 1):
            for cons_pos in itertools.combinations(range(k), size):  # positions, not rows
                ante_pos = [j for j in range(k) if j not in cons_pos]
                ante, cons = sets[:, ante_pos], sets[:, list(cons_pos)]
                count_a, count_c = _lookup(levels, ante), _lookup(levels, cons)
                confidence = both / count_a
                lift = confidence / (count_c / n)
                ok = (confidence >= min_confidence) & ((lift >= min_lift) if min_lift is not None else True)
                if ok.any():
                    parts.append((ante[ok], cons[ok], both[ok], count_a[ok], count_c[ok]))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("support", "confidence", "lift", "leverage", "conviction")
                                          else ("int64" if c.endswith("count") else "object")) for c in RULE_COLUMNS})
    width = len(levels)
    pad = lambda a: np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-1)  # noqa: E731
    ante_codes = np.vstack([pad(p[0]) for p in parts])
    cons_codes = np.vstack([pad(p[1]) for p in parts])
    both, count_a, count_c = (np.concatenate([p[j] for p in parts]).astype(np.int64) for j in (2, 3, 4))
    support, s_a, s_c = both / n, count_a / n, count_c / n
    confidence = both / count_a
    lift = confidence / s_c
    with np.errstate(divide="ignore", invalid="ignore"):
        conviction = np.where(both == count_a, np.inf, (1 - s_c) / (1 - confidence))
    # lift, confidence, count descending; then the item codes (label order) for a stable order
    keys = [*cons_codes.T[::-1], *ante_codes.T[::-1], -both, -confidence, -lift]
    order = np.lexsort(keys)
    antecedent = [t for p in parts for t in _tuples(labels, p[0])]
    consequent = [t for p in parts for t in _tuples(labels, p[1])]
    rules = pd.DataFrame({
        "antecedent": pd.Series(antecedent, dtype="object").to_numpy()[order],
        "consequent": pd.Series(consequent, dtype="object").to_numpy()[order],
        "support": support[order], "confidence": confidence[order], "lift": lift[order],
        "leverage": (support - s_a * s_c)[order], "conviction": conviction[order],
        "count": both[order], "antecedent_count": count_a[order], "consequent_count": count_c[order],
    })
    return rules


def _finish(table: pd.DataFrame, n: int, attrs: dict) -> pd.DataFrame:
    table.attrs.update(n_baskets=int(n), **attrs)
    return table


def _itemset_table(levels: list[_Level], labels: np.ndarray, n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "itemset": pd.Series([t for sets, _ in levels for t in _tuples(labels, sets)], dtype="object"),
        "size": np.concatenate([np.full(len(c), k, dtype=np.int64) for k, (_, c) in enumerate(levels, start=1)]),
        "count": np.concatenate([c for _, c in levels]).astype(np.int64),
    }).assign(support=lambda d: d["count"] / n)


def _mine_frame(baskets: pd.DataFrame, basket: str, item: str, min_support: float, max_len: int | None,
                max_items: int | None) -> tuple[list[_Level], np.ndarray, int, int]:
    _require(baskets, [basket, item], "baskets")
    _check_support(min_support)
    _check_lengths(max_len, 1)
    b_codes, b_uniques = pd.factorize(baskets[basket])
    i_codes, items = pd.factorize(baskets[item])
    n = len(b_uniques)
    item_baskets = np.bincount(np.unique(i_codes.astype(np.int64) * n + b_codes) // n, minlength=len(items))
    min_count = _min_count(min_support, n)
    kept = np.flatnonzero(item_baskets >= min_count)
    if max_items is not None:
        kept = kept[np.argsort(-item_baskets[kept], kind="stable")[:max_items]]
    kept = kept[_label_order(np.asarray(items)[kept])]  # item codes follow the label order
    remap = np.full(len(items), -1)
    remap[kept] = np.arange(len(kept))
    on = remap[i_codes] >= 0
    levels = _mine_levels(b_codes[on], remap[i_codes[on]], n, len(kept), min_count, max_len) if len(kept) else []
    return levels, np.asarray(items)[kept], n, min_count


def frequent_itemsets(
    baskets: pd.DataFrame,
    *,
    basket: str = "basket_id",
    item: str = "item",
    min_support: float = 0.01,
    max_len: int | None = None,
    max_items: int | None = None,
) -> pd.DataFrame:
    """Every set of items bought together in at least ``min_support`` of the baskets.

    Parameters
    ----------
    baskets : DataFrame
        One row per (basket, item) line; repeated lines count once per basket.
    basket, item : str
        Column names of the basket id and the item.
    min_support : float
        Minimum share of baskets containing the whole itemset.
    max_len : int, optional
        Longest itemset (None: any length).
    max_items : int, optional
        Keep only the ``max_items`` most frequent items.

    Returns
    -------
    DataFrame
        ``itemset`` (tuple of items in ascending order), ``size``, ``count`` (baskets with all of
        them), ``support``; by size, then itemset. ``attrs["n_baskets"]``.

    Examples
    --------
    >>> lines = pd.DataFrame({"basket_id": [1, 1, 1, 2, 2, 3], "item": list("abcabc")})
    >>> frequent_itemsets(lines, min_support=0.5)[["itemset", "count"]].to_dict("records")
    [{'itemset': ('a',), 'count': 2}, {'itemset': ('b',), 'count': 2}, {'itemset': ('c',), 'count': 2}, {'itemset': ('a', 'b'), 'count': 2}]
    """
    levels, labels, n, _ = _mine_frame(baskets, basket, item, min_support, max_len, max_items)
    table = _itemset_table(levels, labels, n) if levels else pd.DataFrame({"itemset": [], "size": [], "count": [], "support": []})
    return _finish(table, n, {"min_support": min_support, "max_len": max_len})


def association_rules(
    baskets: pd.DataFrame,
    *,
    basket: str = "basket_id",
    item: str = "item",
    min_support: float = 0.01,
    min_confidence: float = 0.1,
    min_lift: float | None = None,
    max_len: int | None = None,
    max_consequent: int | None = 1,
    max_items: int | None = None,
) -> pd.DataFrame:
    """Co-purchase rules ``{antecedent} -> {consequent}`` from itemsets of any length.

    The frequent itemsets are mined exactly (see Notes), and every frequent itemset ``Z`` of two
    or more items gives the rules ``Z - Y -> Y`` for its subsets ``Y`` of at most
    ``max_consequent`` items, as in arules (one item on the right by default) and mlxtend
    (``max_consequent=None``).

    Parameters
    ----------
    baskets : DataFrame
        One row per (basket, item) line, e.g. ``order_id, product_id`` of the purchases;
        repeated lines are counted once per basket. Missing values raise an error.
    basket, item : str
        Column names of the basket id and the item.
    min_support : float
        Minimum share of baskets containing every item of the rule.
    min_confidence : float
        Minimum ``P(consequent | antecedent)``.
    min_lift : float, optional
        Minimum lift. None (default) keeps every rule, as arules and mlxtend do, including
        negative associations (lift < 1); the filter used is stated in ``attrs["filters"]``.
    max_len : int, optional
        Most items in a rule (antecedent and consequent together); None: any length.
    max_consequent : int, optional
        Most items on the right-hand side (1 by default; None: any).
    max_items : int, optional
        Keep only the ``max_items`` most frequent items (bounds memory on huge catalogues).

    Returns
    -------
    DataFrame
        ``antecedent, consequent`` (tuples of items, each in ascending order), ``support``
        (share of baskets with all items of the rule), ``confidence``, ``lift``, ``leverage``
        (``support - support(antecedent) x support(consequent)``), ``conviction``
        (``(1 - support(consequent)) / (1 - confidence)``, infinite when the confidence is 1),
        ``count`` (baskets with all items), ``antecedent_count``, ``consequent_count``; sorted
        by lift, confidence and count (descending), then by the items. ``attrs``:
        ``n_baskets``, the thresholds, and ``filters`` (a sentence stating them).
        :func:`rule_labels` gives readable text.

    Notes
    -----
    Level-wise and exact on a sparse basket x item matrix ``B`` (0/1): with ``M`` the basket x
    itemset matrix of the frequent (k-1)-itemsets, ``M.T @ B`` counts every one-item extension
    at once; an itemset is extended only by items after its last one (each k-itemset once) and
    only the extensions in ``min_support`` of the baskets are kept; the new ``M`` is the
    elementwise product of parent and item columns. Counts are integers, so thresholds are
    exact (a confidence of exactly 0.8 passes ``min_confidence=0.8``). Memory O(nnz(M)) = the
    summed basket counts of one level's frequent itemsets; time O(sum over baskets of
    (frequent itemsets in the basket) x (items in the basket)) per level. On the Groceries
    data (support 0.001, 13,492 itemsets) this takes well under a second (see
    ``benchmarks/bench_rules.py``).

    Examples
    --------
    >>> lines = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4], "item": list("abacbcd")})
    >>> r = rule_labels(association_rules(lines, min_support=0.25, min_confidence=0.5))
    >>> r.loc[r.antecedent_name.eq("b") & r.consequent_name.eq("a"), ["support", "confidence", "lift"]].round(3).to_numpy().tolist()
    [[0.25, 0.5, 1.0]]
    """
    _check_lengths(max_len, max_consequent)
    levels, labels, n, min_count = _mine_frame(baskets, basket, item, min_support, max_len, max_items)
    rules = _rules_from_levels(levels, labels, n, min_confidence=min_confidence, min_lift=min_lift, max_consequent=max_consequent)
    return _finish(rules, n, _rule_attrs(n, min_count, min_support, min_confidence, min_lift, max_len, max_consequent, max_items))


def _rule_attrs(n, min_count, min_support, min_confidence, min_lift, max_len, max_consequent, max_items) -> dict:
    return {"min_support": min_support, "min_confidence": min_confidence, "min_lift": min_lift, "max_len": max_len,
            "max_consequent": max_consequent, "max_items": max_items,
            "filters": _filters_note(n, min_count, min_support, min_confidence, min_lift, max_len, max_consequent, max_items)}


def rule_labels(rules: pd.DataFrame, names: pd.Series | None = None, *, joiner: str = " + ") -> pd.DataFrame:
    """Readable sides of the rules: ``antecedent_name`` and ``consequent_name`` added as text.

    Parameters
    ----------
    rules : DataFrame
        From :func:`association_rules` (tuples of items).
    names : Series, optional
        Display name per item (index = item, e.g. ``product_id`` -> product name); items
        without a name keep their id.
    joiner : str
        Put between the items of a side.

    Examples
    --------
    >>> r = pd.DataFrame({"antecedent": [("p1", "p2")], "consequent": [("p3",)]})
    >>> rule_labels(r, pd.Series({"p1": "liquor", "p2": "red wine"}))[["antecedent_name", "consequent_name"]].iloc[0].tolist()
    ['liquor + red wine', 'p3']
    """
    out = rules.copy()
    lookup = {} if names is None else names[~names.index.duplicated()].dropna().astype(str).to_dict()
    for side in ("antecedent", "consequent"):
        out[f"{side}_name"] = pd.Series([joiner.join(lookup.get(i, str(i)) for i in items) for items in out[side]],
                                        index=out.index, dtype="string")
    return out


def _materialize(expr: ir.Table, release: list[Callable[[], Any]]) -> ir.Table:
    """Compute ``expr`` into a temporary table of its engine and register how to drop it.

    DuckDB: a temporary table (dropped with plain SQL: ibis 12's ``drop_table`` emits a
    statement DuckDB 2.0 cannot parse); other engines: ``Table.cache`` and ``release``.
    """
    import ibis

    backend = ibis.get_backend(expr)
    if backend.name == "duckdb":
        name = f"_segmentation_itemsets_{uuid.uuid4().hex}"
        table = backend.create_table(name, expr, temp=True)
        release.append(lambda: backend.con.execute(f'DROP TABLE IF EXISTS "{name}"'))
        return table
    cached = expr.cache()
    release.append(cached.release)
    return cached


def association_rules_in_engine(
    lines: ir.Table,
    *,
    basket: str = "order_id",
    item: str = "product_id",
    min_support: float = 0.01,
    min_confidence: float = 0.1,
    min_lift: float | None = None,
    max_len: int | None = None,
    max_consequent: int | None = 1,
    max_items: int | None = None,
) -> pd.DataFrame:
    """:func:`association_rules` with the itemsets counted in the engine (DuckDB, Spark, a
    warehouse), for when the basket x item matrix does not fit in memory.

    Level-wise in the engine: the (basket, item) lines are de-duplicated and the items below
    ``min_support`` pruned; the occurrences of the frequent (k-1)-itemsets (one row per basket
    and itemset) are joined to the kept lines of the same basket with a later item, counted per
    k-itemset, and those below ``min_support`` dropped; the occurrences of the surviving
    k-itemsets become the next level. Each level is materialised in the engine
    (a temporary table) and dropped at the end; only the frequent itemsets and their counts come
    back, and the rules are formed in memory exactly as by :func:`association_rules` (same
    parameters, same result; ``max_items`` breaks ties in item frequency by item id).

    Parameters
    ----------
    lines : ibis.Table
        Purchase lines, e.g. ``Store.transactions`` filtered to purchases
        (``t.filter(~t.is_return)``).

    Notes
    -----
    Level k costs O(sum over baskets of (frequent (k-1)-itemsets in the basket) x (kept items
    in the basket)) in the engine, spread over its workers and spilled to disk when needed;
    what comes back is O(frequent itemsets).
    """
    import ibis

    _check_support(min_support)
    _check_lengths(max_len, max_consequent)
    _require_columns(list(lines.columns), [basket, item], "lines")
    pairs_in = lines.select(b=lines[basket], i=lines[item]).filter(lambda t: t.b.notnull() & t.i.notnull()).distinct()
    n = int(pairs_in.b.nunique().execute())
    min_count = _min_count(min_support, n)
    items = pairs_in.group_by("i").aggregate(n_i=pairs_in.count()).filter(lambda t: t.n_i >= min_count)
    if max_items is not None:
        items = items.order_by([ibis.desc("n_i"), "i"]).limit(max_items)
    release: list[Callable[[], Any]] = []
    try:
        kept = _materialize(pairs_in.semi_join(items, "i"), release)
        first = items.to_pyarrow().to_pandas()
        labels = first["i"].to_numpy()[_label_order(first["i"].to_numpy())]
        codes = pd.Index(labels)
        found = [(first["i"].to_numpy()[:, None], first["n_i"].to_numpy())]
        occ = kept.rename(i1="i")
        k = 1
        while (max_len is None or k < max_len) and len(found[-1][1]):
            nxt = kept.rename(b2="b", nxt="i")
            joined = occ.join(nxt, (occ.b == nxt.b2) & (nxt.nxt > occ[f"i{k}"]))
            cand = joined.select("b", *[f"i{j}" for j in range(1, k + 1)], **{f"i{k + 1}": joined.nxt})
            keys = [f"i{j}" for j in range(1, k + 2)]
            counts = _materialize(cand.group_by(keys).aggregate(n_i=cand.count()).filter(lambda t: t.n_i >= min_count), release)
            df = counts.to_pyarrow().to_pandas()
            if df.empty:
                break
            found.append((df[keys].to_numpy(), df["n_i"].to_numpy()))
            occ = _materialize(cand.semi_join(counts, keys), release)
            k += 1
    finally:
        for drop in reversed(release):
            drop()
    levels = []
    for sets, count in found:  # to item codes in label order, items ascending within each itemset
        coded = np.sort(codes.get_indexer(sets.ravel()).reshape(sets.shape), axis=1)
        order = np.lexsort(coded.T[::-1])
        levels.append((coded[order], count[order].astype(np.int64)))
    rules = _rules_from_levels(levels, labels, n, min_confidence=min_confidence, min_lift=min_lift, max_consequent=max_consequent)
    return _finish(rules, n, _rule_attrs(n, min_count, min_support, min_confidence, min_lift, max_len, max_consequent, max_items))


# --------------------------------------------------------------------------------------------
# the recommender
# --------------------------------------------------------------------------------------------
class Recommender(BaseEstimator):
    """Hybrid next-basket recommender: buy again + customers like you + often bought with.

    Scores of a (customer, item) candidate, each in [0, 1], mixed with the weights:

    * ``buy_again`` -- decayed share of the customer's orders that contained the item: every
      order weighs ``0.5 ** (age_days / half_life_days)``; recent and frequent items score high.
    * ``co_purchase`` -- ``profile @ similarity``: the customer's decayed item profile (row
      normalised to 1) times the item-item confidence ``P(j | i)`` (pairs seen in at least
      ``min_pair_count`` orders, the ``n_neighbors`` best per item); the top 200 per customer.
    * ``segment`` -- the share of the customer's segment who bought the item in the last
      ``window_days`` (shrunk towards the overall share with weight ``smoothing`` customers), i.e.
      overall popularity times the segment's lift; all customers form one segment when no
      segments are given. Customers unseen at fit time get the overall list ("popular now").

    The ``reason`` is the source with the largest weighted contribution.

    Exclusions (documented rule):

    * items the customer returned (any negative-quantity line) are never recommended;
    * items in the customer's last order are not suggested as new items (co-purchase or
      segment); they may come back only as "buy again" and only when habitual, i.e. bought in
      at least ``habit_orders`` distinct orders.

    Parameters
    ----------
    n : int
        Recommendations per customer.
    buy_again_weight, co_purchase_weight, segment_weight : float
        Mixing weights of the three sources.
    half_life_days : float
        Recency half-life of the buy-again and profile weights.
    window_days : int or None
        Popularity window before ``as_of`` (None: all history).
    n_neighbors : int
        Similar items kept per item.
    min_pair_count : int
        Orders a pair must share to count as co-purchased.
    habit_orders : int
        Orders an item must be in to count as a habitual repeat purchase.
    smoothing : float
        Pseudo-customers pulling a segment's item shares towards the overall shares.
    random_state : int
        Seeds the tie-break among equal scores (same inputs -> same recommendations).

    Attributes
    ----------
    customers_ : Index
        Customers seen at fit time.
    items_ : Index
        Items seen at fit time.
    similarity_ : csr_matrix
        Item x item co-purchase confidence, top ``n_neighbors`` per row.
    candidates_ : DataFrame
        ``customer, item, score, source`` (integer codes into ``customers_`` / ``items_``).
    exclusions_ : dict
        Counts of (customer, item) pairs excluded by each rule.
    as_of_ : Timestamp

    Notes
    -----
    Fit cost: O(lines) for the matrices, O(sum over orders of items^2) for the item-item
    counts, O(customers x profile items x n_neighbors) for the sparse product, then
    O(m log m) sorting of the m <= customers x (buy-again items + 400) candidates.
    """

    def __init__(
        self,
        n: int = 10,
        *,
        buy_again_weight: float = 1.0,
        co_purchase_weight: float = 0.3,
        segment_weight: float = 0.3,
        half_life_days: float = 90.0,
        window_days: int | None = 90,
        n_neighbors: int = 20,
        min_pair_count: int = 2,
        habit_orders: int = 2,
        smoothing: float = 20.0,
        random_state: int = 0,
    ):
        self.n = n
        self.buy_again_weight = buy_again_weight
        self.co_purchase_weight = co_purchase_weight
        self.segment_weight = segment_weight
        self.half_life_days = half_life_days
        self.window_days = window_days
        self.n_neighbors = n_neighbors
        self.min_pair_count = min_pair_count
        self.habit_orders = habit_orders
        self.smoothing = smoothing
        self.random_state = random_state

    def fit(
        self,
        transactions: pd.DataFrame,
        as_of: str | pd.Timestamp,
        segments: pd.Series | pd.DataFrame | None = None,
        products: pd.DataFrame | None = None,
    ) -> Recommender:
        """Learn the scores from the lines strictly before ``as_of``.

        Parameters
        ----------
        transactions : DataFrame
            ``customer_id, order_id, order_date, product_id, quantity`` (negative = return).
        as_of : str or Timestamp
            Only lines strictly before it are used; recency is measured up to it.
        segments : Series or DataFrame, optional
            Segment per customer: a Series indexed by ``customer_id`` or a DataFrame with a
            ``segment`` column and ``customer_id`` as index or column.
        products : DataFrame, optional
            ``product_id, name``: names used in "often bought with <name>".
        """
        tx, as_of = _purchases(transactions, as_of)
        cust_codes, customers = pd.factorize(tx["customer_id"])
        item_codes, items = pd.factorize(tx["product_id"])
        is_buy = (tx["quantity"] > 0).to_numpy()
        buy_date = tx["order_date"].to_numpy()[is_buy]
        n_c, n_i = len(customers), len(items)
        c_b, i_b = cust_codes[is_buy], item_codes[is_buy]
        o_codes, _ = pd.factorize(tx["order_id"].array[is_buy])
        # order weight and each customer's last order date
        o_date = pd.Series(buy_date).groupby(o_codes).max()
        age = (as_of - o_date).dt.total_seconds().to_numpy() / 86400.0
        o_weight = 0.5 ** (age / self.half_life_days)
        o_cust = pd.Series(c_b).groupby(o_codes).first().to_numpy()
        total_weight = np.bincount(o_cust, weights=o_weight, minlength=n_c)
        last_date = pd.Series(o_date.to_numpy()).groupby(o_cust).max().reindex(range(n_c))  # NaT: returns only
        # unique (customer, item, order) triples
        key = np.unique((c_b.astype(np.int64) * n_i + i_b) * len(o_date) + o_codes)
        ci, o = np.divmod(key, len(o_date))
        c, i = np.divmod(ci, n_i)
        decayed = sp.csr_matrix((o_weight[o], (c, i)), shape=(n_c, n_i))
        n_orders = sp.csr_matrix((np.ones(len(c)), (c, i)), shape=(n_c, n_i))
        in_last = sp.csr_matrix(((o_date.to_numpy()[o] == last_date.to_numpy()[c]).astype(float), (c, i)), shape=(n_c, n_i))
        in_last.data = (in_last.data > 0).astype(float)
        # returned and not bought again since: last return at or after the last purchase of the item
        gone = _returned_since_bought(cust_codes.astype(np.int64) * n_i + item_codes, tx["order_date"].to_numpy(), is_buy)
        returned = _binary_matrix(*np.divmod(gone, n_i), (n_c, n_i)).astype(float)
        habitual = n_orders.copy()
        habitual.data = (habitual.data >= self.habit_orders).astype(float)
        not_new = ((in_last + returned) > 0).astype(float)  # never suggested as new
        no_buy_again = ((in_last - in_last.multiply(habitual) + returned) > 0).astype(float)

        buy_again = sp.diags(1.0 / np.maximum(total_weight, 1e-300)) @ decayed
        # item-item co-purchase confidence P(j | i), top n_neighbors per item
        pairs, item_orders = _pair_counts(o_codes, i_b, len(o_date), n_i)
        pairs = pairs.tocoo()
        strong = pairs.data >= self.min_pair_count
        r, q, v = pairs.row[strong], pairs.col[strong], pairs.data[strong] / item_orders[pairs.row[strong]]
        keep = _top_per_row(r, v, self.n_neighbors, tiebreak=q)
        similarity = sp.csr_matrix((v[keep], (r[keep], q[keep])), shape=(n_i, n_i))
        profile_sum = np.asarray(decayed.sum(axis=1)).ravel()
        profile = sp.diags(1.0 / np.maximum(profile_sum, 1e-300)) @ decayed
        co_purchase = (profile @ similarity).tocsr()
        # segment popularity over the window
        seg_codes, seg_labels = self._segment_codes(customers, segments)
        recent = buy_date >= (as_of - pd.Timedelta(days=self.window_days)) if self.window_days else np.ones(len(c_b), bool)
        bought = _binary_matrix(c_b[recent], i_b[recent], (n_c, n_i)).astype(float)
        overall = np.asarray(bought.sum(axis=0)).ravel() / n_c
        member = sp.csr_matrix((np.ones(n_c), (seg_codes, np.arange(n_c))), shape=(len(seg_labels), n_c))
        seg_size = np.asarray(member.sum(axis=1)).ravel()
        seg_share = ((member @ bought).toarray() + self.smoothing * overall) / (seg_size + self.smoothing)[:, None]
        seg_rows, seg_items = np.nonzero(seg_share > 0)
        top = _top_per_row(seg_rows, seg_share[seg_rows, seg_items], _CANDIDATES, tiebreak=seg_items)  # best first per segment
        # the arrays of lines are done with: released before the candidates (millions of lines)
        del tx, cust_codes, item_codes, is_buy, buy_date, c_b, i_b, o_codes, key, ci, o, c, i, recent, bought

        lists = (seg_rows[top], seg_items[top], seg_share[seg_rows[top], seg_items[top]])
        batches = []
        for start in range(0, n_c, _BATCH):  # every candidate depends on its customer only: customers in batches
            rows = slice(start, start + _BATCH)
            parts = []
            for source, matrix, weight, excluded in (
                ("buy_again", buy_again, self.buy_again_weight, no_buy_again),
                ("co_purchase", co_purchase, self.co_purchase_weight, not_new),
            ):
                m = (matrix[rows] - matrix[rows].multiply(excluded[rows])).tocoo()
                m.eliminate_zeros()
                cut = _top_per_row(m.row, m.data, _CANDIDATES, tiebreak=m.col) if source != "buy_again" else np.arange(m.nnz)
                parts.append((m.row[cut].astype(np.int64) * n_i + m.col[cut], weight * m.data[cut], source))
            blocked = not_new[rows].tocoo()
            parts.append(self._segment_candidates(seg_codes[rows], *lists, np.unique(np.concatenate([k for k, _, _ in parts])),
                                                  np.sort(blocked.row.astype(np.int64) * n_i + blocked.col), len(seg_labels), n_i))
            batch = _sum_by_key(parts, n_i)
            batch["customer"] += start
            batches.append(batch)
        self.candidates_ = pd.concat(batches, ignore_index=True)

        self.customers_, self.items_ = pd.Index(customers, name="customer_id"), pd.Index(items, name="product_id")
        self.similarity_, self.profile_, self.as_of_ = similarity, profile, as_of
        self.popular_ = np.argsort(-overall, kind="stable")[: max(self.n, _CANDIDATES)]
        self.popular_share_ = overall[self.popular_]
        self.tiebreak_ = np.random.default_rng(self.random_state).permutation(n_i)
        self.exclusions_ = {
            "returned_items": int(returned.nnz),
            "last_order_items_not_new": int(in_last.nnz),
            "last_order_items_not_habitual": int((in_last - in_last.multiply(habitual)).count_nonzero()),
        }
        names = None
        if products is not None:
            _require(products, ["product_id", "name"], "products")
            names = products.drop_duplicates("product_id").set_index(products["product_id"].drop_duplicates().astype("string"))["name"]
        self.item_names_ = pd.Series(items, index=items).astype(object) if names is None else names.reindex(items).fillna(pd.Series(items, index=items)).astype(object)
        return self

    def _segment_candidates(self, seg_codes: np.ndarray, list_segment: np.ndarray, list_item: np.ndarray,
                            list_share: np.ndarray, personal: np.ndarray, excluded: np.ndarray,
                            n_seg: int, n_i: int) -> tuple[np.ndarray, np.ndarray, str]:
        """The "customers like you" candidates each customer's top ``n`` can need, as
        ``(key, value, "segment")`` with ``key = customer * n_items + item`` (``customer``: the
        position in ``seg_codes``; ``n_seg`` segments, whose lists are ``list_*``).

        Every customer could take all of its segment's list (``_CANDIDATES`` items, best
        first), which is O(customers x 200) rows. Only these can reach a customer's top ``n``:
        the list items among the customer's own candidates (``personal``; the segment share is
        added to their score) and, of the other list items that are not ``excluded``, the first
        ``n`` (plus any tied with the last), since every one of them scores its segment share
        only. So each customer takes the list up to position ``n`` + (its personal or excluded
        items on the list), which gives the same top ``n`` with O(customers x n) rows.
        """
        share = np.zeros((n_seg, n_i))
        share[list_segment, list_item] = list_share
        starts = np.searchsorted(list_segment, np.arange(n_seg + 1))  # list of segment s: starts[s]:starts[s + 1]
        # ties with the last position taken come too: position p -> one past the last equal share
        group = np.r_[0, np.cumsum((np.diff(list_share) != 0) | (np.diff(list_segment) != 0))]
        tie_end = np.searchsorted(group, group, side="right")
        # the customer's own candidates and exclusions that are on its segment's list
        blocked = np.union1d(personal, excluded)
        b_cust, b_item = np.divmod(blocked, n_i)
        on_list = share[seg_codes[b_cust], b_item] > 0
        n_customers = len(seg_codes)
        wanted = self.n + np.bincount(b_cust[on_list], minlength=n_customers)
        length = starts[seg_codes + 1] - starts[seg_codes]
        take = np.minimum(wanted, length)
        last = starts[seg_codes] + take - 1
        take = np.where(take > 0, tie_end[np.maximum(last, 0)] - starts[seg_codes], 0)
        cust = np.repeat(np.arange(n_customers), take)
        pos = np.repeat(starts[seg_codes], take) + np.arange(take.sum()) - np.repeat(np.cumsum(take) - take, take)
        listed = cust.astype(np.int64) * n_i + list_item[pos]
        keep = ~_sorted_isin(listed, blocked)
        # the customer's own candidates on the list, unless excluded
        p_cust, p_item = np.divmod(personal, n_i)
        own = (share[seg_codes[p_cust], p_item] > 0) & ~_sorted_isin(personal, excluded)
        key = np.concatenate([personal[own], listed[keep]])
        value = self.segment_weight * np.concatenate([share[seg_codes[p_cust[own]], p_item[own]], list_share[pos[keep]]])
        return key, value, "segment"

    @staticmethod
    def _segment_codes(customers: pd.Index, segments: pd.Series | pd.DataFrame | None) -> tuple[np.ndarray, pd.Index]:
        """Segment code per fitted customer; customers without a segment form the group 'all'."""
        if segments is None:
            return np.zeros(len(customers), dtype=np.int64), pd.Index(["all"])
        if isinstance(segments, pd.DataFrame):
            if "segment" not in segments.columns:
                raise ValueError(f"segments has no 'segment' column; found {list(segments.columns)}")
            segments = segments.set_index("customer_id")["segment"] if "customer_id" in segments.columns else segments["segment"]
        seg = segments.copy()
        seg.index = seg.index.astype("string")
        seg = seg[~seg.index.duplicated()].astype("string").reindex(pd.Index(customers, dtype="string")).fillna("all")
        codes, labels = pd.factorize(seg)
        return codes, labels

    def recommend(self, customers: pd.Index | pd.Series | list | None = None, n: int | None = None) -> pd.DataFrame:
        """Top-``n`` recommendations per customer.

        Parameters
        ----------
        customers : list-like, optional
            Customer ids (default: every fitted customer). Unknown customers get the overall
            most popular items ("popular now").
        n : int, optional
            Default: the ``n`` given at construction.

        Returns
        -------
        DataFrame
            ``customer_id, rank (1 = best), product_id, score, reason, source`` (source is one
            of ``buy_again, co_purchase, segment, popular``; ``reason`` and ``source`` are
            categoricals, a few bytes a row however many customers).

        Notes
        -----
        O(m log m) for the m candidates of the requested customers.
        """
        if not hasattr(self, "candidates_"):
            raise RuntimeError("Recommender is not fitted: call fit(transactions, as_of) first.")
        n = self.n if n is None else n
        ids = customers if isinstance(customers, (pd.Index, pd.Series, np.ndarray)) else list(customers or [])
        wanted = self.customers_ if customers is None else pd.Index(pd.array(ids, dtype="string").unique(), name="customer_id")
        codes = scale.position_in(wanted, self.customers_)
        chosen = np.unique(codes[codes >= 0])
        cand = self.candidates_
        cust, item, score = cand["customer"].to_numpy(), cand["item"].to_numpy(), cand["score"].to_numpy()
        rows = np.arange(len(cust)) if len(chosen) == len(self.customers_) else np.flatnonzero(_sorted_isin(cust, chosen))
        bounds = np.r_[np.searchsorted(cust[rows], chosen[::_BATCH]), len(rows)]  # (candidates_ is sorted by customer)
        keep = np.concatenate([np.zeros(0, dtype=np.intp)] + [  # customers in batches, each ranked best first
            rows[lo:hi][_top_per_row(cust[rows[lo:hi]], score[rows[lo:hi]], n, tiebreak=self.tiebreak_[item[rows[lo:hi]]])]
            for lo, hi in zip(bounds[:-1], bounds[1:])])
        first = np.r_[True, cust[keep][1:] != cust[keep][:-1]]
        cold = wanted[codes < 0]
        k = min(n, len(self.popular_))
        # columns built from codes (millions of rows: no Python string per row); source and reason as categoricals
        sources = list(REASONS)  # the candidates' sources, then "popular" for the unknown customers
        candidate_source = cand["source"].array
        source = np.r_[np.array([sources.index(c) for c in candidate_source.categories])[candidate_source.codes[keep]],
                       np.full(len(cold) * k, sources.index("popular"))]
        recs = pd.DataFrame({
            "customer_id": pd.concat([pd.Series(self.customers_[cust[keep]], dtype="string"),
                                      pd.Series(np.repeat(cold.to_numpy(), k), dtype="string")], ignore_index=True),
            "product_id": pd.Series(self.items_[np.r_[item[keep], np.tile(self.popular_[:k], len(cold))]], dtype="string"),
            "score": np.r_[score[keep], np.tile(self.popular_share_[:k], len(cold))],
            "source": pd.Categorical.from_codes(source, categories=sources),
            "rank": np.r_[np.arange(len(keep)) - np.maximum.accumulate(np.where(first, np.arange(len(keep)), 0)) + 1,
                          np.tile(np.arange(1, k + 1), len(cold))],
        })
        reasons, reason = pd.Index(list(REASONS.values()), dtype=object), source
        co = source == sources.index("co_purchase")
        if co.any():  # "often bought with <the customer's item contributing most>"
            said = ("often bought with " + self._seed_item(recs.loc[co, "customer_id"], recs.loc[co, "product_id"])).to_numpy(dtype=object)
            reasons = reasons.append(pd.Index(said, dtype=object)).dropna().drop_duplicates()
            reason = source.copy()
            reason[co] = reasons.get_indexer(said)
        recs["reason"] = pd.Categorical.from_codes(reason, categories=reasons)
        return recs[REC_COLUMNS]

    def _seed_item(self, customer_id: pd.Series, product_id: pd.Series) -> pd.Series:
        """Name of the customer's item contributing most to each (customer, item) co-purchase score.

        O(recommendations x profile items).
        """
        c = self.customers_.get_indexer(customer_id)
        j = self.items_.get_indexer(product_id)
        prof = self.profile_[c].tocoo()  # row r = recommendation r
        contrib = prof.data * np.asarray(self.similarity_[prof.col, j[prof.row]]).ravel()
        best = _top_per_row(prof.row, contrib, 1, tiebreak=prof.col)
        seed = np.empty(len(c), dtype=object)
        seed[prof.row[best]] = self.item_names_.to_numpy()[prof.col[best]]
        return pd.Series(seed, index=customer_id.index).astype("string")


# --------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------
def leave_last_order_out(transactions: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Hold out every customer's last order (customers with at least two order dates).

    Parameters
    ----------
    transactions : DataFrame
        ``customer_id, order_id, order_date, product_id, quantity``.

    Returns
    -------
    train : DataFrame
        All lines except, for evaluated customers, those at or after the last purchase date
        (so nothing after the held-out order leaks in: e.g. later cancellations). Customers with
        a single order date stay in ``train`` whole (they feed popularity and co-purchase).
    holdout : DataFrame
        ``customer_id, product_id``: the distinct items bought at the last purchase date
        (several orders at that exact timestamp count as one basket).

    Notes
    -----
    The split is per customer, not a global cut-off: an evaluated customer's history ends
    earlier than other customers' histories, as in the usual next-basket benchmarks. O(lines).
    """
    _require(transactions, TX_COLUMNS, "transactions")
    tx = transactions.astype({"customer_id": "string", "product_id": "string"})
    tx["order_date"] = pd.to_datetime(tx["order_date"])
    buy = tx["quantity"] > 0
    dates = tx.loc[buy, "order_date"].groupby(tx.loc[buy, "customer_id"])
    last, n_dates = dates.max(), dates.nunique()
    evaluated = n_dates.index[n_dates.to_numpy() >= 2]
    cut = tx["customer_id"].map(last.reindex(evaluated))
    after = cut.notna() & (tx["order_date"] >= cut)
    holdout = tx.loc[after & buy & (tx["order_date"] == cut), ["customer_id", "product_id"]].drop_duplicates(ignore_index=True)
    return tx[~after].reset_index(drop=True), holdout


def _hits(recommendations: pd.DataFrame, holdout: pd.DataFrame, k: int) -> pd.DataFrame:
    """Per holdout customer: ``hits`` (held-out items among the top ``k``) and ``held`` (items held out)."""
    _require(recommendations, ["customer_id", "rank", "product_id"], "recommendations")
    _require(holdout, ["customer_id", "product_id"], "holdout")
    held = holdout[["customer_id", "product_id"]].astype("string").drop_duplicates()
    top = recommendations.loc[recommendations["rank"] <= k, ["customer_id", "product_id"]].astype("string").drop_duplicates()
    size = held.groupby("customer_id").size()
    hits = top.merge(held, on=["customer_id", "product_id"]).groupby("customer_id").size().reindex(size.index, fill_value=0)
    return pd.DataFrame({"hits": hits, "held": size})


def evaluate(recommendations: pd.DataFrame, holdout: pd.DataFrame, k: int = 10) -> dict[str, float]:
    """Recall@k, precision@k and hit-rate@k of recommendations against held-out baskets.

    Every holdout customer counts (no recommendation = no hit). recall@k is the mean over
    customers of hits / held-out items; precision@k the mean of hits / k; hit-rate@k the share
    of customers with at least one hit. O(recommendations + holdout).

    Examples
    --------
    >>> recs = pd.DataFrame({"customer_id": ["a", "a", "b"], "rank": [1, 2, 1], "product_id": ["x", "y", "x"]})
    >>> held = pd.DataFrame({"customer_id": ["a", "a", "b"], "product_id": ["y", "z", "z"]})
    >>> evaluate(recs, held, k=2)["recall@2"], evaluate(recs, held, k=2)["hit_rate@2"]
    (0.25, 0.5)
    """
    h = _hits(recommendations, holdout, k)
    return {
        f"recall@{k}": float((h["hits"] / h["held"]).mean()),
        f"precision@{k}": float((h["hits"] / k).mean()),
        f"hit_rate@{k}": float((h["hits"] > 0).mean()),
        "customers": int(len(h)),
    }


def _as_recommendations(customer: pd.Series, product: pd.Series, score: pd.Series, source: str) -> pd.DataFrame:
    recs = pd.DataFrame({"customer_id": customer.to_numpy(), "product_id": product.to_numpy(), "score": score.to_numpy().astype(float)})
    recs = recs.astype({"customer_id": "string", "product_id": "string"})
    recs["rank"] = recs.groupby("customer_id", sort=False).cumcount() + 1
    recs["reason"], recs["source"] = REASONS[source], source
    return recs[REC_COLUMNS]


def popularity_baseline(transactions: pd.DataFrame, as_of: str | pd.Timestamp, *, customers=None, n: int = 10) -> pd.DataFrame:
    """The same ``n`` most popular items (most distinct buyers before ``as_of``) for everyone.

    ``customers`` defaults to every customer with a line before ``as_of``. Same columns as
    :meth:`Recommender.recommend` (source ``popular``). O(lines).
    """
    tx, _ = _purchases(transactions, as_of)
    buys = tx[tx["quantity"] > 0]
    buyers = buys.drop_duplicates(["customer_id", "product_id"])["product_id"].value_counts()
    top = buyers.iloc[np.lexsort((buyers.index.to_numpy(), -buyers.to_numpy()))[:n]]
    who = pd.Index(tx["customer_id"].unique() if customers is None else pd.Series(list(customers), dtype="string").unique())
    return _as_recommendations(pd.Series(np.repeat(who.to_numpy(), len(top))), pd.Series(np.tile(top.index.to_numpy(), len(who))),
                               pd.Series(np.tile(top.to_numpy() / tx["customer_id"].nunique(), len(who))), "popular")


def buy_again_baseline(transactions: pd.DataFrame, as_of: str | pd.Timestamp, *, customers=None, n: int = 10) -> pd.DataFrame:
    """Each customer's own ``n`` most often bought items (distinct orders; ties: most recent first).

    The score is the share of the customer's orders containing the item. Customers with fewer
    than ``n`` distinct items get fewer rows. O(lines log lines).
    """
    tx, _ = _purchases(transactions, as_of)
    buys = tx[tx["quantity"] > 0]
    if customers is not None:
        buys = buys[buys["customer_id"].isin(pd.Series(list(customers), dtype="string"))]
    per = buys.groupby(["customer_id", "product_id"]).agg(orders=("order_id", "nunique"), last=("order_date", "max")).reset_index()
    per["share"] = per["orders"] / per["customer_id"].map(buys.groupby("customer_id")["order_id"].nunique())
    per = per.sort_values(["customer_id", "orders", "last", "product_id"], ascending=[True, False, False, True])
    per = per.groupby("customer_id", sort=False).head(n)
    return _as_recommendations(per["customer_id"], per["product_id"], per["share"], "buy_again")


#: The methods compared by :func:`evaluation_table`, simplest last.
METHODS = ("recommender", "buy_again", "popularity")
_METRIC_NAMES = {"recall": "recall (share of the items bought that were recommended)",
                 "hit_rate": "hit rate (customers with at least one recommended item bought)"}


def _paired_bootstrap(differences: np.ndarray, n_boot: int, level: float, rng: np.random.Generator) -> np.ndarray:
    """Percentile interval of the mean of each column of ``differences`` (customers x metrics),
    resampling customers (rows) with replacement; memory bounded by chunks of resamples."""
    n = len(differences)
    means = np.empty((n_boot, differences.shape[1]))
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, n_boot, chunk):  # chunks of resamples, each one vectorized draw
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))
        means[start:start + len(idx)] = differences[idx].mean(axis=1)
    return np.quantile(means, [0.5 - level / 2, 0.5 + level / 2], axis=0)


def evaluation_table(
    transactions: pd.DataFrame,
    *,
    recommender: Recommender | None = None,
    k: int = 10,
    segments: pd.Series | pd.DataFrame | None = None,
    metric: str = "recall",
    n_boot: int = 1000,
    level: float = 0.95,
    random_state: int = 0,
) -> pd.DataFrame:
    """Recommender vs the buy-again and popularity baselines on a leave-last-order-out split,
    with the winner the run should use.

    The models are fitted on :func:`leave_last_order_out`'s ``train`` with ``as_of`` one day
    after its last line and scored with :func:`evaluate` on the held-out baskets. The
    differences "recommender minus method" in recall@k and hit-rate@k get a paired bootstrap
    interval over customers (the same resampled customers for both methods).

    Winner rule: the best baseline is the one with the higher ``metric`` (then the other
    metric; buy-again on a tie). The recommender wins only when the interval of its difference
    to the best baseline in ``metric`` lies above 0 **and** it is not clearly worse in the
    other metric (that interval does not lie below 0); otherwise the best baseline wins: it is
    simpler and not clearly worse.

    Parameters
    ----------
    transactions : DataFrame
        ``customer_id, order_id, order_date, product_id, quantity``.
    recommender : Recommender, optional
        Default ``Recommender(n=k)``.
    k : int
        Recommendations scored per customer.
    segments : Series or DataFrame, optional
        Passed to :meth:`Recommender.fit`.
    metric : {"recall", "hit_rate"}
        The metric that decides. Recall (default) counts every item of the next basket that
        was recommended; hit rate only whether one was, and saturates when most customers
        re-buy a staple.
    n_boot : int
        Bootstrap resamples of the customers.
    level : float
        Coverage of the intervals.
    random_state : int
        Seeds the bootstrap (same inputs and seed, same table).

    Returns
    -------
    DataFrame
        Index ``model`` (``recommender, buy_again, popularity``); columns ``recall@k,
        precision@k, hit_rate@k, customers``; ``recall_difference, recall_difference_low,
        recall_difference_high, hit_rate_difference, hit_rate_difference_low,
        hit_rate_difference_high`` (recommender minus this model, as shares; 0 on the
        recommender's own row); ``winner`` (True on one row). ``attrs``: ``winner``,
        ``best_baseline``, ``metric``, ``level``, ``n_boot``, ``k`` and ``note`` (plain
        sentences).

    Notes
    -----
    Bootstrap cost O(n_boot x customers), in chunks of at most two million draws.
    """
    if metric not in _METRIC_NAMES:
        raise ValueError(f"metric must be one of {list(_METRIC_NAMES)}, got {metric!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    train, holdout = leave_last_order_out(transactions)
    as_of = train["order_date"].max().normalize() + pd.Timedelta(days=1)
    who = holdout["customer_id"].unique()
    model = recommender if recommender is not None else Recommender(n=k)
    recs = {
        "recommender": model.fit(train, as_of, segments=segments).recommend(who, n=k),
        "buy_again": buy_again_baseline(train, as_of, customers=who, n=k),
        "popularity": popularity_baseline(train, as_of, customers=who, n=k),
    }
    per = {name: _hits(r, holdout, k) for name, r in recs.items()}
    scores = {"recall": pd.DataFrame({name: h["hits"] / h["held"] for name, h in per.items()}),
              "hit_rate": pd.DataFrame({name: (h["hits"] > 0).astype(float) for name, h in per.items()})}
    table = pd.DataFrame({
        f"recall@{k}": scores["recall"].mean(),
        f"precision@{k}": pd.Series({name: float((h["hits"] / k).mean()) for name, h in per.items()}),
        f"hit_rate@{k}": scores["hit_rate"].mean(),
        "customers": len(scores["recall"]),
    }).loc[list(METHODS)]
    table.index.name = "model"
    rng = np.random.default_rng(random_state)
    for name in METHODS:
        diffs = np.column_stack([scores[m]["recommender"] - scores[m][name] for m in ("recall", "hit_rate")])
        lo, hi = _paired_bootstrap(diffs, n_boot, level, rng) if name != "recommender" else (np.zeros(2), np.zeros(2))
        for j, m in enumerate(("recall", "hit_rate")):
            table.loc[name, [f"{m}_difference", f"{m}_difference_low", f"{m}_difference_high"]] = diffs[:, j].mean(), lo[j], hi[j]
    other = "hit_rate" if metric == "recall" else "recall"
    best = table.loc[["buy_again", "popularity"]].sort_values([f"{metric}@{k}", f"{other}@{k}"], ascending=False,
                                                             kind="stable").index[0]
    gap = table.loc[best]
    ours_wins = bool(gap[f"{metric}_difference_low"] > 0 and gap[f"{other}_difference_high"] >= 0)
    winner = "recommender" if ours_wins else best
    table["winner"] = table.index == winner

    def compare(m: str) -> str:
        return (f"{_METRIC_NAMES[m]} {table.loc['recommender', f'{m}@{k}']:.1%} against {gap[f'{m}@{k}']:.1%} for "
                f"{METHOD_NAMES[best]}, a difference of {100 * gap[f'{m}_difference']:+.1f} points ({level:.0%} interval "
                f"{100 * gap[f'{m}_difference_low']:+.1f} to {100 * gap[f'{m}_difference_high']:+.1f})")

    said = metric.replace("_", " ")
    if ours_wins:
        decision = f"The recommender is clearly better on {said}, so the run uses it."
    elif gap[f"{metric}_difference_high"] < 0:
        decision = f"The recommender is worse on {said}, so the run uses the simpler {METHOD_NAMES[best]}."
    else:
        decision = f"The recommender is not clearly better on {said}, so the run uses the simpler {METHOD_NAMES[best]}."
    note = (f"On the last orders of {len(scores['recall']):,} customers (top {k} recommendations): {compare(metric)}; "
            f"{compare(other)}. {decision}")
    table = table.astype({"customers": int})
    table.attrs.update(winner=winner, best_baseline=best, metric=metric, level=level, n_boot=n_boot, k=k, note=note)
    return table


def recommend_with(
    method: str,
    transactions: pd.DataFrame,
    as_of: str | pd.Timestamp,
    *,
    customers=None,
    n: int = 10,
    recommender: Recommender | None = None,
    segments: pd.Series | pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Recommendations from the method :func:`evaluation_table` chose (``attrs["winner"]``).

    Parameters
    ----------
    method : {"recommender", "buy_again", "popularity"}
    transactions, as_of
        Lines before ``as_of`` are used.
    customers : list-like, optional
        Default: every customer with a line before ``as_of``.
    n : int
        Recommendations per customer.
    recommender : Recommender, optional
        Used (fitted here) when ``method`` is ``"recommender"``; default ``Recommender(n=n)``.
    segments, products
        Passed to :meth:`Recommender.fit`.

    Returns
    -------
    DataFrame
        ``customer_id, rank, product_id, score, reason, source`` (as :meth:`Recommender.recommend`).
    """
    if method == "recommender":
        model = recommender if recommender is not None else Recommender(n=n)
        return model.fit(transactions, as_of, segments=segments, products=products).recommend(customers, n=n)
    if method == "buy_again":
        return buy_again_baseline(transactions, as_of, customers=customers, n=n)
    if method == "popularity":
        return popularity_baseline(transactions, as_of, customers=customers, n=n)
    raise ValueError(f"method must be one of {list(METHODS)} (evaluation_table(...).attrs['winner']), got {method!r}")


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def plot_rules(rules: pd.DataFrame, top: int = 15) -> Figure:
    """Bar chart of the ``top`` rules by lift, labelled ``antecedent -> consequent`` (the
    ``*_name`` columns of :func:`rule_labels` when present), with confidence."""
    shown = rules.head(top).iloc[::-1]
    if "antecedent_name" not in shown.columns:
        shown = rule_labels(shown)
    import textwrap

    # rules of several items have long labels: wrapped (never cut), and the figure grows with them
    labels = [textwrap.fill(f"{a} \u2192 {c}", 60) for a, c in zip(shown["antecedent_name"].astype(str), shown["consequent_name"].astype(str))]
    lines = sum(label.count("\n") + 1 for label in labels)
    fig, ax = plt.subplots(figsize=(11 if lines > len(labels) else 8, 0.3 * lines + 0.1 * len(labels) + 1.2))
    bars = ax.barh(range(len(labels)), shown["lift"], color=plt.cm.viridis(shown["confidence"].to_numpy()))
    ax.set_yticks(range(len(labels)), labels, fontsize=9 if lines > len(labels) else None)
    ax.bar_label(bars, labels=[f"conf {c:.0%}" for c in shown["confidence"]], padding=3, fontsize=8)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("lift (1 = bought together by chance)")
    ax.set_title(f"Top {len(shown)} co-purchase rules by lift")
    fig.tight_layout()
    return fig


def plot_evaluation(table: pd.DataFrame) -> Figure:
    """Grouped bars of the metric columns of :func:`evaluation_table` per model."""
    from matplotlib.ticker import PercentFormatter

    metrics = [c for c in table.columns if "@" in c]
    words = {"recall": "share of the next order\nthat was suggested", "precision": "share of the suggestions\nthat were bought",
             "hit_rate": "customers with at least\none right suggestion"}
    shown = table[metrics].T.rename(columns=METHOD_NAMES)
    shown.index = [f"{words.get(m.split('@')[0], m)}\n(top {m.split('@')[1]})" for m in metrics]
    fig, ax = plt.subplots(figsize=(10, 4))
    shown.iloc[::-1, ::-1].plot.barh(ax=ax)  # the first measure and the first method on top
    ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_xlim(0, 1)
    ax.set_ylabel("")
    ax.set_title("Held-out last orders: how often each method was right")
    handles, labels = ax.get_legend_handles_labels()
    ax.legend(handles[::-1], labels[::-1], title="method", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
