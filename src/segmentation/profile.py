"""The person behind the persona: representative customers, their stories, individual profiles.

* :func:`representative_customers` -- one real member per persona: the consenting member nearest
  to the persona's centre in the segmentation model's space (O(n d), no pairwise distances).
* :func:`customer_story` -- "what their year looked like", from the customer's own history: first
  order, rhythm, typical basket, favourite categories, last order and status, satisfaction,
  expected value and suggested next products (when given). Plain sentences plus the numbers
  used, so a report can check and format them.
* :func:`representative_stories` -- both for every persona card.
* :func:`customer_profile` -- everything about one customer against their persona: membership
  in words, the story, how they differ from their persona (human labels, units and "higher than
  N% of members"), timeline, favourite categories and products, key dates (only when known *and*
  consented to marketing), satisfaction, value and next products.

What is not available is said in plain sentences, never invented. No name, e-mail or phone
appears unless ``internal=True``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from segmentation import definitions, privacy
from segmentation.data import to_pandas
from segmentation.offers import upcoming_key_dates
from segmentation.personas import Personas
from segmentation.report import kind_of, money, share
from segmentation.report import label as report_label
from segmentation.segments import Segmenter

__all__ = [
    "CustomerProfile",
    "CustomerStory",
    "customer_profile",
    "customer_story",
    "representative_customers",
    "representative_stories",
    "example_customer",
    "membership_strength",
    "membership_words",
    "plot_customer_profile",
]

_STATUS_WORDS = {
    "active": "still active",
    "lapsing": "lapsing: longer than usual since their last order",
    "lapsed": "lapsed: far longer than usual since their last order",
}


@dataclass
class CustomerStory:
    """A customer's year in plain sentences, and the numbers they state.

    Attributes
    ----------
    sentences : list of str
    numbers : dict
        JSON-able values used by the sentences (``orders``, ``first_purchase`` as ISO date, ...).
    """

    sentences: list[str]
    numbers: dict[str, Any]

    def text(self) -> str:
        """The sentences as one paragraph."""
        return " ".join(self.sentences)


@dataclass
class CustomerProfile:
    """One customer's profile (see :func:`customer_profile`)."""

    customer_id: str
    persona: str
    segment: int
    strength: float
    membership: str
    story: CustomerStory
    facts: pd.DataFrame
    differences: pd.DataFrame
    timeline: pd.DataFrame
    categories: pd.DataFrame
    products: pd.DataFrame
    key_dates: pd.DataFrame
    feedback: pd.DataFrame | None
    value: pd.Series | None
    recommendations: pd.DataFrame | None
    identity: pd.Series | None = None
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------ membership
def _centre_distances(Z: np.ndarray, C: np.ndarray) -> np.ndarray:
    """Euclidean distances (n x k) of the rows of Z to the centres C, in O(n k) memory."""
    sq = (Z ** 2).sum(axis=1)[:, None] - 2.0 * Z @ C.T + (C ** 2).sum(axis=1)[None, :]
    return np.sqrt(np.clip(sq, 0.0, None))


def membership_strength(model: Segmenter, X: pd.DataFrame) -> pd.Series:
    """How clearly each customer belongs to their segment, from 0 (on the border with the next
    segment) to 1 (at the centre): ``1 - d_own / d_next`` with Euclidean distances to the
    centroids in the model's space. O(n k d) time, O(n k) memory."""
    d = _centre_distances(model.transform(X).to_numpy(), model.cluster_centers_.to_numpy())
    d.sort(axis=1)
    return pd.Series(1 - d[:, 0] / np.maximum(d[:, 1], 1e-12), index=X.index, name="strength")


