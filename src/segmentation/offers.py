"""Offers: one play per persona with a test design, the promotion plan, contact lists, loyalty
tiers and key dates.

Customer-scale pandas; every function is pure (tables in, tables out). Inputs are the
per-customer table of a run (index ``customer_id``; features such as ``monetary, frequency,
recency_days, tenure_days, avg_order_value, discount_share, cat_<category>`` shares, the group
column ``persona`` (or ``segment``), ``status`` from :func:`segmentation.definitions.customer_status`
and, when known, ``consent_profiling`` / ``consent_marketing``) and the canonical customers table
(``customer_id, consent_profiling, consent_marketing, birth_date, signup_date, age_band``).

**One play per persona.** :func:`action_plan` is the single source of "what to do": per persona
one offer, channel and message (``rules/persona_actions.csv``, chosen by the persona's leading
trait), the customers it can reach, the value at stake, the expected effect ("unknown" unless the
rule table cites a past test) and a test design (offer group vs a random control group, the
minimum detectable uplift of :func:`minimum_detectable_uplift`). :func:`offer_list` gives each
reachable customer at most one offer -- their persona's play -- and draws the control group.

**Consent.** A list built from a customer's profile (offers, win-back, senior discount, key dates)
needs *profiling* consent (we may analyse them) *and* *marketing* consent (we may contact them);
defaults when a flag is absent follow :func:`segmentation.privacy.consented` (profiling yes,
marketing no). Every list function returns ``(table, left_out)`` where ``left_out`` counts the
candidates left out per reason, checked in this order:
``{"no_profiling_consent": n1, "no_marketing_consent": n2}`` (``n2`` among those with profiling
consent, so ``n1 + n2`` customers were left out in all).

The business rules are data, editable without touching code:

* ``rules/persona_actions.csv`` (:data:`PLAYS`) -- the play per leading trait (``default`` for a
  group without one) and, only when a past test supports it, its expected effect;
* ``rules/offer_rules.csv`` (:data:`OFFER_RULES`) -- which categories a persona gets a discount on
  or sees featured, from its category lift and discount sensitivity;
* ``rules/loyalty_tiers.csv`` (:data:`LOYALTY_TIERS`) -- tier thresholds on spend and frequency.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.stats import norm

from segmentation import definitions, scale
from segmentation.features import demographics
from segmentation.privacy import consented
from segmentation.schema import rules_table

__all__ = [
    "PLAYS",
    "OFFER_RULES",
    "LOYALTY_TIERS",
    "LEFT_OUT",
    "category_lift",
    "discount_sensitivity",
    "promotion_plan",
    "minimum_detectable_uplift",
    "action_plan",
    "offer_list",
    "offer_counts",
    "loyalty_tiers",
    "loyalty_tier_table",
    "senior_discount_list",
    "win_back_list",
    "upcoming_key_dates",
    "list_summary",
]

#: The play per leading trait of a persona (``trait`` as in ``personas.summary["trait"]``; the
#: ``default`` row serves groups without a trait): ``offer``, ``channel``, ``message`` (``offer``
#: and ``message`` may use ``{category}``), and ``effect_low``, ``effect_high`` (uplift of the
#: purchase rate in the test window, in points, e.g. 0.02) with ``effect_source`` -- left empty
#: unless a past test of the play supports them, in which case the plan says "unknown".
PLAYS: pd.DataFrame = rules_table("persona_actions")
#: Promotion rules, first match wins per (group, category): a group whose ``lift`` for the
#: category is in ``[min_lift, max_lift)`` and whose discount sensitivity is in
#: ``[min_discount_sensitivity, max_discount_sensitivity)`` gets ``offer`` (action ``discount`` or
#: ``feature``), sent to the group's ``buyers`` of the category, its ``non_buyers`` or ``all``
#: (column ``customers``). ``offer`` and ``reason`` may use ``{group}, {category}, {lift},
#: {sensitivity}``.
OFFER_RULES: pd.DataFrame = rules_table("offer_rules")
#: Loyalty tiers, best first: a customer gets the first tier whose percentile thresholds on net
#: spend (``min_monetary_pct``) and frequency (``min_frequency_pct``) both hold (0-100).
LOYALTY_TIERS: pd.DataFrame = rules_table("loyalty_tiers")
#: The reasons a candidate is left out of a contact list, in the order they are checked.
LEFT_OUT: tuple[str, str] = ("no_profiling_consent", "no_marketing_consent")
#: Trait -> the categories that define it (from ``rules/persona_indices.csv``): a play for a
#: trait is about one of these categories when the data has them.
_TRAIT_CATEGORIES: pd.DataFrame = (
    rules_table("persona_indices").loc[lambda r: r["feature"].str.startswith("cat_"), ["index", "feature"]]
    .assign(category=lambda r: r["feature"].str.removeprefix("cat_")).rename(columns={"index": "trait"})[["trait", "category"]]
    .drop_duplicates()
)


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _require(df: pd.DataFrame, columns: list[str], name: str) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{name} has no column {missing[0]!r} (needs {columns}); found {list(df.columns)[:20]}")


def _group(customers: pd.DataFrame, group: pd.Series | str | None) -> pd.Series:
    """The group of each customer: a Series aligned to ``customers`` or a column name
    (default ``persona`` when present, else ``segment``)."""
    if isinstance(group, pd.Series):
        missing = customers.index.difference(group.index)
        if len(missing):
            raise ValueError(f"group has no value for {len(missing)} customers, e.g. {list(missing[:3])}; "
                             "pass a Series indexed by customer_id covering every customer")
        return group.reindex(customers.index).rename(group.name or "group")
    col = group or ("persona" if "persona" in customers.columns else "segment")
    _require(customers, [col], "customers")
    return customers[col]


def _words(category: pd.Series | str) -> pd.Series | str:
    """A category slug as words (``fresh_produce`` -> ``fresh produce``)."""
    if isinstance(category, str):
        return category.replace("_", " ")
    return category.astype("string").str.replace("_", " ", regex=False)


def _fill(template: str, values: pd.DataFrame) -> pd.Series:
    """Fill ``{name}`` placeholders of ``template`` from the string columns of ``values`` (vectorized)."""
    out = pd.Series("", index=values.index, dtype="string")
    for k, piece in enumerate(re.split(r"\{(\w+)\}", template)):
        out = out + (piece if k % 2 == 0 else values[piece])
    return out


def _consents(ids: pd.Index, consents: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """Per id: profiling consent and marketing consent (booleans, the contract's defaults when
    a flag or the table is absent). ``consents`` has ``customer_id`` as a column or the index."""
    ids = pd.Index(ids, name="customer_id").astype("string")
    if consents is not None:
        if "customer_id" not in consents.columns:
            consents = consents.rename_axis("customer_id").reset_index()
        consents = consents[[c for c in ("customer_id", "consent_profiling", "consent_marketing") if c in consents.columns]]
    profiling = scale.isin(ids, consented(ids, consents, "profiling")[0])
    marketing = scale.isin(ids, consented(ids, consents, "marketing")[0])
    return profiling, marketing


def _left_out(profiling: np.ndarray, marketing: np.ndarray) -> dict[str, int]:
    return {LEFT_OUT[0]: int((~profiling).sum()), LEFT_OUT[1]: int((profiling & ~marketing).sum())}


def _contactable(table: pd.DataFrame, consents: pd.DataFrame | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows of ``table`` (column ``customer_id``) whose customer consented to profiling and
    marketing, and how many distinct customers were left out per reason."""
    ids = pd.Index(table["customer_id"].astype("string").unique())
    profiling, marketing = _consents(ids, consents)
    ok = ids[profiling & marketing]
    out = table[scale.isin(table["customer_id"], ok)].reset_index(drop=True)
    return out.astype({"customer_id": "string"}), _left_out(profiling, marketing)


