"""Customer-scale steps in bounded memory: sample, fit, then assign and score in batches.

When there are millions of customers, the models are fitted on a representative sample and
every customer is then assigned (segments) or scored (lifetime value) batch by batch, so that no
step holds more than one batch of its intermediate arrays in memory.

Sources
-------
Every function here reads customer-level rows (one row per customer, index or column
``customer_id``) from any of:

* a pandas DataFrame (sliced into batches);
* a Parquet file or a folder of Parquet files (read with pyarrow, batch by batch);
* an Ibis table (streamed from the engine with ``to_pyarrow_batches``, ordered by
  ``customer_id`` so that batches, and hence samples, are deterministic), e.g.
  :func:`segmentation.features.lifetime_summary_table`.

Sampling (documented, reproducible)
-----------------------------------
:func:`sample_customers` keeps each customer independently with probability ``n / N`` (``N``
customers in the source), drawing one uniform number per row from a generator seeded with
``random_state``, in the source's order. It is a simple random sample: every customer has the
same chance, so segment shares and model parameters estimated on it are unbiased; its size is
``n`` on average (binomial, standard deviation ``sqrt(n)``). The same source, ``n`` and seed
give the same sample.

Does the sample's segmentation reproduce on the full data?
----------------------------------------------------------
:func:`reproduction_check` fits a second, independent model on a second sample (another seed,
same settings and k), assigns every customer with both models in one streaming pass, and reports
the adjusted Rand index between the two assignments of the full data (from a contingency table
accumulated over batches) and, per segment, its share in the fitting sample against its share
of all customers. An ARI near 1 and small share differences say the segments are a property of
the customers, not of the sample drawn.

Cost
----
One pass over the source per call, O(N d) time; memory O(batch_size x d) plus the outputs
(O(N) for the labels or scores, or nothing when written to Parquet with ``out=``). The
clustering itself is O(n k d n_init) on the sample only.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from sklearn.base import clone

from segmentation.features import _record_batches
from segmentation.segments import Segmenter
from segmentation.value import BetaGeo, GammaGamma, customer_value

__all__ = [
    "isin",
    "position_in",
    "iter_batches",
    "count_rows",
    "sample_customers",
    "fit_on_sample",
    "assign_segments",
    "reproduction_check",
    "score_value",
]

DEFAULT_BATCH = 200_000


def _strings(x: Any) -> pa.Array:
    """Ids as one Arrow string array."""
    column = pa.array(pd.Series(x, copy=False).astype("string"), type=pa.string())
    return column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column


def isin(values: Any, keys: Any) -> np.ndarray:
    """``values.isin(keys)`` as a boolean array (ids compared as text), through Arrow's hash set.

    pandas' ``isin`` on Arrow-backed strings turns the keys into a Python list first (16 s for
    3.4M customer ids); this takes O(len(values) + len(keys)) in Arrow.
    """
    return pc.is_in(_strings(values), value_set=_strings(keys)).to_numpy(zero_copy_only=False)


def position_in(values: Any, keys: Any) -> np.ndarray:
    """``pd.Index(keys).get_indexer(values)`` (ids compared as text; -1 when absent), through
    Arrow's hash table: no Python string per id, unlike pandas' index engine on Arrow strings."""
    return pc.fill_null(pc.index_in(_strings(values), value_set=_strings(keys)), -1).to_numpy().astype(np.intp)


def _is_ibis(source: Any) -> bool:
    import ibis.expr.types as ir

    return isinstance(source, ir.Table)


def _ordered(table: Any) -> Any:
    return table.order_by("customer_id") if "customer_id" in table.columns else table


def count_rows(source: Any) -> int:
    """Rows (customers) in a DataFrame, Parquet file/folder or Ibis table (no data is read for
    Parquet: the footers hold the counts)."""
    if isinstance(source, pd.DataFrame):
        return len(source)
    if _is_ibis(source):
        return int(source.count().execute())
    return pads.dataset(_path(source), format="parquet").count_rows()


def _path(source: Any) -> Path:
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"expected a DataFrame, an Ibis table or a Parquet path, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such Parquet file or folder")
    return path


def _indexed(df: pd.DataFrame) -> pd.DataFrame:
    if "customer_id" in df.columns:
        df = df.set_index("customer_id")
    return df


def _wanted(columns: list[str], available) -> list[str]:
    """``customer_id`` (when present) and the requested ``columns`` found in ``available``."""
    return [c for c in dict.fromkeys(["customer_id", *columns]) if c in available]


def iter_batches(source: Any, batch_size: int = DEFAULT_BATCH, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """Yield the source as pandas DataFrames of at most ``batch_size`` rows, indexed by
    ``customer_id`` when the source has that column.

    Parameters
    ----------
    source : DataFrame, Parquet path (file or folder) or Ibis table
    batch_size : int
        Rows per batch (memory O(batch_size x columns)).
    columns : list of str, optional
        Columns to read (``customer_id`` is always kept when present).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if isinstance(source, pd.DataFrame):
        df = source if columns is None else source[_wanted(columns, source.columns)]
        for start in range(0, len(df), batch_size):
            yield _indexed(df.iloc[start:start + batch_size])
        return
    if _is_ibis(source):
        t = source if columns is None else source.select(*_wanted(columns, source.columns))
        batches: Iterator[pa.RecordBatch] = _record_batches(_ordered(t), batch_size)  # memtables registered too
    else:
        dataset = pads.dataset(_path(source), format="parquet")
        cols = None if columns is None else _wanted(columns, dataset.schema.names)
        # little read-ahead: memory stays O(batch + one row group) however large the file is
        batches = dataset.to_batches(columns=cols, batch_size=batch_size, batch_readahead=1, fragment_readahead=1)
    pending: list[pa.RecordBatch] = []
    n_pending = 0
    for batch in batches:  # engines may hand back smaller batches: regroup to batch_size
        pending.append(batch)
        n_pending += batch.num_rows
        while n_pending >= batch_size:
            table = pa.Table.from_batches(pending)
            yield _indexed(table.slice(0, batch_size).to_pandas())
            rest = table.slice(batch_size)
            pending, n_pending = rest.to_batches(), rest.num_rows
    if n_pending:
        yield _indexed(pa.Table.from_batches(pending).to_pandas())