def _positions(table: pd.DataFrame, model: Segmenter, features: list[str]) -> pd.DataFrame:
    """Per customer: distance to their own segment's centre, the nearest other segment, membership
    strength and ``closer_than`` (share of the segment's members farther from its centre).
    O(n k d)."""
    Z = model.transform(table[features]).to_numpy()
    centres = model.cluster_centers_
    seg = table["segment"].to_numpy()
    d = _centre_distances(Z, centres.to_numpy())  # n x k
    own_col = centres.index.get_indexer(seg)
    known = own_col >= 0
    own = np.where(known, d[np.arange(len(d)), np.clip(own_col, 0, None)], np.nan)
    other = d.copy()
    other[np.arange(len(d))[known], own_col[known]] = np.inf
    nxt = other.argmin(axis=1)
    d_next = other[np.arange(len(d)), nxt]
    out = pd.DataFrame({"segment": seg, "distance": own, "next_segment": centres.index.to_numpy()[nxt],
                        "strength": np.clip(1 - own / np.maximum(d_next, 1e-12), 0, 1)}, index=table.index)
    dist = out["distance"]
    rank = dist.groupby(out["segment"]).rank(method="min")  # 1 = nearest to the centre
    size = dist.groupby(out["segment"]).transform("count")
    out["closer_than"] = (size - rank) / size.where(size > 1)
    return out


def membership_words(strength: float, closer_than: float, persona: str, next_persona: str | None = None) -> str:
    """Membership strength in words.

    ``strength >= 0.5`` (at least twice as close to the persona's centre as to the next one):
    "clearly"; ``0.2 <= strength < 0.5``: "mostly"; below: "on the border between" the persona
    and the next one. ``closer_than`` (share of members farther from the centre) is given as
    "N in 10".

    Examples
    --------
    >>> membership_words(0.6, 0.8, "Bargain hunters")
    'clearly one of the "Bargain hunters" (closer to this persona\\'s centre than 8 in 10 of its members)'
    """
    if not np.isfinite(closer_than):
        where = ""
    else:
        tenths = int(round(closer_than * 10))
        where = (" (closer to this persona's centre than almost all its members)" if tenths >= 10 else
                 " (farther from this persona's centre than almost all its members)" if tenths <= 0 else
                 f" (closer to this persona's centre than {tenths} in 10 of its members)")
    if strength >= 0.5:
        return f'clearly one of the "{persona}"{where}'
    if strength >= 0.2:
        return f'mostly one of the "{persona}"{where}'
    nxt = f' and "{next_persona}"' if next_persona else " and another persona"
    return f'on the border between "{persona}"{nxt}{where}'


def representative_customers(
    table: pd.DataFrame,
    model: Segmenter,
    features: list[str],
    *,
    customers: pd.DataFrame | None = None,
    min_group_size: int = 1,
) -> pd.DataFrame:
    """The most typical member of each persona: the consenting member nearest to the centre of
    its segment in the model's (standardized) space.

    Nearest-to-centre rather than a full medoid keeps the cost at O(n k d) on any segment size;
    in the standardized space the two agree closely for the compact segments k-means finds.

    Parameters
    ----------
    table : DataFrame
        Index ``customer_id``; the model's ``features`` and ``segment``.
    model : Segmenter
        The fitted segmentation model.
    features : list of str
        The columns the model was fitted on.
    customers : DataFrame, optional
        The customers table: only members who consented to profiling are chosen
        (:func:`segmentation.privacy.consented`).
    min_group_size : int
        Segments with fewer members get no representative.

    Returns
    -------
    DataFrame
        Index ``segment``; ``customer_id, members, distance, strength, closer_than,
        next_segment``. Segments without a consenting member are left out.
    """
    if "segment" not in table:
        raise ValueError("table has no 'segment' column; pass pipeline.segment_customers(...).table")
    pos = _positions(table, model, features)
    members = pos["segment"].map(pos["segment"].value_counts())
    keep = (members >= min_group_size) & pos["distance"].notna()
    if customers is not None:
        allowed, _ = privacy.consented(table.index, customers, "profiling")
        keep &= pd.Index(pos.index, dtype=object).isin(pd.Index(allowed, dtype=object))  # object: fast hash isin
    pool = pos[keep]
    pool = pool.rename_axis("customer_id").reset_index().sort_values(["segment", "distance", "customer_id"], kind="stable")
    best = pool.drop_duplicates("segment").set_index("segment")
    best["members"] = pos["segment"].value_counts().reindex(best.index).to_numpy()
    return best[["customer_id", "members", "distance", "strength", "closer_than", "next_segment"]].sort_index()