# --------------------------------------------------------------------------------------------
# promotion plan
# --------------------------------------------------------------------------------------------
def category_lift(customers: pd.DataFrame, group: pd.Series | str | None = None) -> pd.DataFrame:
    """Each group's spend share per category relative to the whole population (the wide form of
    :func:`segmentation.personas.category_lift`, the project's one definition of lift).

    Parameters
    ----------
    customers : DataFrame
        Per-customer table with ``cat_<category>`` share columns, ``avg_order_value`` and
        ``frequency``.
    group : Series or str, optional
        Group per customer (a Series indexed by ``customer_id``, e.g. the persona name) or a
        column name; default ``persona`` when present, else ``segment``.

    Returns
    -------
    DataFrame
        Index group (named after the group), one column per category (``cat_`` prefix removed);
        1 = like the population, 2 = twice the population's share. O(customers x categories).
    """
    from segmentation.personas import category_lift as long_lift

    g = _group(customers, group)
    if not any(c.startswith("cat_") for c in customers.columns):
        raise ValueError("customers has no cat_<category> share columns; compute them with "
                         "segmentation.features.customer_features")
    _require(customers, ["avg_order_value", "frequency"], "customers")
    long = long_lift(customers, g, min_share=0.0, top=None, min_group_size=0)  # every pair, bought or not
    key = long.columns[0]
    return long.pivot(index=key, columns="category", values="lift").rename_axis(index=g.name, columns=None)


def discount_sensitivity(customers: pd.DataFrame, group: pd.Series | str | None = None) -> pd.Series:
    """Each group's mean ``discount_share`` relative to the population's (1 = average; NaN when
    nobody used a discount)."""
    g = _group(customers, group)
    _require(customers, ["discount_share"], "customers")
    overall = customers["discount_share"].mean()
    out = customers["discount_share"].groupby(g, observed=True).mean() / (overall if overall > 0 else np.nan)
    return out.rename("discount_sensitivity").rename_axis(g.name)


def promotion_plan(
    customers: pd.DataFrame,
    group: pd.Series | str | None = None,
    *,
    rules: pd.DataFrame | None = None,
    top: int = 3,
    min_group_size: int = 10,
) -> pd.DataFrame:
    """The top category promotions per group (persona): which categories to discount or feature.

    Every (group, category) pair is matched against the rule table (first match wins); pairs
    whose audience (the group's buyers of the category, its non-buyers or all) has fewer than
    ``min_group_size`` customers are dropped, and at most ``top`` rows per group are kept: rules
    in table order, then the most distinctive categories first (largest ``|log lift|``).

    Parameters
    ----------
    customers : DataFrame
        Per-customer table: ``cat_<category>`` shares, ``avg_order_value``, ``frequency``,
        ``discount_share``.
    group : Series or str, optional
        Group per customer (see :func:`category_lift`).
    rules : DataFrame, optional
        Default :data:`OFFER_RULES` (``rules/offer_rules.csv``).
    top : int
        Rows per group at most.
    min_group_size : int
        Smallest group and smallest audience that gets a promotion.

    Returns
    -------
    DataFrame
        ``<group>, category, lift, discount_sensitivity, rule, action, offer, audience,
        audience_size, reason``, sorted by group then rank. ``audience`` is ``buyers``,
        ``non_buyers`` or ``all``; ``category`` is the slug (``fresh_produce``), the text
        columns use words. O(groups x categories x rules) after one O(customers x categories)
        pass.
    """
    rules = OFFER_RULES if rules is None else rules
    _require(rules, ["rule", "min_lift", "max_lift", "min_discount_sensitivity", "max_discount_sensitivity",
                     "customers", "action", "offer", "reason"], "rules")
    g = _group(customers, group)
    name = g.name
    lift = category_lift(customers, g)
    sens = discount_sensitivity(customers, g)
    cats = [c for c in customers.columns if c.startswith("cat_")]
    buyers = (customers[cats] > 0).groupby(g, observed=True).sum().rename(columns=lambda c: c.removeprefix("cat_"))
    sizes = g.value_counts()
    pairs = lift.stack().rename("lift").rename_axis([name, "category"]).reset_index()
    pairs["discount_sensitivity"] = pairs[name].map(sens).to_numpy()
    pairs["buyers"] = buyers.stack().reindex(pd.MultiIndex.from_frame(pairs[[name, "category"]])).to_numpy()
    pairs["size"] = pairs[name].map(sizes).to_numpy()
    pairs = pairs.dropna(subset=["lift", "discount_sensitivity"])
    grid = pairs.reset_index(names="pair").merge(rules.reset_index(names="priority"), how="cross")
    hit = grid[
        (grid["lift"] >= grid["min_lift"]) & (grid["lift"] < grid["max_lift"])
        & (grid["discount_sensitivity"] >= grid["min_discount_sensitivity"])
        & (grid["discount_sensitivity"] < grid["max_discount_sensitivity"])
    ]
    plan = hit.sort_values(["pair", "priority"]).drop_duplicates("pair").copy()
    plan["audience"] = plan["customers"]
    plan["audience_size"] = np.select([plan["audience"] == "buyers", plan["audience"] == "non_buyers"],
                                      [plan["buyers"], plan["size"] - plan["buyers"]], plan["size"]).astype(int)
    plan = plan[(plan["size"] >= min_group_size) & (plan["audience_size"] >= min_group_size)]
    plan["distinctive"] = -np.abs(np.log(plan["lift"].where(plan["lift"] > 0)))
    plan = plan.sort_values([name, "priority", "distinctive", "category"]).groupby(name, sort=False).head(top).copy()
    text = pd.DataFrame({
        "group": plan[name].astype("string"), "category": _words(plan["category"]),
        "lift": plan["lift"].round(1).astype("string"), "sensitivity": plan["discount_sensitivity"].round(1).astype("string"),
    }, index=plan.index)
    for column in ("offer", "reason"):
        plan[column] = (pd.concat([_fill(t, text.loc[part.index]) for t, part in plan.groupby(column, sort=False)])
                        if len(plan) else pd.Series(dtype="string"))
    columns = [name, "category", "lift", "discount_sensitivity", "rule", "action", "offer", "audience", "audience_size", "reason"]
    return plan[columns].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# test design
