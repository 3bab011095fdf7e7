"""Reading: files, frames and Ibis tables as Ibis tables; column mapping; type coercion.

Everything that touches transaction lines is an Ibis expression (DuckDB by default, Spark or a
warehouse unchanged). The customer-scale tables (customers, products, events, feedback) come
back as pandas, with the same rules applied.

Input rules (each a clear :class:`DataContractError` or a counted change)
-----------------------------------------------------------------------
* **Files**: CSV, CSV.gz (also gzip content under another suffix), Parquet (detected by its
  magic bytes), or a folder of Parquet parts. An Excel workbook or any other binary file is
  refused with "not a CSV/Parquet file: <name>". Text that is not UTF-8 is read as **Latin-1**
  (ISO-8859-1, which decodes every byte) with a note in ``Store.notes``; UTF-16 with a byte-order
  mark is read as UTF-16.
* **Duplicate column names** in a file's header or a DataFrame are an error (an engine would
  silently rename the second one to ``quantity_1``).
* **Customer ids** are normalised *before* pseudonymisation, identically in the engine
  (:func:`customer_id_expr`) and in pandas (:func:`normalize_customer_ids`, also used by the
  privacy requests): integral floats lose their ``.0``; surrounding white space (including
  no-break spaces) is stripped; the spellings in :data:`MISSING_ID_SPELLINGS` (any case) mean
  *missing*: the row is dropped and counted.
* **Yes/no flags** (``consent_profiling``, ``consent_marketing``): booleans, 1/0, or the
  spellings in :data:`TRUE_SPELLINGS` / :data:`FALSE_SPELLINGS`, any case, surrounding spaces
  ignored. A blank (or a missing-value spelling) takes the documented default -- profiling
  yes, marketing no -- and is counted. Anything else is an error naming the column and example
  values.
* **Dates** (:func:`parse_dates`): timestamps and dates as they are; text as ISO 8601 first,
  then ``d/m/Y`` or ``m/d/Y`` (``/`` or ``.``, optional time). The day/month order is decided for
  the whole column by vote (values whose first number exceeds 12 vote day-first, whose second
  does vote month-first; day-first on a tie). Values that can only be read the other way are read
  that way and counted (``date_order_conflict``); values that can be read both ways are read in
  the column's order and counted (``ambiguous_date``), both with examples. Time zones: a value
  with a UTC offset is converted to UTC and the offset dropped; a value without one is taken as
  UTC -- so a column mixing both becomes one naive UTC column (counted as
  ``timezone_converted``). A numeric date column is an error; numbers in the Excel range are
  named as Excel serial dates with the conversion to use.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import yaml

from segmentation import schema
from segmentation.data.engine import materialize, to_pandas

__all__ = [
    "DataContractError",
    "SourceTables",
    "MISSING_ID_SPELLINGS",
    "TRUE_SPELLINGS",
    "FALSE_SPELLINGS",
    "normalize_customer_ids",
    "customer_id_expr",
    "parse_flags",
    "parse_dates",
    "read_table",
    "read_data_config",
]

#: Customer-id spellings that mean "missing" (compared case-insensitively after stripping).
MISSING_ID_SPELLINGS: tuple[str, ...] = ("", "nan", "none", "null", "na", "n/a", "-", "<na>", "nat")
#: Yes/no spellings accepted in flag columns (any case, surrounding spaces ignored).
TRUE_SPELLINGS: tuple[str, ...] = ("true", "t", "yes", "y", "1", "1.0", "on", "ja", "j")
FALSE_SPELLINGS: tuple[str, ...] = ("false", "f", "no", "n", "0", "0.0", "off", "nein")
#: White space stripped from identifiers (the same set in the engine and in pandas).
WHITESPACE = " \t\n\r\x0b\x0c\xa0"
QUALITY_COLUMNS = ["table", "rule", "rows", "action", "detail"]


class DataContractError(ValueError):
    """Input that does not meet the data contract. The message names the source, the table,
    the column, example rows, and what to do."""


@dataclass
class SourceTables:
    """What a source (folder, file, mapping, data config or preset) provides, before cleaning.

    ``transactions`` is a DataFrame, a path or an Ibis table; the other tables may also be
    None. ``columns`` / ``constants`` hold per-table column mappings and constant columns not
    yet applied. ``quality`` holds extra rows for the quality report (``table, rule, rows,
    action, detail``).
    """

    transactions: Any
    customers: Any = None
    products: Any = None
    events: Any = None
    feedback: Any = None
    columns: dict[str, dict[str, str]] = field(default_factory=dict)
    constants: dict[str, dict[str, Any]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    quality: list[tuple] = field(default_factory=list)
    drop_free_items: bool = True
    currency: str | None = None
    duplicates: str | None = None
    derived_dates: bool = False
    label: str | None = None
    truth: Any = None


# --------------------------------------------------------------------------------------------
# identifiers and flags
# --------------------------------------------------------------------------------------------
def _as_id(col: ir.Value) -> ir.StringValue:
    """Identifier as string; integral floats (13085.0, from CSVs with blanks) lose the '.0'."""
    if col.type().is_floating():
        whole = col == col.floor()
        return ibis.ifelse(col.isnull(), ibis.null().cast("string"),
                           ibis.ifelse(whole, col.cast("int64").cast("string"), col.cast("string")))
    return col.cast("string")


def _strip(s: ir.StringValue) -> ir.StringValue:
    return s.re_replace(f"^[{WHITESPACE}]+", "").re_replace(f"[{WHITESPACE}]+$", "")


def customer_id_expr(col: ir.Value) -> ir.StringValue:
    """The engine-side customer-id normalisation (see :func:`normalize_customer_ids`)."""
    s = _strip(_as_id(col))
    return ibis.ifelse(s.lower().isin(list(MISSING_ID_SPELLINGS)), ibis.null().cast("string"), s)


def normalize_customer_ids(values: pd.Series | pd.Index | Any) -> pd.Series:
    """Normalise customer identifiers the way every load does, before pseudonymisation.

    Integral floats lose their ``.0`` (``13085.0`` -> ``"13085"``); surrounding white space,
    no-break spaces included, is stripped (``" 00017"`` -> ``"00017"``; leading zeros are
    kept); the spellings in :data:`MISSING_ID_SPELLINGS` (``""``, ``NaN``, ``None``, ``null``,
    ``NA``, ``N/A``, ``-``, any case) become missing. Privacy requests (export, erasure) use it
    so a raw id finds the same customer as a load.

    Parameters
    ----------
    values : Series, Index or iterable

    Returns
    -------
    Series
        ``string`` dtype, missing as ``<NA>``, same index (a new RangeIndex for iterables).

    Examples
    --------
    >>> normalize_customer_ids([" 00017", "00017", "NaN", " ", "n/a", None]).tolist()
    ['00017', '00017', <NA>, <NA>, <NA>, <NA>]
    >>> normalize_customer_ids(pd.Series([13085.0, None])).tolist()
    ['13085', <NA>]
    """
    out = _id_strings(values)
    return out.mask(out.str.lower().isin(MISSING_ID_SPELLINGS))


def _id_strings(values: pd.Series | pd.Index | Any) -> pd.Series:
    """Identifiers as stripped strings (integral floats without '.0'), as the engine's ``_as_id``."""
    if isinstance(values, pd.Index):
        s = values.to_series(index=pd.RangeIndex(len(values)))
    elif isinstance(values, pd.Series):
        s = values
    else:
        s = pd.Series(list(values), dtype=object)
    if pd.api.types.is_float_dtype(s) or pd.api.types.infer_dtype(s, skipna=True) in ("floating", "mixed-integer-float"):
        num = pd.to_numeric(s, errors="coerce")
        whole = num.notna() & (num == np.floor(num))
        out = s.astype("string")
        out[whole] = num[whole].astype("int64").astype("string")
    else:
        out = s.astype("string")
    return out.str.strip(WHITESPACE).rename(s.name)