def sample_customers(source: Any, n: int, *, random_state: int = 0, batch_size: int = DEFAULT_BATCH,
                     columns: list[str] | None = None) -> pd.DataFrame:
    """A simple random sample of about ``n`` customers (each kept with probability ``n / N``),
    reproducible for the same source, ``n`` and seed; the whole source when ``N <= n``.

    Returns
    -------
    DataFrame
        The sampled rows, in the source's order; ``attrs["fraction"]`` holds ``n / N`` and
        ``attrs["population"]`` holds ``N``.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    total = count_rows(source)
    fraction = min(1.0, n / total) if total else 1.0
    rng = np.random.default_rng(random_state)
    parts = []
    for batch in iter_batches(source, batch_size, columns):
        keep = rng.random(len(batch)) < fraction
        parts.append(batch[keep])
    sample = pd.concat(parts) if parts else pd.DataFrame()
    sample.attrs.update(fraction=fraction, population=total)
    return sample


def fit_on_sample(segmenter: Segmenter, source: Any, *, n: int = 200_000, random_state: int = 0,
                  batch_size: int = DEFAULT_BATCH) -> tuple[Segmenter, pd.DataFrame]:
    """Fit ``segmenter`` on a simple random sample of about ``n`` customers of ``source``.

    Returns
    -------
    (Segmenter, DataFrame)
        The fitted segmenter and the sample it was fitted on (its ``labels_`` are the sample's).
    """
    sample = sample_customers(source, n, random_state=random_state, batch_size=batch_size,
                              columns=segmenter.features)
    if len(sample) < 3:
        raise ValueError(f"the sample holds {len(sample)} customers; raise n (the source has {sample.attrs['population']})")
    return segmenter.fit(sample), sample


class _ParquetSink:
    """Append DataFrames (index ``customer_id``) to one Parquet file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, df: pd.DataFrame) -> None:
        table = pa.Table.from_pandas(df.reset_index(), preserve_index=False)
        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, table.schema)
        self.writer.write_table(table.cast(self.writer.schema))
        self.rows += len(df)

    def close(self) -> Path:
        if self.writer is not None:
            self.writer.close()
        return self.path