# --------------------------------------------------------------------------------------------
def minimum_detectable_uplift(
    baseline: float | np.ndarray,
    n_treatment: float | np.ndarray,
    n_control: float | np.ndarray,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
) -> np.ndarray:
    """Smallest absolute rise of a purchase rate a two-group test can detect.

    Two-proportion z-test, normal approximation, two-sided level ``alpha``: the uplift ``d``
    solves ``d = z(1 - alpha/2) sqrt(p q (1/n_t + 1/n_c)) + z(power) sqrt(p0 q0 / n_c + p1 q1 / n_t)``
    with ``p0`` = baseline (control), ``p1 = p0 + d`` (offer group) and ``p`` the pooled rate --
    the inverse of the textbook sample-size formula (Fleiss, *Statistical Methods for Rates and
    Proportions*, without continuity correction: 686 per group detect 10% -> 15%). Solved by
    bisection (the right-hand side is concave in ``d``, so the root is unique). Vectorized.

    Parameters
    ----------
    baseline : float or array
        Purchase rate of the control group in the test window (0-1).
    n_treatment, n_control : float or array
        Group sizes.
    alpha : float
        Two-sided significance level.
    power : float
        Probability of detecting an uplift of the returned size.

    Returns
    -------
    ndarray
        Uplift in rate points (0.05 = 5 points); NaN when no uplift up to a rate of 100% is
        detectable or a group is empty.

    Examples
    --------
    >>> round(float(minimum_detectable_uplift(0.10, 686, 686)), 3)
    0.05
    """
    p0, nt, nc = np.broadcast_arrays(*(np.asarray(x, dtype="float64") for x in (baseline, n_treatment, n_control)))
    if np.any((p0 < 0) | (p0 > 1)):
        raise ValueError(f"baseline must be a rate in [0, 1], got {p0[(p0 < 0) | (p0 > 1)][:3].tolist()}")
    if not (0 < alpha < 1 and 0 < power < 1):
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha} and {power}")
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)
    ok = (nt > 0) & (nc > 0) & (p0 < 1)
    nt_, nc_ = np.where(ok, nt, 1.0), np.where(ok, nc, 1.0)

    def gap(d: np.ndarray) -> np.ndarray:  # >= 0 once d is detectable; convex in d
        p1 = p0 + d
        pooled = (nc_ * p0 + nt_ * p1) / (nc_ + nt_)
        s0 = np.sqrt(pooled * (1 - pooled) * (1 / nt_ + 1 / nc_))
        s1 = np.sqrt(np.clip(p0 * (1 - p0) / nc_ + p1 * (1 - p1) / nt_, 0, None))
        return d - za * s0 - zb * s1

    lo, hi = np.zeros_like(p0), 1 - p0
    reachable = ok & (gap(hi) >= 0)
    for _ in range(60):  # halves the bracket each time: 2^-60 of a rate
        mid = (lo + hi) / 2
        above = gap(mid) >= 0
        hi, lo = np.where(above, mid, hi), np.where(above, lo, mid)
    return np.where(reachable, hi, np.nan)


# --------------------------------------------------------------------------------------------
# action plan
# --------------------------------------------------------------------------------------------
def _persona_traits(personas_summary: pd.DataFrame) -> pd.DataFrame:
    """``trait, eligible`` per persona name from the personas summary (index segment with a
    ``name`` column, or index name)."""
    _require(personas_summary, ["trait"], "personas_summary")
    s = personas_summary.set_index("name") if "name" in personas_summary.columns else personas_summary
    eligible = ~s["suppressed"].astype(bool) if "suppressed" in s.columns else pd.Series(True, index=s.index)
    unstable = (~s["stable"].astype(bool)) if "stable" in s.columns else pd.Series(False, index=s.index)
    out = pd.DataFrame({"trait": s["trait"].astype("string"), "eligible": eligible, "unstable": unstable})
    out.index = out.index.astype("string")
    # small groups share one label ("(fewer than 10 customers)"): merged, and never eligible
    return out.groupby(level=0).agg(trait=("trait", "first"), eligible=("eligible", "all"), unstable=("unstable", "any"))


