"""Personas from segments: who they are, what they buy, how they behave, what to offer them.

A persona is built from data only -- never from a hard-coded segment-number-to-name map:

* **traits** -- per segment, indices against the population (100 = average customer): the
  behavioural indices defined in ``rules/persona_indices.csv`` (health, indulgence, family,
  convenience, novelty, routine, price sensitivity; an index whose features are absent from the
  data is reported as unavailable), plus value, lapsing and returns;
* **what they buy** -- categories and products by lift (segment share / population share), with
  a minimum support so that rare items do not dominate;
* **who they are** -- size, share of customers and revenue, demographics against the population;
* **name, narrative and actions** -- the most distinctive trait picks a name from
  ``rules/persona_names.csv`` (each name used once, assigned greedily by trait strength times
  the rule's ``weight``, so that identity traits outrank side traits such as returns); the
  narrative is a template filled with the strongest traits; actions come from
  ``rules/persona_actions.csv``. All three tables are editable.

The indices are behavioural indicators computed from purchases, not measured personality
(:data:`segmentation.report.INDICATOR_NOTE`).

Cost: O(customers x features) in pandas plus one engine group-by over the lines for the
product lifts (O(lines)).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import ibis
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from segmentation.data import to_pandas
from segmentation.schema import rules_table

__all__ = [
    "INDEX_RULES",
    "NAME_RULES",
    "ACTION_RULES",
    "Personas",
    "behaviour_indices",
    "category_lift",
    "product_lift",
    "build_personas",
    "plot_persona_card",
    "plot_persona_overview",
]


INDEX_RULES: pd.DataFrame = rules_table("persona_indices")
NAME_RULES: pd.DataFrame = rules_table("persona_names")
ACTION_RULES: pd.DataFrame = rules_table("persona_actions")
_SLOTS = {"tod_morning": "morning", "tod_afternoon": "afternoon", "tod_evening": "evening", "tod_night": "late-night"}


@dataclass
class Personas:
    """The personas of a segmentation (one row per segment in each table).

    Attributes
    ----------
    summary : DataFrame
        ``name, customers, customer_share, revenue_share, suppressed, narrative`` and the key
        numbers (``avg_order_value, frequency, recency_days, tenure_days, return_rate,
        discount_share``; ``p_alive, clv`` when values were given).
    traits : DataFrame
        Indices vs population (100 = average) per trait; NaN = unavailable for this data.
    categories : DataFrame
        ``segment, category, share, population_share, lift`` (top categories per segment).
    products : DataFrame
        ``segment, product_id, name, customers, lift`` (top products by lift).
    demographics : DataFrame
        ``segment, attribute, value, share, population_share, lift``.
    actions : DataFrame
        ``segment, trait, promotion, loyalty_benefit, message``.
    pain_points : DataFrame
        ``segment, pain_point, evidence``.
    notes : list of str
        What could not be computed and why.
    """

    summary: pd.DataFrame
    traits: pd.DataFrame
    categories: pd.DataFrame
    products: pd.DataFrame
    demographics: pd.DataFrame
    actions: pd.DataFrame
    pain_points: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    min_group_size: int = 10

    def visible(self) -> list[int]:
        """Segments large enough to be described in stakeholder reports."""
        return self.summary.index[~self.summary["suppressed"]].tolist()


def behaviour_indices(table: pd.DataFrame, rules: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per customer, each behavioural index as the weighted sum of its features.

    ``regularity = 1 / (1 + ipi_cv)`` is derived first (NaN for customers with < 3 orders).
    An index none of whose features exist in ``table`` is left out (unavailable).
    """
    rules = INDEX_RULES if rules is None else rules
    data = table.assign(regularity=1.0 / (1.0 + table["ipi_cv"])) if "ipi_cv" in table else table
    out = {}
    for index, r in rules.groupby("index", sort=False):
        present = r[r["feature"].isin(data.columns)]
        if present.empty:
            continue
        values = data[present["feature"]].to_numpy(dtype="float64")
        weights = present["weight"].to_numpy(dtype="float64")
        all_nan = np.isnan(values).all(axis=1)
        out[index] = np.where(all_nan, np.nan, np.nansum(values * weights, axis=1))
    return pd.DataFrame(out, index=table.index)