def representative_stories(
    table: pd.DataFrame,
    transactions,
    model: Segmenter,
    features: list[str],
    personas: Personas | pd.DataFrame,
    *,
    as_of: str | pd.Timestamp,
    customers: pd.DataFrame | None = None,
    values: pd.DataFrame | None = None,
    recommendations: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    currency: str | None = None,
) -> pd.DataFrame:
    """One person per persona card: the representative customer and their story.

    Only personas shown to stakeholders (not ``suppressed``) get one. Arguments as in
    :func:`representative_customers` and :func:`customer_story`.

    Returns
    -------
    DataFrame
        Index ``segment``; ``persona, customer_id, members, strength, closer_than, membership,
        story`` (the sentences as one paragraph).
    """
    summary = personas.summary if isinstance(personas, Personas) else personas
    visible = summary.index[~summary["suppressed"].astype(bool)] if "suppressed" in summary else summary.index
    reps = representative_customers(table, model, features, customers=customers)
    reps = reps[reps.index.isin(visible)].copy()
    names = summary["name"].astype(str)
    reps.insert(0, "persona", names.reindex(reps.index).to_numpy())
    reps["membership"] = [membership_words(r.strength, r.closer_than, r.persona, names.get(r.next_segment))
                          for r in reps.itertuples()]  # one per persona
    reps["story"] = [
        customer_story(r.customer_id, table, transactions, as_of=as_of, persona=r.persona, membership=r.membership,
                       values=values, recommendations=recommendations, products=products, feedback=feedback,
                       currency=currency).text()
        for r in reps.itertuples()  # one per persona (k of them)
    ]
    return reps.drop(columns=["distance", "next_segment"])


def example_customer(table: pd.DataFrame, model: Segmenter, features: list[str], *,
                     customers: pd.DataFrame | None = None) -> str:
    """A deterministic example: the representative customer of the largest segment."""
    reps = representative_customers(table, model, features, customers=customers)
    if reps.empty:
        raise ValueError("no customer can be shown: no segment has a member who consented to profiling")
    return str(reps.sort_values("members", ascending=False, kind="stable")["customer_id"].iloc[0])


# ------------------------------------------------------------------------------------ story
def _customer_lines(transactions, customer_id: str, as_of: pd.Timestamp) -> pd.DataFrame:
    """The customer's lines before ``as_of`` (Ibis table or pandas DataFrame)."""
    if isinstance(transactions, pd.DataFrame):
        t = transactions
        return t[(t["customer_id"].astype(str) == customer_id) & (t["order_date"] < as_of)].copy()
    t = transactions.filter((transactions.customer_id == customer_id) & (transactions.order_date < as_of.to_pydatetime()))
    return to_pandas(t)


def _product_names(products: pd.DataFrame | None) -> pd.Series | None:
    if products is None or "name" not in products:
        return None
    return products.dropna(subset=["name"]).drop_duplicates("product_id").set_index("product_id")["name"]


