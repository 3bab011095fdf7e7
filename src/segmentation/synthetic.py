"""A seeded, vectorized synthetic store with hidden ground truth.

:func:`generate_store` produces the five canonical tables (transactions, customers, products,
events, feedback) consistently, plus a ``truth`` table with each customer's planted persona and
true behaviour parameters, so that every analysis in this project can be checked against a
known answer.

How customers behave (the planted model)
----------------------------------------
Each customer belongs to one of the :data:`PERSONAS`. Purchases follow the BG/NBD story (Fader,
Hardie & Lee 2005): a first purchase at acquisition, then a Poisson process with a customer rate
``lambda ~ Gamma(shape, rate_mean / shape)`` per week, thinned by seasonality (December peak,
summer drinks); after every purchase the customer drops out for good with probability
``dropout``. Baskets (lines, quantities), category mix, time of day and week, channel, discount
use, returns, product variety (novelty), age, household, region, journey and satisfaction all
depend on the persona.

Planted effects for the journey and feedback analyses:

* :data:`CHECKOUT_CONVERSION` -- the share of web sessions that reach ``checkout`` and go on to
  ``order`` differs by acquisition channel (social converts worst).
* :data:`LAPSE_NPS_DROP` -- customers who drop out give NPS scores this much lower in the
  :data:`LAPSE_WINDOW_DAYS` before their last purchase.

Performance: everything is numpy array arithmetic over all customers/orders/lines at once
(O(lines)); 1,000,000 transaction lines take about 3 s on a 2-core machine.
:func:`write_transactions_dataset` writes a store of any size as a Parquet data set, one part
at a time, so that memory stays bounded (used by ``benchmarks/bench_scaling.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

__all__ = [
    "DEFAULT_AS_OF",
    "CATEGORIES",
    "PERSONAS",
    "CHECKOUT_CONVERSION",
    "FUNNEL_STEPS",
    "LAPSE_NPS_DROP",
    "LAPSE_WINDOW_DAYS",
    "generate_store",
    "write_transactions_dataset",
]

DEFAULT_AS_OF = "2026-01-01"

CATEGORIES: tuple[str, ...] = (
    "fresh_produce", "meat_fish", "dairy", "bakery", "staples", "ready_meals", "snacks_treats",
    "drinks", "alcohol", "household", "baby", "pet", "health_beauty", "books_puzzles", "premium_deli",
)
_BASE_PRICE = np.array([2.0, 6.5, 2.2, 2.0, 2.5, 4.5, 2.5, 2.0, 9.0, 4.0, 7.0, 6.0, 5.5, 9.5, 8.5])
_PRODUCTS_PER_CATEGORY = 20
SLOTS = ("morning", "afternoon", "evening", "night")
_SLOT_HOURS = np.array([[6, 12], [12, 17], [17, 22], [22, 30]])  # night wraps past midnight
CHANNELS = ("store", "online", "app")
ACQUISITION = ("search", "social", "email", "direct")
REGIONS = ("North", "South", "East", "West", "Central")
HOUSEHOLDS = ("single", "couple", "family", "retired")


def _persona_table() -> pd.DataFrame:
    """The planted personas as data: one row each (documented columns below).

    share: share of customers; rate: mean purchases per week; shape: Gamma shape of the rate
    across customers; dropout: probability to drop out after each purchase; lines: mean lines per
    basket; qty: mean units per line; slot_*: time-of-day probabilities; weekend: share of weekend
    orders; ch_*: channel probabilities; discount: share of lines bought on discount; returns:
    share of lines returned; variety: 1 = picks products uniformly (novelty seeking), larger =
    sticks to favourites; age_mean/age_sd: age in years; hh_*: household probabilities;
    region_central: share living in the Central region; nps: mean NPS score; respond: survey
    response probability; cat_*: category weights.
    """
    cat = {c: i for i, c in enumerate(CATEGORIES)}

    def mix(**w: float) -> list[float]:
        v = np.full(len(CATEGORIES), 0.15)
        for k, x in w.items():
            v[cat[k]] = x
        return list(v / v.sum())

    rows = {
        "health_conscious_cooks": dict(
            share=0.15, rate=0.55, shape=6.0, dropout=0.03, lines=7, qty=1.6,
            slots=(0.70, 0.20, 0.08, 0.02), weekend=0.15, channels=(0.80, 0.15, 0.05),
            discount=0.08, returns=0.01, variety=2.5, age_mean=58, age_sd=8,
            hh=(0.20, 0.50, 0.10, 0.20), region_central=0.15, nps=8.6, respond=0.35,
            cats=mix(fresh_produce=6, meat_fish=3, dairy=2.5, staples=2.5, bakery=1.0)),
        "busy_families": dict(
            share=0.18, rate=0.80, shape=6.0, dropout=0.03, lines=11, qty=2.2,
            slots=(0.15, 0.45, 0.35, 0.05), weekend=0.75, channels=(0.55, 0.40, 0.05),
            discount=0.20, returns=0.03, variety=2.0, age_mean=39, age_sd=6,
            hh=(0.0, 0.05, 0.95, 0.0), region_central=0.10, nps=7.2, respond=0.20,
            cats=mix(baby=4, household=3, snacks_treats=2.5, staples=2.5, dairy=2, drinks=1.5)),
        "bargain_hunters": dict(
            share=0.18, rate=0.45, shape=6.0, dropout=0.05, lines=6, qty=2.5,
            slots=(0.30, 0.50, 0.15, 0.05), weekend=0.35, channels=(0.70, 0.25, 0.05),
            discount=0.75, returns=0.02, variety=3.0, age_mean=47, age_sd=12,
            hh=(0.35, 0.35, 0.20, 0.10), region_central=0.20, nps=6.8, respond=0.18,
            cats=mix(staples=5, household=4, drinks=1.5, snacks_treats=1.2)),
        "occasional_indulgers": dict(
            share=0.14, rate=0.12, shape=6.0, dropout=0.06, lines=5, qty=1.3,
            slots=(0.10, 0.35, 0.50, 0.05), weekend=0.60, channels=(0.45, 0.50, 0.05),
            discount=0.10, returns=0.06, variety=1.0, age_mean=42, age_sd=10,
            hh=(0.30, 0.55, 0.10, 0.05), region_central=0.25, nps=8.0, respond=0.15,
            cats=mix(snacks_treats=4, alcohol=4, premium_deli=4, books_puzzles=3)),
        "young_urban_singles": dict(
            share=0.15, rate=0.50, shape=6.0, dropout=0.05, lines=4, qty=1.2,
            slots=(0.05, 0.15, 0.50, 0.30), weekend=0.40, channels=(0.15, 0.15, 0.70),
            discount=0.12, returns=0.04, variety=1.0, age_mean=26, age_sd=3,
            hh=(0.90, 0.10, 0.0, 0.0), region_central=0.80, nps=7.0, respond=0.12,
            cats=mix(ready_meals=6, drinks=3, snacks_treats=1.5, health_beauty=2)),
        "lapsing_one_timers": dict(
            share=0.12, rate=0.25, shape=6.0, dropout=0.55, lines=5, qty=1.5,
            slots=(0.25, 0.45, 0.25, 0.05), weekend=0.45, channels=(0.50, 0.45, 0.05),
            discount=0.30, returns=0.12, variety=1.5, age_mean=35, age_sd=12,
            hh=(0.40, 0.35, 0.20, 0.05), region_central=0.30, nps=5.5, respond=0.25,
            cats=mix(household=2, pet=4, health_beauty=2.5, staples=1.5)),
        "vip_loyalists": dict(
            share=0.08, rate=1.80, shape=8.0, dropout=0.005, lines=12, qty=2.0,
            slots=(0.35, 0.35, 0.25, 0.05), weekend=0.30, channels=(0.50, 0.30, 0.20),
            discount=0.05, returns=0.02, variety=2.0, age_mean=50, age_sd=9,
            hh=(0.15, 0.45, 0.30, 0.10), region_central=0.20, nps=9.2, respond=0.40,
            cats=list(np.full(len(CATEGORIES), 1.0 / len(CATEGORIES)) * 0.5
                      + 0.5 * np.array(mix(premium_deli=3, alcohol=1.5, meat_fish=1.5, fresh_produce=1.5)))),
    }
    records = []
    for name, r in rows.items():
        rec = {"persona": name}
        rec.update({k: v for k, v in r.items() if k not in ("slots", "channels", "hh", "cats")})
        rec.update({f"slot_{s}": p for s, p in zip(SLOTS, r["slots"])})
        rec.update({f"ch_{c}": p for c, p in zip(CHANNELS, r["channels"])})
        rec.update({f"hh_{h}": p for h, p in zip(HOUSEHOLDS, r["hh"])})
        rec.update({f"cat_{c}": p for c, p in zip(CATEGORIES, r["cats"])})
        records.append(rec)
    return pd.DataFrame(records).set_index("persona")


#: The planted personas (one row each; see :func:`_persona_table` for the columns).
PERSONAS: pd.DataFrame = _persona_table()

#: Web funnel steps in order.
FUNNEL_STEPS: tuple[str, ...] = ("visit", "product_view", "add_to_cart", "checkout", "order")
#: Planted P(order | checkout) by acquisition channel.
CHECKOUT_CONVERSION: dict[str, float] = {"email": 0.85, "direct": 0.75, "search": 0.70, "social": 0.45}
#: Planted conditional step conversions shared by all channels: P(product_view | visit),
#: P(add_to_cart | product_view), P(checkout | add_to_cart).
STEP_CONVERSION: tuple[float, float, float] = (0.85, 0.60, 0.75)
#: Customers who drop out score NPS this much lower in the window before their last purchase.
LAPSE_NPS_DROP = 3.0
LAPSE_WINDOW_DAYS = 120

_FIRST = ("Alice", "Bruno", "Chloe", "Dmitri", "Elena", "Farid", "Greta", "Hugo", "Ines", "Jonas",
          "Keiko", "Liam", "Maya", "Nikolai", "Olga", "Pablo", "Quinn", "Rosa", "Samir", "Tilda")
_LAST = ("Smith", "Okafor", "Novak", "Garcia", "Lindqvist", "Moreau", "Tanaka", "Kowalski",
         "Brennan", "Haddad", "Rossi", "Schmidt", "Dubois", "Fernandes", "Yilmaz", "Larsen")
_THEMES = {
    "delivery": ["delivery was late again", "my order arrived two days late", "courier left the box in the rain"],
    "quality": ["the fruit was not fresh", "product quality has dropped", "milk was past its date"],
    "price": ["prices went up a lot", "too expensive compared to other shops", "fewer discounts than before"],
    "staff": ["staff were friendly and helpful", "lovely cashier, very kind", "great help finding items"],
    "app": ["the app crashes at checkout", "app is slow and logs me out", "cannot pay in the app"],
    "stock": ["items out of stock", "shelves were empty", "my usual brand was missing"],
}


def _ids(prefix: str, n: int, width: int) -> np.ndarray:
    """``prefix`` + zero-padded 0..n-1 (``f"{prefix}{i:0{width}d}"``, vectorized)."""
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype("U"), width)).astype(object)


def _take(labels, codes: np.ndarray) -> pd.Series:
    """``labels[codes]`` as an Arrow-backed string Series (Arrow's take: ~100x faster than
    building Python strings element by element)."""
    return pd.Series(pa.array(np.asarray(labels, dtype=object)).take(pa.array(codes)), dtype="str")


def _choice_rows(rng: np.random.Generator, probs: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Vectorized categorical draw: one draw per element of ``rows`` from ``probs[rows]``."""
    cum = np.cumsum(probs, axis=1)
    cum[:, -1] = 1.0
    u = rng.random(len(rows))
    return (u[:, None] > cum[rows]).sum(axis=1)