def parse_flags(values: pd.Series, *, column: str, default: bool, table: str = "customers",
                source: str = "DataFrame") -> tuple[pd.Series, int]:
    """Parse a yes/no column (see the module docstring for the accepted spellings).

    Returns
    -------
    (Series, int)
        Boolean flags (missing values replaced by ``default``) and how many were missing.

    Raises
    ------
    DataContractError
        A value that is not a known spelling; the message names the column, the source and
        example values.

    Examples
    --------
    >>> flags, n_missing = parse_flags(pd.Series(["Yes", "n", " TRUE ", None, "0"]), column="consent_marketing", default=False)
    >>> flags.tolist(), n_missing
    ([True, False, True, False, False], 1)
    """
    if pd.api.types.is_bool_dtype(values):
        flags = values.astype("boolean")
    else:
        text = values.astype("string").str.strip(WHITESPACE).str.lower()
        missing = text.isna() | text.isin([s for s in MISSING_ID_SPELLINGS if s not in FALSE_SPELLINGS])
        yes, no = text.isin(TRUE_SPELLINGS), text.isin(FALSE_SPELLINGS)
        bad = ~(yes | no | missing)
        if bad.any():
            examples = values[bad].astype(str).drop_duplicates().head(5).tolist()
            raise DataContractError(
                f"column {column!r} in {table} ({source}) must hold yes/no flags; {int(bad.sum())} rows do not, "
                f"e.g. {examples}; accepted (any case): {', '.join(TRUE_SPELLINGS)} for yes, "
                f"{', '.join(FALSE_SPELLINGS)} for no, blank for the default ({'yes' if default else 'no'})"
            )
        flags = pd.Series(pd.NA, index=values.index, dtype="boolean")
        flags[yes] = True
        flags[no] = False
    n_missing = int(flags.isna().sum())
    return flags.fillna(default).astype(bool).rename(values.name), n_missing


