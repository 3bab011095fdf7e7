"""Recommendations from purchase history: co-purchase rules, a hybrid recommender, offline evaluation.

Everything works on pandas purchase lines (``customer_id, order_id, order_date, product_id,
quantity``; a negative quantity is a return) and on sparse ``scipy.sparse`` matrices; there is no
Python loop over baskets, customers or rows.

* :func:`association_rules` -- pairwise co-purchase rules ``{a} -> {b}`` (support, confidence,
  lift) from a basket x item matrix ``B``: the pair counts are ``C = B.T @ B`` after pruning the
  items below ``min_support`` (a pair is never more frequent than either of its items).
  :func:`association_rules_in_engine` gives the same rules from an Ibis table, counting the
  pairs in the engine by a self-join on the basket (for data that does not fit in memory).
* :class:`Recommender` -- a mix of (a) *buy again* (the customer's decayed repeat frequency),
  (b) *customers like you also buy* (items popular in the customer's segment, i.e. overall
  popularity re-weighted by the segment's lift) and (c) *often bought with X* (item-to-item
  co-purchase from the customer's own items: ``profile @ similarity``, sparse, top-N per row).
* :func:`leave_last_order_out`, :func:`evaluate`, :func:`popularity_baseline`,
  :func:`buy_again_baseline`, :func:`evaluation_table` -- offline evaluation: every customer's
  last order is held out and the recommendations made from the earlier orders are scored by
  recall@k and hit-rate@k against it.

Example
-------
>>> lines = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3], "item": ["milk", "bread", "milk", "bread", "milk"]})
>>> association_rules(lines, min_support=0.5)[["antecedent", "consequent", "count"]].to_dict("records")
[{'antecedent': 'bread', 'consequent': 'milk', 'count': 2}, {'antecedent': 'milk', 'consequent': 'bread', 'count': 2}]
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scipy.sparse as sp
from matplotlib.figure import Figure
from sklearn.base import BaseEstimator

if TYPE_CHECKING:
    import ibis.expr.types as ir

__all__ = [
    "REASONS",
    "association_rules",
    "association_rules_in_engine",
    "Recommender",
    "leave_last_order_out",
    "evaluate",
    "popularity_baseline",
    "buy_again_baseline",
    "evaluation_table",
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
    tx = tx[tx["order_date"] < as_of]
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
# association rules
# --------------------------------------------------------------------------------------------
def _require_columns(found: list[str], columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in found]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (needs {columns}); found {found}. Rename your columns to these names.")


def _check_support(min_support: float) -> None:
    if not 0 < min_support <= 1:
        raise ValueError(f"min_support must be in (0, 1], got {min_support}")


def _min_count(min_support: float, n_baskets: int) -> int:
    """Baskets a pair (or item) must be in to reach ``min_support`` (at least 1)."""
    return max(1, math.ceil(min_support * n_baskets - 1e-9))


def association_rules(
    baskets: pd.DataFrame,
    *,
    basket: str = "basket_id",
    item: str = "item",
    min_support: float = 0.01,
    min_confidence: float = 0.1,
    min_lift: float = 1.0,
    max_items: int | None = None,
) -> pd.DataFrame:
    """Pairwise co-purchase rules ``{antecedent} -> {consequent}``.

    Only rules with one item on each side are mined (pairwise), which is what cross-selling and
    "often bought with" need; longer itemsets are out of scope.

    Parameters
    ----------
    baskets : DataFrame
        One row per (basket, item) line, e.g. ``order_id, product_id`` of the transactions;
        repeated lines are counted once per basket. Missing values raise an error.
    basket, item : str
        Column names of the basket id and the item.
    min_support : float
        Minimum share of baskets containing both items. Items below it are pruned before the
        pair counts are computed (a pair is never more frequent than its items).
    min_confidence : float
        Minimum ``P(consequent | antecedent)``.
    min_lift : float
        Minimum ``confidence / support(consequent)``.
    max_items : int, optional
        Keep only the ``max_items`` most frequent items (bounds memory on huge catalogues).

    Returns
    -------
    DataFrame
        ``antecedent, consequent, support, confidence, lift, count`` (``count`` = baskets with
        both), sorted by lift, then confidence, descending. ``attrs["n_baskets"]`` holds the
        number of baskets.

    Notes
    -----
    A sparse basket x item matrix ``B`` (0/1) is built and ``C = B.T @ B`` gives all pair counts
    at once: O(lines) to build, O(sum over baskets of kept items squared) for the product,
    O(pairs) memory.

    Examples
    --------
    >>> lines = pd.DataFrame({"basket_id": [1, 1, 2, 2, 3, 3, 4], "item": list("abacbcd")})
    >>> r = association_rules(lines, min_support=0.25, min_confidence=0.5)
    >>> r.loc[r.antecedent.eq("b") & r.consequent.eq("a"), ["support", "confidence", "lift"]].round(3).to_numpy().tolist()
    [[0.25, 0.5, 1.0]]
    """
    _require(baskets, [basket, item], "baskets")
    _check_support(min_support)
    b_codes, b_uniques = pd.factorize(baskets[basket])
    i_codes, items = pd.factorize(baskets[item])
    n = len(b_uniques)
    item_baskets = np.bincount(np.unique(i_codes.astype(np.int64) * n + b_codes) // n, minlength=len(items))
    min_count = _min_count(min_support, n)
    kept = np.flatnonzero(item_baskets >= min_count)
    if max_items is not None:
        kept = kept[np.argsort(-item_baskets[kept], kind="stable")[:max_items]]
    remap = np.full(len(items), -1)
    remap[kept] = np.arange(len(kept))
    on = remap[i_codes] >= 0
    c, counts = _pair_counts(b_codes[on], remap[i_codes[on]], n, len(kept))
    c = c.tocoo()
    big = c.data >= min_count
    labels = items[kept]
    a, q = c.row[big], c.col[big]
    return _rules(labels[a], labels[q], c.data[big], counts[a], counts[q], n, min_confidence, min_lift)


def _rules(antecedent, consequent, both, count_a, count_q, n: int, min_confidence: float, min_lift: float) -> pd.DataFrame:
    """Rules table from ordered pairs, their joint basket count and each side's basket count."""
    both = np.asarray(both, dtype=np.int64)
    confidence = both / np.asarray(count_a, dtype="float64")
    lift = confidence / (np.asarray(count_q, dtype="float64") / n)
    ok = (confidence >= min_confidence) & (lift >= min_lift)
    rules = pd.DataFrame({
        "antecedent": np.asarray(antecedent)[ok], "consequent": np.asarray(consequent)[ok], "support": both[ok] / n,
        "confidence": confidence[ok], "lift": lift[ok], "count": both[ok],
    })
    rules = rules.sort_values(["lift", "confidence", "antecedent", "consequent"], ascending=[False, False, True, True], ignore_index=True)
    rules.attrs["n_baskets"] = n
    return rules