def _date(x: Any) -> str:
    return f"{pd.Timestamp(x).day} {pd.Timestamp(x):%B %Y}"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def customer_story(
    customer_id: str,
    table: pd.DataFrame,
    transactions,
    *,
    as_of: str | pd.Timestamp,
    persona: str | None = None,
    membership: str | None = None,
    status: pd.Series | None = None,
    values: pd.DataFrame | None = None,
    recommendations: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    currency: str | None = None,
    n_products: int = 3,
) -> CustomerStory:
    """What one customer's year looked like, from their own history.

    Parameters
    ----------
    customer_id : str
    table : DataFrame
        Customer features (index ``customer_id``): ``first_purchase, last_purchase, frequency,
        monetary, recency_days, ipi_mean_days``.
    transactions : ibis.Table or DataFrame
        The cleaned lines (``customer_id, order_id, order_date, product_id, category, quantity,
        amount, is_return``).
    as_of : str or Timestamp
    persona, membership : str, optional
        The persona's name and the membership in words (:func:`membership_words`).
    status : Series, optional
        :func:`segmentation.definitions.customer_status` (default: ``table["status"]`` or the
        default thresholds).
    values : DataFrame, optional
        ``p_alive, clv`` per customer (only when the lifetime model is usable).
    recommendations : DataFrame, optional
        ``customer_id, rank, product_id`` (:meth:`segmentation.recommend.Recommender.recommend`).
    products, feedback : DataFrame, optional
        Product names; survey answers (``customer_id, timestamp, nps`` and/or ``csat``).
    currency : str, optional
        For money (default: the presentation layer's currency, :func:`segmentation.report.money`).
    n_products : int
        Suggested products named.

    Returns
    -------
    CustomerStory
        Sentences and the numbers they use.

    Raises
    ------
    KeyError
        Unknown customer.
    """
    as_of = pd.Timestamp(as_of)
    customer_id = str(customer_id)
    if customer_id not in table.index:
        raise KeyError(f"customer {customer_id!r} is unknown or has no purchase before {as_of:%Y-%m-%d}")
    row = table.loc[customer_id]
    lines = _customer_lines(transactions, customer_id, as_of)
    buys = lines[~lines["is_return"].astype(bool)]
    sentences: list[str] = []
    numbers: dict[str, Any] = {"customer_id": customer_id}
    if persona is not None:
        numbers["persona"] = persona
        if membership:
            sentences.append(membership[0].upper() + membership[1:] + ".")

    first, last = pd.Timestamp(row["first_purchase"]), pd.Timestamp(row["last_purchase"])
    months = int((as_of - first).days // 30.44)
    ago = f", {months} month{'s' if months != 1 else ''} before the analysis date" if months >= 1 else ""
    sentences.append(f"First order on {_date(first)}{ago}.")
    orders = int(row["frequency"])
    year = buys[buys["order_date"] >= as_of - pd.DateOffset(years=1)]
    orders_12m = int(year["order_id"].nunique())
    numbers.update(first_purchase=first.date().isoformat(), orders=orders, orders_last_12_months=orders_12m)
    if orders <= 1:
        sentences.append("One order so far.")
    else:
        gap = float(row["ipi_mean_days"])
        numbers["usual_gap_days"] = round(gap, 1)
        recent = "all of them" if orders_12m == orders else "none of them" if orders_12m == 0 else f"{orders_12m} of them"
        sentences.append(f"{orders} orders in all, {recent} in the last 12 months; usually one every {gap:.0f} days.")

    per_order = buys.groupby("order_id").agg(value=("amount", "sum"), items=("quantity", "sum"))
    if len(per_order):
        med_value, med_items = float(per_order["value"].median()), float(per_order["items"].median())
        numbers.update(median_order_value=round(med_value, 2), median_items=round(med_items, 1),
                       net_spend=round(float(row["monetary"]), 2))
        typical = "A typical order" if len(per_order) > 1 else "Their order"
        sentences.append(f"{typical}: {med_items:.0f} item{'s' if round(med_items) != 1 else ''} for "
                         f"{money(med_value, currency)}; {money(float(row['monetary']), currency)} net spend in all.")
    spend = buys.groupby("category")["amount"].sum()
    spend = spend[spend > 0]
    if len(spend) and spend.sum() > 0:
        top = (spend / spend.sum()).sort_values(ascending=False, kind="stable").head(3)
        numbers["favourite_categories"] = {str(k): round(float(v), 3) for k, v in top.items()}
        parts = [f"{str(c).replace('_', ' ')} ({s:.0%}{' of their spend' if i == 0 else ''})"
                 for i, (c, s) in enumerate(top.items())]
        sentences.append(f"Favourite categor{'ies' if len(parts) > 1 else 'y'}: {_and(parts)}.")

    if status is None:
        status = table["status"] if "status" in table else definitions.customer_status(table)
    state = str(status.get(customer_id, "")) if status is not None else ""
    recency = int(row["recency_days"])
    numbers.update(last_purchase=last.date().isoformat(), recency_days=recency, status=state or None)
    sentences.append(f"Last order on {_date(last)}, {recency} days before the analysis date"
                     + (f"; {_STATUS_WORDS.get(state, state)}." if state else "."))

    if feedback is not None and "customer_id" in feedback:
        fb = feedback[(feedback["customer_id"].astype(str) == customer_id)]
        if "timestamp" in fb:
            fb = fb[fb["timestamp"] < as_of].sort_values("timestamp", kind="stable")
        scored = [(c, top_) for c, top_ in (("nps", 10), ("csat", 5)) if c in fb and fb[c].notna().any()]
        if scored:
            col, scale = scored[0]
            answered = fb.dropna(subset=[col])
            last_score = float(answered[col].iloc[-1])
            numbers.update(survey_answers=int(len(answered)), last_score=last_score, score_scale=scale)
            when = f" on {_date(answered['timestamp'].iloc[-1])}" if "timestamp" in answered else ""
            sentences.append(f"Satisfaction: last survey score {last_score:.0f} of {scale}{when} "
                             f"({len(answered)} answer{'s' if len(answered) != 1 else ''} in all).")
        else:
            sentences.append("They have not answered a survey.")

    if values is not None and customer_id in values.index and pd.notna(values.at[customer_id, "clv"]):
        clv, alive = float(values.at[customer_id, "clv"]), float(values.at[customer_id, "p_alive"])
        numbers.update(clv=round(clv, 2), p_alive=round(alive, 3))
        sentences.append(f"Expected value (lifetime value over the model's horizon): {money(clv, currency)}; "
                         f"chance they are still buying: {alive:.0%}.")
    if recommendations is not None and len(recommendations):
        recs = recommendations[recommendations["customer_id"].astype(str) == customer_id]
        recs = recs.sort_values("rank", kind="stable").head(n_products) if "rank" in recs else recs.head(n_products)
        if len(recs):
            names = _product_names(products)
            shown = [str(names.get(p, p)) if names is not None else str(p) for p in recs["product_id"]]
            numbers["suggested_products"] = shown
            sentences.append(f"Suggested next: {_and(shown)}.")
    return CustomerStory(sentences=sentences, numbers=numbers)


# ------------------------------------------------------------------------------------ profile
def _label(column: str, labels: Mapping[str, str] | None) -> str:
    if labels is not None and column in labels:
        return labels[column]
    return report_label(column)


def _fmt(x: float, column: str, currency: str | None) -> str:
    kind = kind_of(column)
    if pd.isna(x):
        return "—"
    if kind == "share":
        return "0%" if x == 0 else share(x)
    if kind == "money":
        return money(x, currency)
    if kind == "days" or column.endswith("_days"):
        return f"{x:,.0f} days"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:,.1f}" if abs(x) >= 10 else f"{x:,.2f}"