# --------------------------------------------------------------------------------------------
# numbers and dates
# --------------------------------------------------------------------------------------------
def _numeric(t: ir.Table, name: str, label: str, table: str = "transactions") -> ir.FloatingValue:
    col = t[name]
    if col.type().is_numeric():
        return col.cast("float64")
    if col.type().is_string():
        parsed = col.try_cast("float64")
        bad = t.filter(col.notnull() & (col.strip() != "") & parsed.isnull())
        examples = bad.select(v=col).distinct().order_by("v").limit(3).execute()["v"].tolist()
        if examples:
            n = bad.count().execute()
            raise DataContractError(
                f"column {name!r} in {table} ({label}) must be numeric; {n} rows are not, "
                f"e.g. {examples}; fix the file or map another column"
            )
        return parsed
    raise DataContractError(f"column {name!r} in {table} ({label}) has type {col.type()}, expected a number")


_SLASH = r"^(\d{1,2})[/.](\d{1,2})[/.](\d{4})(?:[ T](\d{1,2}:\d{2}(?::\d{2})?))?$"
_OFFSET = r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)? ?(?:Z|[+-]\d{2}(?::?\d{2})?)$"
_SERIAL = r"^\d{5}(?:\.\d+)?$"
EXCEL_HINT = ("convert them, e.g. pandas.to_datetime(df['{col}'], unit='D', origin='1899-12-30'), "
              "or format the column as dates in Excel before saving as CSV")


def _examples(t: ir.Table, value: ir.Value, cond: ir.BooleanValue, n: int = 3) -> list[str]:
    """Up to ``n`` distinct example values where ``cond`` holds (sorted: deterministic)."""
    rows = t.filter(cond).select(v=value.cast("string")).distinct().order_by("v").limit(n).execute()["v"]
    return rows.tolist()


def _numeric_dates_error(t: ir.Table, name: str, table: str, label: str) -> DataContractError:
    col = t[name]
    stats = t.aggregate(lo=col.min(), hi=col.max()).execute().iloc[0]
    examples = _examples(t, col, col.notnull())
    lo, hi = float(stats["lo"]), float(stats["hi"])
    if 1 <= lo and hi < 80_000:  # 1900-01-01 .. 2119: Excel serial day numbers
        first = (pd.Timestamp("1899-12-30") + pd.Timedelta(days=lo)).date()
        return DataContractError(
            f"column {name!r} in {table} ({label}) holds numbers, e.g. {examples}: they look like Excel serial dates "
            f"(days since 1899-12-30; {lo:g} = {first}); " + EXCEL_HINT.format(col=name))
    if 19_000_101 <= lo and hi <= 21_001_231:
        return DataContractError(
            f"column {name!r} in {table} ({label}) holds numbers, e.g. {examples}: they look like yyyymmdd dates; "
            f"convert them, e.g. pandas.to_datetime(df['{name}'].astype(str), format='%Y%m%d'), or save them as text")
    return DataContractError(
        f"column {name!r} in {table} ({label}) holds numbers, e.g. {examples}, expected dates such as "
        "2025-01-31 or 31/01/2025 10:15; convert the column to dates (epoch seconds: pandas.to_datetime(x, unit='s'))")


