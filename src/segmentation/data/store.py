"""Store assembly: read a source, clean, pseudonymize, suppress -> :class:`Store`.

:func:`load_store` reads no environment variables and no project paths: the engine connection
(``con``) and the erasure suppression list (``suppress``) are arguments. The callers at the top
(the run, the command line) pass them, e.g.::

    con = data.connect(params.backend, **params.backend_options)   # or data.connect_from_environment()
    suppress = privacy.SuppressionList(data.DEFAULT_SUPPRESSION).ids()
    store = data.load_store(params.source, preset=params.preset, as_of=params.as_of, con=con, suppress=suppress)

The pseudonymization key is the one exception kept on purpose: without ``key`` it is looked up
by :func:`segmentation.privacy.load_key`, so real data can never be loaded un-pseudonymized by
forgetting an argument.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from segmentation import privacy, schema
from segmentation.data.cleaning import clean_transactions
from segmentation.data.engine import connect
from segmentation.data.presets import PRESET_CURRENCY, PRESETS, read_preset
from segmentation.data.readers import (
    QUALITY_COLUMNS,
    DataContractError,
    SourceTables,
    _find,
    _is_parquet_dataset,
    _load_mapping,
    _source_label,
    open_data_config,
    read_data_config,
    read_small_table,
    read_table,
)

__all__ = ["Store", "load_store", "PROJECT_ROOT", "DEFAULT_SUPPRESSION"]

PROJECT_ROOT = Path(__file__).resolve().parents[3]
#: Where the command line and the run keep the erasure suppression list (load_store never reads it).
DEFAULT_SUPPRESSION = PROJECT_ROOT / "data" / "privacy" / "suppression.txt"


@dataclass
class Store:
    """A loaded, validated and cleaned data set.

    Attributes
    ----------
    transactions : ibis.Table
        Cleaned lines: the canonical columns plus ``amount`` (quantity x unit_price),
        ``is_return`` (quantity < 0) and ``is_outlier`` (wholesale-size line, kept).
    customers, products, events, feedback : DataFrame or None
        Canonical tables (customers without PII columns; consent flags parsed to booleans with
        the documented defaults filled in). ``products.name`` is optional.
    pii : DataFrame or None
        ``customer_id`` + PII columns split off the customers table; never used in analysis.
    truth : DataFrame or None
        Planted ground truth (synthetic store only).
    quality : DataFrame
        ``table, rule, rows, action, detail`` for every row read, dropped, flagged or changed,
        per table.
    notes : list of str
        Plain-language statements about the data (e.g. derived dates, encoding fallback).
    con : ibis backend
    name : str
    currency : str or None
        The currency of the money columns (ISO code), from the data config or the preset;
        None when unknown or when the data have no prices (``derived`` money = items).
    derived_dates : bool
        The order dates are derived, not calendar dates (Instacart): weekday and season
        figures are not real.
    as_of : Timestamp or None
        The analysis date the store was cleaned for (lines on or after it dropped).
    """

    transactions: ir.Table
    customers: pd.DataFrame | None = None
    products: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    feedback: pd.DataFrame | None = None
    pii: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=QUALITY_COLUMNS))
    notes: list[str] = field(default_factory=list)
    con: Any = None
    name: str = "store"
    currency: str | None = None
    derived_dates: bool = False
    as_of: pd.Timestamp | None = None


def _is_config(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike)) and Path(source).suffix.lower() in (".yaml", ".yml")


def _open_source(con: Any, source: Any, preset: str | None, columns: Any, random_state: int, n_customers: int,
                 notes: list[str]) -> tuple[SourceTables, str | None]:
    """Resolve ``source`` (+ ``preset``/``columns``) into :class:`SourceTables`."""
    if _is_config(source):
        config = read_data_config(source)
        if preset is not None and config["preset"] not in (None, preset):
            raise DataContractError(f"preset {preset!r} given, but data config {Path(source).name} says preset "
                                    f"{config['preset']!r}; give one of them")
        if columns is not None:
            raise DataContractError(f"columns= given together with data config {Path(source).name}: "
                                    "put the column mapping into the config (tables: transactions: columns:)")
        preset = preset or config["preset"]
        if preset is not None:
            tables = read_preset(con, preset, config["tables"]["transactions"]["path"], notes)
            tables.currency = config["currency"] or tables.currency
            tables.duplicates = config["duplicates"]
            tables.label = config["name"]
            return tables, preset
        return open_data_config(con, config, notes), None
    if preset == "synthetic":
        from segmentation.synthetic import generate_store

        generated = generate_store(n_customers=n_customers, random_state=random_state)
        truth = generated.pop("truth")
        return SourceTables(**generated, truth=truth, currency=PRESET_CURRENCY["synthetic"], label="synthetic",
                            notes=[f"Synthetic demo store: {n_customers:,} customers, random state {random_state}; "
                                   "planted personas known (store.truth)."]), preset
    if preset is not None:
        return read_preset(con, preset, source, notes), preset
    mapping = {"transactions": _load_mapping(columns)} if columns is not None else {}
    if isinstance(source, Mapping):
        unknown = sorted(set(source) - set(schema.TABLES) - {"truth"})
        if unknown:
            raise DataContractError(f"unknown tables {unknown} in the source mapping; allowed: {list(schema.TABLES)} "
                                    "(and 'truth', a generated store's planted ground truth)")
        if "transactions" not in source:
            raise DataContractError("the source mapping has no 'transactions' table")
        return SourceTables(**dict(source), columns=mapping), None
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        folder = Path(source)
        found = {t: _find(folder, t) for t in schema.TABLES}
        if found["transactions"] is None and _is_parquet_dataset(folder):
            found = {"transactions": source}  # the folder is itself a Parquet data set of lines
        elif found["transactions"] is None:
            raise DataContractError(f"folder {source} has no transactions.parquet / .csv / .csv.gz, "
                                    "transactions/ Parquet data set or *.parquet parts")
        return SourceTables(**found, columns=mapping, label=folder.name), None
    return SourceTables(transactions=source, columns=mapping), None


def load_store(
    source: Any = "synthetic",
    *,
    preset: str | None = None,
    columns: Mapping[str, str] | str | os.PathLike | None = None,
    con: Any = None,
    random_state: int = 42,
    n_customers: int = 2000,
    as_of: str | pd.Timestamp | None = None,
    max_age_days: int | None = None,
    suppress: Iterable[str] | None = None,
    key: bytes | None = None,
    pseudonymize: bool = True,
    duplicates: str | None = None,
) -> Store:
    """Load, validate, clean and pseudonymize a data set.

    Parameters
    ----------
    source : str, path, DataFrame or mapping
        ``"synthetic"`` (the generated demo store); a folder holding ``transactions.*`` (and
        optionally ``customers.*, products.*, events.*, feedback.*``; CSV, CSV.gz or Parquet); a
        single transactions file; a YAML data config (``*.yaml``, format in
        :mod:`segmentation.data`); a DataFrame; or a mapping ``{table name: DataFrame | path |
        Ibis table}``.
    preset : str, optional
        A built-in format: ``online_retail``, ``cdnow``, ``instacart``, ``completejourney``.
    columns : mapping or YAML path, optional
        Column mapping ``{your column: canonical column}`` for the transactions.
    con : ibis backend, optional
        The engine. Default: a new embedded DuckDB (:func:`segmentation.data.connect`). It never
        reads the environment: pass ``connect_from_environment()`` or ``connect(...)``.
    random_state, n_customers : int
        Synthetic store settings (generator seed, size).
    as_of : str or Timestamp
        The analysis date: lines, events and feedback on or after it are dropped (counted);
        retention counts back from it. **Required** for every source but the synthetic store
        (whose default is :data:`segmentation.synthetic.DEFAULT_AS_OF`); it must lie after the
        first transaction.
    max_age_days : int, optional
        Retention window (see :func:`clean_transactions`).
    suppress : iterable of str, optional
        Pseudonymous ids to drop (the erasure suppression list). None: no suppression -- the
        callers (run, command line) pass ``privacy.SuppressionList(DEFAULT_SUPPRESSION).ids()``.
    key : bytes, optional
        Pseudonymization key; default :func:`segmentation.privacy.load_key` (demo key only for
        the synthetic store; other sources need ``$SEGMENTATION_PSEUDONYM_KEY``).
    pseudonymize : bool
        Set False only for data that is already pseudonymous (e.g. public research samples).
    duplicates : {"drop", "keep"}, optional
        Exact duplicate lines: dropped (default) or kept (one line per item, quantity 1).
        Default: the data config's ``duplicates``, else ``"drop"``.

    Returns
    -------
    Store

    Raises
    ------
    DataContractError
        Bad input (the message names the file, the column, example values and the fix); no
        ``as_of`` for real data; ``as_of`` on or before the first transaction; no transaction
        line left after cleaning.
    """
    con = con if con is not None else connect()
    preset = preset or ("synthetic" if isinstance(source, str) and source == "synthetic" else None)
    if preset is not None and preset not in PRESETS:
        raise DataContractError(f"unknown preset {preset!r}; choose one of {list(PRESETS)} or None for canonical columns")
    if duplicates not in (None, "drop", "keep"):
        raise DataContractError(f"duplicates must be 'drop' or 'keep', got {duplicates!r}")
    notes: list[str] = []
    src, preset = _open_source(con, source, preset, columns, random_state, n_customers, notes)
    synthetic = preset == "synthetic"
    if as_of is None:
        if not synthetic:
            raise DataContractError(
                f"as_of is required for {src.label or _source_label(source)}: the analysis date (only data before it counts), "
                "e.g. 2026-02-01 (run: --set as_of=2026-02-01; check: --as-of 2026-02-01); the day after the last "
                "transaction uses all the data")
        from segmentation.synthetic import DEFAULT_AS_OF

        as_of = DEFAULT_AS_OF
    try:
        as_of_ts = pd.Timestamp(as_of)
    except (TypeError, ValueError) as exc:
        raise DataContractError(f"as_of={as_of!r} is not a date; expected e.g. '2026-02-01'") from exc
    notes = [*src.notes, *notes]
    name = preset or src.label or _source_label(source)

    if pseudonymize:
        key = key or privacy.load_key(demo=synthetic)
    quality_rows: list[tuple] = list(src.quality)
    small: dict[str, pd.DataFrame | None] = {}
    for table in ("customers", "products", "events", "feedback"):
        small[table], rows = read_small_table(con, getattr(src, table), table, columns=src.columns.get(table),
                                              constants=src.constants.get(table), notes=notes)
        quality_rows += rows
    customers, products, events, feedback = small["customers"], small["products"], small["events"], small["feedback"]
    truth = src.truth
    if truth is not None:
        truth = truth.assign(customer_id=truth["customer_id"].astype("string"))
    raw = read_table(con, src.transactions, "transactions", columns=src.columns.get("transactions"),
                     constants=src.constants.get("transactions"), notes=notes)

    pii = None
    if customers is not None:
        pii_cols = [c for c in schema.PII_COLUMNS if c in customers.columns]
        if pii_cols:
            pii = customers[["customer_id", *pii_cols]].copy()
            customers = customers.drop(columns=pii_cols)
    suppressed = set(suppress) if suppress is not None else set()
    if pseudonymize:
        raw = _pseudonymize_table(raw, key)
        customers, pii, events, feedback, truth = (
            privacy.pseudonymize_frame(df, key) if df is not None else None
            for df in (customers, pii, events, feedback, truth)
        )
    label = _source_label(src.transactions) if isinstance(src.transactions, (str, os.PathLike)) else (src.label or _source_label(src.transactions))
    transactions, quality = clean_transactions(
        raw, source_name=label, products=products, as_of=as_of_ts, max_age_days=max_age_days, suppress=suppressed,
        con=con, drop_free_items=src.drop_free_items, duplicates=duplicates or src.duplicates or "drop",
    )
    _refuse_empty(quality, label)
    extra: list[tuple] = []

    def _suppress(tname: str, df: pd.DataFrame | None) -> pd.DataFrame | None:
        if df is None or not suppressed or "customer_id" not in df.columns:
            return df
        mask = df["customer_id"].isin(suppressed).fillna(False).to_numpy(dtype=bool)
        extra.append((tname, "suppressed_customer", int(mask.sum()), "dropped", "erased on request"))
        return df[~mask].reset_index(drop=True)

    customers, events, feedback, pii, truth = (
        _suppress(n, df) for n, df in (("customers", customers), ("events", events), ("feedback", feedback), ("pii", pii), ("truth", truth))
    )
    events, feedback = (_before(n, df, as_of_ts, extra) for n, df in (("events", events), ("feedback", feedback)))
    small_quality = pd.DataFrame(quality_rows + extra, columns=QUALITY_COLUMNS)
    small_quality = _recount_rows_out(small_quality, {"customers": customers, "products": products, "events": events,
                                                      "feedback": feedback})
    quality = pd.concat([quality, small_quality], ignore_index=True)
    if pseudonymize:
        notes.append("Customer ids are pseudonymized (keyed HMAC-SHA256); names, e-mails and phone numbers are kept apart and never analysed.")
    warning = quality.loc[quality["detail"].str.contains("WARNING", na=False), "detail"]
    notes.extend(f"Duplicates: {d.split('WARNING: ', 1)[1]}" for d in warning)
    return Store(transactions=transactions, customers=customers, products=products, events=events,
                 feedback=feedback, pii=pii, truth=truth, quality=quality, notes=notes, con=con, name=name,
                 currency=src.currency, derived_dates=src.derived_dates, as_of=as_of_ts)


def _before(table: str, df: pd.DataFrame | None, as_of: pd.Timestamp, quality: list[tuple]) -> pd.DataFrame | None:
    """Rows of an events/feedback table before ``as_of`` (the others counted)."""
    if df is None:
        return None
    after = (df["timestamp"] >= as_of).to_numpy(dtype=bool)
    quality.append((table, "after_as_of", int(after.sum()), "dropped", f"on or after as_of {as_of:%Y-%m-%d}"))
    return df[~after].reset_index(drop=True)


def _recount_rows_out(quality: pd.DataFrame, tables: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """``rows_out`` of the customer-scale tables after suppression and as_of, moved last per table."""
    out = []
    for table, q in quality.groupby("table", sort=False):
        body = q[q["rule"] != "rows_out"]
        # rules with nothing to report are left out for these tables (rows_in / rows_out always shown)
        body = body[(body["rows"] > 0) | (body["rule"] == "rows_in")]
        df = tables.get(table)
        end = pd.DataFrame([(table, "rows_out", 0 if df is None else len(df), "kept", "")], columns=QUALITY_COLUMNS)
        out += [body, end]
    return pd.concat(out, ignore_index=True) if out else quality


def _refuse_empty(quality: pd.DataFrame, label: str) -> None:
    """No transaction line left: one clear error naming the rules that took them."""
    rows = quality.set_index("rule")["rows"]
    if int(rows["rows_out"]) > 0:
        return
    dropped = quality[(quality["action"] == "dropped") & (quality["rows"] > 0)].sort_values("rows", ascending=False)
    if dropped.empty:
        raise DataContractError(f"transactions ({label}): no lines to analyse")
    top = dropped.iloc[0]
    parts = ", ".join(f"{r.rule} {r.rows:,}" for r in dropped.itertuples())
    raise DataContractError(f"transactions ({label}): no line left after cleaning ({int(rows['rows_in']):,} read; dropped: "
                            f"{parts}); the main cause: {top['rule']} -- {top['detail']}")


def _pseudonymize_table(t: ir.Table, key: bytes) -> ir.Table:
    """Replace ``customer_id`` by its keyed pseudonym after normalising it: O(distinct
    customers) HMACs, then a join in the engine (the lines never leave it)."""
    from segmentation.data.readers import customer_id_expr

    t = t.mutate(customer_id=customer_id_expr(t.customer_id))
    ids = t.select(raw_id=t.customer_id).distinct().execute()["raw_id"]
    ids = ids[ids.notna()]
    mapping = ibis.memtable(pd.DataFrame({"raw_id": ids.astype(str).to_numpy(), "pseudo_id": privacy.pseudonymize(ids, key).to_numpy()}))
    t = t.mutate(raw_id=t.customer_id)
    joined = t.left_join(mapping, t.raw_id == mapping.raw_id)
    return joined.mutate(customer_id=joined.pseudo_id).drop("raw_id", "pseudo_id", *[c for c in joined.columns if c.startswith("raw_id_")])
