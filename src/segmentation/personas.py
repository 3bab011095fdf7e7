"""Personas from segments: who they are, what they buy, how they behave -- and only as much as
the numbers support.

A persona is built from data only -- never from a hard-coded segment-number-to-name map:

* **traits** -- per segment, indices against the population (100 = average customer): the
  behavioural indices defined in ``rules/persona_indices.csv`` (health, indulgence, family,
  convenience, novelty, routine, price sensitivity; an index whose features are absent from the
  data is reported as unavailable), plus value, lapsing, returns, big baskets and newcomers. An
  index resting on fewer than ``min_group_size`` customers is left out (NaN). A trait is
  *highlighted* only when it differs materially: index <= 80 or >= 120
  (:data:`HIGHLIGHT_LOW`, :data:`HIGHLIGHT_HIGH`).
* **what they buy** -- categories and products by lift (segment share / population share), with
  a support floor and at least ``min_group_size`` buying customers per row;
* **who they are** -- size, share of customers and revenue, repeat buyers and status
  (:mod:`segmentation.definitions`), demographics against the population (cells of fewer than
  ``min_group_size`` customers dropped);
* **name and narrative** -- the most distinctive highlighted trait picks a name from
  ``rules/persona_names.csv`` (each name used once, assigned greedily by trait strength times the
  rule's ``weight``). A rule's ``requires`` column holds a condition on the persona's absolute
  numbers (e.g. ``repeat_share >= 0.5 and frequency >= 2`` for "VIP loyalists ... come back most
  often"); a rule whose condition fails does not name the persona. Personas no rule can name get
  a plain description ("Lapsed one-order low-spending buyers"); a persona whose segment was
  flagged unstable is not named at all ("Mixed group A (unstable)"). Narratives state shares with
  words that fit them (:func:`quantifier`: "most", "about half", "about a third", ...), never a
  plurality as a fact.

The indices are behavioural indicators computed from purchases, not measured personality
(:data:`segmentation.report.INDICATOR_NOTE`). What to *do* for each persona (the action plan) is
built by :mod:`segmentation.offers` from the persona's leading ``trait``.

Cost: O(customers x features) in pandas plus one engine group-by over the lines for the
product lifts (O(lines)).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import ibis
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from segmentation import definitions
from segmentation.data import to_pandas
from segmentation.schema import rules_table

__all__ = [
    "INDEX_RULES",
    "NAME_RULES",
    "TRAIT_LABELS",
    "HIGHLIGHT_LOW",
    "HIGHLIGHT_HIGH",
    "Personas",
    "quantifier",
    "share_phrase",
    "behaviour_indices",
    "category_lift",
    "product_lift",
    "build_personas",
    "plot_persona_card",
    "plot_persona_overview",
]


INDEX_RULES: pd.DataFrame = rules_table("persona_indices")
NAME_RULES: pd.DataFrame = rules_table("persona_names")

#: A trait is highlighted (differs materially from the average customer) at or beyond these indices.
HIGHLIGHT_LOW, HIGHLIGHT_HIGH = 80.0, 120.0

#: Plain label of every trait (behavioural indices from the first words of their definition).
TRAIT_LABELS: dict[str, str] = {
    **{r["index"]: str(r["definition"]).split(":")[0].lower()
       for _, r in INDEX_RULES.dropna(subset=["definition"]).iterrows()},
    "value": "net spend",
    "lapsing": "the share of one- or two-order customers who are no longer active",
    "returns": "share of spend returned",
    "big_baskets": "order value",
    "newcomers": "newness (short time as a customer)",
}

#: Short trait labels for figure axes (the full labels are for sentences).
TRAIT_SHORT: dict[str, str] = {"lapsing": "lapsed one-timers", "newcomers": "newness", "big_baskets": "order value",
                               "returns": "returns", "value": "net spend"}


def _short_trait(trait: str) -> str:
    return TRAIT_SHORT.get(trait) or TRAIT_LABELS.get(trait, trait.replace("_", " ")).split(" (")[0]


_SLOTS = {"tod_morning": "in the morning", "tod_afternoon": "in the afternoon", "tod_evening": "in the evening",
          "tod_night": "late at night"}
_REQUIRED = ["segment", "frequency", "monetary", "avg_order_value", "recency_days", "tenure_days", "return_rate",
             "discount_share", "ipi_mean_days"]
_DEMOGRAPHICS = {"age_band": "are {value}", "region": "live in the {value} region", "household": "live in a {value} household"}
_EMPTY_DEMO = ["segment", "attribute", "value", "customers", "share", "population_share", "lift"]


@dataclass
class Personas:
    """The personas of a segmentation (one row per segment in each table).

    Attributes
    ----------
    summary : DataFrame
        Index ``segment``. ``name`` (shown to stakeholders), ``trait`` (the leading trait that
        named the persona, from which :mod:`segmentation.offers` builds the action plan; NaN when
        no trait rule named it, or the group is unstable or too small), ``name_basis`` (``trait``, ``description``, ``unstable`` or
        ``too small``), ``name_reason`` (one plain sentence), ``narrative``, ``customers,
        customer_share, revenue_share, suppressed, stable``, ``repeat_share, active_share,
        lapsing_share, lapsed_share`` (definitions in :mod:`segmentation.definitions`), the mean
        ``frequency, avg_order_value, monetary, recency_days, tenure_days, return_rate,
        discount_share``, and ``p_alive, clv`` (means; NaN when no values were given).
    traits : DataFrame
        Indices vs population (100 = average) per trait; NaN = unavailable for this data or
        resting on fewer than ``min_group_size`` customers.
    highlight : DataFrame
        Same shape as ``traits``: True where the trait differs materially (index <= 80 or >=
        120 with enough customers). Figures and texts highlight only these.
    categories : DataFrame
        ``segment, category, customers, share, population_share, lift`` (top categories per
        segment; ``customers`` = members who bought in the category).
    products : DataFrame
        ``segment, product_id, name, customers, lift`` (top products by lift).
    demographics : DataFrame
        ``segment, attribute, value, customers, share, population_share, lift``.
    pain_points : DataFrame
        ``segment, pain_point, evidence`` (evidence is a plain sentence with its numbers).
    notes : list of str
        What could not be computed and why, as plain sentences.
    min_group_size : int
    """

    summary: pd.DataFrame
    traits: pd.DataFrame
    highlight: pd.DataFrame
    categories: pd.DataFrame
    products: pd.DataFrame
    demographics: pd.DataFrame
    pain_points: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    min_group_size: int = 10

    def visible(self) -> list[int]:
        """Segments large enough to be described in stakeholder reports."""
        return self.summary.index[~self.summary["suppressed"]].tolist()

    #: The tables a run saves (see :meth:`tables` and :meth:`from_tables`).
    TABLES = ("summary", "traits", "highlight", "categories", "products", "demographics", "pain_points")

    def tables(self) -> dict[str, pd.DataFrame]:
        """The personas as named tables (what a run saves with its results)."""
        return {name: getattr(self, name) for name in self.TABLES}

    @classmethod
    def from_tables(cls, tables: dict[str, pd.DataFrame], *, notes: list[str] | None = None,
                    min_group_size: int = 10) -> Personas:
        """Rebuild the personas from the tables of :meth:`tables` (e.g. a run's saved results)."""
        return cls(**{name: tables[name] for name in cls.TABLES}, notes=list(notes or []), min_group_size=min_group_size)


# ------------------------------------------------------------------------------------ wording
_QUANTIFIERS = ((0.95, "almost all"), (0.60, "most"), (0.55, "more than half"), (0.45, "about half"), (0.37, "about two in five"),
                (0.28, "about a third"), (0.20, "about a quarter"), (0.10, "some"), (0.0, "a few"))


def quantifier(share: float) -> str:
    """The word for a share of a group, so that a narrative never states a plurality as fact.

    ===============  =====================
    share            word
    ===============  =====================
    >= 95%           almost all
    60% - 95%        most
    55% - 60%        more than half
    45% - 55%        about half
    37% - 45%        about two in five
    28% - 37%        about a third
    20% - 28%        about a quarter
    10% - 20%        some
    > 0% - 10%       a few
    0                none
    ===============  =====================

    Parameters
    ----------
    share : float
        A share in [0, 1].

    Raises
    ------
    ValueError
        ``share`` is missing or outside [0, 1].

    Examples
    --------
    >>> quantifier(0.72), quantifier(0.35), quantifier(0.5)
    ('most', 'about a third', 'about half')
    """
    if share is None or not np.isfinite(share) or not 0.0 <= share <= 1.0:
        raise ValueError(f"a share must lie in [0, 1], got {share!r}")
    if share == 0:
        return "none"
    return next(word for floor, word in _QUANTIFIERS if share >= floor)


def share_phrase(share: float, *, capital: bool = False) -> str:
    """``quantifier`` with the share as shown: ``"most (72%)"`` (``"Most (72%)"`` with ``capital``).

    The word is chosen for the share rounded to the percent shown, so that "95%" never reads
    "most" and "almost all" at once; "all" and "none" are used only when exact."""
    share = float(share)
    if share in (0.0, 1.0):
        return ("None" if capital else "none") if share == 0 else f"{'A' if capital else 'a'}ll (100%)"
    shown = min(max(round(share, 2), 0.001), 0.999)  # "all" and "none" only when exact
    text = f"{quantifier(shown)} ({share:.0%})"
    return text[0].upper() + text[1:] if capital else text


# ------------------------------------------------------------------------------------ traits
def behaviour_indices(table: pd.DataFrame, rules: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per customer, each behavioural index as the weighted sum of its features.

    ``regularity = 1 / (1 + ipi_cv)`` is derived first (NaN for customers with < 3 orders).
    An index none of whose features exist in ``table`` is left out (unavailable).
    """
    rules = INDEX_RULES if rules is None else rules
    data = table.assign(regularity=1.0 / (1.0 + table["ipi_cv"])) if "ipi_cv" in table else table
    out = {}
    for index, r in rules.groupby("index", sort=False):  # a handful of indices
        present = r[r["feature"].isin(data.columns)]
        if present.empty:
            continue
        values = data[present["feature"]].to_numpy(dtype="float64")
        weights = present["weight"].to_numpy(dtype="float64")
        all_nan = np.isnan(values).all(axis=1)
        out[index] = np.where(all_nan, np.nan, np.nansum(values * weights, axis=1))
    return pd.DataFrame(out, index=table.index)


def _traits(table: pd.DataFrame, segment: pd.Series, status: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Trait indices per segment (100 = population) and the customers each rests on."""
    idx = behaviour_indices(table)
    lapsing = ((table["frequency"] <= 2) & (status != "active")).astype("float64")
    per_customer = idx.assign(
        value=table["monetary"], lapsing=lapsing, returns=table["return_rate"], big_baskets=table["avg_order_value"],
    )
    pop = per_customer.mean()
    g = per_customer.groupby(segment)
    traits = g.mean().div(pop.where(pop != 0)).mul(100)
    counts = g.count()
    tenure = table["tenure_days"].groupby(segment).mean()
    traits["newcomers"] = table["tenure_days"].mean() / tenure.where(tenure > 0) * 100
    counts["newcomers"] = table["tenure_days"].groupby(segment).count()
    return traits, counts


def _highlight(traits: pd.DataFrame) -> pd.DataFrame:
    return ((traits <= HIGHLIGHT_LOW) | (traits >= HIGHLIGHT_HIGH)) & traits.notna()


# ------------------------------------------------------------------------------------ lifts
def category_lift(table: pd.DataFrame, segment: pd.Series, *, min_share: float = 0.02, top: int | None = 5,
                  min_group_size: int = 1) -> pd.DataFrame:
    """Categories typical of each segment: spend share in the segment / in the population.

    Spend per category is ``cat_<x> share x gross spend`` per customer (gross spend =
    ``avg_order_value x frequency``), so big spenders weigh by what they spend. Only categories
    with at least ``min_share`` of the segment's spend and at least ``min_group_size`` buying
    customers in the segment are ranked. This is the one definition of category lift in the
    project (:func:`segmentation.offers.category_lift` is its wide form).

    Returns
    -------
    DataFrame
        ``segment, category, customers, share, population_share, lift`` (``top`` rows per
        segment, or every row when ``top`` is None); ``customers`` = members with spend in the
        category.
    """
    columns = ["segment", "category", "customers", "share", "population_share", "lift"]
    cats = [c for c in table.columns if c.startswith("cat_")]
    if not cats:
        return pd.DataFrame(columns=columns)
    gross = table["avg_order_value"] * table["frequency"]
    spend = table[cats].mul(gross, axis=0)
    seg_share = spend.groupby(segment).sum()
    seg_share = seg_share.div(seg_share.sum(axis=1), axis=0)
    buyers = (table[cats] > 0).groupby(segment).sum()
    pop_share = spend.sum() / spend.sum().sum()
    long = seg_share.stack().rename("share").reset_index()
    long.columns = ["segment", "category", "share"]
    long["customers"] = buyers.stack().reindex(pd.MultiIndex.from_frame(long[["segment", "category"]])).to_numpy()
    long["population_share"] = pop_share.reindex(long["category"]).to_numpy()
    long["lift"] = long["share"] / long["population_share"].where(long["population_share"] > 0)
    long["category"] = long["category"].str.removeprefix("cat_")
    long = long[(long["share"] >= min_share) & (long["customers"] >= min_group_size)]
    long = long.sort_values(["segment", "lift"], ascending=[True, False])[columns]
    return (long if top is None else long.groupby("segment").head(top)).reset_index(drop=True)


def product_lift(transactions, segment: pd.Series, *, products: pd.DataFrame | None = None,
                 min_group_size: int = 5, top: int = 5) -> pd.DataFrame:
    """Products typical of each segment: share of the segment's customers buying it / share of
    all customers buying it. Computed in the engine (one join and group-by over the lines).

    Only products bought by at least ``min_group_size`` customers of the segment are ranked.
    Returns ``segment, product_id, name, customers, lift``.
    """
    seg = ibis.memtable(pd.DataFrame({"customer_id": segment.index.astype(str), "segment": segment.to_numpy()}))
    t = definitions.purchase_lines(transactions)
    j = t.join(seg, "customer_id")
    per = to_pandas(j.group_by(["segment", "product_id"]).aggregate(customers=j.customer_id.nunique()))
    sizes = segment.value_counts()
    overall = per.groupby("product_id")["customers"].sum() / sizes.sum()
    per["share"] = per["customers"] / sizes.reindex(per["segment"]).to_numpy()
    per["lift"] = per["share"] / overall.reindex(per["product_id"]).to_numpy()
    per = per[per["customers"] >= min_group_size].sort_values(["segment", "lift", "customers", "product_id"],
                                                              ascending=[True, False, False, True])
    per = per.groupby("segment").head(top).reset_index(drop=True)
    names = None
    if products is not None and "name" in products:
        names = products.dropna(subset=["name"]).drop_duplicates("product_id").set_index("product_id")["name"]
    per["name"] = names.reindex(per["product_id"]).fillna(per["product_id"]).to_numpy() if names is not None else per["product_id"]
    return per[["segment", "product_id", "name", "customers", "lift"]]


# ------------------------------------------------------------------------------------ demographics
def _demographics_mix(table: pd.DataFrame, segment: pd.Series, min_group_size: int) -> pd.DataFrame:
    """Share of each demographic value per segment vs the population; cells of fewer than
    ``min_group_size`` customers are dropped."""
    rows = []
    for attr in _DEMOGRAPHICS:
        if attr not in table or table[attr].isna().all():
            continue
        counts = pd.crosstab(segment, table[attr])
        long = counts.stack().rename("customers").reset_index()
        long.columns = ["segment", "value", "customers"]
        long["share"] = long["customers"] / counts.sum(axis=1).reindex(long["segment"]).to_numpy()
        pop = counts.sum() / counts.to_numpy().sum()
        long["population_share"] = pop.reindex(long["value"]).to_numpy()
        long["lift"] = long["share"] / long["population_share"]
        long["attribute"] = attr
        rows.append(long[long["customers"] >= min_group_size])
    if not rows:
        return pd.DataFrame(columns=_EMPTY_DEMO)
    return pd.concat(rows, ignore_index=True)[_EMPTY_DEMO]


def _age_groups(bands: list[str]) -> dict[str, list[str]]:
    """Single age bands and adjacent pairs; the oldest pair reads "55 or older"."""
    order = sorted(bands)
    groups = {b: [b] for b in order}
    for lo, hi in zip(order[:-1], order[1:]):
        if hi == order[-1] and hi.endswith("+"):
            label = f"{lo.split('-')[0]} or older"
        else:
            label = f"{lo.split('-')[0]}-{hi.split('-')[-1].rstrip('+')}"
        groups[label] = [lo, hi]
    return groups


def _demographic_claims(table: pd.DataFrame, segment: pd.Series, seg: int, min_group_size: int) -> list[str]:
    """At most two sentences on who the members are, each with its share and the population's.

    Candidates: each demographic value (and, for age, adjacent pairs of bands) with at least
    ``min_group_size`` members, a share of at least 25% and a lift of at least 1.3; ranked by
    share x (lift - 1)."""
    claims = []
    for attr, template in _DEMOGRAPHICS.items():
        if attr not in table or table[attr].isna().all():
            continue
        values = table[attr].dropna().astype(str)
        members = values[segment.reindex(values.index) == seg]
        if members.empty:
            continue
        pop_counts, seg_counts = values.value_counts(), members.value_counts()
        groups = _age_groups(list(pop_counts.index)) if attr == "age_band" else {v: [v] for v in pop_counts.index}
        for label, parts in groups.items():
            n = int(seg_counts.reindex(parts).fillna(0).sum())
            share = n / len(members)
            pop_share = pop_counts.reindex(parts).sum() / len(values)
            lift = share / pop_share if pop_share > 0 else np.nan
            if n >= min_group_size and share >= 0.25 and lift >= 1.3:
                text = label if attr != "age_band" or "older" in label else f"aged {label}"
                claims.append((share * (lift - 1), attr, template.format(value=text), share, pop_share))
    best = pd.DataFrame(claims, columns=["score", "attr", "text", "share", "pop"])
    best = best.sort_values("score", ascending=False).drop_duplicates("attr").head(2)
    return [f"{share_phrase(r.share, capital=True)} {r.text}, against {r.pop:.0%} of all customers."
            for r in best.itertuples()]


# ------------------------------------------------------------------------------------ names
def _requirements(summary: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Boolean (segment x trait): does the persona meet the rule's ``requires`` condition?"""
    out = {}
    for r in rules.itertuples():  # one per rule (a dozen)
        cond = r.requires if isinstance(r.requires, str) and r.requires.strip() else None
        if cond is None:
            out[r.trait] = pd.Series(True, index=summary.index)
            continue
        try:
            out[r.trait] = summary.eval(cond).astype(bool)
        except Exception as exc:
            raise ValueError(f"rules/persona_names.csv: the condition {cond!r} of trait {r.trait!r} cannot be evaluated "
                             f"({exc}); use columns of the persona summary such as repeat_share, frequency, "
                             f"active_share, lapsed_share, return_rate") from exc
    return pd.DataFrame(out, index=summary.index)


def _assign_names(scores: pd.DataFrame, allowed: pd.DataFrame, rules: pd.DataFrame,
                  taken: set[str] | None = None) -> pd.DataFrame:
    """Greedy unique assignment: strongest allowed (segment, trait) pair first, each trait once."""
    long = scores.stack().rename("score").reset_index()
    long.columns = ["segment", "trait", "score"]
    ok = allowed.stack()
    long = long[ok.reindex(pd.MultiIndex.from_frame(long[["segment", "trait"]])).fillna(False).to_numpy(dtype=bool)]
    long = long.merge(rules, on="trait")
    long["score"] = long["score"] * long["weight"]  # identity traits outrank side traits (e.g. returns)
    long = long[long["score"] >= long["min_score"]].sort_values(["score", "segment"], ascending=[False, True])
    taken_seg, taken_trait, rows = set(), set(taken or ()), []
    for r in long.itertuples():  # at most segments x traits rows (a few dozen)
        if r.segment in taken_seg or r.trait in taken_trait:
            continue
        taken_seg.add(r.segment)
        taken_trait.add(r.trait)
        rows.append((r.segment, r.trait, r.name, r.phrase))
    return pd.DataFrame(rows, columns=["segment", "trait", "name", "phrase"]).set_index("segment")


def _describe(summary: pd.DataFrame) -> pd.Series:
    """Plain description for personas no trait rule names (no hype): lapsed/active (when it sets
    them apart), one-order/frequent/occasional, big-/low-spending."""
    pop = summary["customers"]
    mean = lambda col: float((summary[col] * pop).sum() / pop.sum())  # noqa: E731 - customer-weighted mean
    status = np.where((summary["lapsed_share"] >= 0.6) & (summary["lapsed_share"] >= 1.3 * mean("lapsed_share")), "lapsed",
                      np.where((summary["active_share"] >= 0.6) & (summary["active_share"] >= 1.3 * mean("active_share")),
                               "active", ""))
    f_ratio = summary["frequency"] / mean("frequency")
    freq = np.where(summary["repeat_share"] <= 0.4, "one-order",
                    np.where((summary["repeat_share"] >= 0.5) & (f_ratio >= 1.3), "frequent",
                             np.where(f_ratio <= 0.7, "occasional", "")))
    m_ratio = summary["avg_order_value"] / mean("avg_order_value")
    spend = np.where(m_ratio >= 1.3, "big-spending", np.where(m_ratio <= 0.7, "low-spending", ""))
    text = pd.Series([" ".join(w for w in parts if w) for parts in zip(status, freq, spend)], index=summary.index)
    return (text.where(text != "", "typical") + " customers").where(text == "", text + " buyers").str.capitalize()


def _letters(n: int) -> list[str]:
    return [chr(ord("A") + i % 26) + (str(i // 26) if i >= 26 else "") for i in range(n)]


# ------------------------------------------------------------------------------------ narrative
def _narrative(name: str, phrase: str | None, seg: int, table: pd.DataFrame, segment: pd.Series, cats: pd.DataFrame,
               traits: pd.Series, highlight: pd.Series, row: pd.Series, min_group_size: int) -> str:
    members = table[segment == seg]
    mine = cats[(cats["segment"] == seg) & (cats["lift"] >= 1.1)]
    top = mine["category"].head(2).str.replace("_", " ").tolist()
    # "across the range" only when there is a range: with one category nothing is said about the mix
    several = cats["category"].nunique() > 1
    what = phrase or (f"favour {' and '.join(top)}" if top else "buy across the range" if several else "")
    extra = []
    if highlight.get("indulgence", False) and traits.get("indulgence", 100) >= HIGHLIGHT_HIGH and "indulg" not in name.lower():
        extra.append("treat themselves now and then")
    if highlight.get("price_sensitivity", False) and traits.get("price_sensitivity", 100) >= 150 and "bargain" not in name.lower():
        extra.append("watch for discounts")
    if highlight.get("value", False) and traits.get("value", 100) >= 200 and "vip" not in name.lower():
        extra.append("spend far more than the average customer")
    above = f" (above all {' and '.join(top)})" if phrase and top else ""
    tail = f", and {' and '.join(extra)}" if extra else ""
    if what:
        sentences = [f"{name}: customers who {what}{above}{tail}."]
    else:
        sentences = [f"{name}: customers who {' and '.join(extra)}."] if extra else []

    slots = [c for c in _SLOTS if c in table]
    if slots:
        seg_slot, pop_slot = members[slots].mean(), table[slots].mean()
        ratio = seg_slot / pop_slot.where(pop_slot > 0)
        if ratio.notna().any() and ratio.max() >= 1.3:
            best = ratio.idxmax()
            sentences.append(f"{share_phrase(seg_slot[best], capital=True)} of their orders are placed {_SLOTS[best]}, "
                             f"against {pop_slot[best]:.0%} for all customers.")
    if "weekend_share" in table:
        wk, pop_wk = members["weekend_share"].mean(), table["weekend_share"].mean()
        if pop_wk > 0 and (wk / pop_wk >= 1.3 or wk / pop_wk <= 0.7):
            sentences.append(f"{share_phrase(wk, capital=True)} of their orders are at the weekend, "
                             f"against {pop_wk:.0%} for all customers.")
    sentences += _demographic_claims(table, segment, seg, min_group_size)
    sentences.append(f"{share_phrase(row['repeat_share'], capital=True)} have ordered more than once "
                     f"({row['frequency']:.1f} orders on average), and {share_phrase(row['active_share'])} "
                     "are still active.")
    return " ".join(sentences)


def _name_reason(trait: str, value: float, requires: str | None, row: pd.Series) -> str:
    """Why the persona has its name, with the numbers the name rests on."""
    from segmentation.report import kind_of, label

    text = f"Stands out on {TRAIT_LABELS.get(trait, trait.replace('_', ' '))}: index {value:.0f} (100 = average customer)"
    used = [c for c in dict.fromkeys(re.findall(r"[A-Za-z_]+", requires or "")) if c in row.index]
    facts = [f"{label(c)} {row[c]:.0%}" if kind_of(c) == "share" else f"{label(c)} {row[c]:.1f}" for c in used]
    return text + (f"; {', '.join(facts)}." if facts else ".")


# ------------------------------------------------------------------------------------ build
def build_personas(
    table: pd.DataFrame,
    transactions=None,
    *,
    products: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    values: pd.DataFrame | None = None,
    status: pd.Series | None = None,
    stability: pd.DataFrame | None = None,
    min_group_size: int = 10,
) -> Personas:
    """Build one persona per segment.

    Parameters
    ----------
    table : DataFrame
        Index ``customer_id``: customer features (``frequency, monetary, avg_order_value,
        recency_days, tenure_days, return_rate, discount_share, ipi_mean_days``, ``cat_*`` ...),
        demographics when known, and ``segment`` (``pipeline.segment_customers(...).table``).
    transactions : ibis.Table, optional
        For the product lifts.
    products, feedback, events : DataFrame, optional
        Product names; satisfaction and support contacts for the pain points.
    values : DataFrame, optional
        Index ``customer_id`` with ``p_alive`` and ``clv`` (:func:`segmentation.value.customer_value`).
        None when the lifetime model is not usable: no expected value is shown, and a note says so.
    status : Series, optional
        :func:`segmentation.definitions.customer_status` per customer (the run's thresholds);
        default: ``table["status"]`` when present, else computed with the default thresholds.
    stability : DataFrame, optional
        Index ``segment`` with a boolean ``stable`` column (:func:`segmentation.segments.stability`;
        ``jaccard_mean`` is quoted when present). Unstable segments are not named.
    min_group_size : int
        Personas with fewer customers are not described (``suppressed``); every trait,
        category, product and demographic cell resting on fewer customers is dropped.

    Returns
    -------
    Personas

    Raises
    ------
    ValueError
        ``table`` lacks a required column.
    """
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the columns {missing} (found {list(table.columns)[:12]} ...); pass the customer "
                         "table of pipeline.segment_customers(...).table")
    segment = table["segment"]
    notes: list[str] = []
    if status is None:
        status = table["status"] if "status" in table else definitions.customer_status(table)
    status = status.reindex(table.index).astype("string").fillna("unknown")
    repeat = definitions.is_repeat_buyer(table)

    traits, counts = _traits(table, segment, status)
    absent = sorted(set(INDEX_RULES["index"]) - set(traits.columns))
    if absent:
        notes.append(f"Some behavioural indices cannot be computed from this data (no matching categories or columns): "
                     f"{', '.join(a.replace('_', ' ') for a in absent)}.")
    traits = traits.where(counts >= min_group_size)
    highlight = _highlight(traits)

    g = table.groupby(segment)
    summary = pd.DataFrame({
        "customers": g.size(),
        "customer_share": g.size() / len(table),
        "revenue_share": g["monetary"].sum() / table["monetary"].sum() if table["monetary"].sum() else np.nan,
        "repeat_share": repeat.groupby(segment).mean(),
        "active_share": (status == "active").groupby(segment).mean(),
        "lapsing_share": (status == "lapsing").groupby(segment).mean(),
        "lapsed_share": (status == "lapsed").groupby(segment).mean(),
        "frequency": g["frequency"].mean(),
        "avg_order_value": g["avg_order_value"].mean(),
        "monetary": g["monetary"].mean(),
        "recency_days": g["recency_days"].mean(),
        "tenure_days": g["tenure_days"].mean(),
        "return_rate": g["return_rate"].mean(),
        "discount_share": g["discount_share"].mean(),
    })
    summary.index.name = "segment"
    if values is not None:
        v = values.reindex(table.index)
        summary["p_alive"] = v["p_alive"].groupby(segment).mean()
        summary["clv"] = v["clv"].groupby(segment).mean()
    else:
        summary["p_alive"] = summary["clv"] = np.nan
        notes.append("Expected value and the chance of buying again are not shown: the lifetime model did not pass "
                     "its check on this data.")
    summary["suppressed"] = summary["customers"] < min_group_size
    summary["stable"] = True
    jaccard = pd.Series(np.nan, index=summary.index)
    if stability is not None:
        stab = stability.reindex(summary.index)
        summary["stable"] = stab["stable"].fillna(True).astype(bool)
        if "jaccard_mean" in stab:
            jaccard = stab["jaccard_mean"]
        unchecked = summary.index[stab["stable"].isna()].tolist()
        if unchecked:
            notes.append(f"The stability of {len(unchecked)} group(s) was not checked; they are described as usual.")

    # names: trait rules (with their conditions on absolute numbers) for stable, visible personas
    eligible = summary.index[~summary["suppressed"] & summary["stable"]]
    scores = (traits - 100.0) / 100.0
    allowed = highlight & _requirements(summary, NAME_RULES).reindex(columns=traits.columns, fill_value=True)
    names = _assign_names(scores.loc[eligible], allowed.loc[eligible], NAME_RULES)
    rest = eligible.difference(names.index)
    if len(rest):  # weaker but still material traits name the rest (each name once)
        weaker = NAME_RULES.assign(min_score=np.minimum(NAME_RULES["min_score"], (HIGHLIGHT_HIGH - 100) / 100))
        names = pd.concat([names, _assign_names(scores.loc[rest], allowed.loc[rest], weaker, set(names["trait"]))])
    summary["trait"] = names["trait"]
    summary["name"] = names["name"]
    summary["name_basis"] = np.where(summary["trait"].notna(), "trait", "description")
    requires = NAME_RULES.set_index("trait")["requires"]
    summary["name_reason"] = [
        _name_reason(t, traits.at[s, t], requires.get(t) if isinstance(requires.get(t), str) else None, summary.loc[s])
        if isinstance(t, str) else
        "No trait sets this group clearly apart with enough customers; the name describes its activity, "
        "order frequency and order value."
        for s, t in summary["trait"].items()  # one per persona
    ]
    described = summary["name"].isna()
    summary.loc[described, "name"] = _describe(summary).loc[described]
    dup = summary["name"].where(summary.index.isin(eligible)).dropna().duplicated(keep=False)
    dup = dup[dup].index
    if len(dup):
        letters = summary.loc[dup].groupby("name").cumcount().map(dict(enumerate(_letters(len(dup)))))
        summary.loc[dup, "name"] = summary.loc[dup, "name"] + " (group " + letters + ")"

    cats = category_lift(table, segment, min_group_size=min_group_size)
    demo = _demographics_mix(table, segment, min_group_size)
    prods = (product_lift(transactions, segment, products=products, min_group_size=min_group_size)
             if transactions is not None else pd.DataFrame(columns=["segment", "product_id", "name", "customers", "lift"]))

    summary["narrative"] = [
        _narrative(summary.at[s, "name"], names["phrase"].get(s), s, table, segment, cats, traits.loc[s],
                   highlight.loc[s], summary.loc[s], min_group_size)
        for s in summary.index  # one per persona (k of them)
    ]
    unstable = summary.index[~summary["stable"] & ~summary["suppressed"]]
    for letter, s in zip(_letters(len(unstable)), unstable):  # one per unstable persona
        label = f"Mixed group {letter} (unstable)"
        agreement = (f" (when the segmentation is refitted on subsamples, this group is reproduced with an agreement "
                     f"of only {jaccard[s]:.2f} on a 0-1 scale; 0.75 or more counts as stable)") if pd.notna(jaccard[s]) else ""
        summary.loc[s, ["name", "name_basis"]] = [label, "unstable"]
        summary.at[s, "name_reason"] = "Not named: the segment is unstable" + agreement + "."
        summary.at[s, "narrative"] = (f"{label}: {summary.at[s, 'customers']:,} customers who do not form a reliable "
                                      f"group{agreement}. No persona is described for them; their numbers describe a mix.")
    small = summary["suppressed"]
    summary.loc[small, ["name", "narrative", "name_basis"]] = [f"(fewer than {min_group_size} customers)", "", "too small"]
    summary.loc[small, "name_reason"] = f"Not described: fewer than {min_group_size} customers."
    summary.loc[small | ~summary["stable"], "trait"] = np.nan
    if len(unstable):
        notes.append(f"{len(unstable)} of {len(summary)} groups are unstable and are shown as mixed groups, not personas.")

    front = ["name", "trait", "name_basis", "name_reason", "narrative", "customers", "customer_share", "revenue_share",
             "suppressed", "stable", "repeat_share", "active_share", "lapsing_share", "lapsed_share"]
    summary = summary[front + [c for c in summary.columns if c not in front]]
    pains = _pain_points(table, segment, summary, status, feedback, events, notes, min_group_size)
    visible = summary.index[~summary["suppressed"]]
    def shown(df: pd.DataFrame) -> pd.DataFrame:
        return df[df["segment"].isin(visible)].reset_index(drop=True)

    return Personas(summary=summary, traits=traits, highlight=highlight, categories=shown(cats), products=shown(prods),
                    demographics=shown(demo), pain_points=pains, notes=notes, min_group_size=min_group_size)


def _pain_points(table, segment, summary, status, feedback, events, notes, min_group_size) -> pd.DataFrame:
    """Returns, lapsed customers, low satisfaction and support contacts, each against the population."""
    rows = []
    shown = summary[~summary["suppressed"]]
    pop_ret = table["return_rate"].mean()
    for s, r in shown.iterrows():  # one row per persona
        if r["return_rate"] > 1.3 * pop_ret and r["return_rate"] > 0.02:
            rows.append((s, "returns", f"They return {r['return_rate']:.0%} of what they buy, against {pop_ret:.0%} "
                                       "for all customers."))
    pop_lapsed = float((status == "lapsed").mean())
    for s, r in shown.iterrows():
        if r["lapsed_share"] >= 0.5 and r["lapsed_share"] >= 1.2 * pop_lapsed:
            rows.append((s, "lapsed", f"{share_phrase(r['lapsed_share'], capital=True)} are lapsed (no order for much "
                                      f"longer than their usual gap between orders), against {pop_lapsed:.0%} of all customers."))
    if feedback is not None and "nps" in feedback and feedback["nps"].notna().any():
        fb = feedback.dropna(subset=["nps"])
        fb = fb.assign(segment=fb["customer_id"].astype(str).map(segment)).dropna(subset=["segment"])
        detractor = fb["nps"] <= 6
        detr = detractor.groupby(fb["segment"]).agg(["mean", "size"])
        pop_detr = float(detractor.mean()) if len(fb) else np.nan
        for s, r in detr.iterrows():
            s = int(s)
            if r["size"] >= min_group_size and r["mean"] > 1.3 * pop_detr and s in shown.index:
                rows.append((s, "low satisfaction", f"{r['mean']:.0%} of their survey answers are detractors (0-6 on the "
                                                    f"0-10 scale), against {pop_detr:.0%} overall ({int(r['size'])} answers)."))
    else:
        notes.append("Satisfaction pain points are not shown: there are no survey scores (0-10) in this data.")
    if events is not None and "event" in events:
        ev = events[events["event"] == "support_contact"]
        contacts = ev["customer_id"].astype("string").map(segment).value_counts()
        per_order = contacts / table.groupby(segment)["frequency"].sum()
        overall = len(ev) / table["frequency"].sum()
        for s, v in per_order.dropna().items():
            if v > 1.5 * overall and int(s) in shown.index:
                rows.append((int(s), "support contacts", f"{v:.2f} support contacts per order, against {overall:.2f} "
                                                         "for all customers."))
    else:
        notes.append("Support pain points are not shown: there are no journey events in this data.")
    out = pd.DataFrame(rows, columns=["segment", "pain_point", "evidence"])
    return out.sort_values("segment", kind="stable").reset_index(drop=True)


# ------------------------------------------------------------------------------------ figures
def plot_persona_card(personas: Personas, segment: int) -> plt.Figure:
    """One persona on one card: key numbers, trait profile (only material differences in colour),
    top categories."""
    from segmentation.report import money

    s = personas.summary.loc[segment]
    if s["suppressed"]:
        raise ValueError(f"segment {segment} has fewer than {personas.min_group_size} customers and is not described")
    fig = plt.figure(figsize=(13, 4.6))
    gs = fig.add_gridspec(1, 3, width_ratios=[1.1, 1.4, 1.2])
    ax0 = fig.add_subplot(gs[0])
    ax0.axis("off")
    lines = [
        f"{s['customers']:,} customers ({s['customer_share']:.0%})",
        f"{s['revenue_share']:.0%} of revenue",
        f"{s['repeat_share']:.0%} ordered more than once",
        f"{s['frequency']:.1f} orders per customer",
        f"{money(s['avg_order_value'])} per order",
        f"{s['active_share']:.0%} active, {s['lapsed_share']:.0%} lapsed",
        f"{s['discount_share']:.0%} of spend on discount",
        f"{s['return_rate']:.0%} returned",
    ]
    if pd.notna(s.get("p_alive")):
        lines.append(f"{s['p_alive']:.0%} chance of buying again (mean)")
    ax0.text(0, 1, s["name"], fontsize=13, weight="bold", va="top", wrap=True)
    ax0.text(0, 0.84, "\n".join(lines), fontsize=11, va="top", linespacing=1.6)
    ax1 = fig.add_subplot(gs[1])
    tr = personas.traits.loc[segment].dropna().clip(upper=400)
    hi = personas.highlight.loc[segment].reindex(tr.index).fillna(False).to_numpy(dtype=bool)
    colours = np.where(hi & (tr.to_numpy() >= 100), "tab:green", np.where(hi, "tab:orange", "lightgrey"))
    ax1.barh([_short_trait(t) for t in tr.index], tr.to_numpy(), color=colours)
    ax1.axvline(100, color="black", lw=1)
    ax1.axvspan(HIGHLIGHT_LOW, HIGHLIGHT_HIGH, color="grey", alpha=0.1, lw=0)
    ax1.set_xlabel("index (100 = average customer; grey band = no material difference)")
    ax1.set_title("Where they differ (coloured: material difference)")
    ax2 = fig.add_subplot(gs[2])
    cats = personas.categories[personas.categories["segment"] == segment]
    ax2.barh(cats["category"].str.replace("_", " ")[::-1], cats["lift"][::-1], color="tab:blue")
    ax2.axvline(1, color="black", lw=1)
    ax2.set_xlabel("lift (x the average customer's share of spend)")
    ax2.set_title("Most typical categories")
    fig.tight_layout()
    return fig


def plot_persona_overview(personas: Personas) -> plt.Figure:
    """All personas side by side: customer and revenue share, and the trait heatmap (cells
    without a material difference are drawn as neutral)."""
    vis = personas.summary[~personas.summary["suppressed"]]
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.6 * len(vis) + 2.5), gridspec_kw={"width_ratios": [1, 1.6]})
    shares = vis[["customer_share", "revenue_share"]].mul(100).set_axis(vis["name"]).rename(
        columns={"customer_share": "share of customers", "revenue_share": "share of revenue"})
    shares.plot.barh(ax=axes[0], color=["tab:grey", "tab:blue"])
    axes[0].invert_yaxis()
    axes[0].set_xlabel("% of all customers / of revenue")
    axes[0].set_ylabel("")
    axes[0].legend(loc="lower right", fontsize=9)
    axes[0].set_title("Size and revenue")
    traits = personas.traits.loc[vis.index]
    traits = traits.loc[:, traits.notna().any()]  # a trait the data cannot measure for anyone is left out
    colour = traits.where(personas.highlight.loc[vis.index, traits.columns], 100.0).set_axis(vis["name"]).clip(upper=300)
    colour.columns = [_short_trait(c) for c in colour.columns]
    annot = np.where(np.isnan(traits.to_numpy(dtype="float64")), "", np.char.mod("%.0f", np.nan_to_num(traits.to_numpy(dtype="float64"))))
    colour = colour.astype("float64").fillna(100.0)  # unavailable traits drawn as neutral, without a number
    sns.heatmap(colour, cmap="RdBu_r", center=100, vmin=0, vmax=300, annot=annot, fmt="", ax=axes[1],
                cbar_kws={"label": "index (100 = average customer)"})
    axes[1].set_ylabel("")
    axes[1].set_title("Trait indices (coloured only where they differ materially)")
    fig.tight_layout()
    return fig
