"""Benchmark: feature building and segmentation at 100k / 1M / 10M transaction lines.

Prints wall time and peak memory (each step in its own process; peak resident memory from
``/proc/self/status`` VmHWM, which includes loading the input) for:

* the lifetime-model summary -- ours (Ibis on DuckDB, reading the Parquet file), plain idiomatic
  pandas, DuckDB SQL over
  the same DataFrame, Polars (when installed), lifetimes (when installed) -- and checks that the
  results agree;
* the full customer feature table (ours);
* segmentation of the customer table (KMeans with automatic k).

Usage::

    python benchmarks/bench_features.py --sizes 100000 1000000 10000000

Not part of the test suite: it prints figures, it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

AS_OF = "2026-01-01"


def make_data(lines: int, path: Path) -> None:
    """Synthetic store scaled to about ``lines`` transaction lines, saved as Parquet."""
    from segmentation.synthetic import generate_store

    per_customer = 190  # lines per customer of the default store, measured
    tx = generate_store(max(50, lines // per_customer), seed=1)["transactions"]
    tx = tx.assign(amount=tx["quantity"] * tx["unit_price"], is_return=tx["quantity"] < 0)
    tx.to_parquet(path)


def _load(path: str):
    import pandas as pd

    return pd.read_parquet(path)


def step_ours_summary(path: str):
    import ibis

    from segmentation.features import lifetime_summary

    con = ibis.duckdb.connect()
    t = con.read_parquet(path)
    t0 = time.perf_counter()
    s = lifetime_summary(t, AS_OF)
    return time.perf_counter() - t0, s


def step_pandas_summary(path: str):
    import pandas as pd

    df = _load(path)
    t0 = time.perf_counter()
    buys = df[(df["quantity"] > 0) & (df["order_date"] < pd.Timestamp(AS_OF))]
    day = buys["order_date"].dt.floor("D")
    days = buys.groupby([buys["customer_id"], day])["amount"].sum().reset_index()
    g = days.groupby("customer_id")
    first, last, n = g["order_date"].min(), g["order_date"].max(), g.size()
    first_value = days.sort_values("order_date").groupby("customer_id")["amount"].first()
    total = g["amount"].sum()
    end = pd.Timestamp(AS_OF) - pd.Timedelta(days=1)
    s = pd.DataFrame({"frequency": n - 1.0, "recency": (last - first).dt.days / 7, "T": (end - first).dt.days / 7})
    s["monetary_value"] = ((total - first_value) / s["frequency"].where(s["frequency"] > 0)).fillna(0.0)
    return time.perf_counter() - t0, s


SQL = """
WITH d AS (
  SELECT customer_id, CAST(order_date AS DATE) AS day, SUM(amount) AS v
  FROM tx WHERE quantity > 0 AND order_date < TIMESTAMP '{as_of}' GROUP BY 1, 2),
c AS (SELECT customer_id, MIN(day) AS f, MAX(day) AS l, COUNT(*) AS n, SUM(v) AS total,
             arg_min(v, day) AS first_value FROM d GROUP BY 1)
SELECT customer_id, n - 1.0 AS frequency, datediff('day', f, l) / 7.0 AS recency,
       datediff('day', f, DATE '{as_of}' - 1) / 7.0 AS "T",
       CASE WHEN n > 1 THEN (total - first_value) / (n - 1) ELSE 0 END AS monetary_value