def _play_category(customers: pd.DataFrame, group: pd.Series, traits: pd.Series,
                   promotions: pd.DataFrame | None, min_group_size: int) -> pd.Series:
    """The category each persona's play is about: among the categories of its trait (all
    categories for a trait without any), the persona's best promotion-plan row for buyers,
    else its highest-lift category with at least 2% of its spend and ``min_group_size`` buyers."""
    from segmentation.personas import category_lift as long_lift

    if not any(c.startswith("cat_") for c in customers.columns) or not {"avg_order_value", "frequency"} <= set(customers.columns):
        return pd.Series(pd.NA, index=traits.index, dtype="string")
    lifts = long_lift(customers, group, min_share=0.02, top=None, min_group_size=min_group_size)
    lifts = lifts.rename(columns={lifts.columns[0]: "persona"})
    lifts = lifts[lifts["lift"] > 1].assign(rank=lambda d: 1e6 - d["lift"])
    candidates = [lifts[["persona", "category", "rank"]]]
    if promotions is not None and len(promotions):
        rows = promotions.rename(columns={promotions.columns[0]: "persona"})
        rows = rows[rows["audience"].isin(["buyers", "all"])].assign(rank=lambda d: np.arange(len(d), dtype=float))
        candidates.insert(0, rows[["persona", "category", "rank"]])
    pool = pd.concat(candidates, ignore_index=True).astype({"persona": "string", "category": "string"})
    pool["trait"] = pool["persona"].map(traits)
    own = pool.merge(_TRAIT_CATEGORIES, on=["trait", "category"], how="left", indicator=True)["_merge"].eq("both").to_numpy()
    has_own = pool["trait"].isin(_TRAIT_CATEGORIES["trait"]) & pool["persona"].isin(pool.loc[own, "persona"])
    pool = pool[own | ~has_own.to_numpy()]
    best = pool.sort_values(["persona", "rank", "category"]).drop_duplicates("persona").set_index("persona")["category"]
    return best.reindex(traits.index).astype("string")


def _value_at_stake(customers: pd.DataFrame, values: pd.DataFrame | None, horizon_months: int) -> tuple[pd.Series, str]:
    """Per customer: CLV when ``values`` has a usable ``clv``, else past spend at the same yearly
    rate over the horizon (lapsed customers count zero); and the basis in words."""
    if values is not None and "clv" in values.columns and np.isfinite(values["clv"].to_numpy(dtype="float64")).any():
        clv = values["clv"].reindex(customers.index).astype("float64")
        return clv.where(np.isfinite(clv), 0.0).clip(lower=0), (f"lifetime value (CLV) from the lifetime model, next {horizon_months} months")
    _require(customers, ["monetary", "tenure_days"], "customers")
    status = customers["status"] if "status" in customers.columns else definitions.customer_status(customers)
    horizon_days = horizon_months * 365.25 / 12
    scale = np.minimum(1.0, horizon_days / customers["tenure_days"].clip(lower=1.0))
    spend = (customers["monetary"].clip(lower=0) * scale).where(status.astype("string") != "lapsed", 0.0)
    basis = (f"expected spend over the next {horizon_months} months if each customer keeps spending as before (net "
             f"spend per {horizon_months} months of history; what was spent so far for a shorter history; lapsed "
             "customers count zero) -- no usable lifetime model")
    return spend.astype("float64"), basis