def parse_dates(t: ir.Table, name: str, *, table: str = "transactions", label: str = "DataFrame"
                ) -> tuple[ir.TimestampValue, list[tuple], list[str]]:
    """Parse ``t[name]`` as naive UTC timestamps (rules in the module docstring).

    Returns
    -------
    (expression, findings, hints)
        The parsed column (null where nothing parses: the caller counts and drops those);
        quality rows ``(table, rule, rows, action, detail)`` for ``ambiguous_date``,
        ``date_order_conflict`` and ``timezone_converted``; and plain-language hints about
        unparseable values (Excel serial numbers).

    Raises
    ------
    DataContractError
        A numeric column (Excel serial dates, yyyymmdd numbers, epoch seconds: named as such).
    """
    col = t[name]
    typ = col.type()
    zero = [(table, "ambiguous_date", 0, "kept", ""), (table, "date_order_conflict", 0, "kept", ""),
            (table, "timezone_converted", 0, "changed", "")]
    if typ.is_timestamp():
        if typ.timezone is None:
            return col, zero, []
        n = int(t.aggregate(n=col.count()).execute()["n"].iloc[0])
        zero[2] = (table, "timezone_converted", n, "changed",
                   f"{name} has a time zone ({typ.timezone}): converted to UTC without zone")
        return col.cast(dt.Timestamp()), zero, []
    if typ.is_date():
        return col.cast("timestamp"), zero, []
    if typ.is_numeric():
        raise _numeric_dates_error(t, name, table, label)
    s = _strip(col.cast("string"))
    offset_text = s.re_search(_OFFSET)  # with a UTC offset: parse as an instant, then naive UTC
    iso = ibis.ifelse(offset_text, s.try_cast(dt.Timestamp(timezone="UTC")).cast(dt.Timestamp()), s.try_cast("timestamp"))
    first = s.re_extract(_SLASH, 1).try_cast("int64")
    second = s.re_extract(_SLASH, 2).try_cast("int64")
    says_day_first = (first > 12) & (second <= 12)
    says_month_first = (second > 12) & (first <= 12)
    either = (first <= 12) & (second <= 12) & (first != second)
    has_offset = iso.notnull() & offset_text
    serial = iso.isnull() & s.re_search(_SERIAL)
    v = t.aggregate(
        day_first=says_day_first.cast("int64").sum(), month_first=says_month_first.cast("int64").sum(),
        either=either.cast("int64").sum(), offset=has_offset.cast("int64").sum(), serial=serial.cast("int64").sum(),
    ).execute().iloc[0].fillna(0).astype(int)
    n_day, n_month = int(v["day_first"]), int(v["month_first"])
    day_first = not n_month > n_day
    order, other = ("day-first", "month-first") if day_first else ("month-first", "day-first")
    row_day_first = ibis.ifelse(says_day_first, True, ibis.ifelse(says_month_first, False, day_first))
    day = ibis.ifelse(row_day_first, first, second)
    month = ibis.ifelse(row_day_first, second, first)
    clock = s.re_extract(_SLASH, 4)
    rebuilt = (s.re_extract(_SLASH, 3) + "-" + month.cast("string").lpad(2, "0") + "-" + day.cast("string").lpad(2, "0")
               + " " + ibis.ifelse(clock.isnull() | (clock == ""), "00:00", clock))
    parsed = ibis.coalesce(iso, rebuilt.try_cast("timestamp"))
    findings = list(zero)
    if v["either"]:
        why = (f"{n_day} values can only be day-first and {n_month} only month-first" if n_day or n_month
               else "no value tells the order: day-first by default")
        findings[0] = (table, "ambiguous_date", int(v["either"]), "kept",
                       f"{name} values that read both as d/m and m/d, e.g. {_examples(t, s, either)}, read {order} ({why}); "
                       "check that this is the file's format")
    conflict = says_month_first if day_first else says_day_first
    n_conflict = n_month if day_first else n_day
    if n_conflict:
        findings[1] = (table, "date_order_conflict", n_conflict, "kept",
                       f"{name} values that can only be read {other}, e.g. {_examples(t, s, conflict)}, although the column "
                       f"reads {order} ({max(n_day, n_month)} values): read {other}; the column may mix two formats")
    if v["offset"]:
        findings[2] = (table, "timezone_converted", int(v["offset"]), "changed",
                       f"{name} values with a UTC offset, e.g. {_examples(t, s, has_offset)}, converted to UTC; "
                       "values without an offset are taken as UTC")
    hints = []
    if v["serial"]:
        hints.append(f"{int(v['serial'])} look like Excel serial dates, e.g. {_examples(t, s, serial)}: "
                     + EXCEL_HINT.format(col=name))
    return parsed, findings, hints


def _parse_timestamp_series(con: Any, values: pd.Series, *, table: str, column: str, label: str
                            ) -> tuple[pd.Series, list[tuple], int]:
    """A customer-scale column parsed with :func:`parse_dates` (one implementation for every
    table). Returns naive timestamps, quality findings and the number of non-blank values that
    did not parse."""
    if pd.api.types.is_datetime64_any_dtype(values):
        tz = getattr(values.dtype, "tz", None)
        if tz is None:
            return values.astype("datetime64[ns]"), [], 0
        converted = values.dt.tz_convert("UTC").dt.tz_localize(None).astype("datetime64[ns]")
        return converted, [(table, "timezone_converted", int(values.notna().sum()), "changed",
                            f"{column} has a time zone ({tz}): converted to UTC without zone")], 0
    text = values.astype("string")
    frame = ibis.memtable(pd.DataFrame({column: text.to_numpy()}))
    parsed, findings, hints = parse_dates(frame, column, table=table, label=label)
    out = frame.select(v=parsed).execute()["v"]
    out = pd.Series(pd.to_datetime(out).to_numpy(dtype="datetime64[ns]"), index=values.index, name=values.name)
    blank = text.isna() | (text.str.strip(WHITESPACE) == "")
    failed = int((out.isna() & ~blank).sum())
    findings = [f for f in findings if f[2] > 0]
    return out, findings, failed


# --------------------------------------------------------------------------------------------
# opening files and frames
# --------------------------------------------------------------------------------------------
def _source_label(obj: Any) -> str:
    if isinstance(obj, (str, os.PathLike)):
        return Path(obj).name
    if isinstance(obj, pd.DataFrame):
        return "DataFrame"
    return "Ibis table"


def _find(folder: Path, name: str) -> Path | None:
    """``folder/name.parquet|.csv|.csv.gz``, or a Parquet data set ``folder/name/*.parquet``."""
    for ext in (".parquet", ".csv", ".csv.gz"):
        if (folder / f"{name}{ext}").is_file():
            return folder / f"{name}{ext}"
    if _is_parquet_dataset(folder / name):
        return folder / name
    return None


