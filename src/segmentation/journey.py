"""Follow the journey: funnels, paths, attribution, post-purchase, cohorts, migration, trends.

Events use the canonical columns ``customer_id`` (optional, may be missing: anonymous
sessions), ``session_id``, ``timestamp``, ``event``, ``channel`` (optional). Every function
first codes the events as integers (:func:`pandas.factorize`), drops exact duplicate events
(counted in ``attrs["duplicates"]``) and events without a session, time or event name (counted
in ``attrs["incomplete"]``), and sorts them once by session and time. All counting is then
numpy/pandas array work -- ``bincount``, ``lexsort``, first-row-per-run masks -- with at most one
pass per funnel *step* or path *position* (a handful), never a Python loop over events,
sessions or customers. Cost: O(events log events) for the sort. A report that calls several
functions codes the events once with :func:`code_events` and passes the result instead of the
DataFrame (about 0.1 s per function instead of about 0.5 s on 480k events).

Funnel rule: a session reaches step k when it has an event of step k **at or after** the time it
reached step k-1 (so an out-of-order event -- an ``order`` logged before the ``checkout`` --
does not count as progress, and a later one does). Anonymous sessions count in the overall
funnel and per channel, but not per customer group. Within a session, "first" (customer,
channel) means the first non-missing value in time order.

Honesty: no events gives empty tables with the documented columns and a plain-language note;
every table that describes a group (persona, channel, cohort, category) leaves out groups
smaller than ``min_group_size`` and says so. Notes are in ``attrs["notes"]`` (a list of
sentences) of every returned table.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from scipy.stats import norm

from segmentation import explore

__all__ = [
    "WEB_FUNNEL",
    "NO_EVENTS_NOTE",
    "CodedEvents",
    "code_events",
    "wilson_interval",
    "funnel",
    "common_paths",
    "converting_vs_not",
    "attribution",
    "post_purchase",
    "cohort_retention",
    "Migration",
    "migration_matrix",
    "category_trends",
    "plot_funnel",
    "plot_cohort_heatmap",
    "plot_migration",
]

WEB_FUNNEL: tuple[str, ...] = ("visit", "product_view", "add_to_cart", "checkout", "order")

#: The note every journey table carries when the data set has no events.
NO_EVENTS_NOTE = ("This data set has no journey events (visits, views, carts, checkouts, orders): "
                  "funnels, paths, attribution and support contacts are not available.")

_REQUIRED = ("session_id", "timestamp", "event")
_NEVER = np.iinfo(np.int64).max  # "not reached" for int64 nanosecond times


def wilson_interval(successes: np.ndarray | pd.Series, trials: np.ndarray | pd.Series,
                    level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for binomial proportions (good for small counts).

    Parameters
    ----------
    successes, trials : array-like
        Counts, element-wise; ``trials == 0`` gives NaN bounds.
    level : float
        Confidence level.

    Returns
    -------
    (ndarray, ndarray)
        Lower and upper bounds, within [0, 1].

    >>> lo, hi = wilson_interval(np.array([8]), np.array([10]))
    >>> round(float(lo[0]), 3), round(float(hi[0]), 3)
    (0.49, 0.943)
    """
    k = np.asarray(successes, dtype="float64")
    n = np.asarray(trials, dtype="float64")
    z = norm.ppf(0.5 + level / 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / n
        centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return np.where(n > 0, centre - half, np.nan), np.where(n > 0, centre + half, np.nan)


# ------------------------------------------------------------------------------- coded events
@dataclass(frozen=True)
class CodedEvents:
    """Events as integer codes, deduplicated and sorted by (session, time, input order).

    Made by :func:`code_events`; every function of this module accepts it in place of the
    events DataFrame, so a report that calls several of them codes the events once.
    """

    session: np.ndarray  # codes into session_ids (sorted labels), 0..S-1
    ts: np.ndarray  # int64 nanoseconds
    event: np.ndarray  # codes into event_names
    customer: np.ndarray  # codes into customer_ids, -1 = anonymous
    channel: np.ndarray  # codes into channel_names, -1 = missing
    session_ids: pd.Index
    event_names: pd.Index
    customer_ids: pd.Index
    channel_names: pd.Index
    duplicates: int = 0
    incomplete: int = 0

    @property
    def n_sessions(self) -> int:
        return len(self.session_ids)

    def code(self, event: str) -> int:
        """The code of an event name; -2 (matches nothing) when absent."""
        hit = self.event_names.get_indexer([event])[0]
        return int(hit) if hit >= 0 else -2

    def attrs(self, notes: list[str] | None = None) -> dict[str, Any]:
        return {"duplicates": self.duplicates, "incomplete": self.incomplete, "notes": list(notes or [])}


def _factorize(values: pd.Series, *, sort: bool = False) -> tuple[np.ndarray, pd.Index]:
    codes, uniques = pd.factorize(values, sort=sort)
    return codes.astype("int64"), pd.Index(uniques)


def code_events(events: pd.DataFrame | CodedEvents | None) -> CodedEvents:
    """Validate, code, deduplicate and sort the events once (see the module docstring).

    Parameters
    ----------
    events : DataFrame, CodedEvents or None
        Canonical events; None or empty gives an empty result (functions then return their
        "not available" tables).

    Returns
    -------
    CodedEvents
        With ``duplicates`` (exact duplicate events dropped) and ``incomplete`` (events
        without session, time or event name dropped).

    Raises
    ------
    ValueError
        When ``session_id``, ``timestamp`` or ``event`` is missing.
    """
    if isinstance(events, CodedEvents):
        return events
    empty = np.zeros(0, dtype="int64")
    if events is None or len(events) == 0:
        if events is not None:
            _check_columns(events)
        return CodedEvents(empty, empty, empty, empty, empty, pd.Index([]), pd.Index([]), pd.Index([]), pd.Index([]))
    _check_columns(events)
    ts = pd.to_datetime(events["timestamp"], errors="coerce")
    if isinstance(ts.dtype, pd.DatetimeTZDtype):
        ts = ts.dt.tz_convert(None)
    n_in = len(events)
    t = ts.to_numpy(dtype="datetime64[ns]").view("int64")
    session, session_ids = _factorize(events["session_id"], sort=True)
    event, event_names = _factorize(events["event"])
    if "customer_id" in events.columns:
        customer, customer_ids = _factorize(events["customer_id"])
    else:
        customer, customer_ids = np.full(n_in, -1, dtype="int64"), pd.Index([])
    if "channel" in events.columns:
        channel, channel_names = _factorize(events["channel"])
    else:
        channel, channel_names = np.zeros(n_in, dtype="int64"), pd.Index(["unknown"])
    ok = np.flatnonzero(ts.notna().to_numpy() & (session >= 0) & (event >= 0))
    s, t, e, cu, h = session[ok], t[ok], event[ok], customer[ok], channel[ok]
    # exact duplicates are adjacent after a full lexicographic sort (stable: the first copy comes first)
    full = np.lexsort((h, cu, e, t, s))
    same = np.zeros(len(full), dtype=bool)
    same[1:] = ((s[full][1:] == s[full][:-1]) & (t[full][1:] == t[full][:-1]) & (e[full][1:] == e[full][:-1])
                & (cu[full][1:] == cu[full][:-1]) & (h[full][1:] == h[full][:-1]))
    keep = np.ones(len(full), dtype=bool)
    keep[full[same]] = False
    rows = np.flatnonzero(keep)
    rows = rows[np.lexsort((t[rows], s[rows]))]  # by session and time; ties keep input order
    return CodedEvents(s[rows], t[rows], e[rows], cu[rows], h[rows], session_ids, event_names, customer_ids, channel_names,
                       duplicates=int(same.sum()), incomplete=int(n_in - len(ok)))


def _check_columns(events: pd.DataFrame) -> None:
    missing = [c for c in _REQUIRED if c not in events.columns]
    if missing:
        raise ValueError(f"events has no column(s) {missing}; found columns {list(events.columns)}. Events need "
                         f"session_id, timestamp and event (customer_id and channel are optional): map your columns "
                         f"with load_store(..., columns={{'<your column>': '{missing[0]}'}}) or leave the events out.")


def _starts(keys: np.ndarray) -> np.ndarray:
    """True where a run of equal (sorted/contiguous) keys begins."""
    out = np.ones(len(keys), dtype=bool)
    out[1:] = keys[1:] != keys[:-1]
    return out


def _first_per(keys: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Among rows where ``mask`` holds, the first row of each contiguous key: (keys, row indices)."""
    rows = np.flatnonzero(mask)
    first = rows[_starts(keys[rows])]
    return keys[first], first


def _session_first(c: CodedEvents, values: np.ndarray, within: np.ndarray | None = None) -> np.ndarray:
    """Per session, the first non-missing (>= 0) code in time order (among rows where
    ``within`` holds); -1 when none."""
    mask = values >= 0 if within is None else (values >= 0) & within
    out = np.full(c.n_sessions, -1, dtype="int64")
    sess, first = _first_per(c.session, mask)
    out[sess] = values[first]
    return out


def _take(values: pd.Index | pd.Series, codes: np.ndarray) -> pd.Series:
    """Decode integer codes (-1 = missing) through ``values``; keeps the values' dtype."""
    if len(values) == 0:
        return pd.Series([None] * len(codes), dtype=object)
    s = pd.Series(values).iloc[np.maximum(codes, 0)].reset_index(drop=True)
    return s.where(pd.Series(codes >= 0))


def _empty(columns: list[str], notes: list[str], c: CodedEvents | None = None, **attrs: Any) -> pd.DataFrame:
    out = pd.DataFrame({col: pd.Series(dtype="float64") for col in columns})
    out.attrs.update((c.attrs(notes) if c is not None else {"notes": list(notes)}) | attrs)
    return out


def _reach(c: CodedEvents, steps: tuple[str, ...]) -> np.ndarray:
    """(sessions x steps) int64 time each step was reached, ``_NEVER`` when not reached."""
    out = np.full((c.n_sessions, len(steps)), _NEVER, dtype="int64")
    for k, step in enumerate(steps):  # one pass per funnel step
        mask = c.event == c.code(step)
        if k > 0:
            mask &= c.ts >= out[c.session, k - 1]  # _NEVER: previous step not reached -> no progress
        sess, first = _first_per(c.session, mask)  # sorted by time: the first is the earliest
        out[sess, k] = c.ts[first]
    return out


# ------------------------------------------------------------------------------------ funnels
_FUNNEL_COLUMNS = ["group", "step", "sessions", "conversion", "ci_low", "ci_high", "from_first", "drop_off", "median_minutes"]


def funnel(events: pd.DataFrame | CodedEvents | None, steps: tuple[str, ...] = WEB_FUNNEL, *, by: str | pd.Series | None = None,
           min_group_size: int = 10, level: float = 0.95) -> pd.DataFrame:
    """Sessions reaching each step, conversion and drop-off with Wilson intervals, and the
    median minutes from the previous step.

    Parameters
    ----------
    events : DataFrame, CodedEvents or None
        Canonical events, or :func:`code_events` of them (None or empty: an empty table with a note).
    steps : tuple of str
        Funnel steps in order (only sessions with the first step enter the funnel).
    by : "channel", "customer_id", or a Series mapping customer_id -> group (e.g. persona)
        Split the funnel; with a Series, anonymous sessions and customers without a group are
        left out of the split.
    min_group_size : int
        Groups entered by fewer sessions (``by`` None or a column) or customers (``by`` a
        Series) are left out, with a note.
    level : float
        Confidence level of the intervals.

    Returns
    -------
    DataFrame
        ``group, step, sessions, conversion, ci_low, ci_high, from_first, drop_off,
        median_minutes`` (``conversion`` = from the previous step). ``attrs``: ``duplicates``
        (exact duplicate events dropped), ``incomplete``, ``by``, ``notes``.
    """
    c = code_events(events)
    by_name = "all" if by is None else (by if isinstance(by, str) else (by.name or "group"))
    if len(c.ts) == 0:
        return _empty(_FUNNEL_COLUMNS, [NO_EVENTS_NOTE], c, by=by_name)
    reached = _reach(c, steps)
    entered = np.flatnonzero(reached[:, 0] != _NEVER)
    if by is None:
        labels = pd.Series(np.zeros(len(entered), dtype="int64"))
        uniques = pd.Index(["all"])
        codes = labels.to_numpy()
    elif isinstance(by, str):
        if by not in ("channel", "customer_id"):
            raise ValueError(f"funnel(by={by!r}): by must be 'channel', 'customer_id' or a Series customer_id -> group")
        source, names = (c.channel, c.channel_names) if by == "channel" else (c.customer, c.customer_ids)
        codes, uniques = _factorize(_take(names, _session_first(c, source)[entered]), sort=True)
    else:
        group_of = by.reindex(c.customer_ids)  # customer code -> group (keeps a categorical's order)
        codes, uniques = _factorize(_take(group_of, _session_first(c, c.customer)[entered]), sort=True)
    keep = codes >= 0
    sess, codes = entered[keep], codes[keep]
    notes: list[str] = []
    size = np.bincount(codes, minlength=len(uniques))
    unit = "sessions"
    if isinstance(by, pd.Series):  # groups of customers: count people
        unit = "customers"
        cust = _session_first(c, c.customer)[sess]
        pairs = pd.DataFrame({"g": codes, "c": cust}).drop_duplicates()
        size = np.bincount(pairs["g"].to_numpy(), minlength=len(uniques))
    small = size < min_group_size
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {min_group_size} {unit} in the funnel are not shown: "
                     "too few for a reliable conversion rate.")
        big = ~small[codes]
        sess, codes = sess[big], codes[big]
    shown = np.flatnonzero(~small)
    if len(shown) == 0:
        return _empty(_FUNNEL_COLUMNS, notes or ["No session reached the first funnel step."], c, by=by_name)
    r = reached[sess]
    hit = r != _NEVER
    n = np.stack([np.bincount(codes, weights=hit[:, k], minlength=len(uniques)) for k in range(len(steps))], axis=1)[shown]
    prev = np.concatenate([n[:, :1], n[:, :-1]], axis=1)
    lo, hi = wilson_interval(n, prev, level)
    with np.errstate(divide="ignore", invalid="ignore"):
        conversion = np.where(prev > 0, n / np.maximum(prev, 1), np.nan)
    minutes = np.where(hit[:, 1:], (np.where(hit[:, 1:], r[:, 1:], 0) - np.where(hit[:, 1:], r[:, :-1], 0)) / 6e10, np.nan)
    med = pd.DataFrame(minutes).groupby(codes).median().reindex(shown).to_numpy()
    G, S = len(shown), len(steps)
    out = pd.DataFrame({
        "group": np.repeat(uniques.take(shown).to_numpy(dtype=object), S),
        "step": np.tile(np.asarray(steps, dtype=object), G),
        "sessions": n.ravel().astype("int64"),
        "conversion": conversion.ravel(), "ci_low": lo.ravel(), "ci_high": hi.ravel(),
        "from_first": (n / np.maximum(n[:, :1], 1)).ravel(),
        "drop_off": (prev - n).ravel(),
        "median_minutes": np.concatenate([np.full((G, 1), np.nan), med], axis=1).ravel(),
    })
    out.attrs.update(c.attrs(notes), by=by_name)
    return out


def common_paths(events: pd.DataFrame | CodedEvents | None, *, target: str = "order", max_len: int = 6, top: int = 10) -> pd.DataFrame:
    """The most common event paths of sessions that reach ``target``, split into the customer's
    first such session and later ones.

    Consecutive repeats collapse (view, view -> view); a path stops at the session's first
    ``target`` and keeps its last ``max_len`` steps. Anonymous sessions are left out (first or
    repeat cannot be told). Paths are coded as a (sessions x ``max_len``) matrix of event codes
    and counted with :func:`numpy.unique` over its rows; strings are built per position only
    for the distinct paths.

    Parameters
    ----------
    events : DataFrame, CodedEvents or None
        Canonical events, or :func:`code_events` of them.
    target : str
        The event that ends a path.
    max_len : int
        Steps kept before (and including) the target.
    top : int
        Paths kept per kind.

    Returns
    -------
    DataFrame
        ``kind`` (first/repeat), ``path`` (events joined by " > "), ``sessions``, ``share``
        (of the kind's sessions); most common first, ties by path.
    """
    columns = ["kind", "path", "sessions", "share"]
    c = code_events(events)
    if len(c.ts) == 0:
        return _empty(columns, [NO_EVENTS_NOTE], c)
    if max_len < 1:
        raise ValueError(f"max_len must be at least 1, got {max_len}")
    # collapse consecutive repeats within a session
    repeat = ~_starts(c.session) & (c.event == np.concatenate([[-3], c.event[:-1]]))
    rows = np.flatnonzero(~repeat)
    sess, ts, evt, cust = c.session[rows], c.ts[rows], c.event[rows], c.customer[rows]
    # the first target of each session, and the events up to it
    t_sess, t_first = _first_per(sess, evt == c.code(target))
    if len(t_sess) == 0:
        return _empty(columns, [f"No session reached {target!r}: there are no paths to show."], c)
    target_ts = np.full(c.n_sessions, _NEVER, dtype="int64")
    target_ts[t_sess] = ts[t_first]
    has = np.zeros(c.n_sessions, dtype=bool)
    has[t_sess] = True
    inside = has[sess] & (ts <= target_ts[sess])
    sess, evt, cust = sess[inside], evt[inside], cust[inside]
    # position of each event in its path; keep the last max_len
    start = np.flatnonzero(_starts(sess))
    length = np.diff(np.append(start, len(sess)))
    run = np.repeat(np.arange(len(start)), length)
    pos = np.arange(len(sess)) - start[run]
    col = pos - np.maximum(length - max_len, 0)[run]
    kept = col >= 0
    matrix = np.full((len(start), max_len), -1, dtype="int64")
    matrix[run[kept], col[kept]] = evt[kept]
    first_cust = np.full(len(start), -1, dtype="int64")
    r_run, r_first = _first_per(run, kept & (cust >= 0))
    first_cust[r_run] = cust[r_first]
    # first or repeat, by target time (ties: session id)
    named = np.flatnonzero(first_cust >= 0)
    if len(named) == 0:
        return _empty(columns, ["Every session that reached the target is anonymous: paths cannot be split into first and repeat."], c)
    run_sess = sess[start][named]
    order = named[np.lexsort((run_sess, target_ts[run_sess]))]
    first = np.zeros(len(order), dtype=bool)
    first[np.unique(first_cust[order], return_index=True)[1]] = True
    paths, inverse = np.unique(matrix[order], axis=0, return_inverse=True)
    # path strings, one position at a time, for the distinct paths only
    names = np.append(c.event_names.to_numpy(dtype=object), "")  # code -1 -> ""
    text = pd.Series(names[paths[:, 0]])
    for j in range(1, max_len):  # one pass per path position
        step = pd.Series(names[paths[:, j]])
        text = text.where(paths[:, j] < 0, text + " > " + step)
    kind = np.where(first, 0, 1)
    counts = np.bincount(kind * len(paths) + inverse.ravel(), minlength=2 * len(paths)).reshape(2, len(paths))
    k_idx, p_idx = np.nonzero(counts)
    out = pd.DataFrame({"kind": np.array(["first", "repeat"], dtype=object)[k_idx], "path": text.to_numpy()[p_idx],
                        "sessions": counts[k_idx, p_idx].astype("int64")})
    out["share"] = out["sessions"] / out.groupby("kind")["sessions"].transform("sum")
    out = out.sort_values(["kind", "sessions", "path"], ascending=[True, False, True], kind="stable")
    out = out.groupby("kind", sort=False).head(top).reset_index(drop=True)
    out.attrs.update(c.attrs())
    return out


def converting_vs_not(events: pd.DataFrame | CodedEvents | None, *, target: str = "order") -> pd.DataFrame:
    """What distinguishes sessions that convert.

    Over the web-funnel events (:data:`WEB_FUNNEL`) of each session: number of events, product
    views, duration (first to last web event) and the session's channel.

    Returns
    -------
    DataFrame
        Index ``converting`` / ``not converting``; columns ``sessions, events, product_views,
        minutes`` (means per session) and ``share_<channel>`` (share of the sessions per channel).
    """
    c = code_events(events)
    web = np.isin(c.event, [c.code(s) for s in WEB_FUNNEL])
    if not web.any():
        return _empty(["sessions", "events", "product_views", "minutes"],
                      [NO_EVENTS_NOTE if len(c.ts) == 0 else "No web-funnel events (visit .. order) in the events."], c)
    S = c.n_sessions
    seen = np.bincount(c.session[web], minlength=S) > 0
    n_events = np.bincount(c.session[web], minlength=S)
    views = np.bincount(c.session[web & (c.event == c.code("product_view"))], minlength=S)
    converted = np.bincount(c.session[web & (c.event == c.code(target))], minlength=S) > 0
    s_first, first = _first_per(c.session, web)
    s_last, last = _first_per(c.session[::-1], web[::-1])
    start = np.zeros(S, dtype="int64")
    end = np.zeros(S, dtype="int64")
    start[s_first] = c.ts[first]
    end[s_last] = c.ts[::-1][last]
    channel = _session_first(c, c.channel, web)
    s = pd.DataFrame({"events": n_events, "product_views": views, "minutes": (end - start) / 6e10,
                      "converted": converted,
                      "channel": _take(c.channel_names, channel)})[seen]
    out = s.groupby("converted")[["events", "product_views", "minutes"]].mean()
    mix = pd.crosstab(s["converted"], s["channel"], normalize="index").add_prefix("share_")
    out = out.join(mix)
    out.insert(0, "sessions", s.groupby("converted").size())
    out.index = out.index.map({True: "converting", False: "not converting"})
    out.columns.name = None
    out.attrs.update(c.attrs())
    return out


def attribution(events: pd.DataFrame | CodedEvents | None, *, target: str = "order") -> pd.DataFrame:
    """Acquisition channel of each customer's first order.

    **First touch**: the channel of the customer's earliest session that started at or
    before that order; **last touch**: the channel of the session with the order.

    Returns
    -------
    DataFrame
        Index ``channel``; ``first_touch, last_touch`` (customers) and their shares; most
        first-touch customers first.
    """
    columns = ["first_touch", "last_touch", "first_touch_share", "last_touch_share"]
    c = code_events(events)
    named = c.customer >= 0
    if not (named & (c.event == c.code(target))).any():
        note = NO_EVENTS_NOTE if len(c.ts) == 0 else f"No customer with a known id reached {target!r}: attribution is not available."
        return _empty(columns, [note], c).rename_axis("channel")
    # each customer's first order: sort the order events by (customer, time)
    o_rows = np.flatnonzero(named & (c.event == c.code(target)))
    o_rows = o_rows[np.lexsort((c.ts[o_rows], c.customer[o_rows]))]
    o_cust, o_first = _first_per(c.customer[o_rows], np.ones(len(o_rows), dtype=bool))
    o_first = o_rows[o_first]
    order_ts = np.full(len(c.customer_ids), _NEVER, dtype="int64")
    order_ts[o_cust] = c.ts[o_first]
    last_touch = c.channel[o_first]
    # each (customer, session): its start and channel (first in time); sessions starting by the first order
    rows = np.flatnonzero(named)
    key = c.session[rows] * (len(c.customer_ids) + 1) + c.customer[rows]
    order = np.lexsort((c.ts[rows], key))  # rows are sorted by session already; this groups the pairs
    rows, key = rows[order], key[order]
    p_start = _starts(key)
    pair_rows = rows[p_start]
    ch_key, ch_first = _first_per(key, c.channel[rows] >= 0)
    pair_channel = pd.Series(c.channel[rows][ch_first], index=ch_key).reindex(key[p_start]).fillna(-1).to_numpy("int64")
    p_cust, p_ts = c.customer[pair_rows], c.ts[pair_rows]
    ok = (order_ts[p_cust] != _NEVER) & (p_ts <= order_ts[p_cust]) & (pair_channel >= 0)  # customers with an order
    p_cust, p_ts, p_sess, pair_channel = p_cust[ok], p_ts[ok], c.session[pair_rows][ok], pair_channel[ok]
    order = np.lexsort((p_sess, p_ts, p_cust))
    f_cust, f_first = _first_per(p_cust[order], np.ones(len(order), dtype=bool))
    first_touch = pair_channel[order][f_first]
    names = c.channel_names
    ft = pd.Series(names.take(first_touch)).value_counts()
    lt = pd.Series(names.take(last_touch[last_touch >= 0])).value_counts()
    out = pd.DataFrame({"first_touch": ft, "last_touch": lt}).fillna(0).astype("int64")
    out["first_touch_share"] = out["first_touch"] / max(out["first_touch"].sum(), 1)
    out["last_touch_share"] = out["last_touch"] / max(out["last_touch"].sum(), 1)
    out.index.name = "channel"
    out = out.sort_index().sort_values("first_touch", ascending=False, kind="stable")
    out.attrs.update(c.attrs())
    return out


def post_purchase(events: pd.DataFrame | CodedEvents | None, orders_per_customer: pd.Series, groups: pd.Series, *,
                  min_group_size: int = 10) -> pd.DataFrame:
    """Support contacts and returns per order, per group (segment or persona).

    Parameters
    ----------
    events : DataFrame, CodedEvents or None
        Canonical events, or :func:`code_events` of them (deduplicated as everywhere in this module).
    orders_per_customer : Series
        Orders of each customer (e.g. the ``frequency`` feature), index ``customer_id``.
    groups : Series
        customer_id -> group.
    min_group_size : int
        Groups with fewer customers are left out, with a note.

    Returns
    -------
    DataFrame
        Index ``group``; ``customers, orders`` and, for each of ``support_contact`` and ``return``
        present in the events, its count and ``<kind>_per_order``.
    """
    c = code_events(events)
    data = pd.DataFrame({"orders": orders_per_customer, "group": groups}).dropna(subset=["group"])
    notes: list[str] = []
    if len(c.ts) == 0:
        notes.append(NO_EVENTS_NOTE)
    kinds = [k for k in ("support_contact", "return") if c.code(k) >= 0]
    if len(c.ts) and not kinds:
        notes.append("The events hold no support contacts or returns.")
    position = c.customer_ids.get_indexer(data.index)
    for k in kinds:
        m = (c.event == c.code(k)) & (c.customer >= 0)
        per_customer = np.append(np.bincount(c.customer[m], minlength=len(c.customer_ids)), 0)  # position -1 -> 0
        data[k] = per_customer[position]
    out = data.groupby("group", observed=True).agg(customers=("orders", "size"), orders=("orders", "sum"),
                                                  **{k: (k, "sum") for k in kinds})
    small = out["customers"] < min_group_size
    if small.any():
        notes.append(f"{int(small.sum())} group(s) with fewer than {min_group_size} customers are not shown.")
        out = out[~small]
    for k in kinds:
        out[f"{k}_per_order"] = out[k] / out["orders"].where(out["orders"] > 0)
    out.attrs.update(c.attrs(notes))
    return out


# ------------------------------------------------------------------------------------ cohorts
def cohort_retention(transactions, as_of: str | pd.Timestamp, *, min_group_size: int = 10) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monthly acquisition cohorts (month of first purchase) x months since acquisition.

    Aggregated in the engine (one row per customer and active month comes back); O(lines).

    Parameters
    ----------
    transactions : ibis.Table
        Cleaned transactions (``customer_id, order_date, amount``).
    as_of : str or Timestamp
        Only lines strictly before it count.
    min_group_size : int
        Cohorts with fewer customers are left out, with a note.

    Returns
    -------
    (DataFrame, DataFrame)
        ``(retention, revenue)``: index cohort ``YYYY-MM``; retention has ``customers`` and the
        share of the cohort buying in each month since acquisition (columns 0, 1, ...);
        revenue the revenue per cohort customer in each month. Notes in ``attrs["notes"]``.
    """
    from segmentation.data import to_pandas

    t = transactions.filter(transactions.order_date < pd.Timestamp(as_of).to_pydatetime())
    month = t.order_date.truncate("M")
    activity = to_pandas(t.group_by(["customer_id", month.name("month")]).aggregate(revenue=t.amount.sum()))
    if activity.empty:
        note = [f"No purchases before {pd.Timestamp(as_of):%Y-%m-%d}: cohorts are not available."]
        return (_empty(["customers"], note).rename_axis("cohort"), _empty([], note).rename_axis("cohort"))
    activity["cohort"] = activity.groupby("customer_id")["month"].transform("min")
    activity["age"] = (activity["month"].dt.year - activity["cohort"].dt.year) * 12 + (activity["month"].dt.month - activity["cohort"].dt.month)
    size = activity[activity["age"] == 0].groupby("cohort")["customer_id"].nunique()
    active = activity.pivot_table(index="cohort", columns="age", values="customer_id", aggfunc="nunique")
    revenue = activity.pivot_table(index="cohort", columns="age", values="revenue", aggfunc="sum")
    # a month in the data when nobody of the cohort bought is 0, not unknown; months after the data stay empty
    last = activity["month"].max()
    seen = np.asarray(active.columns)[None, :] <= np.asarray((last.year - active.index.year) * 12 + (last.month - active.index.month))[:, None]
    retention = active.div(size, axis=0).mask(seen, lambda d: d.fillna(0.0))
    revenue = revenue.div(size, axis=0).mask(seen, lambda d: d.fillna(0.0))
    notes = []
    partial = explore.partial_last_month(as_of)
    notes.append(f"The first cohort ({retention.index[0]:%b %Y}) also holds the customers who had bought before the data begin.")
    if partial is not None:  # a month the data cover only in part would look like a drop in every cohort
        offset = (partial.year - retention.index.year) * 12 + (partial.month - retention.index.month)
        cut = (np.asarray(retention.columns)[None, :] == np.asarray(offset)[:, None]) & (np.asarray(offset)[:, None] > 0)
        retention, revenue = retention.mask(cut), revenue.mask(cut)
        if cut.any():
            notes.append(f"{partial:%b %Y} is left blank: the data cover only part of that month.")
    retention.insert(0, "customers", size.to_numpy())
    small = size < min_group_size
    if small.any():
        notes.append(f"{int(small.sum())} monthly cohort(s) with fewer than {min_group_size} customers are not shown.")
        retention, revenue = retention[~small.to_numpy()], revenue[~small.to_numpy()]
    for table in (retention, revenue):
        table.index = table.index.strftime("%Y-%m")
        table.index.name = "cohort"
        table.columns.name = "months since first purchase"
        table.attrs["notes"] = list(notes)
    return retention, revenue


def second_month_return(retention: pd.DataFrame) -> float | None:
    """The share of a month's new customers who buy again in the month after, over the cohorts
    of :func:`cohort_retention` with that month in the data (weighted by cohort size; a month
    left blank because the data cover it only in part does not count). The first cohort is left
    out when there are others: it also holds everyone who had bought before the data begin.
    None without any."""
    if "customers" not in retention or 1 not in retention.columns and "1" not in retention.columns:
        return None
    after = retention[1 if 1 in retention.columns else "1"]
    known = after.notna()
    if known.iloc[1:].any():
        known.iloc[0] = False
    if not known.any():
        return None
    size = retention.loc[known, "customers"]
    return float((after[known] * size).sum() / size.sum())


# ---------------------------------------------------------------------------------- migration
NEW_CUSTOMER = "not a customer then"
GONE = "not in the current run"


@dataclass(frozen=True)
class Migration:
    """Segment migration between an earlier and the current run (see :func:`migration_matrix`).

    Attributes
    ----------
    counts : DataFrame
        Customers by earlier state (rows ``from``) and current state (columns ``to``); cells
        below ``min_group_size`` are ``<NA>`` (the totals in ``summary`` include them).
    summary : DataFrame
        Index ``movement``: ``stayed``, ``moved``, ``joined a new segment``, ``left a
        discontinued segment``, ``gone customers``, ``new customers``; columns ``customers``,
        ``share`` and ``of`` (what the share is of: earlier or current customers).
    flows : DataFrame
        ``from, to, customers, share_of_from``: movers between segments that exist in both
        runs, largest first, only flows of at least ``min_group_size`` customers.
    new_segments : DataFrame
        Per new segment: ``segment, name, customers, from_earlier_segments, new_customers``.
    revenue : DataFrame or None
        With ``revenue``: the revenue by the same rows and columns (small cells ``NaN``).
    notes : list of str
        Plain-language statements for the report.
    """

    counts: pd.DataFrame
    summary: pd.DataFrame
    flows: pd.DataFrame
    new_segments: pd.DataFrame
    revenue: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)

    def scalars(self) -> dict[str, int]:
        """The summary counts as plain ints, e.g. for a JSON of run scalars."""
        return {k: int(v) for k, v in self.summary["customers"].items()}


def _labels(ids: list, names: Mapping | pd.Series | None, suffix: dict | None = None) -> dict:
    """Segment id -> display label; duplicate names get the id appended."""
    names = pd.Series(dict(names) if isinstance(names, Mapping) else names if names is not None else {}, dtype=object)
    raw = {i: str(names[i]) if i in names.index and pd.notna(names[i]) else f"segment {i}" for i in ids}  # per segment id
    dup = pd.Series(raw).duplicated(keep=False) if raw else pd.Series(dtype=bool)
    out = {i: f"{raw[i]} (segment {i})" if dup[i] else raw[i] for i in ids}
    return {i: out[i] + (suffix or {}).get(i, "") for i in ids}


def migration_matrix(before: pd.Series, after: pd.Series, *, names: Mapping | pd.Series | None = None,
                     new_segments: Iterable | None = None, gone_segments: Iterable | None = None,
                     previous_names: Mapping | pd.Series | None = None, revenue: pd.Series | None = None,
                     min_group_size: int = 10) -> Migration:
    """Who moved from which segment to which between an earlier and the current run.

    Segment ids must be **aligned** (:meth:`segmentation.segments.Segmenter.align_to`): a
    current segment matched to an earlier one carries its id, so equal ids mean the same
    people-type. A current segment with no match (``new_segments``) is shown as NEW: customers
    in it "joined a new segment" and are never counted as movers from another segment into it.
    An earlier segment with no current match (``gone_segments``) is shown as discontinued.

    Parameters
    ----------
    before, after : Series
        customer_id -> segment id in the earlier / current run (aligned ids).
    names : mapping or Series, optional
        Current segment id -> name (the current run's personas); also names earlier segments
        through the aligned ids. Unnamed ids show as "segment <id>".
    new_segments, gone_segments : iterable, optional
        Current ids without an earlier match (``mapping.loc[~mapping.matched, "new_id"]``) and
        earlier ids without a current match. Default: current ids absent from ``before`` and
        earlier ids absent from ``after``.
    previous_names : mapping or Series, optional
        Names of discontinued earlier segments (default "segment <id>").
    revenue : Series, optional
        customer_id -> revenue (e.g. spend in the later period): also the revenue by move.
    min_group_size : int
        Cells and flows with fewer customers are hidden (counted in the summary).

    Returns
    -------
    Migration
        ``counts, summary, flows, new_segments, revenue, notes``.

    Raises
    ------
    ValueError
        When a segment declared new has customers in the earlier run, or a discontinued one
        has customers now: the ids are not aligned.
    """
    b_ids, a_ids = set(before.dropna().unique()), set(after.dropna().unique())
    new = set(a_ids - b_ids) if new_segments is None else set(new_segments)
    gone = set(b_ids - a_ids) if gone_segments is None else set(gone_segments)
    if new & b_ids:
        raise ValueError(f"segment(s) {sorted(new & b_ids)} are declared new but have customers in the earlier run: "
                         "pass aligned ids (Segmenter.align_to) for `after`, or the matched ids as new_segments")
    if gone & a_ids:
        raise ValueError(f"segment(s) {sorted(gone & a_ids)} are declared discontinued but have customers now: "
                         "pass aligned ids (Segmenter.align_to) for `after`")
    ids = before.dropna().index.union(after.dropna().index)
    b = before.reindex(ids)
    a = after.reindex(ids)
    was, now = b.notna().to_numpy(), a.notna().to_numpy()
    b_new = b.isin(list(gone)).to_numpy()
    a_new = a.isin(list(new)).to_numpy()
    same = was & now & (b.to_numpy(dtype=object) == a.to_numpy(dtype=object))
    kinds = {
        "stayed": same,
        "moved": was & now & ~same & ~a_new & ~b_new,
        "joined a new segment": was & now & a_new,
        "left a discontinued segment": was & now & b_new & ~a_new,
        "gone customers": was & ~now,
        "new customers": ~was & now,
    }
    n_before, n_after = int(was.sum()), int(now.sum())
    summary = pd.DataFrame({"customers": [int(m.sum()) for m in kinds.values()]}, index=pd.Index(list(kinds), name="movement"))
    summary["of"] = ["earlier customers"] * 5 + ["current customers"]
    summary["share"] = summary["customers"] / np.where(summary["of"] == "earlier customers", max(n_before, 1), max(n_after, 1))
    # labels: current names via aligned ids
    b_order = sorted(b_ids, key=_sort_key)
    a_order = sorted(a_ids - new, key=_sort_key) + sorted(new & a_ids, key=_sort_key)
    plain = _labels(sorted(a_ids | (b_ids - gone), key=_sort_key), names)
    current = {i: v + (" (new segment)" if i in new else "") for i, v in plain.items()}
    old = _labels(sorted(gone & b_ids, key=_sort_key), previous_names, {i: " (discontinued)" for i in gone})
    label_b = {i: old.get(i, current.get(i)) for i in b_order}
    label_a = {i: current[i] for i in a_order}
    rows = [label_b[i] for i in b_order] + [NEW_CUSTOMER]
    cols = [label_a[i] for i in a_order] + [GONE]
    frm = pd.Series(b.map(label_b).fillna(NEW_CUSTOMER).to_numpy(dtype=object), index=ids, name="from")
    to = pd.Series(a.map(label_a).fillna(GONE).to_numpy(dtype=object), index=ids, name="to")
    full = pd.crosstab(frm, to).reindex(index=rows, columns=cols, fill_value=0)
    hidden = (full > 0) & (full < min_group_size)
    counts = full.astype("Int64").mask(hidden)
    moved_rev = None
    if revenue is not None:
        moved_rev = pd.crosstab(frm, to, values=revenue.reindex(ids).fillna(0.0), aggfunc="sum")
        moved_rev = moved_rev.reindex(index=rows, columns=cols).fillna(0.0).mask(hidden)
    mover = kinds["moved"]
    flows = pd.DataFrame({"from": frm[mover], "to": to[mover]}).value_counts().rename("customers").reset_index()
    flows["share_of_from"] = flows["customers"] / flows["from"].map(full.sum(axis=1)).astype("float64")
    flows = flows[flows["customers"] >= min_group_size].sort_values(["customers", "from", "to"], ascending=[False, True, True])
    flows = flows.reset_index(drop=True)
    new_tab = pd.DataFrame({"segment": sorted(new & a_ids, key=_sort_key)})
    in_new = pd.DataFrame({"segment": a[a_new].to_numpy(dtype=object), "earlier": was[a_new]})
    new_tab["name"] = new_tab["segment"].map(plain).astype(object)
    new_tab["customers"] = new_tab["segment"].map(in_new.groupby("segment").size()).fillna(0).astype("int64")
    new_tab["from_earlier_segments"] = new_tab["segment"].map(in_new.groupby("segment")["earlier"].sum()).fillna(0).astype("int64")
    new_tab["new_customers"] = new_tab["customers"] - new_tab["from_earlier_segments"]
    notes = []
    s = summary["customers"]
    notes.append(f"Of {n_before:,} earlier customers, {s['stayed']:,} ({summary.at['stayed', 'share']:.0%}) stayed in their segment "
                 f"and {s['moved']:,} ({summary.at['moved', 'share']:.0%}) moved to another existing segment; "
                 f"{s['new customers']:,} customers are new since then.")
    if len(new_tab):
        notes.append(f"{len(new_tab)} segment(s) have no match in the earlier run and are shown as new: "
                     + "; ".join(f"{r.name} ({r.customers:,} customers, {r.from_earlier_segments:,} of them customers before)"
                                 for r in new_tab.itertuples()) + ". Their members are not counted as movers.")
    if gone:
        notes.append(f"{len(gone)} earlier segment(s) no longer exist: "
                     + ", ".join(old[i] for i in sorted(gone & b_ids, key=_sort_key)) + ".")
    if hidden.to_numpy().any():
        notes.append(f"Cells with fewer than {min_group_size} customers are hidden (they are included in the totals).")
    counts.index.name, counts.columns.name = "from", "to"
    return Migration(counts=counts, summary=summary[["customers", "share", "of"]], flows=flows, new_segments=new_tab,
                     revenue=moved_rev, notes=notes)


def _sort_key(v: Any) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float, np.integer, np.floating)) else (1, 0.0, str(v))


# ------------------------------------------------------------------------------------- trends
def category_trends(transactions, as_of: str | pd.Timestamp, groups: pd.Series, *, window_days: int = 90,
                    min_group_size: int = 10) -> pd.DataFrame:
    """Change in each group's category spend share: last ``window_days`` before ``as_of`` vs
    the ``window_days`` before that.

    A (group, category) trend is shown only when at least ``min_group_size`` customers of the
    group bought the category in *both* windows, so that no "fastest growing category" rests on
    a handful of people; shares are of the group's whole spend in each window.

    Parameters
    ----------
    transactions : ibis.Table
        Cleaned transactions (aggregated in the engine).
    as_of : str or Timestamp
        End of the recent window (exclusive).
    groups : Series
        customer_id -> group (persona or segment).
    window_days : int
        Length of each window.
    min_group_size : int
        Fewest customers per window behind a shown trend.

    Returns
    -------
    DataFrame
        ``group, category, customers_before, customers_recent, share_before, share_recent,
        change`` (share points as a fraction), largest change first; ``attrs["notes"]``.
    """
    from segmentation.data import to_pandas

    columns = ["group", "category", "customers_before", "customers_recent", "share_before", "share_recent", "change"]
    end = pd.Timestamp(as_of)
    mid, start = end - pd.Timedelta(days=window_days), end - pd.Timedelta(days=2 * window_days)
    t = transactions.filter((transactions.order_date >= start.to_pydatetime()) & (transactions.order_date < end.to_pydatetime()) & ~transactions.is_return)
    recent = t.order_date >= mid.to_pydatetime()
    spend = to_pandas(t.group_by(["customer_id", "category", recent.name("recent")]).aggregate(v=t.amount.sum()))
    spend["group"] = spend["customer_id"].map(groups)
    spend = spend.dropna(subset=["group"])
    if spend.empty or spend["recent"].nunique() < 2:
        return _empty(columns, [f"No purchases by the analysed customers in both {window_days}-day windows before "
                                f"{end:%Y-%m-%d}: category trends are not available."])
    tab = spend.pivot_table(index=["group", "category"], columns="recent", values="v", aggfunc="sum", fill_value=0.0, observed=True)
    tab = tab.reindex(columns=[False, True], fill_value=0.0)
    shares = tab / tab.groupby(level="group", observed=True).transform("sum")
    buyers = spend[spend["v"] > 0].pivot_table(index=["group", "category"], columns="recent", values="customer_id",
                                               aggfunc="nunique", fill_value=0, observed=True)
    buyers = buyers.reindex(index=tab.index, columns=[False, True], fill_value=0)
    out = pd.DataFrame({"customers_before": buyers[False].astype("int64"), "customers_recent": buyers[True].astype("int64"),
                        "share_before": shares[False], "share_recent": shares[True]}).fillna(0.0)
    out["change"] = out["share_recent"] - out["share_before"]
    enough = (out["customers_before"] >= min_group_size) & (out["customers_recent"] >= min_group_size)
    notes = []
    if (~enough).any():
        notes.append(f"{int((~enough).sum())} of {len(out)} group-category trends rest on fewer than {min_group_size} "
                     f"buyers in one of the two {window_days}-day windows and are not shown.")
    out = out[enough].reset_index().sort_values(["change", "group", "category"], ascending=[False, True, True], kind="stable")
    out = out.reset_index(drop=True)
    out.attrs["notes"] = notes
    return out


# ------------------------------------------------------------------------------------ figures
def plot_funnel(f: pd.DataFrame) -> plt.Figure:
    """Share of sessions reaching each step (from the first), one line per group."""
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for g, d in f.groupby("group", sort=False):
        ax.plot(d["step"].str.replace("_", " "), d["from_first"], marker="o", label=str(g))
    ax.set_ylabel("share of sessions reaching the step")
    ax.yaxis.set_major_formatter(plt.matplotlib.ticker.PercentFormatter(1.0))
    ends = f.groupby("group", sort=False)["from_first"].last()
    if len(ends) > 1:
        ax.set_title(f"Sessions ending in an order: from {ends.min():.0%} ({ends.idxmin()}) to {ends.max():.0%} ({ends.idxmax()})")
    elif len(ends):
        ax.set_title(f"{ends.iloc[0]:.0%} of sessions that start the journey end in an order")
    if len(f) and len(ends) > 1:
        ax.legend(title=f.attrs.get("by", "group"), fontsize=9, loc="upper right", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    return fig


#: Largest cohort grid drawn with its numbers in the cells.
MAX_ANNOTATED_CELLS = 160


def plot_cohort_heatmap(table: pd.DataFrame, title: str, fmt: str = ".0%") -> plt.Figure:
    """Cohort x months-since-acquisition heatmap."""
    data = table.drop(columns=["customers"], errors="ignore")
    fig, ax = plt.subplots(figsize=(12, 0.3 * len(data) + 1.5))
    if len(data):
        # numbers in the cells only while they stay readable; the colour scale carries larger grids
        sns.heatmap(data.astype("float64"), cmap="YlGnBu", annot=data.size <= MAX_ANNOTATED_CELLS, fmt=fmt,
                    annot_kws={"size": 7}, ax=ax)
    ax.set_xlabel("months since first purchase")
    ax.set_ylabel("cohort (month of first purchase)")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_migration(counts: pd.DataFrame) -> plt.Figure:
    """Row-normalized transition heatmap: where each earlier segment's customers went
    (hidden small cells count as 0 and are annotated "–")."""
    values = counts.astype("float64").fillna(0.0)
    shares = values.div(values.sum(axis=1).replace(0, np.nan), axis=0)
    annot = counts.astype("object").where(counts.notna(), "–").astype(str)
    fig, ax = plt.subplots(figsize=(1.1 * len(counts.columns) + 3, 0.6 * len(counts) + 1.5))
    sns.heatmap(shares, cmap="Blues", annot=annot.to_numpy(), fmt="", ax=ax, cbar_kws={"label": "share of the row"})
    ax.set_title("Segment migration: customers (colour = share of the earlier segment)")
    fig.tight_layout()
    return fig