def _index_vs_population(values: pd.DataFrame, segment: pd.Series) -> pd.DataFrame:
    """Segment mean / population mean x 100."""
    pop = values.mean()
    return values.groupby(segment).mean().div(pop.where(pop != 0)).mul(100)


def category_lift(table: pd.DataFrame, segment: pd.Series, *, min_share: float = 0.02, top: int | None = 5) -> pd.DataFrame:
    """Categories typical of each segment: spend share in the segment / in the population.

    Spend per category is ``cat_<x> share x gross spend`` per customer (gross spend =
    ``avg_order_value x frequency``), so big spenders weigh by what they spend. Only categories
    with at least ``min_share`` of the segment's spend are ranked (support floor). This is the
    one definition of category lift in the project (:func:`segmentation.offers.category_lift`
    is its wide form).

    Returns ``segment, category, share, population_share, lift`` (``top`` rows per segment, or
    every row when ``top`` is None).
    """
    cats = [c for c in table.columns if c.startswith("cat_")]
    if not cats:
        return pd.DataFrame(columns=["segment", "category", "share", "population_share", "lift"])
    gross = table["avg_order_value"] * table["frequency"]
    spend = table[cats].mul(gross, axis=0)
    seg_share = spend.groupby(segment).sum()
    seg_share = seg_share.div(seg_share.sum(axis=1), axis=0)
    pop_share = spend.sum() / spend.sum().sum()
    long = seg_share.stack().rename("share").reset_index()
    long.columns = ["segment", "category", "share"]
    long["population_share"] = pop_share.reindex(long["category"]).to_numpy()
    long["lift"] = long["share"] / long["population_share"].where(long["population_share"] > 0)
    long["category"] = long["category"].str.removeprefix("cat_")
    long = long[long["share"] >= min_share].sort_values(["segment", "lift"], ascending=[True, False])
    return (long if top is None else long.groupby("segment").head(top)).reset_index(drop=True)


def product_lift(transactions, segment: pd.Series, *, products: pd.DataFrame | None = None,
                 min_customers: int = 5, top: int = 5) -> pd.DataFrame:
    """Products typical of each segment: share of the segment's customers buying it / share of
    all customers buying it. Computed in the engine (one join and group-by over the lines).

    Only products bought by at least ``min_customers`` customers of the segment are ranked.
    Returns ``segment, product_id, name, customers, lift``.
    """
    seg = ibis.memtable(pd.DataFrame({"customer_id": segment.index.astype(str), "segment": segment.to_numpy()}))
    t = transactions.filter(~transactions.is_return)
    j = t.join(seg, "customer_id")
    per = to_pandas(j.group_by(["segment", "product_id"]).aggregate(customers=j.customer_id.nunique()))
    sizes = segment.value_counts()
    overall = per.groupby("product_id")["customers"].sum() / sizes.sum()
    per["share"] = per["customers"] / sizes.reindex(per["segment"]).to_numpy()
    per["lift"] = per["share"] / overall.reindex(per["product_id"]).to_numpy()
    per = per[per["customers"] >= min_customers].sort_values(["segment", "lift", "customers"], ascending=[True, False, False])
    per = per.groupby("segment").head(top).reset_index(drop=True)
    names = products.drop_duplicates("product_id").set_index("product_id")["name"] if products is not None and "name" in products else None
    per["name"] = names.reindex(per["product_id"]).to_numpy() if names is not None else per["product_id"]
    return per[["segment", "product_id", "name", "customers", "lift"]]