def _is_parquet_dataset(path: Path) -> bool:
    """A folder of Parquet parts (``path/*.parquet``), read as one table."""
    return path.is_dir() and any(path.glob("*.parquet"))


_BINARY_KINDS = {b"PK\x03\x04": "an Excel workbook or a zip archive: save each sheet as 'CSV UTF-8'",
                 b"\xd0\xcf\x11\xe0": "an old Excel workbook (.xls): save each sheet as 'CSV UTF-8'",
                 b"%PDF": "a PDF document"}


def _sniff(path: Path, table: str) -> tuple[str, str | None]:
    """``(kind, encoding)``: kind ``parquet``, ``csv`` or ``gzip`` (gzip-compressed CSV);
    encoding ``utf-16`` when a UTF-16 byte-order mark says so. Binary files are refused."""
    with path.open("rb") as fh:
        head = fh.read(4096)
    if head[:4] == b"PAR1":
        return "parquet", None
    kind = "csv"
    if head[:2] == b"\x1f\x8b":
        kind = "gzip"
        try:
            with gzip.open(path, "rb") as fh:
                head = fh.read(4096)
        except OSError as exc:
            raise DataContractError(f"{table}: not a CSV/Parquet file: {path.name} (broken gzip data: {exc})") from exc
    if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return kind, "utf-16"
    for magic, what in _BINARY_KINDS.items():
        if head.startswith(magic):
            raise DataContractError(f"{table}: not a CSV/Parquet file: {path.name} (it looks like {what})")
    if b"\x00" in head:
        raise DataContractError(f"{table}: not a CSV/Parquet file: {path.name} (binary content); "
                                "give a CSV, CSV.gz or Parquet file")
    return kind, None


def _csv_header(path: Path, kind: str, encoding: str | None) -> list[str]:
    """The header row of a CSV file, split as the csv module would (delimiter sniffed)."""
    opener = gzip.open if kind == "gzip" else open
    with opener(path, "rb") as fh:
        raw = fh.readline(1 << 20)
    text = raw.decode(encoding or "utf-8", errors="replace").lstrip("\ufeff").rstrip("\r\n")
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=",;\t|")
    except csv.Error:
        dialect = csv.excel
    return next(csv.reader(io.StringIO(text), dialect), [])


def _refuse_duplicate_columns(names: list[str], table: str, label: str) -> None:
    seen: dict[str, list[int]] = {}
    for i, n in enumerate(names):
        seen.setdefault(str(n).strip(), []).append(i + 1)
    dups = {n: pos for n, pos in seen.items() if len(pos) > 1}
    if dups:
        where = "; ".join(f"{n!r} in columns {pos}" for n, pos in dups.items())
        raise DataContractError(f"{table}: {label} has duplicate column names ({where}); rename or delete the extra "
                                "columns so each name appears once")


def _open(con: Any, obj: Any, table: str, notes: list[str] | None = None) -> ir.Table:
    """A DataFrame, Ibis table or CSV / CSV.gz / Parquet path as an Ibis table."""
    label = _source_label(obj)
    if isinstance(obj, pd.DataFrame):
        _refuse_duplicate_columns(list(obj.columns), table, label)
        mixed = [c for c in obj.columns if obj[c].dtype == object
                 and pd.api.types.infer_dtype(obj[c], skipna=True) in ("datetime", "mixed")]
        return ibis.memtable(obj.astype({c: "string" for c in mixed}) if mixed else obj)
    if isinstance(obj, ir.Table):
        return obj
    if not isinstance(obj, (str, os.PathLike)):
        raise DataContractError(f"{table}: expected a DataFrame, an Ibis table or a file path, got {type(obj).__name__}")
    path = Path(obj)
    if _is_parquet_dataset(path):  # a Parquet data set (parts): read lazily, never loaded whole
        return con.read_parquet(str(path / "*.parquet") if con.name == "duckdb" else str(path))
    if not path.is_file():
        what = "folder without *.parquet files" if path.is_dir() else "file not found"
        raise DataContractError(f"{table}: {path}: {what}; check the path or the data folder")
    if path.stat().st_size == 0:
        raise DataContractError(f"{table}: {label} is empty; expected a header and at least one row")
    kind, encoding = _sniff(path, table)
    try:
        if kind == "parquet":
            return con.read_parquet(path)
        _refuse_duplicate_columns(_csv_header(path, kind, encoding), table, label)
        options: dict[str, Any] = {}
        if con.name == "duckdb":
            if kind == "gzip" and not path.name.endswith(".gz"):
                options["compression"] = "gzip"
            if encoding:
                options["encoding"] = encoding
        try:
            return materialize(con, con.read_csv(path, **options))  # parse the text once, not at every query
        except Exception as exc:
            text = str(exc)
            if con.name != "duckdb" or not ("unicode" in text.lower() or "utf-8" in text.lower()):
                raise
            table_ = materialize(con, con.read_csv(path, **options, encoding="latin-1"))
            if notes is not None:
                notes.append(f"{label} is not UTF-8: read as Latin-1 (ISO-8859-1); if some characters look wrong, "
                             "re-save the file as UTF-8 (e.g. iconv -f cp1252 -t utf-8)")
            return table_
    except DataContractError:
        raise
    except Exception as exc:  # engine errors: malformed CSV, unreadable Parquet
        first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise DataContractError(f"{table}: cannot read {label}: {first} -- check that it is a CSV (with a header row) "
                                "or Parquet file") from exc