FROM c
"""


def step_duckdb_summary(path: str):
    import duckdb

    tx = _load(path)  # noqa: F841 - queried by name below
    t0 = time.perf_counter()
    s = duckdb.sql(SQL.format(as_of=AS_OF)).df().set_index("customer_id")
    return time.perf_counter() - t0, s


def step_polars_summary(path: str):
    import polars as pl

    df = pl.read_parquet(path)
    t0 = time.perf_counter()
    from datetime import datetime

    as_of = datetime.fromisoformat(AS_OF)
    d = (df.lazy().filter((pl.col("quantity") > 0) & (pl.col("order_date") < as_of))
         .group_by("customer_id", pl.col("order_date").dt.date().alias("day")).agg(pl.col("amount").sum().alias("v")))
    c = d.group_by("customer_id").agg(
        pl.col("day").min().alias("f"), pl.col("day").max().alias("l"), pl.len().alias("n"),
        pl.col("v").sum().alias("total"), pl.col("v").sort_by("day").first().alias("first_value")).collect()
    end = (as_of.date().toordinal() - 1)
    s = c.to_pandas().set_index("customer_id")
    f_ord = s["f"].map(lambda d: d.toordinal())  # customer-sized result only
    out = s.assign(frequency=s["n"] - 1.0, recency=(s["l"] - s["f"]).dt.days / 7 if hasattr(s["l"] - s["f"], "dt") else 0,
                   T=(end - f_ord) / 7)
    out["monetary_value"] = ((s["total"] - s["first_value"]) / out["frequency"].where(out["frequency"] > 0)).fillna(0.0)
    return time.perf_counter() - t0, out[["frequency", "recency", "T", "monetary_value"]]


def step_features(path: str):
    import ibis

    from segmentation.features import customer_features

    con = ibis.duckdb.connect()
    t = con.read_parquet(path)
    t0 = time.perf_counter()
    f = customer_features(t, AS_OF)
    return time.perf_counter() - t0, f


def step_segments(path: str):
    import ibis

    from segmentation.features import behaviour_columns, customer_features
    from segmentation.segments import Segmenter

    con = ibis.duckdb.connect()
    f = customer_features(con.read_parquet(path), AS_OF)
    t0 = time.perf_counter()
    seg = Segmenter(features=behaviour_columns(f), random_state=0).fit(f)
    return time.perf_counter() - t0, seg.selection_


STEPS = {
    "summary: ours (Ibis/DuckDB)": step_ours_summary,
    "summary: pandas": step_pandas_summary,
    "summary: DuckDB SQL": step_duckdb_summary,
    "summary: Polars": step_polars_summary,
    "features: ours (full table)": step_features,
    "segmentation: auto k (KMeans)": step_segments,
}


def run_step(name: str, path: str, out: str) -> None:
    seconds, result = STEPS[name](path)
    result.to_pickle(out)
    # VmHWM is this process's own peak (ru_maxrss would keep the forking parent's peak across exec)
    status = Path("/proc/self/status").read_text().splitlines()
    hwm = [line for line in status if line.startswith("VmHWM:")]
    peak_mb = int(hwm[0].split()[1]) / 1024 if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.path, args.out)
        return
    import pandas as pd

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"tx_{size}.parquet"
            make_data(size, path)
            df = pd.read_parquet(path)
            input_mb = df.memory_usage(deep=True).sum() / 2**20
            reference = None
            for name in STEPS:
                out = Path(tmp) / "result.pkl"
                proc = subprocess.run([sys.executable, __file__, "--step", name, "--path", str(path), "--out", str(out)],
                                      capture_output=True, text=True, env={**os.environ})
                if proc.returncode != 0:
                    rows.append({"lines": len(df), "step": name, "seconds": None, "peak_mb": None, "agrees": "not run: " + proc.stderr.strip().splitlines()[-1][:60]})
                    continue
                m = json.loads(proc.stdout.strip().splitlines()[-1])
                agrees = ""
                if name.startswith("summary"):
                    res = pd.read_pickle(out).sort_index()
                    res.index = res.index.astype(str)
                    if reference is None:
                        reference = res
                    else:
                        diff = (res[reference.columns].reindex(reference.index) - reference).abs().max().max()
                        agrees = "yes" if diff < 1e-6 else f"max diff {diff:.2g}"
                rows.append({"lines": len(df), "input_mb": round(input_mb), "step": name, "seconds": round(m["seconds"], 2),
                             "peak_mb": round(m["peak_mb"]), "agrees": agrees})
                print(rows[-1], flush=True)
    print()
    print(pd.DataFrame(rows).to_string(index=False))


if __name__ == "__main__":
    main()