def action_plan(
    customers: pd.DataFrame,
    personas_summary: pd.DataFrame,
    *,
    values: pd.DataFrame | None = None,
    consents: pd.DataFrame | None = None,
    promotions: pd.DataFrame | None = None,
    plays: pd.DataFrame | None = None,
    min_group_size: int = 10,
    control_share: float = 0.2,
    test_days: int = 30,
    horizon_months: int = 12,
    alpha: float = 0.05,
    power: float = 0.8,
) -> pd.DataFrame:
    """One recommended play per persona, with its reach, value at stake and test design.

    The play (offer, channel, message) is the :data:`PLAYS` row of the persona's leading trait
    (``personas_summary["trait"]``; the ``default`` row for a group without one, e.g. an unstable
    mixed group). ``{category}`` in the offer or message is the category the play is about:
    one of the trait's own categories when the data has them (``rules/persona_indices.csv``),
    else the persona's favourite -- taken from the promotion plan (:func:`promotion_plan`) when
    it has a row for the persona's buyers, else the category with the highest lift.

    The test: the reachable customers are split at random into an offer group and a control
    group of ``control_share`` (default 0.2, an 80/20 split: a 90/10 split detects only large
    effects in groups of a few hundred; the ``mde_even_split`` column shows what 50/50 would
    detect); success = the share of customers with an
    order within ``test_days`` days of the send, offer group vs control group. The baseline is
    that share in the last ``test_days`` days before the analysis date among the reachable
    customers (``recency_days <= test_days``), and ``mde`` the smallest uplift of it the test
    detects at ``power`` and two-sided level ``alpha`` (:func:`minimum_detectable_uplift`).
    No uplift is assumed: the expected effect is "unknown" unless the rule table gives a range
    and its source.

    Parameters
    ----------
    customers : DataFrame
        Per-customer table, index ``customer_id``: ``persona`` (or ``segment``, mapped with the
        summary's ``name``), ``monetary, tenure_days, recency_days``, ``status`` (else derived with
        :func:`segmentation.definitions.customer_status`), ``cat_*`` shares, ``avg_order_value``,
        ``frequency``, ``discount_share``; ``consent_profiling`` / ``consent_marketing`` unless
        ``consents`` is given.
    personas_summary : DataFrame
        ``personas.build_personas(...).summary``: ``name, trait``, and ``suppressed``,
        ``stable`` when present (index segment), or indexed by persona name.
    values : DataFrame, optional
        Index ``customer_id`` with ``clv`` (:func:`segmentation.value.customer_value`); without
        a usable ``clv`` the value at stake is the expected spend from past behaviour (the
        ``value_basis`` column says which).
    consents : DataFrame, optional
        ``customer_id, consent_profiling, consent_marketing`` (the customers table); default:
        the flags in ``customers``. Absent flags follow the data contract (profiling yes,
        marketing no).
    promotions : DataFrame, optional
        :func:`promotion_plan` output keyed by persona; computed when None and the data has the
        columns it needs.
    plays : DataFrame, optional
        Default :data:`PLAYS`.
    min_group_size : int
        Personas with fewer customers get no play; personas with fewer reachable customers get
        their play but no campaign numbers (reach and value hidden).
    control_share : float
        Share of the reachable customers held out as the control group (0 < share < 1; 0.2 =
        80/20).
    test_days : int
        Test window in days (success and baseline).
    horizon_months : int
        Horizon of the value at stake: the CLV horizon of ``values`` (stated in ``value_basis``),
        and the period of the expected-spend fallback.
    alpha, power : float
        Significance level (two-sided) and power of the test.

    Returns
    -------
    DataFrame
        One row per persona with a play, largest value at stake first:
        ``persona, trait, customers, offer, channel, message, category`` (the category in words,
        missing when the play is about none), ``reachable`` (profiling and marketing consent),
        ``left_out_no_profiling, left_out_no_marketing`` (persona members left out per reason,
        in that order), ``value_at_stake, value_per_customer, value_basis, expected_effect,
        effect_low, effect_high, split`` ("80/20", or "no control group" when it would have fewer
        than ``min_group_size`` customers), ``treatment, control, test_days,
        baseline_rate, mde`` (smallest detectable uplift in rate points, 0.05 = 5 points),
        ``mde_relative`` (mde / baseline), ``mde_even_split`` (the mde of a 50/50 split),
        ``success_measure, note`` (plain sentences: no campaign, no test possible, rough
        approximation, only large effects detectable, unstable group). ``attrs["notes"]``: plain-language notes (e.g. personas
        without a play). O(customers).

    Raises
    ------
    ValueError
        A missing column, a persona of ``customers`` unknown to the summary, or a bad
        ``control_share``.
    """
    plays = PLAYS if plays is None else plays
    _require(plays, ["trait", "offer", "channel", "message", "effect_low", "effect_high", "effect_source"], "plays")
    if "default" not in set(plays["trait"]):
        raise ValueError("plays needs a row with trait 'default' (the play for a group without a leading trait)")
    if not 0 < control_share < 1:
        raise ValueError(f"control_share must lie strictly between 0 and 1 (0.1 = a 90/10 split), got {control_share}")
    _require(customers, ["recency_days"], "customers")
    info = _persona_traits(personas_summary)
    if "persona" in customers.columns:
        persona = customers["persona"].astype("string")
    else:
        _require(customers, ["segment"], "customers")
        _require(personas_summary, ["name"], "personas_summary")
        persona = customers["segment"].map(personas_summary["name"]).astype("string")
    persona = persona.rename("persona")
    unknown = pd.Index(persona.dropna().unique()).difference(info.index)
    if len(unknown):
        raise ValueError(f"customers has personas the summary does not know: {list(unknown[:3])}; "
                         f"summary names: {list(info.index[:10])}. Pass the summary of the same run")
    sizes = persona.value_counts()
    keep = info.index[info["eligible"] & info.index.isin(sizes.index[sizes >= min_group_size])]
    notes = []
    dropped = sizes.index.difference(keep)
    if len(dropped):
        notes.append(f"{len(dropped)} group(s) of {sizes[dropped].sum():,} customers in all get no play: each has fewer "
                     f"than {min_group_size} customers.")

    profiling, marketing = _consents(customers.index, consents if consents is not None else customers)
    value, basis = _value_at_stake(customers, values, horizon_months)
    member = persona.isin(keep).to_numpy()
    reach = profiling & marketing
    per = pd.DataFrame({
        "persona": persona.to_numpy(), "customers": 1, "reachable": reach,
        "left_out_no_profiling": ~profiling, "left_out_no_marketing": profiling & ~marketing,
        "value_at_stake": np.where(reach, value.to_numpy(), 0.0),
        "recent": reach & (customers["recency_days"].to_numpy(dtype="float64") <= test_days),
    })[member]
    plan = per.groupby("persona", observed=True).sum().reindex(keep).fillna(0)
    plan = plan.astype({c: int for c in ("customers", "reachable", "left_out_no_profiling", "left_out_no_marketing", "recent")})

    trait = info.loc[keep, "trait"]
    key = trait.where(trait.isin(plays["trait"]), "default").fillna("default")
    chosen = plays.drop_duplicates("trait").set_index("trait").loc[key.to_numpy()]
    chosen.index = keep
    promotions = promotions if promotions is not None else (
        promotion_plan(customers, persona, min_group_size=min_group_size)
        if {"discount_share", "avg_order_value", "frequency"} <= set(customers.columns)
        and any(c.startswith("cat_") for c in customers.columns) else None)
    category = _play_category(customers, persona, trait, promotions, min_group_size)
    uses = chosen["offer"].str.contains("{category}", regex=False) | chosen["message"].str.contains("{category}", regex=False)
    words = _words(category).fillna("favourites")
    plan.insert(0, "trait", trait.astype("string"))
    for column in ("offer", "channel", "message"):
        plan[column] = [str(t).replace("{category}", w) for t, w in zip(chosen[column], words)]  # one per persona
    plan["category"] = _words(category).where(uses.to_numpy(), pd.NA)

    small = plan["reachable"] < min_group_size
    plan["value_per_customer"] = plan["value_at_stake"] / plan["reachable"].where(plan["reachable"] > 0)
    plan["value_basis"] = basis
    low, high = chosen["effect_low"].astype("float64"), chosen["effect_high"].astype("float64")
    known = low.notna() & high.notna()
    plan["effect_low"], plan["effect_high"] = low.where(known), high.where(known)
    plan["expected_effect"] = np.where(
        known, "+" + (low * 100).round(1).astype(str) + " to +" + (high * 100).round(1).astype(str)
        + " points of purchase rate (" + chosen["effect_source"].astype("string").fillna("source not given") + ")",
        "unknown: no past test of this play in the rule table; the test below measures it")
    control = np.floor(plan["reachable"] * control_share + 0.5).astype(int)
    testable = (control >= min_group_size) & ~small
    control = control.where(testable, 0)  # a control group too small to report or test is not held out
    plan["split"] = np.where(testable, f"{round(100 * (1 - control_share))}/{round(100 * control_share)}", "no control group")
    plan["control"] = control
    plan["treatment"] = plan["reachable"] - control
    plan["test_days"] = test_days
    plan["baseline_rate"] = plan["recent"] / plan["reachable"].where(plan["reachable"] > 0)
    plan["mde"] = np.where(testable, minimum_detectable_uplift(plan["baseline_rate"].fillna(0), plan["treatment"],
                                                              control.clip(lower=1), alpha=alpha, power=power), np.nan)
    plan["mde_relative"] = plan["mde"] / plan["baseline_rate"].where(plan["baseline_rate"] > 0)
    half = plan["reachable"] // 2
    plan["mde_even_split"] = np.where(half >= min_group_size, minimum_detectable_uplift(
        plan["baseline_rate"].fillna(0), plan["reachable"] - half, half.clip(lower=1), alpha=alpha, power=power), np.nan)
    plan["success_measure"] = (f"share of customers with an order within {test_days} days of the send: offer group vs "
                               f"control group (two-sided test at {alpha:.0%}, power {power:.0%})")
    expected_orders = control * plan["baseline_rate"].fillna(0)
    checks = pd.DataFrame({  # one plain sentence per condition; a persona's note joins those that hold
        f"Fewer than {min_group_size} customers of this persona can be contacted: ask for marketing consent before "
        "a campaign.": small,
        f"A control group at this split would have fewer than {min_group_size} customers: no test is possible (all "
        "reachable customers get the offer), and a result cannot be attributed to the offer.": ~small & ~testable,
        "No uplift is detectable with these group sizes.": testable & plan["mde"].isna(),
        f"Few control customers are expected to order within {test_days} days (fewer than 5): the detectable uplift "
        "is a rough approximation.": testable & ((expected_orders < 5) | (control - expected_orders < 5)),
        "Only a large effect (10 points or more) would be detected: a longer test, a larger control group (see the "
        "50/50 split) or pooling personas detects smaller ones.": testable & (plan["mde"] >= 0.1),
        "An unstable mixed group: a general play, not one fitted to a persona.": info.loc[keep, "unstable"].astype(bool),
    }, index=keep)
    plan["note"] = [" ".join(checks.columns[row]) for row in checks.to_numpy()]  # one per persona
    # hidden for too few reachable customers (with the count that would give them away by subtraction)
    for column in ("reachable", "left_out_no_marketing", "value_at_stake", "value_per_customer", "treatment", "control",
                   "baseline_rate", "mde", "mde_relative", "mde_even_split"):
        plan[column] = plan[column].astype("float64").where(~small)
    plan = plan.rename_axis("persona").reset_index().sort_values(["value_at_stake", "customers", "persona"],
                                                                 ascending=[False, False, True], na_position="last")
    columns = ["persona", "trait", "customers", "offer", "channel", "message", "category", "reachable",
               "left_out_no_profiling", "left_out_no_marketing", "value_at_stake", "value_per_customer", "value_basis",
               "expected_effect", "effect_low", "effect_high", "split", "treatment", "control", "test_days",
               "baseline_rate", "mde", "mde_relative", "mde_even_split", "success_measure", "note"]
    out = plan[columns].reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