def _differences(customer_id: str, table: pd.DataFrame, members: pd.Index, columns: list[str],
                 labels: Mapping[str, str] | None, currency: str | None, persona: str, top: int = 6) -> pd.DataFrame:
    """Where the customer stands among the persona's members, per feature: share of members
    below and above them; the ``top`` features where they stand farthest from the middle."""
    data = table.loc[members, columns].astype("float64")
    me = table.loc[customer_id, columns].astype("float64")
    valid = data.notna().sum()
    below = data.lt(me, axis=1).sum() / valid.where(valid > 0)
    above = data.gt(me, axis=1).sum() / valid.where(valid > 0)
    position = below + (1 - below - above) / 2  # mid-rank: 0.5 = like the typical member
    sd = data.std(ddof=0).replace(0, np.nan)
    z = (me - data.mean()) / sd
    keep = me.notna() & position.notna() & sd.notna()
    atypical = keep & ((position - 0.5).abs() >= 0.25)  # outside the middle half of the members
    ranked = z[atypical].abs().sort_values(ascending=False, kind="stable").index.tolist()
    ranked += z[keep & ~atypical].abs().sort_values(ascending=False, kind="stable").index.tolist()
    chosen = ranked[:top]
    median = data.median()
    rows = []
    for c in chosen:  # at most `top` rows
        higher = bool(position[c] > 0.5)
        part = below[c] if higher else above[c]
        word = "higher" if higher else "lower"
        lab = _label(c, labels)
        rows.append({
            "feature": c, "label": lab, "customer": me[c], "persona_median": median[c],
            "position": position[c], "direction": word,
            "text": (f"{lab[0].upper() + lab[1:]}: {_fmt(me[c], c, currency)} against {_fmt(median[c], c, currency)} "
                     f"for the typical member; {word} than {part:.0%} of the \"{persona}\"."),
        })
    return pd.DataFrame(rows, columns=["feature", "label", "customer", "persona_median", "position", "direction", "text"])