# --------------------------------------------------------------------------------------------
# column mapping
# --------------------------------------------------------------------------------------------
def _load_mapping(columns: Mapping[str, str] | str | os.PathLike | None) -> dict[str, str] | None:
    if columns is None or isinstance(columns, Mapping):
        return dict(columns) if columns else None
    mapping = yaml.safe_load(Path(columns).read_text(encoding="utf-8"))
    if not isinstance(mapping, dict):
        raise DataContractError(f"column mapping file {columns} must hold a mapping 'source: canonical'")
    return {str(k): str(v) for k, v in mapping.items()}


def _check_mapping(present: list[str], mapping: Mapping[str, str] | None, constants: Mapping[str, Any] | None,
                   table: str, label: str) -> None:
    """Refuse a mapping that names absent columns, maps two columns to one name or onto an
    existing column, and constants that would overwrite a column."""
    mapping, constants = dict(mapping or {}), dict(constants or {})
    missing = [src for src in mapping if src not in present]
    if missing:
        raise DataContractError(f"column mapping for {table} names {missing} but {label} has no such column; "
                                f"found columns {present}")
    targets = list(mapping.values())
    twice = sorted({t for t in targets if targets.count(t) > 1})
    if twice:
        raise DataContractError(f"column mapping for {table} maps several columns to {twice}; map one column to each name")
    clash = [dst for src, dst in mapping.items() if dst != src and dst in present and dst not in mapping]
    if clash:
        raise DataContractError(f"column mapping for {table} renames a column to {clash} but {label} already has "
                                f"a column of that name; map that column too (or drop it)")
    final = [mapping.get(c, c) for c in present]
    over = [c for c in constants if c in final]
    if over:
        raise DataContractError(f"constants for {table} set {over} but {label} already has such a column; "
                                "remove the constant or the column")


def _apply_mapping(t: ir.Table, mapping: Mapping[str, str] | None, constants: Mapping[str, Any] | None,
                   table: str, label: str) -> ir.Table:
    _check_mapping(list(t.columns), mapping, constants, table, label)
    if mapping:
        t = t.rename({dst: src for src, dst in mapping.items() if dst != src})
    if constants:
        t = t.mutate(**{c: ibis.literal(v) for c, v in constants.items()})
    return t


def _check_required(t_columns: list[str], table: str, label: str) -> None:
    required = schema.required_columns(table)
    if table == "transactions" and "category" not in t_columns:
        required = [c for c in required if c != "category"]  # filled from products or 'unknown'
    absent = [c for c in required if c not in t_columns]
    if absent:
        from segmentation.data.presets import PRESETS

        hint = ", ".join(f"'<your column>': '{c}'" for c in absent)
        baskets_only = ""
        if table == "transactions" and "customer_id" in absent and "order_date" in absent:
            baskets_only = (". If this file holds baskets without customers or dates (like the Groceries data), it "
                            "cannot be segmented: mine its co-purchase rules with segmentation.recommend.association_rules")
        raise DataContractError(
            f"missing required column {absent[0]!r} in {table} ({label}); found columns {t_columns}; "
            f"pass columns={{{hint}}} or a preset ({', '.join(PRESETS[1:])}){baskets_only}"
        )


def read_table(con: Any, obj: Any, table: str = "transactions", *, columns: Mapping[str, str] | None = None,
               constants: Mapping[str, Any] | None = None, notes: list[str] | None = None) -> ir.Table:
    """Read a DataFrame, an Ibis table or a CSV / CSV.gz / Parquet path as an Ibis table,
    apply a column mapping ``{source name: canonical name}`` and constant columns
    ``{canonical name: value}``, and check the required columns.

    Parameters
    ----------
    con : ibis backend
    obj : DataFrame, Ibis table or path
    table : str
        The canonical table (``transactions``, ``customers``, ...), for the required columns.
    columns, constants : mapping, optional
    notes : list, optional
        Receives plain-language notes (e.g. the Latin-1 fallback).

    Raises
    ------
    DataContractError
        Missing, empty, header-only, binary or malformed file; duplicate column names; a
        mapping that names a missing column or clashes; a missing required column.
    """
    label = _source_label(obj)
    t = _apply_mapping(_open(con, obj, table, notes), columns, constants, table, label)
    _check_required(list(t.columns), table, label)
    if isinstance(obj, (str, os.PathLike)) and t.count().execute() == 0:
        raise DataContractError(f"{table}: {label} has a header but no rows")
    return t