# --------------------------------------------------------------------------------------------
# the offer list
# --------------------------------------------------------------------------------------------
def offer_list(
    customers: pd.DataFrame,
    plan: pd.DataFrame,
    *,
    consents: pd.DataFrame | None = None,
    random_state: int = 0,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each reachable customer's one offer -- their persona's play -- and the control group.

    In every persona of ``plan`` with a test (``control`` > 0) exactly ``control`` of the
    reachable customers, drawn at random, form the control group (``arm = "control"``: no
    offer); the others get the offer (``arm = "offer"``). Personas whose plan has no campaign
    numbers (too few reachable customers) are not listed. Deterministic for the same inputs and
    ``random_state``.

    Parameters
    ----------
    customers : DataFrame
        Per-customer table, index ``customer_id``, with ``persona`` and (unless ``consents``
        is given) the consent flags.
    plan : DataFrame
        :func:`action_plan` output.
    consents : DataFrame, optional
        ``customer_id, consent_profiling, consent_marketing``; default: the flags in ``customers``.
    random_state : int
        Seed of the control-group draw.

    Returns
    -------
    offers : DataFrame
        ``customer_id, persona, offer, channel, arm``, sorted by persona and id.
    left_out : dict
        Members of the listed personas left out: ``no_profiling_consent``,
        ``no_marketing_consent``. O(customers log customers).
    """
    _require(customers, ["persona"], "customers")
    _require(plan, ["persona", "offer", "channel", "treatment", "control"], "plan")
    live = plan[plan["treatment"].fillna(0) > 0].set_index("persona")
    members = customers[customers["persona"].astype("string").isin(live.index)]
    table = pd.DataFrame({"customer_id": members.index.astype("string"),
                          "persona": members["persona"].astype("string").to_numpy()})
    table, left_out = _contactable(table, consents if consents is not None else customers)
    table = table.sort_values(["persona", "customer_id"]).reset_index(drop=True)
    draw = pd.Series(np.random.default_rng(random_state).random(len(table)), index=table.index)
    order = draw.groupby(table["persona"]).rank(method="first")
    controls = table["persona"].map(live["control"].fillna(0)).to_numpy()
    table["arm"] = np.where(order.to_numpy() <= controls, "control", "offer")
    table["offer"] = table["persona"].map(live["offer"]).astype("string")
    table["channel"] = table["persona"].map(live["channel"]).astype("string")
    return table[["customer_id", "persona", "offer", "channel", "arm"]], left_out


def offer_counts(offers: pd.DataFrame) -> pd.DataFrame:
    """Customers per offer: ``persona, offer, channel, offer_group, control_group, total``."""
    _require(offers, ["persona", "offer", "channel", "arm"], "offers")
    counts = pd.crosstab([offers["persona"], offers["offer"], offers["channel"]], offers["arm"])
    counts = counts.reindex(columns=["offer", "control"], fill_value=0).rename(columns={"offer": "offer_group",
                                                                                     "control": "control_group"})
    counts.columns.name = None
    counts["total"] = counts.sum(axis=1)
    return counts.reset_index()


# --------------------------------------------------------------------------------------------
# loyalty
# --------------------------------------------------------------------------------------------
def loyalty_tiers(customers: pd.DataFrame, thresholds: pd.DataFrame | None = None) -> pd.DataFrame:
    """Loyalty tier per customer from net spend and frequency percentiles.

    Percentile = share of customers with a value at most the customer's (x 100), so ties share
    a percentile. A customer gets the first (best) tier of ``thresholds`` whose both minimums
    hold; the last tier should have minimums 0 so that every customer gets one.

    Parameters
    ----------
    customers : DataFrame
        Index ``customer_id``; ``monetary`` and ``frequency``.
    thresholds : DataFrame, optional
        ``tier, min_monetary_pct, min_frequency_pct`` best first; default :data:`LOYALTY_TIERS`.

    Returns
    -------
    DataFrame
        Index ``customer_id``; ``tier`` (ordered categorical, worst to best), ``monetary_pct``,
        ``frequency_pct``. O(customers log customers + customers x tiers).

    Examples
    --------
    >>> f = pd.DataFrame({"monetary": [10.0, 20, 30, 40], "frequency": [1, 1, 2, 9]}, index=list("abcd"))
    >>> loyalty_tiers(f)["tier"].astype(str).tolist()
    ['Bronze', 'Silver', 'Silver', 'Platinum']
    """
    thresholds = LOYALTY_TIERS if thresholds is None else thresholds
    _require(thresholds, ["tier", "min_monetary_pct", "min_frequency_pct"], "thresholds")
    _require(customers, ["monetary", "frequency"], "customers")
    pct = customers[["monetary", "frequency"]].rank(method="max", pct=True) * 100
    meets = (pct["monetary"].to_numpy()[:, None] >= thresholds["min_monetary_pct"].to_numpy()[None, :]) & (
        pct["frequency"].to_numpy()[:, None] >= thresholds["min_frequency_pct"].to_numpy()[None, :])
    if not meets.any(axis=1).all():
        raise ValueError("thresholds leave some customers without a tier: give the last tier minimums of 0")
    order = list(thresholds["tier"])[::-1]
    tier = pd.Categorical(thresholds["tier"].to_numpy()[meets.argmax(axis=1)], categories=order, ordered=True)
    return pd.DataFrame({"tier": tier, "monetary_pct": pct["monetary"], "frequency_pct": pct["frequency"]}, index=customers.index)


def loyalty_tier_table(
    customers: pd.DataFrame,
    thresholds: pd.DataFrame | None = None,
    *,
    min_group_size: int = 10,
) -> pd.DataFrame:
    """The loyalty tiers as a small table: who qualifies (in money and orders), how many, and
    what they are worth.

    Parameters
    ----------
    customers : DataFrame
        Index ``customer_id``; ``monetary`` and ``frequency``.
    thresholds : DataFrame, optional
        As in :func:`loyalty_tiers` (a ``description`` column is used as the rule in words).
    min_group_size : int
        Tiers with fewer customers show their size but no averages.

    Returns
    -------
    DataFrame
        One row per tier, best first: ``tier, rule`` (the rule in words), ``min_spend`` and
        ``min_orders`` (the smallest net spend and number of orders that meet the tier's
        percentile thresholds in this data), ``customers, customer_share, revenue_share,
        avg_spend, avg_orders`` (averages missing for tiers below ``min_group_size``).
    """
    thresholds = LOYALTY_TIERS if thresholds is None else thresholds
    tiers = loyalty_tiers(customers, thresholds)
    pct = tiers[["monetary_pct", "frequency_pct"]].to_numpy()
    spend, orders = customers["monetary"].to_numpy(dtype="float64"), customers["frequency"].to_numpy(dtype="float64")
    ok_spend = pct[:, :1] >= thresholds["min_monetary_pct"].to_numpy()[None, :]
    ok_orders = pct[:, 1:] >= thresholds["min_frequency_pct"].to_numpy()[None, :]
    g = customers.groupby(tiers["tier"].astype("string"))
    total = customers["monetary"].clip(lower=0).sum()
    out = pd.DataFrame({
        "tier": thresholds["tier"].to_numpy(),
        "rule": (thresholds["description"] if "description" in thresholds.columns else thresholds["tier"]).to_numpy(),
        "min_spend": np.where(ok_spend, spend[:, None], np.inf).min(axis=0),
        "min_orders": np.where(ok_orders, orders[:, None], np.inf).min(axis=0),
    }).set_index("tier")
    out["customers"] = g.size().reindex(out.index, fill_value=0).astype(int)
    out["customer_share"] = out["customers"] / max(len(customers), 1)
    revenue = customers["monetary"].clip(lower=0).groupby(tiers["tier"].astype("string")).sum()
    out["revenue_share"] = revenue.reindex(out.index, fill_value=0.0) / (total or np.nan)
    out["avg_spend"] = g["monetary"].mean().reindex(out.index)
    out["avg_orders"] = g["frequency"].mean().reindex(out.index)
    small = out["customers"] < min_group_size
    out.loc[small, ["avg_spend", "avg_orders", "revenue_share"]] = np.nan
    out[["min_spend", "min_orders"]] = out[["min_spend", "min_orders"]].replace(np.inf, np.nan)
    return out.reset_index()


# --------------------------------------------------------------------------------------------
# eligibility lists
# --------------------------------------------------------------------------------------------
def senior_discount_list(customers: pd.DataFrame, as_of: str | pd.Timestamp, *,
                         band: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Customers in the oldest age band (or ``band``), for a senior discount.

    The age band comes from ``age_band`` or, when absent, from ``birth_date`` at ``as_of``
    (:func:`segmentation.features.demographics`). The oldest band is the one with the highest
    leading number (``65+`` over ``55-64``). Only customers with profiling and marketing consent
    are listed.

    Returns
    -------
    eligible : DataFrame
        ``customer_id, age_band, offer, reason``.
    left_out : dict
        Eligible customers left out: ``no_profiling_consent``, ``no_marketing_consent``.
    """
    demo = demographics(customers, as_of)
    if "age_band" not in demo.columns or demo["age_band"].isna().all():
        raise ValueError("customers has neither age_band nor birth_date: the senior discount needs one of them")
    bands = pd.Series(demo["age_band"].dropna().unique())
    band = band or bands.iloc[bands.str.extract(r"(\d+)", expand=False).astype(float).argmax()]
    who = demo[demo["age_band"] == band].rename_axis("customer_id").reset_index()[["customer_id", "age_band"]]
    who["offer"], who["reason"] = "senior discount", f"in the oldest age band ({band})"
    return _contactable(who, customers)


def win_back_list(
    customers: pd.DataFrame,
    *,
    consents: pd.DataFrame | None = None,
    value_quantile: float = 0.8,
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Valuable customers who are lapsing or lapsed, for a win-back offer.

    Valuable: net spend (``monetary``) at or above the ``value_quantile`` of all customers.
    Lapsing or lapsed: ``status`` (:func:`segmentation.definitions.customer_status`; derived with
    its default thresholds when the column is absent). Only customers with profiling and
    marketing consent are listed.

    Parameters
    ----------
    customers : DataFrame
        Per-customer table, index ``customer_id``: ``monetary, recency_days`` and ``status``
        (or ``frequency, ipi_mean_days`` to derive it).
    consents : DataFrame, optional
        ``customer_id, consent_profiling, consent_marketing``; default: the flags in ``customers``.
    value_quantile : float
        The top ``1 - value_quantile`` by net spend count as valuable.

    Returns
    -------
    eligible : DataFrame
        ``customer_id, status, monetary, recency_days, offer, reason``, by spend, largest first.
    left_out : dict
        Eligible customers left out: ``no_profiling_consent``, ``no_marketing_consent``. O(customers).
    """
    _require(customers, ["monetary", "recency_days"], "customers")
    status = (customers["status"] if "status" in customers.columns else definitions.customer_status(customers)).astype("string")
    valuable = customers["monetary"] >= customers["monetary"].quantile(value_quantile)
    chosen = valuable & status.isin(["lapsing", "lapsed"])
    who = customers.loc[chosen, ["monetary", "recency_days"]].rename_axis("customer_id").reset_index()
    who.insert(1, "status", status[chosen].to_numpy())
    who["offer"] = "win-back"
    who["reason"] = (f"top {1 - value_quantile:.0%} by net spend; " + who["status"]
                     + ": no order for " + who["recency_days"].round().astype("Int64").astype("string") + " days")
    who = who.sort_values(["monetary", "customer_id"], ascending=[False, True])
    return _contactable(who.astype({"customer_id": "string"}), consents if consents is not None else customers)


# --------------------------------------------------------------------------------------------
# key dates
# --------------------------------------------------------------------------------------------
def _next_occurrence(dates: pd.Series, as_of: pd.Timestamp) -> pd.Series:
    """Next anniversary of each date on or after ``as_of`` (Feb 29 falls on Feb 28 in common years)."""
    month, day = dates.dt.month, dates.dt.day

    def in_year(year: pd.Series) -> pd.Series:
        leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
        d = day.where(~((month == 2) & (day == 29) & ~leap), 28)
        return pd.to_datetime(pd.DataFrame({"year": year, "month": month, "day": d}))

    year = pd.Series(as_of.year, index=dates.index)
    this = in_year(year)
    return this.where(this >= as_of.normalize(), in_year(year + 1))


def upcoming_key_dates(customers: pd.DataFrame, as_of: str | pd.Timestamp,
                       days: int = 30) -> tuple[pd.DataFrame, dict[str, int]]:
    """Birthdays and signup anniversaries in ``[as_of, as_of + days)`` of customers with
    profiling and marketing consent.

    Vectorized calendar arithmetic: the date's month and day placed in ``as_of``'s year, or the
    next year when already past; a Feb 29 date is celebrated on Feb 28 in common years. A signup
    anniversary needs at least one full year of membership. O(customers).

    Returns
    -------
    dates : DataFrame
        ``customer_id, event ("birthday" | "signup anniversary"), date, days_until, years``
        (age reached / years as a member), sorted by date.
    left_out : dict
        Customers with an upcoming date left out: ``no_profiling_consent``, ``no_marketing_consent``.

    Examples
    --------
    >>> c = pd.DataFrame({"customer_id": ["a"], "birth_date": ["1980-02-29"], "consent_marketing": [True]})
    >>> upcoming_key_dates(c, "2026-02-20", days=10)[0][["date", "years"]].astype(str).values.tolist()
    [['2026-02-28', '46']]
    """
    _require(customers, ["customer_id"], "customers")
    as_of = pd.Timestamp(as_of)
    present = [(col, event) for col, event in (("birth_date", "birthday"), ("signup_date", "signup anniversary")) if col in customers.columns]
    if not present:
        raise ValueError("customers has neither birth_date nor signup_date; nothing to list")
    parts = []
    for col, event in present:  # at most two columns
        known = customers[["customer_id", col]].assign(start=pd.to_datetime(customers[col], errors="coerce")).dropna(subset=["start"])
        known = known[known["start"] < as_of]
        when = _next_occurrence(known["start"], as_of)
        parts.append(pd.DataFrame({"customer_id": known["customer_id"].astype("string"), "event": event, "date": when,
                                   "days_until": (when - as_of.normalize()).dt.days, "years": when.dt.year - known["start"].dt.year}))
    out = pd.concat(parts, ignore_index=True)
    out = out[(out["days_until"] < days) & (out["years"] >= 1)].sort_values(["date", "event", "customer_id"])
    return _contactable(out, customers)


def list_summary(lists: dict[str, tuple[pd.DataFrame, dict[str, int]]]) -> pd.DataFrame:
    """One row per contact list: ``list, customers`` (listed), ``left_out_no_profiling,
    left_out_no_marketing``, from ``{name: (table, left_out)}`` as the list functions return."""
    rows = [(name, int(table["customer_id"].nunique()), int(left[LEFT_OUT[0]]), int(left[LEFT_OUT[1]]))
            for name, (table, left) in lists.items()]  # a handful of lists
    return pd.DataFrame(rows, columns=["list", "customers", "left_out_no_profiling", "left_out_no_marketing"])