def customer_profile(
    customer_id: str,
    table: pd.DataFrame,
    transactions,
    personas: Personas | pd.DataFrame,
    model: Segmenter,
    features: list[str],
    *,
    as_of: str | pd.Timestamp,
    customers: pd.DataFrame | None = None,
    pii: pd.DataFrame | None = None,
    feedback: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
    values: pd.DataFrame | None = None,
    recommendations: pd.DataFrame | None = None,
    products: pd.DataFrame | None = None,
    status: pd.Series | None = None,
    labels: Mapping[str, str] | None = None,
    currency: str | None = None,
    key_date_days: int = 30,
    internal: bool = False,
) -> CustomerProfile:
    """Everything about one customer, against their persona.

    Parameters
    ----------
    customer_id : str
        Pseudonymous id.
    table : DataFrame
        The per-customer table (features, ``segment``; ``status`` when present).
    transactions : ibis.Table or DataFrame
        The cleaned lines.
    personas : Personas or DataFrame
        The personas, or their ``summary`` (index ``segment``, column ``name``).
    model, features
        The segmentation model and its feature columns (membership strength).
    as_of : str or Timestamp
    customers, pii, feedback, events, products : DataFrame, optional
        Consent and key dates; identity (only with ``internal``); survey answers; support
        contacts; product names.
    values : DataFrame, optional
        ``p_alive, clv`` (and ``churn_band``, ``expected_purchases`` when present) per customer:
        shown when the lifetime model is usable; None otherwise (a note says why).
    recommendations : DataFrame, optional
        ``customer_id, rank, product_id, reason`` for the suggested next products.
    status : Series, optional
        :func:`segmentation.definitions.customer_status` (default: ``table["status"]`` or the
        default thresholds).
    labels : mapping, optional
        Human labels of feature columns for the differences (default: the presentation layer's
        labels, else underscores as spaces).
    currency : str, optional
        For money (default: the presentation layer's currency).
    key_date_days : int
        Birthdays and anniversaries this many days ahead are listed (with marketing consent).
    internal : bool
        Show the customer's identity (name, e-mail, ...) from ``pii``: for internal use only.

    Returns
    -------
    CustomerProfile
        ``membership`` (words), ``story`` (:class:`CustomerStory`), ``facts`` (index: what,
        column ``value``, text), ``differences`` (``feature, label, customer, persona_median,
        position, direction, text``), ``timeline`` (spend per month), ``categories``, ``products``,
        ``key_dates``, ``feedback``, ``value``, ``recommendations``, ``notes``.

    Raises
    ------
    ValueError
        The customer did not consent to profiling.
    KeyError
        Unknown customer (or no purchase before ``as_of``).
    """
    as_of = pd.Timestamp(as_of)
    customer_id = str(customer_id)
    if customers is not None:
        allowed, _ = privacy.consented(pd.Index([customer_id]), customers, "profiling")
        if len(allowed) == 0:
            raise ValueError(f"customer {customer_id} has not consented to profiling: no individual profile can be made")
    if customer_id not in table.index:
        raise KeyError(f"customer {customer_id!r} is unknown or has no purchase before {as_of:%Y-%m-%d}")
    summary = personas.summary if isinstance(personas, Personas) else personas
    seg = int(table.at[customer_id, "segment"])
    persona = str(summary.at[seg, "name"])
    notes: list[str] = []
    same = table.index[table["segment"] == seg]
    pos = _positions(table.loc[same], model, features)
    everyone = _positions(table.loc[[customer_id]], model, features)  # the next persona, from all centres
    strength = float(everyone.at[customer_id, "strength"])
    closer = float(pos.at[customer_id, "closer_than"]) if len(same) > 1 else np.nan
    nxt = everyone.at[customer_id, "next_segment"]
    next_name = str(summary.at[nxt, "name"]) if nxt in summary.index else None
    membership = membership_words(strength, closer, persona, next_name)

    if status is None:
        status = table["status"] if "status" in table else definitions.customer_status(table)
    if values is not None and "clv" not in values:
        raise ValueError(f"values has no 'clv' column (found {list(values.columns)}); pass segmentation.value.customer_value output")
    story = customer_story(customer_id, table, transactions, as_of=as_of, persona=persona, membership=membership,
                           status=status, values=values, recommendations=recommendations, products=products,
                           feedback=feedback, currency=currency)

    cols = [c for c in features if c in table and pd.api.types.is_numeric_dtype(table[c])]
    diff = _differences(customer_id, table, same, cols, labels, currency, persona)

    row = table.loc[customer_id]
    facts = {
        "persona": persona,
        "membership": membership,
        "orders": f"{int(row['frequency']):,}",
        "net spend": money(float(row["monetary"]), currency),
        "average order value": money(float(row["avg_order_value"]), currency),
        "days since last order": f"{int(row['recency_days']):,}",
        "days as a customer": f"{int(row['tenure_days']):,}",
        "status": str(status.get(customer_id, "—")),
    }
    if "rfm_segment" in row and pd.notna(row["rfm_segment"]):
        facts["RFM group"] = str(row["rfm_segment"])

    lines = _customer_lines(transactions, customer_id, as_of)
    buys = lines[~lines["is_return"].astype(bool)]
    timeline = buys.groupby(buys["order_date"].dt.to_period("M"))["amount"].sum().rename("spend").to_frame()
    timeline.index = timeline.index.to_timestamp()
    timeline.index.name = "month"
    cats = buys.groupby("category")["amount"].sum().sort_values(ascending=False, kind="stable").head(5).rename("spend").to_frame()
    prods = buys.groupby("product_id").agg(orders=("order_id", "nunique"), spend=("amount", "sum")).sort_values(
        ["orders", "spend"], ascending=False, kind="stable").head(5)
    names = _product_names(products)
    if names is not None:
        prods.insert(0, "name", names.reindex(prods.index).fillna(pd.Series(prods.index, index=prods.index)))

    key_dates = pd.DataFrame(columns=["event", "date", "days_until", "years"])
    if customers is not None:
        own = customers[customers["customer_id"].astype(str) == customer_id]
        if not privacy.consented(pd.Index([customer_id]), customers, "marketing")[0].size:
            notes.append("Key dates are not shown: the customer has not agreed to marketing.")
        elif {"birth_date", "signup_date"} & set(own.columns):
            key_dates = upcoming_key_dates(own, as_of, days=key_date_days)[0].drop(columns="customer_id")
    fb = None
    if feedback is not None:
        fb = feedback[feedback["customer_id"].astype(str) == customer_id].drop(columns=["customer_id"])
        if "timestamp" in fb:
            fb = fb[fb["timestamp"] < as_of]
        if "comment" in fb:
            fb = fb.assign(comment=privacy.scrub_pii(fb["comment"]))
    else:
        notes.append("Satisfaction is not shown: there are no survey answers in this data.")
    if events is not None and "event" in events:
        n_support = int(((events["customer_id"].astype("string") == customer_id) & (events["event"] == "support_contact")).sum())
        facts["support contacts"] = f"{n_support:,}"
    value = None
    if values is None:
        notes.append("Expected value is not shown: the lifetime model did not pass its check on this data.")
    elif customer_id in values.index and pd.notna(values.at[customer_id, "clv"]):
        value = values.loc[customer_id]
        facts["expected value (lifetime value)"] = money(float(value["clv"]), currency)
        if "p_alive" in value:
            facts["chance still buying"] = f"{float(value['p_alive']):.0%}"
    else:
        notes.append("Expected value is not available for this customer.")
    recs = None
    if recommendations is not None:
        recs = recommendations[recommendations["customer_id"].astype(str) == customer_id].drop(columns=["customer_id"])
        if names is not None and "product_id" in recs:
            recs = recs.assign(name=names.reindex(recs["product_id"]).fillna(recs["product_id"]).to_numpy())
        if recs.empty:
            notes.append("No next products are suggested for this customer.")
    else:
        notes.append("Suggested next products are not shown: no recommendations were computed for this run.")
    identity = None
    if internal and pii is not None:
        match = pii["customer_id"].astype(str) == customer_id
        identity = pii[match].drop(columns=["customer_id"]).iloc[0] if match.any() else None
    return CustomerProfile(customer_id=customer_id, persona=persona, segment=seg, strength=strength, membership=membership,
                           story=story, facts=pd.DataFrame({"value": facts}), differences=diff, timeline=timeline,
                           categories=cats, products=prods, key_dates=key_dates, feedback=fb, value=value,
                           recommendations=recs, identity=identity, notes=notes)