# --------------------------------------------------------------------------------------------
# customer-scale tables
# --------------------------------------------------------------------------------------------
def _read_small(con: Any, obj: Any, table: str, columns: Mapping[str, str] | None, constants: Mapping[str, Any] | None,
                notes: list[str]) -> pd.DataFrame:
    label = _source_label(obj)
    if isinstance(obj, pd.DataFrame):
        _refuse_duplicate_columns(list(obj.columns), table, label)
        _check_mapping(list(obj.columns), columns, constants, table, label)
        df = obj.rename(columns={s: d for s, d in (columns or {}).items()}).assign(**dict(constants or {}))
    else:
        df = to_pandas(_apply_mapping(_open(con, obj, table, notes), columns, constants, table, label))
    absent = [c for c in schema.required_columns(table) if c not in df.columns]
    if absent:
        raise DataContractError(f"missing required column {absent[0]!r} in {table} ({label}); found columns {list(df.columns)}")
    return df


def read_small_table(con: Any, obj: Any, table: str, *, columns: Mapping[str, str] | None = None,
                     constants: Mapping[str, Any] | None = None, notes: list[str] | None = None
                     ) -> tuple[pd.DataFrame | None, list[tuple]]:
    """A customer-scale table (customers, products, events, feedback) as pandas, with ids
    normalised, dates parsed, flags parsed and every change counted.

    Returns
    -------
    (DataFrame or None, list of quality rows)
    """
    if obj is None:
        return None, []
    notes = notes if notes is not None else []
    label = _source_label(obj)
    df = _read_small(con, obj, table, columns, constants, notes).copy()
    rows: list[tuple] = []
    n_in = len(df)
    rows.append((table, "rows_in", n_in, "read", label))
    if "customer_id" in df.columns:
        df["customer_id"] = normalize_customer_ids(df["customer_id"]).to_numpy()
        if table != "events":  # events may be anonymous
            missing = df["customer_id"].isna()
            rows.append((table, "missing_customer_id", int(missing.sum()), "dropped",
                         f"customer id missing, blank or a missing-value spelling ({', '.join(repr(s) for s in MISSING_ID_SPELLINGS[1:7])}, ...)"))
            df = df[~missing]
    if table == "customers":
        dup = df["customer_id"].duplicated()
        rows.append((table, "duplicate_customer", int(dup.sum()), "dropped",
                     "the same customer id (after normalisation) more than once: first row kept"))
        df = df[~dup]
    for col in ("product_id", "session_id"):
        if col in df.columns:
            df[col] = _id_strings(df[col]).to_numpy()
    for col in ("timestamp", "signup_date", "birth_date"):
        if col in df.columns:
            parsed, findings, failed = _parse_timestamp_series(con, df[col], table=table, column=col, label=label)
            df[col] = parsed.to_numpy()
            rows.extend(findings)
            if col == "timestamp":
                rows.append((table, "unparseable_date", failed, "dropped", f"{col} could not be parsed"))
                df = df[df[col].notna()]
            elif failed:
                rows.append((table, f"unparseable_{col}", failed, "set missing", f"{col} could not be parsed"))
    if table == "customers":
        for purpose, default in (("profiling", True), ("marketing", False)):
            col = f"consent_{purpose}"
            if col in df.columns:
                df[col], n_missing = parse_flags(df[col], column=col, default=default, table=table, source=label)
                rows.append((table, f"{col}_missing", n_missing, "defaulted",
                             f"blank {col} read as {'yes' if default else 'no'} (the documented default)"))
    if table == "feedback":
        for col, lo, hi in (("nps", 0, 10), ("csat", 1, 5)):
            if col in df.columns:
                values = pd.to_numeric(df[col], errors="coerce")
                bad_text = values.isna() & df[col].notna() & (df[col].astype("string").str.strip() != "")
                if bad_text.any():
                    raise DataContractError(f"column {col!r} in feedback ({label}) must be numeric; {int(bad_text.sum())} rows "
                                            f"are not, e.g. {df.loc[bad_text, col].astype(str).drop_duplicates().head(3).tolist()}")
                out = values.notna() & ((values < lo) | (values > hi))
                rows.append((table, f"{col}_out_of_range", int(out.sum()), "set missing", f"{col} outside {lo}-{hi}"))
                df[col] = values.mask(out)
    df = df.reset_index(drop=True)
    rows.append((table, "rows_out", len(df), "kept", ""))
    return df, rows


# --------------------------------------------------------------------------------------------
# data config (YAML): several files, mappings and constants without Python
# --------------------------------------------------------------------------------------------
_CONFIG_KEYS = {"name", "preset", "currency", "duplicates", "tables"}
_TABLE_KEYS = {"path", "columns", "constants", "join"}
_JOIN_KEYS = {"path", "on", "columns"}