def _collect(results: Iterator[pd.DataFrame], out: str | os.PathLike | None) -> pd.DataFrame | Path:
    if out is None:
        parts = list(results)
        return pd.concat(parts) if parts else pd.DataFrame()
    sink = _ParquetSink(out)
    for part in results:
        sink.write(part)
    return sink.close()


def assign_segments(segmenter: Segmenter, source: Any, *, batch_size: int = DEFAULT_BATCH,
                    out: str | os.PathLike | None = None, progress: bool = False) -> pd.DataFrame | Path:
    """Assign every customer of ``source`` to the fitted segments, batch by batch.

    Parameters
    ----------
    segmenter : Segmenter
        Fitted (e.g. by :func:`fit_on_sample`).
    source : DataFrame, Parquet path or Ibis table
        The customer feature table (it must hold the segmenter's feature columns).
    batch_size : int
        Customers per batch: memory O(batch_size x features).
    out : path, optional
        Write ``customer_id, segment`` to this Parquet file instead of returning them.
    progress : bool
        Show a progress bar (tqdm).

    Returns
    -------
    DataFrame or Path
        Index ``customer_id``, column ``segment`` (int); or the Parquet path when ``out`` is given.
    """
    def results() -> Iterator[pd.DataFrame]:
        for batch in _progress(iter_batches(source, batch_size, segmenter.feature_names_in_), source, batch_size, progress):
            yield pd.DataFrame({"segment": segmenter.predict(batch).astype("int64")}, index=batch.index)

    return _collect(results(), out)


