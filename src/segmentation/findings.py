"""Findings and next steps in plain sentences, computed from a run's results.

Nothing here is hard-coded prose about a particular data set: every sentence is built from the
numbers of :class:`~segmentation.analysis.Results`, and a sentence whose numbers are missing
(e.g. no lifetime model on data without repeat buyers) is left out or replaced by the reason.

* :func:`key_findings` -- 3-5 findings at the top of each report (``"01"`` ... ``"07"``);
* :func:`next_steps` -- "what this means / what to do next" at the end of each report;
* :func:`index_findings` -- the executive summary on the run's index page (with links);
* :func:`data_banner` -- a warning line when the data is synthetic or has known limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from segmentation.definitions import METHOD_NAMES
from segmentation.report import count, difference_with_interval, format_value, money, share

__all__ = ["Finding", "key_findings", "next_steps", "index_findings", "data_banner", "recommender_verdict", "response_bias_text", "next_purchase_text", "index_actions", "REPORTS"]

#: Report id -> (notebook stem, title for the index).
REPORTS: dict[str, tuple[str, str]] = {
    "01": ("01_purchase_history", "Purchase history"),
    "02": ("02_segmentation", "Customer segments"),
    "03": ("03_personas", "Personas"),
    "04": ("04_customer_profile", "One customer"),
    "05": ("05_customer_value", "Customer value"),
    "06": ("06_recommendations_and_offers", "Recommendations and offers"),
    "07": ("07_journey_and_feedback", "Journey and feedback"),
}


@dataclass(frozen=True)
class Finding:
    """One finding: a plain sentence and the report that shows the evidence."""

    text: str
    report: str


def _scalar(results: Any, section: str, name: str, default: Any = None) -> Any:
    try:
        return results[section].scalars.get(name, default)
    except KeyError:
        return default


def _table(results: Any, section: str, name: str) -> pd.DataFrame | None:
    try:
        return results[section].tables.get(name)
    except KeyError:
        return None


def _visible_personas(results: Any) -> pd.DataFrame:
    summary = _table(results, "personas", "summary")
    if summary is None:
        return pd.DataFrame()
    return summary[~summary["suppressed"].astype(bool)]


def _lower_first(text: str) -> str:
    text = str(text).rstrip(".")
    return text[:1].lower() + text[1:]


def data_banner(results: Any) -> str | None:
    """A warning shown above every report when the numbers must be read with care."""
    parts = []
    if _scalar(results, "data", "synthetic"):
        parts.append("**Demonstration data**: this run uses the generated synthetic store, not real customers.")
    if not _scalar(results, "data", "currency", "EUR"):
        parts.append("This data has no prices: money figures count items bought.")
    if _scalar(results, "data", "derived_dates"):
        parts.append("Order dates are derived from the gaps between orders, not real calendar dates: seasonality, "
                     "recency and who counts as lapsed are approximate.")
    return " ".join(parts) or None


# ============================================================================ per report
def key_findings(results: Any, report_id: str) -> list[Finding]:
    """The key findings of one report (3-5 plain sentences with their numbers)."""
    fn = {"01": _purchases, "02": _segments, "03": _personas, "04": _profile, "05": _value, "06": _offers,
          "07": _journey}[report_id]
    return [Finding(text, report_id) for text in fn(results) if text]


def _purchases(r: Any) -> list[str]:
    o = _table(r, "purchases", "overview")
    if o is None:
        return []
    v = o.set_index("figure")["value"]
    out = [
        f"**{count(v['customers'])} customers** placed **{count(v['orders'])} orders** between "
        f"{format_value(v['first purchase'], 'date')} and {format_value(v['last purchase'], 'date')}, "
        f"worth **{money(v['net revenue'])}** net of returns.",
        f"**{share(_scalar(r, 'purchases', 'top20_share'))} of revenue** comes from the top 20% of customers "
        f"(the top 1% bring {share(_scalar(r, 'purchases', 'top1_share'))}).",
    ]
    mix = _table(r, "purchases", "category_mix")
    if mix is not None and len(mix) == 1:
        out.append(f"All purchases are in one category (**{str(mix.index[0]).replace('_', ' ')}**): "
                   "the data carry no product mix to compare.")
    elif mix is not None and len(mix):
        top = mix.index[0]
        out.append(f"The largest category is **{str(top).replace('_', ' ')}**: {share(mix['revenue_share'].iloc[0])} of revenue, "
                   f"in {share(mix['order_penetration'].iloc[0])} of orders.")
    out.append(f"**{share(v['repeat buyers'])} of customers bought more than once**; an order is worth "
               f"{money(v['average order value'])} on average.")
    peaks = _scalar(r, "purchases", "peak_months") or []
    day, hour = _scalar(r, "purchases", "busiest_day"), _scalar(r, "purchases", "busiest_hour")
    if day is None:
        when = f"The busiest hour is around {hour}:00 (this data has no real weekdays or months: its dates are derived)"
    else:
        when = (f"The busiest time is {day} around {hour}:00" if hour is not None
                else f"The busiest day is {day} (the data have dates without times of day)")
    waves = _scalar(r, "purchases", "acquisition_peaks") or []
    months = _scalar(r, "purchases", "comparable_months", True)
    out.append(when + (f"; peak months: {', '.join(peaks[-3:])}." if peaks else "; no month stands out from the rest of its year."
                       if months else ".")
               + (f" {_months(waves)} peaked with first-time buyers: a wave of new customers, not a season." if waves else ""))
    return out


def _months(months: list[str]) -> str:
    """``Jan 1997, Feb 1997 and Mar 1997`` (the last three)."""
    months = months[-3:]
    return months[0] if len(months) == 1 else ", ".join(months[:-1]) + " and " + months[-1]


def _segments(r: Any) -> list[str]:
    k = _scalar(r, "segments", "k")
    if k is None:
        return []
    diag = _scalar(r, "segments", "diagnostics") or {}
    if _scalar(r, "segments", "path") == "tiers":
        out = [f"**{count(_scalar(r, 'segments', 'segmented'))} customers** are grouped into **{k} value x status tiers**: the "
               "data show **no reproducible behavioural clusters**, so the report does not pretend there are "
               f"({_lower_first(diag.get('summary', 'weak structure'))})."]
    else:
        out = [f"**{count(_scalar(r, 'segments', 'segmented'))} customers** fall into **{k} behavioural segments** "
               f"({diag.get('summary', '').rstrip('.') or 'chosen by how well they reproduce'})."]
    ari = _scalar(r, "segments", "stability_ari_mean")
    unstable = _scalar(r, "segments", "unstable_segments") or []
    if ari is not None:
        verdict = "reproduce well" if ari >= 0.8 else "reproduce only partly" if ari >= 0.6 else "do not reproduce reliably"
        out.append(f"Refitted on random subsets, the segments **{verdict}** (agreement {ari:.2f} on a 0-1 scale)"
                   + (f"; {len(unstable)} segment(s) are unstable and are not named as personas." if unstable else "."))
    truth = _scalar(r, "segments", "truth_ari")
    if truth is not None:
        out.append(f"On this synthetic store the segments recover the planted customer types with agreement {truth:.2f} (1 = perfect).")
    rfm = _table(r, "segments", "rfm_summary")
    if rfm is not None and len(rfm) and "customers" in rfm:
        big = rfm["customers"].idxmax()
        out.append(f"The largest RFM group is **{big}** ({share(rfm.loc[big, 'customers'] / rfm['customers'].sum())} of customers).")
    return out


def _personas(r: Any) -> list[str]:
    vis = _visible_personas(r)
    if vis.empty:
        return ["No persona is large enough to describe."]
    out = [f"**{len(vis)} personas** describe the customers: " + ", ".join(
        f"{n} ({share(s)})" for n, s in zip(vis["name"], vis["customer_share"])) + "."]
    top = vis.sort_values("revenue_share", ascending=False).iloc[0]
    out.append(f"**{top['name']}** bring the most revenue: {share(top['revenue_share'])} from {share(top['customer_share'])} of customers.")
    if "lapsed_share" in vis:
        worst = vis.sort_values("lapsed_share", ascending=False).iloc[0]
        out.append(f"**{worst['name']}** have the most lapsed customers ({share(worst['lapsed_share'])}).")
    return out


def _profile(r: Any) -> list[str]:
    p = r["profile"].scalars if "profile" in r.sections else {}
    if not p:
        return []
    story = list(p.get("story", []))
    out = [f"Customer **{p['customer_id'][:10]}…** is {p.get('membership', 'a member of ' + p['persona'])}."]
    out.extend(line for line in story[1:4])
    return out


def _value(r: Any) -> list[str]:
    verdict = _scalar(r, "value", "verdict")
    if verdict is None:
        return []
    reasons = " ".join(_scalar(r, "value", "verdict_reasons") or [])
    out = [f"The lifetime model's verdict is **{verdict}**: {reasons}"]
    if verdict == "do not use":
        out.append("No lifetime values or churn probabilities are shown; use recency and the RFM groups to prioritise customers.")
    c = r.customers
    if verdict != "do not use" and "clv" in c:
        horizon, rate = _scalar(r, "value", "horizon_months"), _scalar(r, "value", "annual_discount_rate")
        out.append(f"Expected value of today's customers over the next {horizon} months: **{money(c['clv'].sum())}** "
                   f"(discounted at {share(rate)} a year).")
        high = c["churn_band"].astype("string") == "high"
        out.append(f"**{count(high.sum())} customers** are at high risk of having stopped buying; "
                   f"they held {money(c.loc[high, 'monetary'].sum())} of past spend.")
    return out


def _offers(r: Any) -> list[str]:
    out = []
    plan = _table(r, "offers", "action_plan")
    if plan is not None and len(plan):
        reach = plan["reachable"].fillna(0).sum()
        if reach == 0:
            out.append(f"The action plan has **{len(plan)} plays**, one per persona, but **no customer can be contacted**: "
                       "this data records no marketing consent. Collect consent first; the plays show what to offer then.")
        else:
            out.append(f"The action plan has **{len(plan)} plays**, one per persona, reaching **{count(reach)} customers** "
                       f"who agreed to marketing, with **{money(plan['value_at_stake'].sum())}** at stake.")
    ev = _table(r, "offers", "recommender_evaluation")
    if ev is not None and len(ev):
        out.append(recommender_verdict(ev).split(":")[0] + ": it predicts held-out orders best.")
    rules = _table(r, "offers", "rules")
    if rules is not None and len(rules):
        top = rules.sort_values("lift", ascending=False).iloc[0]
        a = top.get("antecedent_name", top.get("antecedent"))
        b = top.get("consequent_name", top.get("consequent"))
        out.append(f"Strongest co-purchase: baskets with **{a}** also hold **{b}** {format_value(top['lift'], 'lift')} as often as chance.")
    return out


def _journey(r: Any) -> list[str]:
    out = []
    f = _table(r, "journey", "funnel")
    if f is not None and len(f):
        last = f.iloc[-1]
        out.append(f"Of sessions that start the journey, **{share(last.get('from_first', float('nan')))} end in an order**.")
    s = _table(r, "journey", "satisfaction_by_persona")
    if s is not None and len(s) and "nps" in s:
        d = s.dropna(subset=["nps"])
        if len(d):
            lo = d["nps"].idxmin()
            out.append(f"Satisfaction is lowest among **{lo}** (NPS {d.loc[lo, 'nps']:.0f}).")
    back = _scalar(r, "journey", "second_month_return")
    if back is not None:
        out.append(f"**{share(back)} of a month's new customers buy again the month after** their first purchase.")
    moved = _scalar(r, "journey", "migration") or {}
    earlier = moved.get("stayed", 0) + moved.get("moved", 0)
    if earlier:
        out.append(f"Since {moved.get('compare_as_of')}, **{share(moved['stayed'] / earlier)} of earlier customers stayed in "
                   f"their segment**; {count(moved.get('new customers', 0))} customers are new.")
    from segmentation.analysis import NO_JOURNEY_EVENTS, NO_SURVEY_FEEDBACK

    missing = [n for n in r["journey"].notes if n in (NO_JOURNEY_EVENTS, NO_SURVEY_FEEDBACK)]
    return out + missing[: max(0, 5 - len(out))]


def recommender_verdict(evaluation: pd.DataFrame) -> str:
    """Which recommendation method wins on the held-out orders, in words, with the 95% interval
    for the difference in recall (the share of the next order that was suggested), the measure
    the winner is chosen by (:func:`segmentation.recommend.evaluation_table`)."""
    if evaluation is None or evaluation.empty:
        return "The recommender could not be evaluated on this data."
    winner = evaluation.index[evaluation["winner"].astype(bool)][0] if "winner" in evaluation else evaluation["recall@10"].idxmax()
    recall = [c for c in evaluation.columns if c.startswith("recall@")][0]
    ours = evaluation.loc["recommender"] if "recommender" in evaluation.index else None
    text = f"**The run uses {METHOD_NAMES.get(winner, winner)}**"
    if ours is None or "recall_difference" not in evaluation:
        return text + "."
    others = evaluation.drop(index="recommender")
    best = winner if winner != "recommender" else others[recall].idxmax()
    row = evaluation.loc[best]
    interval = (f"our recommender minus {METHOD_NAMES.get(best, best)}: "
                f"{difference_with_interval(row['recall_difference'], row['recall_difference_low'], row['recall_difference_high'])}")
    if winner == "recommender":
        return text + (f": it suggests {share(ours[recall])} of the next order's products against {share(row[recall])} "
                       f"for {METHOD_NAMES.get(best, best)}; {interval}, clearly above zero.")
    return text + (f": our recommender does not clearly beat it ({share(ours[recall])} of the next order suggested against "
                   f"{share(row[recall])}; {interval}), so the simpler method is used.")


def next_purchase_text(results: Any) -> str:
    """When the repeat buyers who are more likely active than not are expected to buy next."""
    c = results.customers
    if "next_purchase_weeks" not in c or "p_alive" not in c:
        return "Next-purchase windows need a usable lifetime model."
    likely = c[(c["p_alive"] >= 0.5) & c["next_purchase_weeks"].notna()]
    if len(likely) < results.params.min_group_size:
        return "Too few repeat buyers are likely still active to give a next-purchase window."
    q = likely["next_purchase_weeks"].quantile([0.25, 0.5, 0.75])
    return (f"**{count(len(likely))} repeat buyers** are more likely active than not; half of them are expected to buy again "
            f"within **{q[0.5]:.1f} weeks** (middle half of customers: {q[0.25]:.1f} to {q[0.75]:.1f} weeks).")


def response_bias_text(bias: dict | None) -> str:
    """Whether survey response rates differ between personas, in words (from
    :func:`segmentation.satisfaction.response_bias`)."""
    if not bias or bias.get("p_value") is None or pd.isna(bias.get("p_value")):
        return (bias or {}).get("note") or "Response rates could not be compared between personas."
    if bias["p_value"] < 0.05:
        return ("Response rates **differ between personas** (chi-square test, p < 0.05): overall satisfaction leans towards "
                "the personas that answer most; read the figures per persona.")
    return "Response rates do not differ clearly between personas (chi-square test, p ≥ 0.05)."


# ============================================================================ next steps
def next_steps(results: Any, report_id: str) -> list[str]:
    """"What this means / what to do next" for one report, from its numbers."""
    r = results
    if report_id == "01":
        v = _table(r, "purchases", "overview").set_index("figure")["value"]
        steps = []
        if float(v["repeat buyers"]) < 0.3:
            steps.append(f"Only {share(v['repeat buyers'])} of customers came back: the second order is the lever. "
                         "Look at the win-back and welcome plays in the offers report.")
        steps.append(f"Revenue depends on the top 20% of customers ({share(_scalar(r, 'purchases', 'top20_share'))}): "
                     "protect them first (see the loyalty tiers in the offers report).")
        peaks = _scalar(r, "purchases", "peak_months") or []
        if peaks:
            steps.append(f"Plan stock and staff for the peak months ({', '.join(peaks[-3:])}).")
        waves = _scalar(r, "purchases", "acquisition_peaks") or []
        if waves:
            steps.append(f"The peak of {_months(waves)} came from first-time buyers: find out which campaign or channel "
                         "brought them before planning for it to come back.")
        return steps
    if report_id == "02":
        diag = _scalar(r, "segments", "diagnostics") or {}
        steps = ["Use the personas report to see who each segment is and what to offer them."]
        if diag.get("path") and diag.get("path") != "clusters":
            steps.insert(0, "Do not over-read small differences between segments: the structure in this data is weak.")
        return steps
    if report_id == "03":
        vis = _visible_personas(r)
        plan = _table(r, "offers", "action_plan")
        steps = []
        if plan is not None and len(plan):
            for row in plan.head(4).itertuples():
                steps.append(f"{row.persona}: {row.offer} via {row.channel} to {count(row.reachable)} reachable customers.")
        else:
            steps.extend(f"{n}: see the offers report for the play." for n in vis["name"].head(4))
        return steps
    if report_id == "04":
        p = r["profile"].scalars
        plan = _table(r, "offers", "action_plan")
        row = r.customers.loc[p["customer_id"]] if p.get("customer_id") in r.customers.index else None
        steps = []
        if plan is not None and len(plan) and (plan["persona"] == p["persona"]).any():
            play = plan[plan["persona"] == p["persona"]].iloc[0]
            reachable = row is not None and bool(row.get("consent_marketing", False))
            steps.append(f"Their persona's play is **{play['offer']}** via {play['channel']}; "
                         + ("this customer agreed to marketing and can receive it." if reachable
                            else "this customer has not agreed to marketing, so they must not be contacted with it."))
        if row is not None and str(row.get("status")) in ("lapsing", "lapsed"):
            steps.append(f"They are {row['status']}: silent for longer than their usual rhythm; a personal win-back is worth more than a generic offer.")
        steps.append("Use the differences above to adjust the play: they matter more for this person than the persona's averages.")
        return steps
    if report_id == "05":
        verdict = _scalar(r, "value", "verdict")
        if verdict == "do not use":
            return ["Do not plan with lifetime values on this data; use recency and spend (RFM groups) to prioritise customers."]
        return ["Prioritise retention spend on customers with high value and high churn risk (win-back list in the offers report).",
                "Re-run monthly: the model's check on the latest holdout tells whether the values can still be trusted."]
    if report_id == "06":
        return ["Run each play as a test with the control group given in the plan; judge it by the purchase rate against the control."]
    if report_id == "07":
        steps = []
        if _table(r, "journey", "funnel") is not None:
            steps.append("Fix the weakest funnel step of the weakest channel first (see the funnel by channel).")
        s = _table(r, "journey", "satisfaction_by_persona")
        if s is not None and "nps" in s and s["nps"].notna().any():
            steps.append("Follow up with detractors (scores 0-6) before they lapse, starting with the persona with the "
                         "lowest NPS.")
        back = _scalar(r, "journey", "second_month_return")
        if back is not None and back < 0.3:
            steps.append(f"Only {share(back)} of new customers buy again the month after: the second order is the lever "
                         "(see the welcome and win-back plays in the offers report).")
        if not steps:
            steps.append("Collect journey events and survey answers to see where customers drop out and why they leave.")
        return steps
    return []


def index_actions(results: Any, top: int = 5) -> list[str]:
    """The action plan in one line per persona (largest value at stake first), for the index."""
    plan = _table(results, "offers", "action_plan")
    if plan is None or plan.empty:
        return []
    out = []
    if plan["reachable"].fillna(0).sum() == 0:
        out.append("No customer can be contacted yet: this data records no marketing consent. The plays below are what to "
                   "offer once consent is collected.")
    for row in plan.head(top).itertuples():
        if pd.isna(row.reachable) or row.reachable == 0:
            out.append(f"**{row.persona}** ({count(row.customers)} customers): {row.offer} via {row.channel}.")
            continue
        test = (f"test against {count(row.control)} held back" if pd.notna(row.control) and row.control else "no control group possible")
        out.append(f"**{row.persona}**: {row.offer} via {row.channel} to {count(row.reachable)} reachable customers "
                   f"({money(row.value_at_stake)} at stake; {test}).")
    if len(plan) > top:
        rest = plan.iloc[top:]
        out.append(f"{len(rest)} more play{'s' if len(rest) > 1 else ''} ({', '.join(rest['persona'].astype(str))}; "
                   f"{count(rest['customers'].sum())} customers) in the full plan.")
    return out


def index_findings(results: Any) -> list[Finding]:
    """The executive summary: the first one or two findings of each report (5-8 in all)."""
    picks = {"01": 2, "02": 1, "03": 2, "05": 1, "06": 1, "07": 1}
    out: list[Finding] = []
    for rid, n in picks.items():
        out.extend(key_findings(results, rid)[:n])
    return out[:8]
