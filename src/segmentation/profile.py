"""The person behind the persona: an individual customer profile.

:func:`customer_profile` gathers, for one (pseudonymous) customer: persona membership and how
strongly they belong, the traits in which they differ most from their persona, their purchase
timeline, favourite categories and products, basket habits, upcoming key dates (only when known
*and* consented to marketing), satisfaction and support history, and -- when the value and
recommendation tables are passed -- predicted value, churn risk and next-best products. What is
not available is said, never invented. No name, e-mail or phone appears unless ``internal=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from segmentation import privacy
from segmentation.data import to_pandas
from segmentation.offers import upcoming_key_dates
from segmentation.personas import Personas, behaviour_indices
from segmentation.segments import Segmenter

__all__ = ["CustomerProfile", "customer_profile", "example_customer", "plot_customer_profile", "membership_strength"]


@dataclass
class CustomerProfile:
    """One customer's profile (see :func:`customer_profile`)."""

    customer_id: str
    persona: str
    segment: int
    strength: float
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


def membership_strength(model: Segmenter, X: pd.DataFrame) -> pd.Series:
    """How clearly each customer belongs to their segment, from 0 (on the border with the next
    segment) to 1 (at the centre): ``1 - d_own / d_next`` with Euclidean distances to the
    centroids in the model's space. O(n k d)."""
    Z = model.transform(X).to_numpy()
    C = model.cluster_centers_.to_numpy()
    d = np.sqrt(((Z[:, None, :] - C[None, :, :]) ** 2).sum(axis=2))
    d.sort(axis=1)
    return pd.Series(1 - d[:, 0] / np.maximum(d[:, 1], 1e-12), index=X.index, name="strength")


def example_customer(table: pd.DataFrame) -> str:
    """A deterministic example: in the largest segment, the customer closest to the segment's
    median spend and frequency."""
    largest = table["segment"].value_counts().idxmax()
    members = table[table["segment"] == largest]
    dist = (np.log1p(members["monetary"]) - np.log1p(members["monetary"]).median()).abs() + \
           (np.log1p(members["frequency"]) - np.log1p(members["frequency"]).median()).abs()
    return str(dist.sort_values(kind="stable").index[0])


def customer_profile(
    customer_id: str,
    table: pd.DataFrame,
    transactions,
    personas: Personas,
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
    key_date_days: int = 30,
    internal: bool = False,
) -> CustomerProfile:
    """Everything about one customer, against their persona.

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
    row = table.loc[customer_id]
    seg = int(row["segment"])
    persona = personas.summary.at[seg, "name"]
    notes: list[str] = []
    members = table[table["segment"] == seg]
    strength = float(membership_strength(model, table.loc[[customer_id], features]).iloc[0])

    # the traits in which the person differs most from their persona
    cols = [c for c in features if pd.api.types.is_numeric_dtype(table[c])]
    idx = behaviour_indices(table)
    joined = table[cols].join(idx)
    mu, sd = joined.loc[members.index].mean(), joined.loc[members.index].std(ddof=0).replace(0, np.nan)
    z = ((joined.loc[customer_id] - mu) / sd).dropna()
    diff = pd.DataFrame({"customer": joined.loc[customer_id, z.index], "persona_average": mu[z.index], "z": z})
    diff = diff.reindex(z.abs().sort_values(ascending=False).index[:6])
    diff["direction"] = np.where(diff["z"] > 0, "more than", "less than")

    facts = pd.DataFrame({"value": [
        persona, f"{strength:.2f}", f"{row['frequency']:.0f}", f"{row['monetary']:,.2f}", f"{row['avg_order_value']:,.2f}",
        f"{row['recency_days']:.0f}", f"{row['tenure_days']:.0f}", row.get("rfm_segment", "n/a"),
    ]}, index=["persona", "membership strength (0-1)", "orders", "net spend", "average order", "days since last order",
               "days as customer", "RFM segment"])

    t = transactions.filter((transactions.customer_id == customer_id) & (transactions.order_date < as_of.to_pydatetime()))
    lines = to_pandas(t)
    buys = lines[~lines["is_return"]]
    timeline = buys.groupby(buys["order_date"].dt.to_period("M"))["amount"].sum().rename("spend").to_frame()
    timeline.index = timeline.index.to_timestamp()
    cats = buys.groupby("category")["amount"].sum().sort_values(ascending=False).head(5).rename("spend").to_frame()
    prods = buys.groupby("product_id").agg(times=("order_id", "nunique"), spend=("amount", "sum")).sort_values(
        ["times", "spend"], ascending=False).head(5)
    if products is not None and "name" in products:
        prods.insert(0, "name", products.drop_duplicates("product_id").set_index("product_id")["name"].reindex(prods.index))

    key_dates = pd.DataFrame(columns=["event", "date", "days_until", "years"])
    if customers is not None:
        own = customers[customers["customer_id"].astype(str) == customer_id]
        if not privacy.consented(pd.Index([customer_id]), customers, "marketing")[0].size:
            notes.append("Key dates: not shown (no marketing consent).")
        elif {"birth_date", "signup_date"} & set(own.columns):
            key_dates = upcoming_key_dates(own, as_of, days=key_date_days)[0].drop(columns="customer_id")
    fb = None
    if feedback is not None:
        fb = feedback[feedback["customer_id"].astype(str) == customer_id].drop(columns=["customer_id"])
        fb = fb[fb["timestamp"] < as_of]
        if "comment" in fb:
            fb = fb.assign(comment=privacy.scrub_pii(fb["comment"]))
    else:
        notes.append("Satisfaction: no feedback data.")
    if events is not None:
        n_support = int(((events["customer_id"].astype("string") == customer_id) & (events["event"] == "support_contact")).sum())
        facts.loc["support contacts"] = str(n_support)
    value = None
    if values is not None and customer_id in values.index:
        value = values.loc[customer_id]
    else:
        notes.append("Predicted value and churn risk: not available (pass values= from segmentation.value).")
    recs = None
    if recommendations is not None:
        recs = recommendations[recommendations["customer_id"].astype(str) == customer_id].drop(columns=["customer_id"])
    else:
        notes.append("Next-best products: not available (pass recommendations= from segmentation.recommend).")
    identity = None
    if internal and pii is not None:
        identity = pii[pii["customer_id"].astype(str) == customer_id].drop(columns=["customer_id"]).iloc[0] if (pii["customer_id"].astype(str) == customer_id).any() else None
    return CustomerProfile(customer_id=customer_id, persona=persona, segment=seg, strength=strength, facts=facts,
                           differences=diff, timeline=timeline, categories=cats, products=prods, key_dates=key_dates,
                           feedback=fb, value=value, recommendations=recs, identity=identity, notes=notes)


def plot_customer_profile(profile: CustomerProfile) -> plt.Figure:
    """Spend timeline, favourite categories, and the person-vs-persona differences."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    axes[0].bar(profile.timeline.index, profile.timeline["spend"], width=20, color="tab:blue")
    axes[0].set_title("Spend per month")
    axes[0].tick_params(axis="x", rotation=45)
    cats = profile.categories["spend"][::-1]
    axes[1].barh(cats.index.str.replace("_", " "), cats.to_numpy(), color="tab:green")
    axes[1].set_title("Favourite categories (spend)")
    d = profile.differences["z"][::-1]
    axes[2].barh(d.index.str.replace("_", " "), d.to_numpy(), color=np.where(d > 0, "tab:red", "tab:grey"))
    axes[2].axvline(0, color="black", lw=1)
    axes[2].set_title(f"Differences from '{profile.persona}'\n(standard deviations)")
    fig.tight_layout()
    return fig