def _progress(batches: Iterator[pd.DataFrame], source: Any, batch_size: int, show: bool) -> Iterator[pd.DataFrame]:
    if not show:
        return batches
    from tqdm.auto import tqdm

    return tqdm(batches, total=-(-count_rows(source) // batch_size), unit="batch")


def _ari_from_contingency(table: np.ndarray) -> float:
    """Adjusted Rand index from a contingency table (Hubert & Arabie 1985)."""
    def pairs(v: np.ndarray) -> float:
        v = v.astype("float64")
        return float((v * (v - 1) / 2).sum())

    n = table.sum()
    index = pairs(table.ravel())
    rows, cols = pairs(table.sum(axis=1)), pairs(table.sum(axis=0))
    expected = rows * cols / (n * (n - 1) / 2) if n > 1 else 0.0
    maximum = (rows + cols) / 2
    return 1.0 if maximum == expected else (index - expected) / (maximum - expected)


def reproduction_check(segmenter: Segmenter, sample: pd.DataFrame, source: Any, *, random_state: int = 1,
                       batch_size: int = DEFAULT_BATCH) -> pd.DataFrame:
    """Check that segments fitted on a sample reproduce on the full data.

    A second model with the same settings and the same k is fitted on a second, independent
    sample of the same size (seed ``random_state``); both models then assign every customer of
    ``source`` in one streaming pass.

    Parameters
    ----------
    segmenter : Segmenter
        Fitted on ``sample``.
    sample : DataFrame
        The sample it was fitted on (from :func:`fit_on_sample`).
    source : DataFrame, Parquet path or Ibis table
        All customers.

    Returns
    -------
    DataFrame
        One row per segment: ``sample_share`` (in the fitting sample), ``full_share`` (of all
        customers, by the model's assignment), ``difference`` (full - sample) and
        ``best_match_jaccard`` (overlap with the closest segment of the second model, on all
        customers). ``attrs["ari"]`` holds the adjusted Rand index between the two models'
        assignments of the full data and ``attrs["customers"]`` the customers assigned.
    """
    other = clone(segmenter).set_params(n_clusters=segmenter.n_clusters_)
    other, _ = fit_on_sample(other, source, n=max(3, len(sample)), random_state=random_state, batch_size=batch_size)
    k1 = segmenter.n_clusters_ + 1  # + HDBSCAN noise (-1) in the last row
    k2 = other.n_clusters_ + 1
    table = np.zeros((k1, k2), dtype=np.int64)
    for batch in iter_batches(source, batch_size, segmenter.feature_names_in_):
        a = np.where((l1 := segmenter.predict(batch)) < 0, k1 - 1, l1)
        b = np.where((l2 := other.predict(batch)) < 0, k2 - 1, l2)
        table += np.bincount(a * k2 + b, minlength=k1 * k2).reshape(k1, k2)
    n = table.sum()
    full = table.sum(axis=1)[: k1 - 1] / n
    in_sample = np.bincount(segmenter.labels_[segmenter.labels_ >= 0], minlength=k1 - 1) / len(sample)
    union = table.sum(axis=1)[:, None] + table.sum(axis=0)[None, :] - table
    with np.errstate(divide="ignore", invalid="ignore"):
        jaccard = np.where(union > 0, table / union, 0.0)[: k1 - 1, : k2 - 1]
    out = pd.DataFrame({
        "sample_share": in_sample,
        "full_share": full,
        "difference": full - in_sample,
        "best_match_jaccard": jaccard.max(axis=1) if k2 > 1 else np.zeros(k1 - 1),
    }, index=pd.RangeIndex(k1 - 1, name="segment"))
    out.attrs.update(ari=_ari_from_contingency(table), customers=int(n))
    return out


def score_value(source: Any, bgf: BetaGeo, ggf: GammaGamma, *, horizon_weeks: float | None = None,
                horizon_months: float | None = None, annual_discount_rate: float = 0.10, time_unit: str = "W",
                batch_size: int = DEFAULT_BATCH, out: str | os.PathLike | None = None,
                progress: bool = False) -> pd.DataFrame | Path:
    """Lifetime-value scores (:func:`segmentation.value.customer_value`) for every customer of a
    lifetime summary, batch by batch.

    Parameters
    ----------
    source : DataFrame, Parquet path or Ibis table
        The lifetime summary (``customer_id, frequency, recency, T, monetary_value``), e.g.
        :func:`segmentation.features.lifetime_summary_table` left in the engine.
    bgf, ggf : fitted BetaGeo and GammaGamma (e.g. on a sample, or with ``sample_weight``)
    horizon_weeks, horizon_months, annual_discount_rate, time_unit
        As for :func:`~segmentation.value.customer_value`: the horizon in weeks or months (12
        months by default), the discount rate per year (10% by default), the summary's period.
    batch_size : int
        Customers per batch: memory O(batch_size x horizon).
    out : path, optional
        Write the scores to this Parquet file instead of returning them.

    Returns
    -------
    DataFrame or Path
        Index ``customer_id``; the columns of :func:`~segmentation.value.customer_value`
        (``churn_band`` as text) and its ``attrs`` (horizon, rates); or the Parquet path when
        ``out`` is given.
    """
    columns = ["frequency", "recency", "T", "monetary_value"]

    def results() -> Iterator[pd.DataFrame]:
        for batch in _progress(iter_batches(source, batch_size, columns), source, batch_size, progress):
            scores = customer_value(batch, bgf, ggf, horizon_weeks=horizon_weeks, horizon_months=horizon_months,
                                    annual_discount_rate=annual_discount_rate, time_unit=time_unit, batch_size=batch_size)
            yield scores.astype({"churn_band": "string"})

    return _collect(results(), out)
