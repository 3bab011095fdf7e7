"""The execution engine: connect to DuckDB (default), Spark or another Ibis backend;
materialize intermediate tables; hand results back to pandas via Arrow."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Mapping
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

__all__ = ["BackendError", "connect", "materialize", "to_pandas", "connect_from_environment", "BACKEND_ENV", "BACKEND_OPTIONS_ENV"]


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
        con.raw_sql("SET enable_progress_bar = false")
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
    ``$SEGMENTATION_BACKEND_OPTIONS``); DuckDB when unset.

    For top-level callers only (a notebook's first cell, the command line): library functions,
    :func:`segmentation.data.load_store` included, never read the environment -- pass them the
    connection.
    """
    import json

    options = json.loads(os.environ.get(BACKEND_OPTIONS_ENV) or "{}")
    return connect(os.environ.get(BACKEND_ENV) or "duckdb", **options)


def to_pandas(expr: ir.Table) -> pd.DataFrame:
    """Execute an Ibis expression and hand the (customer-scale) result back as pandas, via Arrow."""
    return expr.to_pyarrow().to_pandas()

