"""The presentation layer of the reports: one place that turns results into what a manager reads.

Every table and figure of every report goes through here, so the same rules hold everywhere:

* money with the run's currency and thousands separators, counts as integers, shares as %,
  no scientific notation, missing values as "—" (with the reason in a note), human labels for
  every column (:func:`label`), no pandas index, no truncated cells: long tables show their top
  rows and the full table is saved as CSV in the run folder;
* groups smaller than ``min_group_size`` are hidden in every stakeholder table
  (:func:`table` with ``count=``);
* figures: readable fonts at 1400 px, titles that state the finding (the callers write them).

Notebooks call :func:`open_results` (the run's results, or computed on the spot when a notebook
is opened by hand), :func:`setup`, then :func:`table`, :func:`say`, :func:`findings` and
:func:`conclusion` (texts from :mod:`segmentation.findings`).
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from segmentation import definitions

__all__ = [
    "TABLES_ENV",
    "INDICATOR_NOTE",
    "LABELS",
    "label",
    "kind_of",
    "format_value",
    "money",
    "count",
    "share",
    "table",
    "facts",
    "save_table",
    "say",
    "setup",
    "open_results",
    "findings",
    "conclusion",
    "persona_card",
    "recommender_table",
    "action_plan_view",
    "value_by_persona",
    "plot_value_by_persona",
    "expected_orders_by_persona",
    "notes",
    "CSS",
]

TABLES_ENV = "SEGMENTATION_TABLES_DIR"
MISSING = "—"

#: Printed wherever behavioural indices appear.
INDICATOR_NOTE = (
    "The psychographic signals below are behavioural indicators computed from what customers buy "
    "and when; they are not measured personality or attitudes."
)

#: Human labels for column names: the glossary's (:data:`segmentation.definitions.COLUMN_LABELS`).
LABELS = definitions.COLUMN_LABELS

#: How each column is formatted (kinds: money, count, share, number, index, lift, days, weeks,
#: date, text, label -- text with underscores as spaces).
KINDS: dict[str, str] = {
    "customers": "count", "orders": "count", "units": "count", "lines": "count", "size": "count", "baskets": "count",
    "count": "count", "sessions": "count", "matching_customers": "count", "customers_commenting": "count", "respondents": "count", "n_products": "count",
    "revenue": "money", "net_revenue": "money", "monetary": "money", "avg_order_value": "money", "clv": "money",
    "expected_spend": "money", "clv_total": "money", "clv_median": "money", "clv_p25": "money", "clv_p75": "money",
    "avg_spend": "money", "value_at_stake": "money", "mean_monetary": "money", "value_per_customer": "money",
    "reachable": "count", "control": "count", "treatment": "count", "test_days": "count",
    "mde": "share", "mde_relative": "share", "mde_even_split": "share", "baseline_rate": "share",
    "customer_share": "share", "revenue_share": "share", "order_penetration": "share", "return_rate": "share",
    "discount_share": "share", "weekend_share": "share", "support": "share", "confidence": "share",
    "p_alive": "share", "churn_risk": "share", "conversion": "share", "ci_low": "share", "ci_high": "share",
    "response_rate": "share", "share": "share", "population_share": "share", "novelty_share": "share",
    "share of the next order suggested (recall)": "share", "customers with a right suggestion (hit rate)": "share",
    "active_share": "share", "lapsing_share": "share", "lapsed_share": "share", "repeat_share": "share",
    "lapse_rate": "share", "high_churn_share": "share", "p_alive_mean": "share",
    "lift": "lift", "conviction": "number", "leverage": "number",
    "recency_days": "days", "tenure_days": "days", "ipi_mean_days": "days",
    "clv_low": "money", "clv_high": "money", "stability": "number", "stability_low": "number", "silhouette": "number",
    "largest_share": "share", "smallest_share": "share", "coverage": "share", "precision": "share",
    "first_purchase": "date", "last_purchase": "date", "category": "label", "a": "label", "b": "label", "frequency": "number", "items_per_order": "number",
    "expected_purchases": "number", "jaccard_mean": "number", "jaccard_min": "number", "spend_trend": "number",
    "category_entropy": "number", "ipi_cv": "number",
}

CSS = """<style>
table.seg{border-collapse:collapse;margin:.4em 0 1em 0;font-size:14px;max-width:100%}
table.seg th{background:#f3f4f6;text-align:left !important;padding:.35em .7em;border-bottom:2px solid #d1d5db;white-space:normal;vertical-align:bottom}
table.seg td{text-align:left !important;padding:.3em .7em;border-bottom:1px solid #e5e7eb;white-space:normal;word-break:normal;overflow-wrap:break-word;vertical-align:top}
table.seg td.short{white-space:nowrap;overflow-wrap:normal}
table.seg td.num{text-align:right !important;font-variant-numeric:tabular-nums;white-space:nowrap}
p.seg-note{color:#4b5563;font-size:13px;margin:.3em 0 1em 0}
div.seg-findings{background:#eef6ff;border-left:4px solid #2563eb;padding:.6em 1.2em;margin:.5em 0 1.2em 0}
div.seg-conclusion{background:#f0fdf4;border-left:4px solid #16a34a;padding:.6em 1.2em;margin:.5em 0 1.2em 0}
div.seg-banner{background:#fff7ed;border:1px solid #fdba74;padding:.5em 1em;margin:.5em 0}
</style>"""

_CURRENCY_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$", "JPY": "¥", "BRL": "R$"}
_currency = {"code": "EUR"}


# ------------------------------------------------------------------------------ labels and values
def label(column: Any) -> str:
    """The human label of a column (:func:`segmentation.definitions.column_label`)."""
    return definitions.column_label(column)


def kind_of(column: Any) -> str:
    """The format kind of a column (see :data:`KINDS`); ``cat_``/``channel_``/``tod_`` are shares."""
    c = str(column)
    if c in KINDS:
        return KINDS[c]
    if c.startswith(("cat_", "channel_", "tod_", "theme_")) or c.endswith(("_share", "_rate")):
        return "share"
    return "auto"


def _is_missing(x: Any) -> bool:
    if x is None or x is pd.NA or x is pd.NaT:
        return True
    try:
        return bool(isinstance(x, float) and math.isnan(x))
    except TypeError:
        return False


def money(x: Any, currency: str | None = None, *, decimals: int | None = None) -> str:
    """``€1,234`` (no decimals from 100 up, else 2); unknown codes as ``ABC 1,234``; an empty
    currency (data without prices) as a plain number of items."""
    if _is_missing(x):
        return MISSING
    code = _currency["code"] if currency is None else currency
    x = float(x)
    d = decimals if decimals is not None else (0 if abs(x) >= 100 else 2)
    text = f"{abs(x):,.{d}f}"
    sign = "-" if x < 0 and float(text.replace(",", "")) != 0 else ""
    if not code:
        return f"{sign}{text}"
    symbol = _CURRENCY_SYMBOLS.get(code.upper())
    return f"{sign}{symbol}{text}" if symbol else f"{sign}{code} {text}"


def count(x: Any) -> str:
    """``12,345``."""
    return MISSING if _is_missing(x) else f"{int(round(float(x))):,}"


def share(x: Any, *, decimals: int | None = None) -> str:
    """A 0-1 share as a percentage: ``45%``, ``4.5%`` below 10%, ``<0.1%`` for tiny non-zero."""
    if _is_missing(x):
        return MISSING
    x = float(x) * 100
    if x != 0 and abs(x) < 0.1 and decimals is None:
        return "<0.1%" if x > 0 else "-<0.1%"
    d = decimals if decimals is not None else (1 if 0 < abs(x) < 10 else 0)
    return f"{x:,.{d}f}%"


def points(x: Any) -> str:
    """A difference of two 0-1 shares in percentage points, signed: ``+2.3``, ``-0.6``,
    ``-0.04`` (two decimals below 0.1 points, so a small interval end is not shown as 0)."""
    if _is_missing(x):
        return MISSING
    x = float(x) * 100
    d = 1 if abs(x) >= 0.1 or x == 0 else 2
    text = f"{x:+,.{d}f}"
    return "0.0" if float(text) == 0 else text


def difference_with_interval(value: Any, low: Any, high: Any) -> str:
    """``-0.6 points (95% interval -1.1 to -0.04)``: a difference of shares and its interval."""
    return f"{points(value)} points (95% interval {points(low)} to {points(high)})"


def _number(x: float) -> str:
    a = abs(x)
    if a >= 1000:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:,.1f}"
    if a >= 0.01 or a == 0:
        return f"{x:,.2f}"
    digits = min(int(-math.floor(math.log10(a))) + 1, 12)  # two significant digits, never 1e-05
    return f"{x:.{digits}f}"


def format_value(x: Any, kind: str = "auto") -> str:
    """One value as text for a stakeholder table (kinds as in :data:`KINDS`)."""
    if _is_missing(x):
        return MISSING
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, str) and kind in ("money", "count", "share", "number", "lift", "index", "days", "weeks"):
        try:
            x = float(x)
        except ValueError:
            return x
    if kind == "label":
        return str(x).replace("_", " ")
    if kind == "text" or (isinstance(x, str) and kind != "date"):
        return str(x)
    if isinstance(x, (pd.Timestamp, np.datetime64)) or kind == "date":
        try:
            return pd.Timestamp(x).strftime("%d %b %Y")
        except (ValueError, TypeError):
            return str(x)
    if isinstance(x, pd.Period):
        return str(x)
    if not isinstance(x, (int, float, np.integer, np.floating)):
        return str(x)
    if kind == "money":
        return money(x)
    if kind == "count":
        return count(x)
    if kind == "share":
        return share(x)
    if kind == "lift":
        return f"{float(x):,.1f}×"
    if kind == "index":
        return f"{float(x):,.0f}"
    if kind == "days":
        return f"{float(x):,.0f} days" if abs(float(x)) >= 2 or float(x) == 0 else f"{float(x):,.1f} days"
    if kind == "weeks":
        return f"{float(x):,.1f} weeks"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    if float(x).is_integer() and abs(float(x)) < 1e15:
        return f"{int(x):,}"
    return _number(float(x))


# ------------------------------------------------------------------------------ tables
def save_table(data: pd.DataFrame, name: str) -> None:
    """Save a stakeholder table as CSV under ``$SEGMENTATION_TABLES_DIR`` (set by the runner;
    no-op outside a run). Floats are rounded to 6 decimals first, so float sums added in a
    different order by a parallel engine print the same digits (byte-identical files)."""
    folder = os.environ.get(TABLES_ENV)
    if not folder:
        return
    path = Path(folder) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    out = data.copy()
    floats = out.select_dtypes("float").columns
    out[floats] = out[floats].round(6)
    for col in out.select_dtypes("object").columns:  # mixed columns (figures of several kinds): their floats too
        out[col] = out[col].map(lambda v: f"{round(v, 6):.10g}" if isinstance(v, (float, np.floating)) else v)
    out.to_csv(path, float_format="%.10g", lineterminator="\n")


def _hide_small(data: pd.DataFrame, count_column: str, min_group_size: int, total_shown: bool) -> tuple[pd.DataFrame, int, int]:
    """Blank every value of rows resting on fewer than ``min_group_size`` (counts included), with
    complementary suppression when the table's total is shown or implied
    (:func:`segmentation.privacy.suppress_small_groups`). Returns the table and the numbers of
    small and complementary rows hidden."""
    from segmentation.privacy import suppress_small_groups

    marked = suppress_small_groups(data, count_column, min_group_size, total_shown=total_shown, label="small", complement_label="complement")
    if "note" not in marked.columns or "note" in data.columns:
        return data, 0, 0
    hide = marked["note"].to_numpy() != ""
    out = data.astype(object).copy()
    out.loc[hide, :] = None
    label_col = data.columns[0] if not pd.api.types.is_numeric_dtype(data[data.columns[0]]) else None
    if label_col is not None:  # keep the group's name, hide its numbers
        out[label_col] = data[label_col].astype(object)
    return out, int((marked["note"] == "small").sum()), int((marked["note"] == "complement").sum())


def table(
    data: pd.DataFrame,
    columns: Iterable[str] | Mapping[str, str] | None = None,
    *,
    kinds: Mapping[str, str] | None = None,
    index: bool | str = False,
    count: str | None = None,
    min_group_size: int | None = None,
    name: str | None = None,
    max_rows: int = 25,
    note: str | None = None,
    caption: str | None = None,
    total_shown: bool = True,
    empty: str = "Nothing to show for this data.",
    value_kinds: str | None = None,
) -> Any:
    """Display ``data`` as a formatted stakeholder table (an ``IPython.display.HTML`` object).

    Parameters
    ----------
    data : DataFrame
    columns : list of column names, or {column: label}, optional
        Which columns to show, in order (default: all), optionally with their labels (default
        :func:`label`).
    kinds : mapping, optional
        Format kinds for columns (default :func:`kind_of`).
    index : bool or str
        Show the index as the first column (a str gives its label).
    count : str, optional
        The column holding group sizes; with ``min_group_size``, rows below it are hidden
        (every value shown as "—") and a note says so; when one row is hidden and the total is
        shown or implied (``total_shown``), the next smallest is hidden too.
    name : str, optional
        Save the full (unformatted) table as ``tables/<report>/<name>.csv`` in the run folder.
    max_rows : int
        Longer tables show their first ``max_rows`` rows and say where the rest is.
    note, caption : str, optional
        A line under / above the table.
    empty : str
        What is said instead of a table without rows.
    value_kinds : str, optional
        A column giving, per row, the kind of the ``value`` column (a table of mixed figures:
        a share in one row, a number in the next).
    """
    from IPython.display import HTML

    df = data.copy()
    if value_kinds is not None:
        df["value"] = [format_value(v, k) for v, k in zip(df["value"], df[value_kinds])]
        kinds = {**(kinds or {}), "value": "text"}
    first: list[str] = []
    if index is True or isinstance(index, str):  # "" shows the index under an empty header
        df = df.reset_index()
        if isinstance(index, str):
            df = df.rename(columns={df.columns[0]: index})
        first = [str(df.columns[0])]
    if isinstance(columns, Mapping):
        labels = {str(k): v for k, v in columns.items()}
        df = df[first + [c for c in columns if c not in first]]
    else:
        if columns is not None:
            df = df[first + [c for c in columns if c not in first]]
        labels = {}
    hidden = complement = 0
    if count is not None and min_group_size is not None and count in df.columns:
        df, hidden, complement = _hide_small(df, count, min_group_size, total_shown)
    if name is not None:
        save_table(data if count is None or min_group_size is None else df, name)
    kinds = dict(kinds or {})
    total = len(df)
    shown = df.head(max_rows)
    head = "".join(f"<th>{html.escape(labels.get(str(c), label(c)))}</th>" for c in shown.columns)
    body = []
    for row in shown.itertuples(index=False):  # display rows only (at most max_rows)
        cells = []
        for c, v in zip(shown.columns, row):
            k = kinds.get(str(c), kind_of(c))
            text = format_value(v, k)
            numeric = isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))
            short = len(text) <= 8 and " " not in text  # "80/20", "2025-03": never broken inside
            kind_class = ' class="num"' if numeric else ' class="short"' if short else ""
            cells.append(f"<td{kind_class}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    parts = [CSS]
    if caption:
        parts.append(f"<p><b>{html.escape(caption)}</b></p>")
    if total == 0:
        parts.append(f'<p class="seg-note">{html.escape(empty)}</p>')
        return HTML("".join(parts))
    parts.append(f'<table class="seg"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>')
    lines = []
    if total > max_rows:
        where = f" the full table is saved as tables/…/{name}.csv in the run folder" if name else ""
        lines.append(f"Showing the first {max_rows:,} of {total:,} rows;{where}." if where else f"Showing the first {max_rows:,} of {total:,} rows.")
    if hidden:
        lines.append(f"{hidden:,} row(s) shown as {MISSING}: fewer than {min_group_size} customers, hidden to protect privacy"
                     + (f"; {complement:,} more hidden so that they cannot be worked out from the total." if complement else "."))
    if note:
        lines.append(note)
    parts.extend(f'<p class="seg-note">{html.escape(line)}</p>' for line in lines)
    return HTML("".join(parts))


def facts(data: pd.DataFrame, *, name: str | None = None) -> Any:
    """A two-column table of headline figures: ``figure, value, kind`` (each value formatted by
    its own row's kind, e.g. :func:`segmentation.explore.overview`)."""
    if name is not None:
        save_table(data.drop(columns="kind"), name)
    return table(data, ["figure", "value"], value_kinds="kind")


def say(text: str) -> Any:
    """A paragraph of Markdown (for sentences computed from the results)."""
    from IPython.display import Markdown

    return Markdown(text)


def _box(kind: str, title: str, items: list[str]) -> Any:
    from IPython.display import HTML

    if not items:
        return HTML("")
    body = "".join(f"<li>{_inline(i)}</li>" for i in items)
    return HTML(f'{CSS}<div class="seg-{kind}"><b>{html.escape(title)}</b><ul>{body}</ul></div>')


def _inline(text: str) -> str:
    """Escape, then allow **bold** (the only markup findings use)."""
    out = html.escape(text)
    parts = out.split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def findings(results: Any, report_id: str) -> Any:
    """The report's key findings, computed from the run's numbers (shown at the top)."""
    from segmentation import findings as fd

    items = fd.key_findings(results, report_id)
    banner = fd.data_banner(results)
    from IPython.display import HTML

    top = f'{CSS}<div class="seg-banner">{_inline(banner)}</div>' if banner else ""
    box = _box("findings", "Key findings", [f.text for f in items])
    return HTML(top + (box.data if hasattr(box, "data") else ""))


def conclusion(results: Any, report_id: str) -> Any:
    """"What this means / what to do next" for the report, from the run's numbers."""
    from segmentation import findings as fd

    return _box("conclusion", "What this means and what to do next", fd.next_steps(results, report_id))


def notes(items: Iterable[str]) -> Any:
    """Plain-language notes (what the data could not support)."""
    from IPython.display import HTML

    items = [i for i in items if i]
    if not items:
        return HTML("")
    return HTML(CSS + "".join(f'<p class="seg-note">{html.escape(i)}</p>' for i in items))


# ------------------------------------------------------------------------------ persona cards
def persona_card(results: Any, personas: Any, segment: int) -> list[Any]:
    """Everything a manager needs about one persona, in reading order: who they are (name,
    size, narrative), the card figure, the one play to run (from the run's action plan, with
    reach, value at stake and the test design), pain points, and one real member's story.

    Returns a list of displayable objects (Markdown, HTML, figures) for ``display``.
    """
    from IPython.display import Markdown

    from segmentation import personas as ps

    s = personas.summary.loc[segment]
    name = str(s["name"])
    out: list[Any] = [Markdown(f"### {name}\n\n**{count(s['customers'])} customers** ({share(s['customer_share'])}), "
                               f"**{share(s['revenue_share'])} of revenue**.\n\n{s['narrative']}")]
    if isinstance(s.get("name_reason"), str) and s["name_reason"]:
        out.append(notes([f"Why this name: {s['name_reason']}"]))
    fig = ps.plot_persona_card(personas, segment)
    plt.close(fig)  # shown once, where the card puts it (an open figure is shown again at the end of the cell)
    out.append(fig)
    plan = results["offers"].tables.get("action_plan")
    play = plan[plan["persona"] == name] if plan is not None and len(plan) else None
    if play is not None and len(play):
        r = play.iloc[0]
        test = (f"Test: offer to {count(r['treatment'])}, keep {count(r['control'])} as a control group for {count(r['test_days'])} days; "
                f"the test can detect an uplift of {share(r['mde'])} in the share who buy (now {share(r['baseline_rate'])})."
                if pd.notna(r.get("control")) and r.get("control") else "No control group is possible at this size: " + str(r.get("note", "")))
        out.append(Markdown(
            f"**What to do**: {r['offer']} via {r['channel']} -- \"{r['message']}\"  \n"
            f"Reachable (agreed to marketing and profiling): **{count(r['reachable'])}** customers; value at stake "
            f"**{money(r['value_at_stake'])}** ({r['value_basis']}). Expected effect: {r['expected_effect']}.  \n{test}"))
    else:
        out.append(Markdown("**What to do**: no play for this group (see the action plan in the offers report)."))
    pains = personas.pain_points[personas.pain_points["segment"] == segment]
    if len(pains):
        out.append(Markdown("**Pain points seen in the data**\n\n" + "\n".join(f"- {e}" for e in pains["evidence"])))
    reps = results["profile"].tables.get("representatives")
    if reps is not None and segment in reps.index:
        rep = reps.loc[segment]
        out.append(Markdown(f"**A real member** (customer {str(rep['customer_id'])[:10]}…, pseudonymous): {rep['story']}"))
    return out


# ------------------------------------------------------------------------------ offer views
def recommender_table(evaluation: pd.DataFrame) -> pd.DataFrame:
    """The recommender evaluation for a manager: method, recall, hit rate, the difference to our
    recommender in recall with its 95% interval, and which method the run uses."""
    recall = [c for c in evaluation.columns if c.startswith("recall@")][0]
    hit = [c for c in evaluation.columns if c.startswith("hit_rate@")][0]
    out = pd.DataFrame({"method": [definitions.METHOD_NAMES.get(m, m) for m in evaluation.index],
                        "share of the next order suggested (recall)": evaluation[recall].to_numpy(),
                        "customers with a right suggestion (hit rate)": evaluation[hit].to_numpy()})
    if "recall_difference" in evaluation:
        out["ours minus this method (recall)"] = [
            "—" if m == "recommender" else difference_with_interval(r["recall_difference"], r["recall_difference_low"], r["recall_difference_high"])
            for m, r in evaluation.iterrows()]
    if "winner" in evaluation:
        out["used"] = evaluation["winner"].astype(bool).to_numpy()
    return out


def action_plan_view(plan: pd.DataFrame) -> pd.DataFrame:
    """The action plan for a manager: the expected effect as one word or range (the reason is
    in the plan's notes)."""
    out = plan.copy()
    out["expected_effect"] = out["expected_effect"].astype(str).str.split(":").str[0]
    return out


# ------------------------------------------------------------------------------ value views
def value_by_persona(results: Any) -> pd.DataFrame:
    """Per persona, from the run's per-customer table: customers, expected orders, total CLV
    with its 90% interval (parameter uncertainty), median CLV, mean chance of still buying and
    the share at high churn risk."""
    from segmentation import value

    c = results.customers
    out = value.value_by_group(c[["expected_purchases", "expected_spend", "clv", "p_alive", "churn_band"]], c["persona"])
    intervals = results["value"].tables.get("intervals_by_segment")
    if intervals is not None:
        seg_to_persona = c.groupby("segment")["persona"].first()
        iv = intervals.drop(index="total", errors="ignore")
        iv.index = iv.index.astype("int64").map(seg_to_persona)
        out = out.join(iv[["clv_low", "clv_high"]])
    cols = ["customers", "expected_purchases", "clv_total", "clv_low", "clv_high", "clv_median", "p_alive_mean", "high_churn_share"]
    out = out[[col for col in cols if col in out.columns]]
    out.index.name = "persona"
    return out


def plot_value_by_persona(results: Any) -> plt.Figure:
    """Total CLV per persona with its 90% interval, and the churn-risk bands per persona."""
    table = value_by_persona(results)
    c = results.customers
    fig, axes = plt.subplots(1, 2, figsize=(14, 0.55 * len(table) + 2))
    y = np.arange(len(table))
    err = None
    if {"clv_low", "clv_high"} <= set(table.columns):
        err = [table["clv_total"] - table["clv_low"], table["clv_high"] - table["clv_total"]]
    axes[0].barh(y, table["clv_total"], xerr=err, color="tab:blue", capsize=3)
    axes[0].set_yticks(y, table.index)
    axes[0].invert_yaxis()
    axes[0].xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=4))  # money labels are long: few ticks
    axes[0].xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: money(v)))
    axes[0].set_xlabel(f"total lifetime value, next {results.params.horizon_months} months (90% interval)")
    axes[0].set_title(f"{table.index[0]} hold the most value: {money(table['clv_total'].iloc[0])}")
    bands = pd.crosstab(c["persona"], c["churn_band"].astype("string"), normalize="index").reindex(index=table.index)
    bands = bands.reindex(columns=[b for b in ("low", "medium", "high") if b in bands.columns])
    bands.plot.barh(stacked=True, ax=axes[1], color={"low": "tab:green", "medium": "tab:orange", "high": "tab:red"}, legend=True)
    axes[1].invert_yaxis()
    axes[1].set_ylabel("")
    axes[1].xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    axes[1].set_xlabel("share of the persona's customers")
    axes[1].set_title("Churn risk (1 - chance of still buying): low < 30% <= medium < 70% <= high")
    axes[1].legend(title="churn risk", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)  # never over a bar
    fig.tight_layout()
    return fig


def expected_orders_by_persona(results: Any) -> pd.DataFrame:
    """Expected orders per persona (rows) and week after the analysis date (columns 1..12),
    for the personas shown to stakeholders."""
    plan = results["value"]["expected_orders"]
    c = results.customers
    names = c.groupby("segment")["persona"].first()
    sizes = c["segment"].value_counts()
    plan = plan[plan["group"].map(sizes).fillna(0) >= results.params.min_group_size]
    wide = plan.assign(persona=plan["group"].map(names)).pivot_table(index="persona", columns="week", values="expected_orders", aggfunc="sum")
    wide.columns = [int(w) for w in wide.columns]
    return wide


# ------------------------------------------------------------------------------ set-up
def setup(results: Any = None) -> None:
    """Figure style readable at 1400 px, and the run's currency for money values."""
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": 13, "axes.labelsize": 11,
                                "xtick.labelsize": 10, "ytick.labelsize": 10, "legend.fontsize": 10,
                                "axes.formatter.useoffset": False, "axes.formatter.limits": (-9, 12)})
    sns.set_theme(style="whitegrid", context="notebook")
    plt.close("all")
    if results is not None:
        use_currency(results["data"].scalars.get("currency", "EUR"))


def use_currency(code: str | None) -> None:
    """Set the currency money values are shown in (``""``: data without prices, shown as items)."""
    _currency["code"] = "EUR" if code is None else code


def currency() -> str:
    """The run's currency code ('' for data without prices)."""
    return _currency["code"]


def open_results(results_dir: str | None, config: str | None = None) -> Any:
    """The results a notebook renders.

    In a scheduled run the runner passes ``results_dir``; a notebook opened by hand (``results_dir
    = None``) computes them on the spot from ``config`` (the same YAML the scheduled run uses, so
    the numbers are the same), which takes as long as one run's analysis.
    """
    from segmentation.analysis import Results, run_analysis
    from segmentation.runner import load_config, load_run_store

    if results_dir is not None:
        return Results.load(results_dir)
    cfg = load_config(config)
    from segmentation.data import connect

    store = load_run_store(cfg.parameters, con=connect(cfg.backend, **cfg.backend_options))
    return run_analysis(store, cfg.parameters)