def _products(rng: np.random.Generator, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    n_cat = len(CATEGORIES)
    cat_idx = np.repeat(np.arange(n_cat), _PRODUCTS_PER_CATEGORY)
    within = np.tile(np.arange(_PRODUCTS_PER_CATEGORY), n_cat)
    price = np.round(_BASE_PRICE[cat_idx] * rng.lognormal(0.0, 0.35, len(cat_idx)), 2)
    span = (end - start).days
    # the last two products of each category launch during the period (novelty)
    launch = np.where(within >= _PRODUCTS_PER_CATEGORY - 2,
                      rng.integers(span // 4, 3 * span // 4, len(cat_idx)), 0)
    return pd.DataFrame({
        "product_id": _ids("P", len(cat_idx), 4),
        "name": [f"{CATEGORIES[c].replace('_', ' ').title()} item {w + 1}" for c, w in zip(cat_idx, within)],
        "category": np.array(CATEGORIES)[cat_idx],
        "subcategory": np.where(price > _BASE_PRICE[cat_idx] * 1.3, "premium", "standard"),
        "base_price": price,
        "launch_date": start + pd.to_timedelta(launch, unit="D"),
    })


def generate_store(
    n_customers: int = 2000,
    *,
    start: str = "2024-01-01",
    end: str = "2025-12-31",
    random_state: int = 42,
    messy: bool = False,
) -> dict[str, pd.DataFrame]:
    """Generate a synthetic store.

    Parameters
    ----------
    n_customers : int
        Customers to create (about 150 transaction lines each on average over two years).
    start, end : str
        The trading period (inclusive dates).
    random_state : int
        Seed of every random draw: the same arguments give identical tables.
    messy : bool
        Add realistic mess: ~3% lines without customer id, ~1% exact duplicate lines, a few
        wholesale-size quantities, a few zero or negative prices.

    Returns
    -------
    dict of DataFrame
        ``transactions, customers, products, events, feedback, truth`` in the canonical columns
        of :mod:`segmentation.schema`. ``truth`` has ``customer_id, persona, purchase_rate``
        (per week), ``dropout_prob, mean_basket_value, churned`` (dropped out before ``end``),
        ``last_active`` and ``acquisition_channel``.

    Examples
    --------
    >>> store = generate_store(200, random_state=1)
    >>> sorted(store)
    ['customers', 'events', 'feedback', 'products', 'transactions', 'truth']
    """
    if n_customers < 1:
        raise ValueError(f"n_customers must be at least 1, got {n_customers}")
    rng = np.random.default_rng(random_state)
    t_start, t_end = pd.Timestamp(start), pd.Timestamp(end) + pd.Timedelta(days=1)
    span_days = (t_end - t_start).days
    P = PERSONAS
    n_p = len(P)

    # --- customers and their planted parameters -------------------------------------------
    persona = rng.choice(n_p, size=n_customers, p=(P["share"] / P["share"].sum()).to_numpy())
    shape = P["shape"].to_numpy()[persona]
    lam = rng.gamma(shape, P["rate"].to_numpy()[persona] / shape)  # purchases per week
    dropout = P["dropout"].to_numpy()[persona]
    birth_day = rng.uniform(0, span_days * 0.85, n_customers)  # acquisition, days after start
    # --- orders: first purchase + thinned Poisson repeats, cut at dropout ---------------------
    season_max = 1.5
    window = span_days - birth_day
    n_cand = rng.poisson(lam * season_max * window / 7.0)
    cust = np.repeat(np.arange(n_customers), n_cand)
    t = birth_day[cust] + rng.random(len(cust)) * window[cust]
    day_of_year = (t_start + pd.to_timedelta(t, unit="D")).day_of_year.to_numpy()
    season = 1.0 + 0.5 * (day_of_year >= 335) + 0.15 * ((day_of_year >= 170) & (day_of_year <= 240))
    keep = rng.random(len(t)) < season / season_max
    cust, t = cust[keep], t[keep]
    order = np.lexsort((t, cust))
    cust, t = cust[order], t[order]
    rank = np.arange(len(cust)) - np.searchsorted(cust, cust)  # 0-based repeat number
    allowed = rng.geometric(dropout) - 1  # repeat purchases before dropping out
    keep = rank < allowed[cust]
    repeats_possible = np.bincount(cust, minlength=n_customers)
    cust, t = cust[keep], t[keep]
    churned = allowed < repeats_possible
    o_cust = np.concatenate([np.arange(n_customers), cust])
    o_day = np.concatenate([birth_day, t])
    order = np.lexsort((o_day, o_cust))
    o_cust, o_day = o_cust[order], o_day[order]
    o_p = persona[o_cust]
    n_orders = len(o_cust)

    # day of week preference, time of day slot
    o_date = t_start + pd.to_timedelta(np.floor(o_day), unit="D")
    dow = o_date.day_of_week.to_numpy()
    want_weekend = rng.random(n_orders) < P["weekend"].to_numpy()[o_p]
    shift = np.where(want_weekend & (dow < 5), 5 - dow + rng.integers(0, 2, n_orders),
                     np.where(~want_weekend & (dow >= 5), np.where(rng.random(n_orders) < 0.5, 4 - dow, 7 - dow), 0))
    slot = _choice_rows(rng, P[[f"slot_{s}" for s in SLOTS]].to_numpy(), o_p)
    lo, hi = _SLOT_HOURS[slot, 0], _SLOT_HOURS[slot, 1]
    minutes = (lo * 60 + rng.random(n_orders) * (hi - lo) * 60).astype(np.int64)
    o_time = o_date + pd.to_timedelta(shift, unit="D") + pd.to_timedelta(minutes, unit="min")
    in_period = o_time < t_end
    o_cust, o_p, o_time, slot = o_cust[in_period], o_p[in_period], o_time[in_period], slot[in_period]
    n_orders = len(o_cust)
    order_id = _ids("O", n_orders, 7)
    o_channel = _choice_rows(rng, P[[f"ch_{c}" for c in CHANNELS]].to_numpy(), o_p)

    # --- lines -------------------------------------------------------------------------------
    products = _products(rng, t_start, t_end)
    n_lines = 1 + rng.poisson(P["lines"].to_numpy()[o_p] - 1)
    li_order = np.repeat(np.arange(n_orders), n_lines)
    li_p = o_p[li_order]
    li_cat = _choice_rows(rng, P[[f"cat_{c}" for c in CATEGORIES]].to_numpy(), li_p)
    # favourites: variety > 1 skews picks towards a customer-specific subset of products
    variety = P["variety"].to_numpy()[li_p]
    cust_offset = (o_cust[li_order] * 7919) % _PRODUCTS_PER_CATEGORY
    pick = np.floor(_PRODUCTS_PER_CATEGORY * rng.random(len(li_order)) ** variety).astype(np.int64)
    within = (pick + cust_offset) % _PRODUCTS_PER_CATEGORY
    prod_idx = li_cat * _PRODUCTS_PER_CATEGORY + within
    li_time = o_time[li_order]
    not_launched = li_time < products["launch_date"].to_numpy()[prod_idx]
    prod_idx = np.where(not_launched, li_cat * _PRODUCTS_PER_CATEGORY, prod_idx)
    qty = 1 + rng.poisson(P["qty"].to_numpy()[li_p] - 1).astype(np.float64)
    price = products["base_price"].to_numpy()[prod_idx] * rng.uniform(0.97, 1.03, len(li_order))
    on_discount = rng.random(len(li_order)) < P["discount"].to_numpy()[li_p]
    rate = rng.choice([0.2, 0.25, 0.3, 0.5], size=len(li_order))
    discount = np.where(on_discount, np.round(price * rate * qty, 2), 0.0)
    unit_price = np.round(np.where(on_discount, price * (1 - rate), price), 2)
    li_cust = o_cust[li_order]
    li_channel = o_channel[li_order]
    store_of_customer = rng.integers(1, 9, n_customers)
    store_code = np.where(li_channel == 0, store_of_customer[li_cust], 0)

    customer_ids = _ids("C", n_customers, 5)
    tx = pd.DataFrame({
        "customer_id": _take(customer_ids, li_cust),
        "order_id": _take(order_id, li_order),
        "order_date": li_time,
        "product_id": _take(products["product_id"], prod_idx),
        "category": _take(CATEGORIES, li_cat),
        "quantity": qty,
        "unit_price": unit_price,
        "discount": discount,
        "channel": _take(CHANNELS, li_channel),
        "store_id": _take(["web"] + [f"S{i}" for i in range(1, 9)], store_code),
    })
    # returns: a negative line some days later for a share of lines
    is_ret = rng.random(len(tx)) < P["returns"].to_numpy()[li_p]
    ret = tx[is_ret].copy()
    ret["order_id"] = "R" + ret["order_id"].str[1:]
    ret["order_date"] = ret["order_date"] + pd.to_timedelta(rng.integers(1, 21, len(ret)), unit="D")
    ret["quantity"] = -ret["quantity"]
    ret["discount"] = 0.0
    ret = ret[ret["order_date"] < t_end]
    tx = pd.concat([tx, ret], ignore_index=True)

    # --- customers ---------------------------------------------------------------------------
    age = np.clip(rng.normal(P["age_mean"].to_numpy()[persona], P["age_sd"].to_numpy()[persona]), 18, 90)
    birth_date = (t_end - pd.to_timedelta(np.round(age * 365.25), unit="D")).normalize()
    household = _choice_rows(rng, P[[f"hh_{h}" for h in HOUSEHOLDS]].to_numpy(), persona)
    hh_size = np.select([household == 0, household == 1, household == 2], [1, 2, 3 + rng.integers(0, 3, n_customers)], 2)
    central = rng.random(n_customers) < P["region_central"].to_numpy()[persona]
    region = np.where(central, "Central", np.array(REGIONS[:4])[rng.integers(0, 4, n_customers)])
    first_name = np.array(_FIRST)[rng.integers(0, len(_FIRST), n_customers)]
    last_name = np.array(_LAST)[rng.integers(0, len(_LAST), n_customers)]
    num = rng.integers(10, 99, n_customers).astype(str)
    customers = pd.DataFrame({
        "customer_id": customer_ids,
        "signup_date": (t_start + pd.to_timedelta(birth_day - rng.uniform(0, 60, n_customers), unit="D")).normalize(),
        "birth_date": birth_date,
        "region": region,
        "household": np.array(HOUSEHOLDS)[household],
        "household_size": hh_size.astype(np.int64),
        "consent_profiling": rng.random(n_customers) < 0.92,
        "consent_marketing": rng.random(n_customers) < 0.60,
        "name": np.char.add(np.char.add(first_name, " "), last_name),
        "email": np.char.add(np.char.add(np.char.add(np.char.add(np.char.lower(first_name), "."), np.char.lower(last_name)), num), "@example.com"),
        "phone": np.char.add("+44 7700 9", np.char.zfill(rng.integers(0, 100000, n_customers).astype(str), 5)),
    })

    # --- truth -------------------------------------------------------------------------------
    last_active = o_time.to_series().groupby(o_cust).max().reindex(range(n_customers))
    value = (tx["quantity"] * tx["unit_price"]).groupby(tx["order_id"]).sum()
    basket = pd.Series(value.reindex(order_id).to_numpy()).groupby(o_cust).mean().reindex(range(n_customers))
    acquisition = rng.choice(len(ACQUISITION), size=n_customers, p=[0.35, 0.25, 0.15, 0.25])
    truth = pd.DataFrame({
        "customer_id": customer_ids,
        "persona": P.index.to_numpy()[persona],
        "purchase_rate": lam,
        "dropout_prob": dropout,
        "mean_basket_value": basket.to_numpy(),
        "churned": churned,
        "last_active": last_active.to_numpy(),
        "acquisition_channel": np.array(ACQUISITION)[acquisition],
    })

    events = _events(rng, o_cust, o_time, o_channel, order_id, customer_ids, acquisition, persona)
    feedback = _feedback(rng, o_cust, o_time, customer_ids, persona, churned, last_active.to_numpy(), customers)
    if messy:
        tx = _make_messy(rng, tx)
    tx = tx.sort_values(["order_date", "order_id"], kind="stable").reset_index(drop=True)
    return {
        "transactions": tx,
        "customers": customers,
        "products": products.drop(columns=["base_price", "launch_date"]),
        "events": events,
        "feedback": feedback,
        "truth": truth,
    }


def _events(rng, o_cust, o_time, o_channel, order_id, customer_ids, acquisition, persona) -> pd.DataFrame:
    """Web sessions: every online/app order has a converting session; non-converting sessions
    are added per step so that the planted conditional conversions hold in expectation."""
    web = o_channel > 0
    w_cust, w_time, w_order = o_cust[web], o_time[web], order_id[web]
    n_conv = len(w_cust)
    # session acquisition channel: the customer's own 70% of the time
    own = rng.random(n_conv) < 0.7
    ch = np.where(own, acquisition[w_cust], rng.integers(0, len(ACQUISITION), n_conv))
    checkout_conv = np.array([CHECKOUT_CONVERSION[c] for c in ACQUISITION])[ch]
    q = np.column_stack([np.full(n_conv, STEP_CONVERSION[0]), np.full(n_conv, STEP_CONVERSION[1]),
                         np.full(n_conv, STEP_CONVERSION[2]), checkout_conv])
    # expected sessions reaching step k per converting session: 1 / prod(q[k:])
    reach = 1.0 / np.cumprod(q[:, ::-1], axis=1)[:, ::-1]  # reach[:, k] for steps visit..checkout
    reach = np.column_stack([reach, np.ones(n_conv)])
    stop_at = reach[:, :-1] - reach[:, 1:]  # expected sessions stopping after step k (k = 0..3)
    n_stop = rng.poisson(stop_at)  # (n_conv, 4)
    s_src = np.concatenate([np.arange(n_conv), np.repeat(np.tile(np.arange(n_conv), 4), n_stop.T.ravel())])
    s_last = np.concatenate([np.full(n_conv, 4), np.repeat(np.repeat(np.arange(4), n_conv), n_stop.T.ravel())])
    n_sess = len(s_src)
    s_cust = customer_ids[w_cust][s_src].astype(object)
    anonymous = (s_last < 4) & (rng.random(n_sess) < 0.08)
    s_cust[anonymous] = None
    s_channel = np.array(ACQUISITION)[ch[s_src]]
    offset = np.where(s_last == 4, 0, -rng.integers(1, 30 * 24 * 60, n_sess))
    s_start = w_time[s_src] + pd.to_timedelta(offset - 25, unit="min")
    s_id = _ids("W", n_sess, 7)
    # steps 0..s_last, plus ad_impression/ad_click for paid channels
    steps = np.repeat(np.arange(n_sess), s_last + 1)
    step_no = np.arange(len(steps)) - np.searchsorted(steps, steps)
    ev = pd.DataFrame({
        "customer_id": _take(s_cust, steps),
        "session_id": _take(s_id, steps),
        "timestamp": s_start[steps] + pd.to_timedelta(step_no * 5 + rng.integers(0, 4, len(steps)), unit="min"),
        "event": _take(FUNNEL_STEPS, step_no),
        "channel": _take(s_channel, steps),
    })
    paid = np.isin(s_channel, ["search", "social"])
    ads = pd.DataFrame({
        "customer_id": np.repeat(s_cust[paid], 2),
        "session_id": np.repeat(s_id[paid], 2),
        "timestamp": np.repeat(s_start[paid], 2) - pd.to_timedelta(np.tile([10, 2], paid.sum()), unit="min"),
        "event": np.tile(["ad_impression", "ad_click"], paid.sum()),
        "channel": np.repeat(s_channel[paid], 2),
    })
    # post-purchase: support contacts (more for lapsing one-timers) after converting sessions
    p_support = np.where(persona[w_cust] == list(PERSONAS.index).index("lapsing_one_timers"), 0.30, 0.06)
    sup = rng.random(n_conv) < p_support
    support = pd.DataFrame({
        "customer_id": customer_ids[w_cust][sup],
        "session_id": np.char.add("T", w_order[sup].astype(str)),
        "timestamp": w_time[sup] + pd.to_timedelta(rng.integers(1, 10, sup.sum()), unit="D"),
        "event": "support_contact",
        "channel": "support",
    })
    out = pd.concat([ads, ev, support], ignore_index=True)
    return out.sort_values(["timestamp", "session_id"], kind="stable").reset_index(drop=True)


def _feedback(rng, o_cust, o_time, customer_ids, persona, churned, last_active, customers) -> pd.DataFrame:
    """Post-order surveys: NPS, CSAT and a comment; lapsing customers score lower before leaving."""
    respond = rng.random(len(o_cust)) < PERSONAS["respond"].to_numpy()[persona[o_cust]] * 0.5
    f_cust, f_time = o_cust[respond], o_time[respond] + pd.to_timedelta(1, unit="D")
    nps_mean = PERSONAS["nps"].to_numpy()[persona[f_cust]]
    before_lapse = churned[f_cust] & (
        (pd.to_datetime(last_active[f_cust]) - f_time) < pd.Timedelta(days=LAPSE_WINDOW_DAYS))
    nps_mean = nps_mean - LAPSE_NPS_DROP * before_lapse
    nps = np.clip(np.round(rng.normal(nps_mean, 1.2)), 0, 10)
    csat = np.clip(np.round(1 + nps / 2.5 + rng.normal(0, 0.5, len(nps))), 1, 5)
    themes = list(_THEMES)
    good = nps >= 8
    theme = np.where(good, themes.index("staff"), rng.integers(0, len(themes), len(nps)))
    # persona-specific complaints: singles -> app, families -> stock, bargain hunters -> price
    p_name = PERSONAS.index.to_numpy()[persona[f_cust]]
    bad = ~good & (rng.random(len(nps)) < 0.6)
    special = {"young_urban_singles": "app", "busy_families": "stock", "bargain_hunters": "price",
               "lapsing_one_timers": "delivery", "health_conscious_cooks": "quality"}
    for p, th in special.items():  # loop over 5 personas, not over rows
        theme = np.where(bad & (p_name == p), themes.index(th), theme)
    variant = rng.integers(0, 3, len(nps))
    text = np.array([[_THEMES[t][v] for v in range(3)] for t in themes])[theme, variant].astype(object)
    with_pii = rng.random(len(nps)) < 0.03
    emails = customers["email"].to_numpy()[f_cust]
    text[with_pii] = text[with_pii] + ", please email me at " + emails[with_pii]
    has_comment = rng.random(len(nps)) < 0.7
    text[~has_comment] = None
    return pd.DataFrame({
        "customer_id": customer_ids[f_cust],
        "timestamp": f_time,
        "nps": nps,
        "csat": csat,
        "comment": pd.array(text, dtype="string"),
    }).sort_values("timestamp", kind="stable").reset_index(drop=True)


def _make_messy(rng: np.random.Generator, tx: pd.DataFrame) -> pd.DataFrame:
    """Missing ids (~3%), exact duplicates (~1%), wholesale quantities, zero/negative prices."""
    tx = tx.copy()
    n = len(tx)
    tx["customer_id"] = tx["customer_id"].astype(object)
    tx.loc[rng.random(n) < 0.03, "customer_id"] = None
    dup = tx[rng.random(n) < 0.01]
    wholesale = rng.choice(n, size=max(1, n // 20000), replace=False)
    tx.loc[wholesale, "quantity"] = rng.integers(500, 5000, len(wholesale)).astype(float)
    bad_price = rng.choice(n, size=max(1, n // 10000), replace=False)
    tx.loc[bad_price, "unit_price"] = rng.choice([0.0, -1.0], size=len(bad_price))
    return pd.concat([tx, dup], ignore_index=True)


#: Average transaction lines per customer of the default store (measured at seed 42).
LINES_PER_CUSTOMER = 190


def write_transactions_dataset(
    folder: str | Path,
    n_lines: int,
    *,
    random_state: int = 42,
    customers_per_part: int = 20_000,
) -> pd.DataFrame:
    """Write about ``n_lines`` synthetic transaction lines as a Parquet data set
    (``folder/part-00000.parquet``, ...), one part at a time.

    Each part is an independent :func:`generate_store` of ``customers_per_part`` customers
    (seed ``random_state + part``) whose customer and order ids are prefixed with the part number, so ids
    are unique across parts. Memory is bounded by one part (about 4M lines, ~1.5 GB at the
    default), whatever ``n_lines`` is.

    Returns
    -------
    DataFrame
        ``part, path, customers, lines`` of every part written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n_customers = max(1, int(round(n_lines / LINES_PER_CUSTOMER)))
    rows = []
    for part, first in enumerate(range(0, n_customers, customers_per_part)):
        tx = generate_store(min(customers_per_part, n_customers - first), random_state=random_state + part)["transactions"]
        prefix = f"K{part:04d}-"
        tx["customer_id"] = prefix + tx["customer_id"].astype(str)
        tx["order_id"] = prefix + tx["order_id"].astype(str)
        path = folder / f"part-{part:05d}.parquet"
        tx.to_parquet(path, index=False)
        rows.append((part, str(path), tx["customer_id"].nunique(), len(tx)))
    return pd.DataFrame(rows, columns=["part", "path", "customers", "lines"])
