"""The run parameters: one typed, validated set for the whole run.

Every report of a run reads the same :class:`RunParameters` (saved with the results), so a
value changed with ``--set`` changes every report. The table in the README ("Run parameters")
is generated from :data:`PARAMETER_DOCS` and checked by a test.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, fields
from typing import Any, get_args, get_origin, get_type_hints

import pandas as pd

from segmentation import definitions

__all__ = ["RunParameters", "ParameterError", "PARAMETER_DOCS", "SYNTHETIC_AS_OF", "parameter_table", "plain_value"]

#: The analysis date of the bundled synthetic store (its data ends on 2025-12-31).
SYNTHETIC_AS_OF = "2026-01-01"


class ParameterError(ValueError):
    """A run parameter is unknown, has the wrong type or an impossible value."""


@dataclass(frozen=True)
class RunParameters:
    """Everything a user can change about a run; see :data:`PARAMETER_DOCS` for each field.

    Build with keyword arguments or :meth:`from_mapping` (YAML config plus ``--set``
    overrides); both validate. Frozen: a run never changes its parameters.
    """

    # --- data
    source: str = "synthetic"
    preset: str | None = None
    as_of: str | None = None
    n_customers: int = 3000
    max_age_days: int | None = None
    duplicates: str = "drop"
    currency: str | None = None
    # --- everything random
    random_state: int = 42
    # --- segmentation
    feature_set: str = "behaviour"
    method: str = "kmeans"
    n_clusters: int | str = "auto"
    k_min: int = 2
    k_max: int = 10
    n_boot: int = 8
    sample_size: int = 200_000
    # --- definitions
    lapsing_after: float = definitions.LAPSING_AFTER
    lapsed_after: float = definitions.LAPSED_AFTER
    new_customer_days: int = definitions.NEW_CUSTOMER_DAYS
    # --- value
    annual_discount_rate: float = 0.10
    horizon_months: int = 12
    holdout_weeks: int | None = None
    # --- recommendations and offers
    n_recommendations: int = 10
    min_support: float = 0.005
    min_confidence: float = 0.05
    key_date_days: int = 28
    # --- journey
    compare_as_of: str | None = None
    n_themes: int = 8
    # --- privacy and presentation
    min_group_size: int = 10
    customer_id: str | None = None

    def __post_init__(self) -> None:
        _validate(self)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None = None) -> RunParameters:
        """Parameters from a mapping (a YAML config's ``parameters``), unknown names refused.

        Raises
        ------
        ParameterError
            An unknown name (with the closest known one), a wrong type or an impossible value.
        """
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            import difflib

            hints = [f"{u!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(u, known, 1)) else repr(u)
                     for u in unknown]
            raise ParameterError(f"unknown run parameter(s) {', '.join(hints)}; known parameters: {sorted(known)}")
        return cls(**{k: plain_value(v) for k, v in values.items()})

    def replace(self, **changes: Any) -> RunParameters:
        """A copy with some values changed (validated)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (as saved with the results)."""
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ derived values
    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def analysis_date(self) -> pd.Timestamp:
        """``as_of`` as a timestamp (the synthetic store's default when not given)."""
        if self.as_of is None:
            raise ParameterError("as_of is required for your own data: the analysis date, e.g. --set as_of=2026-02-01 "
                                 "(only data before it counts)")
        return pd.Timestamp(self.as_of)

    @property
    def comparison_date(self) -> pd.Timestamp:
        """``compare_as_of``, by default 6 months before ``as_of`` (for segment migration)."""
        if self.compare_as_of is not None:
            return pd.Timestamp(self.compare_as_of)
        return self.analysis_date - pd.DateOffset(months=6)

    @property
    def horizon_weeks(self) -> int:
        """The value horizon in weeks (``horizon_months`` x 52 / 12, rounded)."""
        return int(round(self.horizon_months * 52 / 12))


#: One line per parameter: what it does (the README table is generated from this).
PARAMETER_DOCS: dict[str, str] = {
    "source": "`synthetic` (the bundled generated store), a folder or file with your data, or a YAML data config",
    "preset": "a built-in data format: `online_retail`, `cdnow`, `instacart`, `completejourney`; none for canonical columns",
    "as_of": "analysis date (ISO): only data before it counts; required for your own data (synthetic: 2026-01-01)",
    "n_customers": "size of the synthetic store",
    "max_age_days": "retention: lines older than this many days before `as_of` are dropped (counted)",
    "duplicates": "`drop` exact duplicate lines (counted) or `keep` them (marketplaces with one line per item)",
    "currency": "currency code or symbol shown with money (ISO code such as EUR, GBP, USD); default from the data source, else EUR",
    "random_state": "seed of every random step (same data and parameters give the same numbers)",
    "feature_set": "what segments are built on: `behaviour`, `demographics` or `both`",
    "method": "clustering method: `kmeans`, `gmm`, `ward`, `hdbscan`",
    "n_clusters": "number of segments, or `auto` (chosen by stability across seeds and subsamples)",
    "k_min": "smallest number of segments tried by `auto`",
    "k_max": "largest number of segments tried by `auto`",
    "n_boot": "refits on subsamples with other seeds, per number of segments tried: they choose k and measure stability",
    "sample_size": "above this many customers the segmentation is fitted, and the recommender compared with the baselines, on a random sample of this many customers (every customer is still assigned and gets recommendations)",
    "lapsing_after": "silence, in usual gaps between orders, after which a customer is *lapsing*",
    "lapsed_after": "silence, in usual gaps between orders, after which a customer is *lapsed*",
    "new_customer_days": "a customer whose first order is this recent is *new*",
    "annual_discount_rate": "discount rate for lifetime value, per year (0.10 = 10% a year)",
    "horizon_months": "horizon of lifetime value and expected purchases, in months",
    "holdout_weeks": "weeks held out to validate the lifetime model; default: a third of the history, at most 26",
    "n_recommendations": "products suggested per customer",
    "min_support": "co-purchase rules: smallest share of baskets an item set must appear in",
    "min_confidence": "co-purchase rules: smallest confidence",
    "key_date_days": "birthdays and anniversaries in this many days after `as_of` are listed",
    "compare_as_of": "earlier date for segment migration; default 6 months before `as_of`",
    "n_themes": "number of themes found in feedback comments",
    "min_group_size": "smallest group shown in stakeholder reports (smaller groups are hidden)",
    "customer_id": "the customer of the single-customer report (pseudonymous id); default: a representative customer",
}

_CHOICES = {
    "preset": (None, "online_retail", "cdnow", "instacart", "completejourney"),
    "duplicates": ("drop", "keep"),
    "feature_set": ("behaviour", "demographics", "both"),
    "method": ("kmeans", "gmm", "ward", "hdbscan"),
}


def plain_value(value: Any) -> Any:
    """YAML reads 2026-01-01 as a date; parameters take dates as ISO strings."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _accepts(hint: Any, value: Any) -> bool:
    options = get_args(hint) if get_origin(hint) is not None else (hint,)
    for option in options:
        if option is type(None) and value is None:
            return True
        if option is bool and isinstance(value, bool):
            return True
        if option is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if option is str and isinstance(value, str):
            return True
    return False


def _type_name(hint: Any) -> str:
    options = get_args(hint) if get_origin(hint) is not None else (hint,)
    return " or ".join("none" if o is type(None) else o.__name__ for o in options)


def _validate(p: RunParameters) -> None:
    hints = get_type_hints(RunParameters)
    for f in fields(p):
        value = getattr(p, f.name)
        if not _accepts(hints[f.name], value):
            raise ParameterError(f"parameter {f.name}={value!r} ({type(value).__name__}): expected {_type_name(hints[f.name])} "
                                 f"-- {PARAMETER_DOCS[f.name]}")
        if f.name in _CHOICES and value not in _CHOICES[f.name]:
            raise ParameterError(f"parameter {f.name}={value!r}: expected one of {[c for c in _CHOICES[f.name]]}")
    if isinstance(p.n_clusters, str) and p.n_clusters != "auto":
        raise ParameterError(f"parameter n_clusters={p.n_clusters!r}: expected a whole number >= 2 or 'auto'")
    for name, low in (("n_customers", 10), ("k_min", 2), ("n_boot", 1), ("sample_size", 1000), ("min_group_size", 1),
                      ("n_recommendations", 1), ("n_themes", 2), ("horizon_months", 1), ("key_date_days", 1),
                      ("new_customer_days", 1), ("random_state", 0)):
        if getattr(p, name) < low:
            raise ParameterError(f"parameter {name}={getattr(p, name)!r}: expected at least {low} -- {PARAMETER_DOCS[name]}")
    if isinstance(p.n_clusters, int) and p.n_clusters < 2:
        raise ParameterError(f"parameter n_clusters={p.n_clusters}: expected at least 2 or 'auto'")
    if p.k_max < p.k_min:
        raise ParameterError(f"parameters k_min={p.k_min} and k_max={p.k_max}: k_max must be at least k_min")
    if not 0 <= p.annual_discount_rate < 1:
        raise ParameterError(f"parameter annual_discount_rate={p.annual_discount_rate}: expected a yearly rate in [0, 1), "
                             "e.g. 0.10 for 10% a year")
    for name in ("min_support", "min_confidence"):
        if not 0 < getattr(p, name) <= 1:
            raise ParameterError(f"parameter {name}={getattr(p, name)}: expected a share in (0, 1]")
    if not 0 < p.lapsing_after < p.lapsed_after:
        raise ParameterError(f"parameters lapsing_after={p.lapsing_after} and lapsed_after={p.lapsed_after}: "
                             "need 0 < lapsing_after < lapsed_after")
    for name in ("as_of", "compare_as_of"):
        value = getattr(p, name)
        if value is not None:
            try:
                pd.Timestamp(value)
            except (ValueError, TypeError) as exc:
                raise ParameterError(f"parameter {name}={value!r} is not a date: expected e.g. '2026-01-01'") from exc
    if p.as_of is None and p.is_synthetic:
        object.__setattr__(p, "as_of", SYNTHETIC_AS_OF)
    if p.as_of is not None and p.compare_as_of is not None and pd.Timestamp(p.compare_as_of) >= pd.Timestamp(p.as_of):
        raise ParameterError(f"parameter compare_as_of={p.compare_as_of} must lie before as_of={p.as_of}")
    if p.max_age_days is not None and p.max_age_days < 1:
        raise ParameterError(f"parameter max_age_days={p.max_age_days}: expected a positive number of days or none")
    if p.holdout_weeks is not None and p.holdout_weeks < 1:
        raise ParameterError(f"parameter holdout_weeks={p.holdout_weeks}: expected a positive number of weeks or none")


def parameter_table() -> pd.DataFrame:
    """``parameter, default, meaning`` for every run parameter (the README table)."""
    defaults = RunParameters()
    rows = []
    for f in fields(RunParameters):
        default = getattr(defaults, f.name) if f.name != "as_of" else None
        rows.append((f.name, "none" if default is None else str(default), PARAMETER_DOCS[f.name]))
    return pd.DataFrame(rows, columns=["parameter", "default", "meaning"])