def _demographics_mix(table: pd.DataFrame, segment: pd.Series) -> pd.DataFrame:
    rows = []
    for attr in ("age_band", "region", "household"):
        if attr not in table or table[attr].isna().all():
            continue
        seg_mix = pd.crosstab(segment, table[attr], normalize="index")
        pop = table[attr].value_counts(normalize=True)
        long = seg_mix.stack().rename("share").reset_index()
        long.columns = ["segment", "value", "share"]
        long["attribute"] = attr
        long["population_share"] = pop.reindex(long["value"]).to_numpy()
        long["lift"] = long["share"] / long["population_share"]
        rows.append(long)
    if not rows:
        return pd.DataFrame(columns=["segment", "attribute", "value", "share", "population_share", "lift"])
    return pd.concat(rows, ignore_index=True)[["segment", "attribute", "value", "share", "population_share", "lift"]]


def _trait_scores(traits: pd.DataFrame) -> pd.DataFrame:
    """Distinctiveness of each trait per segment: (index - 100) / 100 (0 = average)."""
    return (traits - 100.0) / 100.0


def _assign_names(scores: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Greedy unique assignment: strongest (segment, trait) pair first, each trait once."""
    long = scores.stack().rename("score").reset_index()
    long.columns = ["segment", "trait", "score"]
    long = long.merge(rules, on="trait")
    long["score"] = long["score"] * long["weight"]  # identity traits outrank side traits (e.g. returns)
    long = long.query("score >= min_score").sort_values("score", ascending=False)
    taken_seg, taken_trait, rows = set(), set(), []
    for r in long.itertuples():  # at most segments x traits rows (a few dozen)
        if r.segment in taken_seg or r.trait in taken_trait:
            continue
        taken_seg.add(r.segment)
        taken_trait.add(r.trait)
        rows.append((r.segment, r.trait, r.name, r.phrase, r.score))
    return pd.DataFrame(rows, columns=["segment", "trait", "name", "phrase", "score"]).set_index("segment")


def _rfm_name(means: pd.DataFrame, table: pd.DataFrame) -> pd.Series:
    """Plain RFM description for personas no trait rule names: recent/dormant, frequent/
    occasional, big-/low-spending (each when at least 30% away from the average customer)."""
    ratio = means / table[means.columns].mean()
    def word(col, high, low):
        return np.where(ratio[col] >= 1.3, high, np.where(ratio[col] <= 0.7, low, ""))
    parts = pd.DataFrame({"r": word("recency_days", "dormant", "recent"), "f": word("frequency", "frequent", "occasional"),
                          "m": word("avg_order_value", "big-spending", "low-spending")}, index=means.index)
    text = (parts["r"] + " " + parts["f"] + " " + parts["m"]).str.split().str.join(" ")
    return (text.where(text != "", "everyday") + " buyers").str.capitalize()


def _narrative(name: str, phrase: str | None, seg: int, table: pd.DataFrame, segment: pd.Series,
               cats: pd.DataFrame, demo: pd.DataFrame, traits: pd.Series) -> str:
    members = table[segment == seg]
    words = []
    if not demo.empty:
        age = demo[(demo["segment"] == seg) & (demo["attribute"] == "age_band")].sort_values("lift", ascending=False)
        if len(age) and age["lift"].iloc[0] >= 1.3:
            band = str(age["value"].iloc[0])
            words.append("older" if band in ("55-64", "65+") else "younger" if band in ("18-24", "25-34") else f"{band}-year-old")
    slots = members[[c for c in _SLOTS if c in members]].mean() / table[[c for c in _SLOTS if c in table]].mean()
    when = []
    if "weekend_share" in members:
        wk = members["weekend_share"].mean() / max(table["weekend_share"].mean(), 1e-9)
        when.append("weekend" if wk >= 1.3 else "weekday" if wk <= 0.7 else "")
    if len(slots) and slots.max() >= 1.3:
        when.append(_SLOTS[slots.idxmax()])
    when = " ".join(w for w in when if w)
    who = ", ".join([*words, f"{when} shoppers"]) if when else " ".join([*words, "shoppers"])
    mine = cats[(cats["segment"] == seg) & (cats["lift"] >= 1.1)]
    top = mine["category"].head(2).str.replace("_", " ").tolist()
    what = phrase or (f"favour {' and '.join(top)}" if top else "buy across the range")
    extra = []
    if traits.get("indulgence", 100) >= 115 and "indulg" not in name.lower():
        extra.append("treat themselves now and then")
    if traits.get("price_sensitivity", 100) >= 150 and "bargain" not in name.lower():
        extra.append("watch for discounts")
    if traits.get("value", 100) >= 200 and "vip" not in name.lower():
        extra.append("are among the best customers")
    tail = f", and {' and '.join(extra)}" if extra else ""
    lead = f"who {what}" + (f" (above all {' and '.join(top)})" if phrase and top else "")
    return f"{name}: {who} {lead}{tail}."


def build_personas(
    table: pd.DataFrame,
    transactions=None,
    *,
    products: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    values: pd.DataFrame | None = None,
    min_group_size: int = 10,
) -> Personas:
    """Build one persona per segment.

    Parameters
    ----------
    table : DataFrame
        ``pipeline.segment_customers(...).table``: features, demographics, ``segment``.
    transactions : ibis.Table, optional
        For the product lifts.
    products, feedback, events : DataFrame, optional
        Product names; satisfaction and support contacts for the pain points.
    values : DataFrame, optional
        ``segmentation.value.customer_value`` output (``p_alive``, ``clv``, ``churn_risk``):
        adds churn risk and expected value. Without it these are absent (and said so).
    min_group_size : int
        Personas with fewer customers are not described (``suppressed``).
    """
    segment = table["segment"]
    notes: list[str] = []
    idx = behaviour_indices(table)
    traits = _index_vs_population(idx, segment)
    missing = sorted(set(INDEX_RULES["index"]) - set(traits.columns))
    if missing:
        notes.append(f"Indices unavailable for this data (no matching categories or columns): {', '.join(missing)}.")
    pop = table[["monetary", "frequency", "recency_days", "return_rate"]].mean()
    g = table.groupby(segment)
    traits["value"] = g["monetary"].mean() / pop["monetary"] * 100
    lapsing = (table["frequency"] <= 2) & (table["recency_days"] > table["recency_days"].median())
    traits["lapsing"] = lapsing.groupby(segment).mean() / max(lapsing.mean(), 1e-9) * 100
    traits["returns"] = g["return_rate"].mean() / max(pop["return_rate"], 1e-9) * 100
    traits["big_baskets"] = g["avg_order_value"].mean() / table["avg_order_value"].mean() * 100
    traits["newcomers"] = table["tenure_days"].mean() / g["tenure_days"].mean() * 100

    cats = category_lift(table, segment)
    demo = _demographics_mix(table, segment)
    prods = product_lift(transactions, segment, products=products) if transactions is not None else pd.DataFrame(
        columns=["segment", "product_id", "name", "customers", "lift"])

    summary = pd.DataFrame({
        "customers": g.size(),
        "customer_share": g.size() / len(table),
        "revenue_share": g["monetary"].sum() / table["monetary"].sum(),
        "avg_order_value": g["avg_order_value"].mean(),
        "frequency": g["frequency"].mean(),
        "recency_days": g["recency_days"].mean(),
        "tenure_days": g["tenure_days"].mean(),
        "return_rate": g["return_rate"].mean(),
        "discount_share": g["discount_share"].mean(),
    })
    if values is not None:
        v = values.reindex(table.index)
        summary["p_alive"] = v["p_alive"].groupby(segment).mean()
        summary["expected_clv"] = v["clv"].groupby(segment).mean()
    else:
        notes.append("Churn risk and expected value: not computed here (pass values= from segmentation.value).")
    summary["suppressed"] = summary["customers"] < min_group_size

    shown = summary.index[~summary["suppressed"]]  # suppressed personas take no name from the others
    names = _assign_names(_trait_scores(traits).loc[shown], NAME_RULES)
    unnamed = shown.difference(names.index)
    if len(unnamed):  # weaker traits still name the rest (each name once), before the plain RFM description
        left = _trait_scores(traits).loc[unnamed, [c for c in traits.columns if c not in set(names["trait"])]]
        names = pd.concat([names, _assign_names(left, NAME_RULES.assign(min_score=0.05))])
    fallback = _rfm_name(g[["recency_days", "frequency", "avg_order_value"]].mean(), table)
    summary["trait"] = names["trait"]
    summary["name"] = names["name"]
    no_name = summary["name"].isna()
    summary.loc[no_name, "name"] = fallback.reindex(summary.index[no_name])
    dup = summary["name"].duplicated(keep=False)
    summary.loc[dup, "name"] = summary.loc[dup, "name"] + " (segment " + summary.index[dup].astype(str) + ")"
    summary["narrative"] = [
        _narrative(summary.at[s, "name"], names["phrase"].get(s), s, table, segment, cats, demo, traits.loc[s])
        for s in summary.index  # one per persona (k of them)
    ]
    summary.loc[summary["suppressed"], ["name", "narrative"]] = [f"(fewer than {min_group_size} customers)", ""]

    scores = _trait_scores(traits)
    acts = []
    for s in summary.index[~summary["suppressed"]]:
        strong = scores.loc[s][scores.loc[s] >= 0.3].sort_values(ascending=False).index[:2]
        for trait in strong:
            rule = ACTION_RULES[ACTION_RULES["trait"] == trait]
            if len(rule):
                acts.append({"segment": s, "trait": trait, **rule.iloc[0].drop("trait").to_dict()})
    actions = pd.DataFrame(acts, columns=["segment", "trait", "promotion", "loyalty_benefit", "message"])
    pains = _pain_points(table, segment, summary, feedback, events, notes)
    return Personas(summary=summary, traits=traits, categories=cats, products=prods, demographics=demo,
                    actions=actions, pain_points=pains, notes=notes, min_group_size=min_group_size)


def _pain_points(table, segment, summary, feedback, events, notes) -> pd.DataFrame:
    rows = []
    pop_ret = table["return_rate"].mean()
    for s, r in summary[~summary["suppressed"]].iterrows():  # one row per persona
        if r["return_rate"] > 1.3 * pop_ret and r["return_rate"] > 0.02:
            rows.append((s, "returns", f"return {r['return_rate']:.0%} of what they buy (average {pop_ret:.0%})"))
    lapsed = (table["recency_days"] > 3 * table["ipi_mean_days"].fillna(table["recency_days"].median())).groupby(segment).mean()
    for s in summary.index[~summary["suppressed"]]:
        if lapsed.get(s, 0) > 0.5:
            rows.append((s, "lapsing", f"{lapsed[s]:.0%} have not bought for more than three of their usual intervals"))
    if feedback is not None and "nps" in feedback:
        fb = feedback.assign(segment=feedback["customer_id"].map(segment)).dropna(subset=["segment"])
        detr = (fb["nps"] <= 6).groupby(fb["segment"]).mean()
        pop_detr = (fb["nps"] <= 6).mean()
        for s, share in detr.items():
            if share > 1.3 * pop_detr and not summary.at[int(s), "suppressed"]:
                rows.append((int(s), "low satisfaction", f"{share:.0%} detractors (NPS 0-6) against {pop_detr:.0%} overall"))
    else:
        notes.append("Satisfaction: no feedback table, so no satisfaction pain points.")
    if events is not None and "event" in events:
        ev = events[events["event"] == "support_contact"]
        contacts = ev["customer_id"].map(segment).value_counts()
        per_order = contacts / (table.groupby(segment)["frequency"].sum())
        overall = len(ev) / table["frequency"].sum()
        for s, v in per_order.dropna().items():
            if v > 1.5 * overall and not summary.at[int(s), "suppressed"]:
                rows.append((int(s), "support contacts", f"{v:.2f} support contacts per order against {overall:.2f} overall"))
    else:
        notes.append("Support contacts: no events table, so no support pain points.")
    return pd.DataFrame(rows, columns=["segment", "pain_point", "evidence"]).sort_values("segment").reset_index(drop=True)


# ------------------------------------------------------------------------------------ figures
def plot_persona_card(personas: Personas, segment: int) -> plt.Figure:
    """One persona on one card: key numbers, trait profile (index vs 100), top categories."""
    s = personas.summary.loc[segment]
    if s["suppressed"]:
        raise ValueError(f"segment {segment} has fewer than {personas.min_group_size} customers and is not described")
    fig = plt.figure(figsize=(12, 4.2))
    gs = fig.add_gridspec(1, 3, width_ratios=[1.1, 1.4, 1.2])
    ax0 = fig.add_subplot(gs[0])
    ax0.axis("off")
    lines = [
        f"{s['customers']:,} customers ({s['customer_share']:.0%})",
        f"{s['revenue_share']:.0%} of revenue",
        f"{s['frequency']:.1f} orders per customer",
        f"{s['avg_order_value']:,.0f} per order",
        f"last order {s['recency_days']:.0f} days ago (mean)",
        f"{s['discount_share']:.0%} of spend on discount",
        f"{s['return_rate']:.0%} returned",
    ]
    if "p_alive" in s and pd.notna(s.get("p_alive")):
        lines.append(f"P(still active) {s['p_alive']:.0%}")
    ax0.text(0, 1, s["name"], fontsize=13, weight="bold", va="top", wrap=True)
    ax0.text(0, 0.82, "\n".join(lines), fontsize=10, va="top", linespacing=1.6)
    ax1 = fig.add_subplot(gs[1])
    tr = personas.traits.loc[segment].dropna().clip(upper=400)
    colours = np.where(tr >= 100, "tab:green", "tab:grey")
    ax1.barh(tr.index.str.replace("_", " "), tr.to_numpy(), color=colours)
    ax1.axvline(100, color="black", lw=1)
    ax1.set_xlabel("index (100 = average customer)")
    ax1.set_title("Trait profile")
    ax2 = fig.add_subplot(gs[2])
    cats = personas.categories[personas.categories["segment"] == segment]
    ax2.barh(cats["category"].str.replace("_", " ")[::-1], cats["lift"][::-1], color="tab:blue")
    ax2.axvline(1, color="black", lw=1)
    ax2.set_xlabel("lift (x as likely as the average customer)")
    ax2.set_title("Most typical categories")
    fig.tight_layout()
    return fig


def plot_persona_overview(personas: Personas) -> plt.Figure:
    """All personas side by side: customer and revenue share, and the trait heatmap."""
    vis = personas.summary[~personas.summary["suppressed"]]
    fig, axes = plt.subplots(1, 2, figsize=(13, 0.55 * len(vis) + 2), gridspec_kw={"width_ratios": [1, 1.6]})
    shares = vis[["customer_share", "revenue_share"]].set_axis(vis["name"])
    shares.plot.barh(ax=axes[0], color=["tab:grey", "tab:blue"])
    axes[0].invert_yaxis()
    axes[0].set_xlabel("share")
    axes[0].set_ylabel("")
    axes[0].set_title("Size and revenue")
    heat = personas.traits.loc[vis.index].set_axis(vis["name"]).clip(upper=300)
    sns.heatmap(heat, cmap="RdBu_r", center=100, vmin=0, vmax=300, annot=True, fmt=".0f", ax=axes[1],
                cbar_kws={"label": "index (100 = average)"})
    axes[1].set_ylabel("")
    axes[1].set_title("Trait indices")
    fig.tight_layout()
    return fig