def plot_customer_profile(profile: CustomerProfile | Mapping[str, pd.DataFrame], persona: str | None = None) -> plt.Figure:
    """Spend per month, favourite categories, and where the customer stands among the persona's
    members (50 = the typical member).

    ``profile`` is a :class:`CustomerProfile` or its tables (``timeline, categories,
    differences``, e.g. a run's saved profile section) with the ``persona`` name."""
    from segmentation.report import currency

    if isinstance(profile, CustomerProfile):
        tables = {"timeline": profile.timeline, "categories": profile.categories, "differences": profile.differences}
        persona = profile.persona
    else:
        tables = profile
    unit = f" ({currency()})" if currency() else " (items)"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    spend = tables["timeline"]["spend"].set_axis(pd.to_datetime(tables["timeline"].index))
    if len(spend):  # every month from the first to the last order, the months without one at 0
        spend = spend.reindex(pd.date_range(spend.index.min(), spend.index.max(), freq="MS"), fill_value=0.0)
    axes[0].bar(range(len(spend)), spend.to_numpy(), color="tab:blue")
    step = max(1, len(spend) // 8)
    axes[0].set_xticks(range(0, len(spend), step), [f"{m:%b %Y}" for m in spend.index[::step]], rotation=30, ha="right")
    axes[0].set_title("Spend per month")
    axes[0].set_ylabel("spend" + unit)
    cats = tables["categories"]["spend"][::-1]
    axes[1].barh(cats.index.astype(str).str.replace("_", " "), cats.to_numpy(), color="tab:green")
    axes[1].set_title("Favourite categories")
    axes[1].set_xlabel("spend" + unit)
    d = tables["differences"][::-1]
    pct = d["position"].to_numpy(dtype="float64") * 100
    axes[2].barh(d["label"], pct - 50, left=50, color=np.where(pct > 50, "tab:red", "tab:grey"))
    axes[2].axvline(50, color="black", lw=1)
    axes[2].set_xlim(0, 100)
    axes[2].set_xlabel(f"position among the \"{persona}\" (50 = typical member)")
    axes[2].set_title("Where they differ from their persona")
    fig.tight_layout()
    return fig
