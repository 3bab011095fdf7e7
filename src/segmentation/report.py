"""Helpers for the report notebooks: parameter validation, display set-up, safe tables.

Papermill only *warns* about an unknown parameter name and injects whatever type it is given;
the report runner rejects unknown names before a run, and every notebook calls
:func:`check_parameters` on its parameters right after the ``parameters`` cell.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

from segmentation.data import PRESETS, Store, to_pandas
from segmentation.privacy import suppress_small_groups

__all__ = ["ParameterError", "check_parameters", "check_as_of", "setup", "safe_table", "save_table", "crosstab", "INDICATOR_NOTE"]


class ParameterError(ValueError):
    """A notebook parameter has the wrong type or value."""


_RULES: dict[str, tuple[type | tuple[type, ...], str]] = {
    "source": (str, "a path or 'synthetic'"),
    "preset": ((str, type(None)), f"one of {list(PRESETS)} or None"),
    "as_of": (str, "a date like '2026-01-01'"),
    "seed": (int, "a whole number >= 0"),
    "n_customers": (int, "a whole number >= 10"),
    "min_group_size": (int, "a whole number >= 1"),
}


def check_parameters(**params: Any) -> dict[str, Any]:
    """Validate notebook parameters; returns them unchanged when valid.

    Known names are checked for type and value (``as_of`` must parse as a date, ``preset`` must
    be known, sizes positive); other names are accepted as given (notebook-specific ones are
    checked by the library functions they feed).

    Raises
    ------
    ParameterError
        Naming the parameter, the value received and what is expected.
    """
    for name, value in params.items():
        if name not in _RULES:
            continue
        types, expected = _RULES[name]
        bad_type = not isinstance(value, types) or (isinstance(value, bool) and types is int)
        if bad_type:
            raise ParameterError(f"parameter {name}={value!r} ({type(value).__name__}): expected {expected}")
        if name == "as_of":
            try:
                pd.Timestamp(value)
            except (ValueError, TypeError) as exc:
                raise ParameterError(f"parameter as_of={value!r} is not a date: expected {expected}") from exc
        if name == "preset" and value is not None and value not in PRESETS:
            raise ParameterError(f"parameter preset={value!r}: expected {expected}")
        if name == "seed" and value < 0 or name == "n_customers" and value < 10 or name == "min_group_size" and value < 1:
            raise ParameterError(f"parameter {name}={value!r}: expected {expected}")
    return params


def check_as_of(store: Store, as_of: str | pd.Timestamp) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The data's first and last transaction dates; raises when ``as_of`` leaves nothing to analyse.

    Raises
    ------
    ParameterError
        ``as_of`` on or before the first transaction (no history before it).
    """
    t = store.transactions
    span = to_pandas(t.aggregate(first=t.order_date.min(), last=t.order_date.max())).iloc[0]
    first, last = pd.Timestamp(span["first"]), pd.Timestamp(span["last"])
    if pd.Timestamp(as_of) <= first:
        raise ParameterError(
            f"as_of={as_of} is on or before the first transaction ({first:%Y-%m-%d}); "
            f"choose a date between {first:%Y-%m-%d} and {last + pd.Timedelta(days=1):%Y-%m-%d}"
        )
    return first, last


def setup() -> None:
    """Consistent figure style and table display for the reports."""
    matplotlib.rcParams.update({"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": 11})
    sns.set_theme(style="whitegrid", context="notebook")
    pd.set_option("display.precision", 2)
    pd.set_option("display.max_columns", 40)
    pd.set_option("display.width", 160)
    plt.close("all")


TABLES_ENV = "SEGMENTATION_TABLES_DIR"


def safe_table(table: pd.DataFrame, count_column: str, min_group_size: int, *, name: str | None = None) -> pd.DataFrame:
    """A stakeholder-safe aggregate: groups below ``min_group_size`` blanked (see
    :func:`segmentation.privacy.suppress_small_groups`).

    With ``name``, during a report run the table is also saved as ``tables/<notebook>/<name>.csv``
    in the run folder (the runner sets ``$SEGMENTATION_TABLES_DIR``): plain CSV with fixed float
    formatting, so the same inputs and parameters give byte-identical files to audit.
    """
    out = suppress_small_groups(table, count_column, min_group_size)
    if name is not None:
        save_table(out, name)
    return out


def save_table(table: pd.DataFrame, name: str) -> None:
    """Save a report table as CSV under ``$SEGMENTATION_TABLES_DIR`` (no-op outside a run)."""
    folder = os.environ.get(TABLES_ENV)
    if not folder:
        return
    path = Path(folder) / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, float_format="%.6g", lineterminator="\n")


#: Printed wherever behavioural indices appear.
INDICATOR_NOTE = (
    "The psychographic signals below are behavioural indicators computed from what customers buy "
    "and when; they are not measured personality or attitudes."
)


def crosstab(rows: pd.Series, columns: pd.Series, min_group_size: int) -> pd.DataFrame:
    """Counts of ``rows`` x ``columns`` with cells below ``min_group_size`` shown as blank."""
    table = pd.crosstab(rows, columns)
    return table.where(table >= min_group_size).astype("Int64")