def association_rules_in_engine(
    lines: ir.Table,
    *,
    basket: str = "order_id",
    item: str = "product_id",
    min_support: float = 0.01,
    min_confidence: float = 0.1,
    min_lift: float = 1.0,
    max_items: int | None = None,
) -> pd.DataFrame:
    """:func:`association_rules` computed in the engine (DuckDB, Spark, a warehouse), for when
    the basket x item matrix or the pair counts do not fit in memory.

    The (basket, item) lines are de-duplicated, the items below ``min_support`` are pruned, the
    remaining lines are joined to themselves on the basket (item < item, so each pair once), and
    the pair counts below ``min_support`` are dropped, all in the engine; only the surviving
    pairs come back. Same parameters and result as :func:`association_rules` (``max_items``
    breaks ties in item frequency by item id).

    Parameters
    ----------
    lines : ibis.Table
        Purchase lines, e.g. ``Store.transactions`` filtered to purchases
        (``t.filter(~t.is_return)``).

    Notes
    -----
    The self-join costs O(sum over baskets of (kept items in basket)^2), spread over the
    engine's workers and spilled to disk when needed; the result is O(frequent pairs).
    """
    import ibis

    _check_support(min_support)
    _require_columns(list(lines.columns), [basket, item], "lines")
    pairs_in = lines.select(b=lines[basket], i=lines[item]).filter(lambda t: t.b.notnull() & t.i.notnull()).distinct()
    n = int(pairs_in.b.nunique().execute())
    min_count = _min_count(min_support, n)
    items = pairs_in.group_by("i").aggregate(n_i=pairs_in.count()).filter(lambda t: t.n_i >= min_count)
    if max_items is not None:
        items = items.order_by([ibis.desc("n_i"), "i"]).limit(max_items)
    kept = pairs_in.semi_join(items, "i")
    right = kept.view().rename(b2="b", j="i")
    joined = kept.join(right, (kept.b == right.b2) & (kept.i < right.j))
    counts = joined.group_by(["i", "j"]).aggregate(both=joined.count()).filter(lambda t: t.both >= min_count)
    counts = counts.join(items, "i").join(items.rename(j="i", n_j="n_i"), "j")
    df = counts.select("i", "j", "both", "n_i", "n_j").to_pyarrow().to_pandas()
    antecedent = np.concatenate([df["i"].to_numpy(), df["j"].to_numpy()])
    consequent = np.concatenate([df["j"].to_numpy(), df["i"].to_numpy()])
    both = np.concatenate([df["both"].to_numpy(), df["both"].to_numpy()])
    count_a = np.concatenate([df["n_i"].to_numpy(), df["n_j"].to_numpy()])
    count_q = np.concatenate([df["n_j"].to_numpy(), df["n_i"].to_numpy()])
    return _rules(antecedent, consequent, both, count_a, count_q, n, min_confidence, min_lift)


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
        buys = tx[tx["quantity"] > 0]
        cust_codes, customers = pd.factorize(tx["customer_id"])
        item_codes, items = pd.factorize(tx["product_id"])
        is_buy = (tx["quantity"] > 0).to_numpy()
        n_c, n_i = len(customers), len(items)
        c_b, i_b = cust_codes[is_buy], item_codes[is_buy]
        o_codes, _ = pd.factorize(buys["order_id"])
        # order weight and each customer's last order date
        o_date = pd.Series(buys["order_date"].to_numpy()).groupby(o_codes).max()
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
        event = pd.DataFrame({"key": cust_codes.astype(np.int64) * n_i + item_codes, "date": tx["order_date"].to_numpy(), "buy": is_buy})
        last_event = event.groupby(["key", "buy"])["date"].max().unstack()
        gone = last_event.index[last_event.get(False, pd.Series(pd.NaT, index=last_event.index)) >= last_event.get(True, pd.Series(pd.NaT, index=last_event.index)).fillna(pd.Timestamp.min.as_unit("us"))]
        returned = _binary_matrix(*np.divmod(gone.to_numpy(), n_i), (n_c, n_i)).astype(float)
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
        recent = buys["order_date"].to_numpy() >= (as_of - pd.Timedelta(days=self.window_days)) if self.window_days else np.ones(len(c_b), bool)
        bought = _binary_matrix(c_b[recent], i_b[recent], (n_c, n_i)).astype(float)
        overall = np.asarray(bought.sum(axis=0)).ravel() / n_c
        member = sp.csr_matrix((np.ones(n_c), (seg_codes, np.arange(n_c))), shape=(len(seg_labels), n_c))
        seg_size = np.asarray(member.sum(axis=1)).ravel()
        seg_share = ((member @ bought).toarray() + self.smoothing * overall) / (seg_size + self.smoothing)[:, None]
        seg_rows, seg_items = np.nonzero(seg_share > 0)
        top = _top_per_row(seg_rows, seg_share[seg_rows, seg_items], _CANDIDATES, tiebreak=seg_items)
        seg_top = sp.csr_matrix((seg_share[seg_rows[top], seg_items[top]], (seg_rows[top], seg_items[top])), shape=seg_share.shape)
        segment = (member.T @ seg_top).tocsr()

        parts = []
        for source, matrix, weight, excluded in (
            ("buy_again", buy_again, self.buy_again_weight, no_buy_again),
            ("co_purchase", co_purchase, self.co_purchase_weight, not_new),
            ("segment", segment, self.segment_weight, not_new),
        ):
            m = (matrix - matrix.multiply(excluded)).tocoo()
            m.eliminate_zeros()
            cut = _top_per_row(m.row, m.data, _CANDIDATES, tiebreak=m.col) if source != "buy_again" else np.arange(m.nnz)
            parts.append(pd.DataFrame({"customer": m.row[cut], "item": m.col[cut], "value": weight * m.data[cut], "source": source}))
        long = pd.concat(parts, ignore_index=True)
        long = long.sort_values(["customer", "item", "value"], ascending=[True, True, False], kind="stable")
        grouped = long.groupby(["customer", "item"], sort=False)
        self.candidates_ = grouped.agg(score=("value", "sum"), source=("source", "first")).reset_index()
        self.candidates_ = self.candidates_[self.candidates_["score"] > 0].reset_index(drop=True)

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
            of ``buy_again, co_purchase, segment, popular``).

        Notes
        -----
        O(m log m) for the m candidates of the requested customers.
        """
        if not hasattr(self, "candidates_"):
            raise RuntimeError("Recommender is not fitted: call fit(transactions, as_of) first.")
        n = self.n if n is None else n
        wanted = self.customers_ if customers is None else pd.Index(pd.Series(list(customers), dtype="string").unique(), name="customer_id")
        codes = self.customers_.get_indexer(wanted)
        cand = self.candidates_[np.isin(self.candidates_["customer"].to_numpy(), codes[codes >= 0])]
        cust, item, score = cand["customer"].to_numpy(), cand["item"].to_numpy(), cand["score"].to_numpy()
        keep = _top_per_row(cust, score, n, tiebreak=self.tiebreak_[item])
        known = pd.DataFrame({"customer_id": self.customers_[cust[keep]], "product_id": self.items_[item[keep]],
                              "score": score[keep], "source": cand["source"].to_numpy()[keep]})
        cold = wanted[codes < 0]
        k = min(n, len(self.popular_))
        unknown = pd.DataFrame({"customer_id": np.repeat(cold.to_numpy(), k), "product_id": np.tile(self.items_[self.popular_[:k]], len(cold)),
                                "score": np.tile(self.popular_share_[:k], len(cold)), "source": "popular"})
        recs = pd.concat([known, unknown], ignore_index=True).astype({"customer_id": "string", "product_id": "string"})
        recs["rank"] = recs.groupby("customer_id", sort=False).cumcount() + 1
        recs["reason"] = recs["source"].map(REASONS)
        co = (recs["source"] == "co_purchase").to_numpy()
        recs.loc[co, "reason"] = "often bought with " + self._seed_item(recs.loc[co, "customer_id"], recs.loc[co, "product_id"]).to_numpy()
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
    _require(recommendations, ["customer_id", "rank", "product_id"], "recommendations")
    _require(holdout, ["customer_id", "product_id"], "holdout")
    held = holdout[["customer_id", "product_id"]].astype("string").drop_duplicates()
    top = recommendations.loc[recommendations["rank"] <= k, ["customer_id", "product_id"]].astype("string").drop_duplicates()
    size = held.groupby("customer_id").size()
    hits = top.merge(held, on=["customer_id", "product_id"]).groupby("customer_id").size().reindex(size.index, fill_value=0)
    return {
        f"recall@{k}": float((hits / size).mean()),
        f"precision@{k}": float((hits / k).mean()),
        f"hit_rate@{k}": float((hits > 0).mean()),
        "customers": int(len(size)),
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


def evaluation_table(
    transactions: pd.DataFrame,
    *,
    recommender: Recommender | None = None,
    k: int = 10,
    segments: pd.Series | pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Recommender vs the popularity and buy-again baselines on a leave-last-order-out split.

    The models are fitted on :func:`leave_last_order_out`'s ``train`` with ``as_of`` one day
    after its last line and scored with :func:`evaluate` on the held-out baskets.

    Returns
    -------
    DataFrame
        Index ``model`` (``recommender, buy_again, popularity``); columns ``recall@k,
        precision@k, hit_rate@k, customers``.
    """
    train, holdout = leave_last_order_out(transactions)
    as_of = train["order_date"].max().normalize() + pd.Timedelta(days=1)
    who = holdout["customer_id"].unique()
    model = recommender if recommender is not None else Recommender(n=k)
    recs = {
        "recommender": model.fit(train, as_of, segments=segments).recommend(who, n=k),
        "buy_again": buy_again_baseline(train, as_of, customers=who, n=k),
        "popularity": popularity_baseline(train, as_of, customers=who, n=k),
    }
    table = pd.DataFrame({name: evaluate(r, holdout, k=k) for name, r in recs.items()}).T
    table.index.name = "model"
    return table.astype({"customers": int})


# --------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------
def plot_rules(rules: pd.DataFrame, top: int = 15) -> Figure:
    """Bar chart of the ``top`` rules by lift, labelled ``antecedent -> consequent``, with confidence."""
    shown = rules.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(shown) + 1.2))
    labels = shown["antecedent"].astype(str) + " \u2192 " + shown["consequent"].astype(str)
    bars = ax.barh(labels, shown["lift"], color=plt.cm.viridis(shown["confidence"].to_numpy()))
    ax.bar_label(bars, labels=[f"conf {c:.0%}" for c in shown["confidence"]], padding=3, fontsize=8)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("lift (1 = bought together by chance)")
    ax.set_title(f"Top {len(shown)} co-purchase rules by lift")
    fig.tight_layout()
    return fig


def plot_evaluation(table: pd.DataFrame) -> Figure:
    """Grouped bars of the metric columns of :func:`evaluation_table` per model."""
    metrics = [c for c in table.columns if "@" in c]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    table[metrics].T.plot.bar(ax=ax, rot=0)
    ax.set_ylabel("share")
    ax.set_title("Offline evaluation: last order held out")
    ax.legend(title="model")
    fig.tight_layout()
    return fig