def read_data_config(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a YAML data config (format: :mod:`segmentation.data`).

    Returns
    -------
    dict
        ``name, preset, currency, duplicates`` and ``tables`` ``{table: {path, columns,
        constants, join}}`` with paths resolved relative to the config file.

    Raises
    ------
    DataContractError
        Unknown keys or tables, missing files, a missing ``transactions`` table.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise DataContractError(f"data config {path.name}: cannot read it: {str(exc).splitlines()[0]}") from exc
    where = f"data config {path.name}"
    if not isinstance(raw, dict):
        raise DataContractError(f"{where} must be a mapping with 'tables:' (see configs/data_example.yaml)")
    unknown = sorted(set(raw) - _CONFIG_KEYS)
    if unknown:
        raise DataContractError(f"{where}: unknown keys {unknown}; allowed: {sorted(_CONFIG_KEYS)}")
    tables = raw.get("tables") or {}
    if not isinstance(tables, dict) or "transactions" not in tables:
        raise DataContractError(f"{where} needs tables: transactions: path: <file> (see configs/data_example.yaml)")
    bad_tables = sorted(set(tables) - set(schema.TABLES))
    if bad_tables:
        raise DataContractError(f"{where}: unknown tables {bad_tables}; allowed: {list(schema.TABLES)}")
    if raw.get("duplicates") not in (None, "drop", "keep"):
        raise DataContractError(f"{where}: duplicates must be 'drop' or 'keep', got {raw['duplicates']!r}")

    def _file(p: Any, what: str) -> Path:
        if not p:
            raise DataContractError(f"{where}: {what} needs a path")
        f = (path.parent / str(p)).resolve() if not Path(str(p)).is_absolute() else Path(str(p))
        if not (f.exists() or str(p) == "completejourney"):
            raise DataContractError(f"{where}: {what}: {f} not found")
        return f

    out: dict[str, Any] = {"name": raw.get("name") or path.stem, "preset": raw.get("preset"), "currency": raw.get("currency"),
                           "duplicates": raw.get("duplicates"), "tables": {}}
    for name, spec in tables.items():
        spec = {"path": spec} if isinstance(spec, str) else (spec or {})
        unknown = sorted(set(spec) - _TABLE_KEYS)
        if unknown:
            raise DataContractError(f"{where}: table {name}: unknown keys {unknown}; allowed: {sorted(_TABLE_KEYS)}")
        joins = []
        for j in spec.get("join") or []:
            j = {("on" if k is True else str(k)): v for k, v in j.items()}  # YAML 1.1 reads a bare `on:` as true
            unknown = sorted(set(j) - _JOIN_KEYS)
            if unknown or "on" not in j:
                raise DataContractError(f"{where}: table {name}: each join needs path and on (the canonical key column), "
                                        f"optionally columns; got {sorted(j)}")
            joins.append({"path": _file(j.get("path"), f"{name} join"), "on": str(j["on"]),
                          "columns": {str(k): str(v) for k, v in (j.get("columns") or {}).items()}})
        out["tables"][name] = {
            "path": _file(spec.get("path"), name),
            "columns": {str(k): str(v) for k, v in (spec.get("columns") or {}).items()},
            "constants": dict(spec.get("constants") or {}),
            "join": joins,
        }
    return out


def open_data_config(con: Any, config: dict[str, Any], notes: list[str]) -> SourceTables:
    """The tables of a checked data config (:func:`read_data_config`), joins done in the engine.

    A ``join`` adds columns from another file by a key (a left join: lines without a match keep
    missing values and are dropped and counted by the cleaning rules, e.g. a missing customer
    id). The key must be unique in the joined file.
    """
    tables: dict[str, Any] = {}
    for name, spec in config["tables"].items():
        label = spec["path"].name
        t = _apply_mapping(_open(con, spec["path"], name, notes), spec["columns"], spec["constants"], name, label)
        for j in spec["join"]:
            jl = j["path"].name
            part = _apply_mapping(_open(con, j["path"], name, notes), j["columns"], None, name, jl)
            key = j["on"]
            for side, cols, lab in ((t, t.columns, label), (part, part.columns, jl)):
                if key not in cols:
                    raise DataContractError(f"data config: join of {name} on {key!r}: {lab} has no column {key!r} "
                                            f"(after mapping); found {list(cols)}")
            keep = list(dict.fromkeys([key, *j["columns"].values()]))
            part = part.select(*keep)
            stats = part.aggregate(n=part.count(), k=part[key].nunique()).execute().iloc[0]
            if int(stats["n"]) != int(stats["k"]):
                raise DataContractError(f"data config: join of {name} on {key!r}: the key is not unique in {jl} "
                                        f"({int(stats['n']) - int(stats['k'])} repeated keys); a join would duplicate lines")
            overlap = sorted(set(part.columns) & set(t.columns) - {key})
            if overlap:
                raise DataContractError(f"data config: join of {name}: both {label} and {jl} have columns {overlap}; "
                                        "map them to different names")
            t = t.left_join(part, t[key] == part[key]).drop(f"{key}_right")
        if name == "transactions":
            _check_required(list(t.columns), name, label)
            tables[name] = t
        else:
            tables[name] = to_pandas(t)
    return SourceTables(**tables, currency=config.get("currency"),
                        duplicates=config.get("duplicates"), label=config.get("name"))
