"""Benchmark: the lifetime summary and the customer feature table in two data shapes, and the
customer-scale steps of a run at millions of customers.

Shapes (``--few`` and ``--many`` give the sizes in transaction lines):

* **few customers** -- the synthetic store, about 190 lines per customer (1M lines: 5,263
  customers), saved as one Parquet file;
* **many customers** -- CDNOW repeated with new ids (:func:`make_many`; 10M lines: 3,366,193
  customers with a purchase before the analysis date), the e-commerce shape where most customers
  have a few orders.

Every step runs in its own process on the same Parquet file and prints wall time, CPU time (user +
system, all threads) and peak resident memory (``VmHWM`` of the step's process, which includes
reading the input and the result). Each step returns the same thing -- a pandas DataFrame indexed
by the sorted ``customer_id`` -- and the summaries are checked to agree:

* ``summary: ours`` -- :func:`segmentation.features.lifetime_summary`, Ibis on DuckDB;
* ``summary: DuckDB SQL`` -- one SQL query on the file;
* ``summary: Polars`` -- ``scan_parquet``, lazy, two group-bys (the value of the first purchase
  day by ``sort_by("d").first()``, the fastest of three formulations tried; the step fails and
  says so when Polars is not installed: ``pip install polars``);
* ``summary: pandas`` -- idiomatic pandas after ``read_parquet`` (few-customers shape only);
* ``features: ours`` -- :func:`segmentation.features.customer_features` (DuckDB defaults);
* ``features: ours, DuckDB 1GB`` -- the same with ``memory_limit=1GB`` (spills to a temp folder;
  the documented out-of-core setting);
* ``segmentation: auto k`` -- KMeans with automatic k on the whole table (few-customers only).

With ``--chain`` (many-customers shape) one more process runs the customer-scale stages of a
run, one after another, as :func:`segmentation.analysis.run_analysis` does: load and clean,
segments (features, a 200k-customer sample fit, assignment in batches, reproduction check),
value (lifetime summary, BG/NBD, Gamma-Gamma, scores), personas, offers (rules, recommendations,
plan, lists), with the time and the peak memory of each, DuckDB limited to ``--memory-limit``
(default 1GB: the cleaned lines spill to a temporary folder, as docs/scaling.md recommends at
this size; ``none`` keeps DuckDB's default of 80% of RAM).

The machine is shared: the load average is printed with each figure. CPU time is the steadier
measure when the load is high.

Usage::

    python benchmarks/bench_features.py                      # make benchmark: few 100k, 1M; many 10M
    python benchmarks/bench_features.py --few --many 2000000 --repeat 3 --chain

Not part of the test suite: it prints figures and the targets of issue 16, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

AS_OF = {"few": "2026-01-01", "many": "1998-07-01"}


def make_few(lines: int, path: Path) -> dict:
    """Synthetic store scaled to about ``lines`` transaction lines, saved as Parquet."""
    from segmentation.synthetic import generate_store

    per_customer = 190  # lines per customer of the default store, measured
    tx = generate_store(max(50, lines // per_customer), random_state=1)["transactions"]
    tx = tx.assign(amount=tx["quantity"] * tx["unit_price"], is_return=tx["quantity"] < 0)
    tx.to_parquet(path)
    return {"lines": len(tx), "customers": int(tx["customer_id"].nunique())}


CDNOW = Path(__file__).resolve().parents[2] / "shared" / "data" / "cdnow" / "CDNOW_master.txt"
MANY_AS_OF = "1998-07-01"  # the day after CDNOW's last purchase


def make_many(lines: int, path: Path, random_state: int = 0) -> dict:
    """The many-customers shape: CDNOW repeated with new ids, most customers with a few orders.

    The CDNOW master file (69,659 purchases of 23,570 customers, 1997-01-01..1998-06-30) is
    repeated with new customer ids (copy ``k`` of customer ``i`` is ``C<k * 100000 + i>``) until
    ``lines`` lines, the last copy cut short (10,000,000 lines: 143 whole copies and the first
    38,763 lines of one more: 3,383,241 customers, 3,366,193 of them with a purchase
    before ``1998-07-01``). CDNOW has dates, CDs and dollars only, so
    each line is one order (id ``O<line>``) and the rest is drawn with ``random_state``: a time of
    day (uniform), a product of 2,000 (Zipf-like weights; its category ``genre_<product mod
    20>`` of 20), a channel (store 50%, online 35%, app 15%), a discount on 10% of the lines,
    and 1% of the lines turned into returns (negative quantity, order id ``R<line>``).
    ``quantity`` = CDs, ``unit_price`` = dollars / CDs; ``amount`` and ``is_return`` are
    precomputed as in a cleaned store. Written in row groups of one copy, memory O(one copy).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    raw = pd.read_csv(CDNOW, sep=r"\s+", skiprows=1, header=None, names=["customer", "date", "cds", "value"], dtype={"date": "str"})
    date = pd.to_datetime(raw["date"], format="%Y%m%d").to_numpy().astype("datetime64[us]")
    rng = np.random.default_rng(random_state)
    weights = 1.0 / np.arange(1, 2001) ** 0.8
    weights /= weights.sum()
    products = pa.array([f"P{i:04d}" for i in range(2000)])
    categories = pa.array([f"genre_{i % 20:02d}" for i in range(2000)])
    channels = pa.array(["store", "online", "app"])
    writer, customers, n0 = None, 0, len(raw)
    for k in range(-(-lines // n0)):
        m = min(n0, lines - k * n0)
        cust = raw["customer"].to_numpy()[:m] + k * 100_000
        line = np.arange(k * n0, k * n0 + m)
        ret = rng.random(m) < 0.01
        cds = raw["cds"].to_numpy()[:m].astype("float64")
        price = raw["value"].to_numpy()[:m] / cds
        qty = np.where(ret, -cds, cds)
        product = rng.choice(2000, size=m, p=weights)
        discount = np.where(rng.random(m) < 0.10, np.round(price * cds * 0.1, 2), 0.0)
        seconds = rng.integers(0, 86400, m).astype("timedelta64[s]")
        ids = pc.cast(pa.array(line), pa.string())
        table = pa.table({
            "customer_id": pc.binary_join_element_wise("C", pc.cast(pa.array(cust), pa.string()), ""),
            "order_id": pc.binary_join_element_wise(pa.array(np.where(ret, "R", "O")), ids, ""),
            "order_date": pa.array(date[:m] + seconds, pa.timestamp("us")),
            "product_id": products.take(pa.array(product)),
            "category": categories.take(pa.array(product)),
            "quantity": qty,
            "unit_price": price,
            "discount": discount,
            "channel": channels.take(pa.array(rng.choice(3, size=m, p=[0.5, 0.35, 0.15]))),
            "amount": qty * price,
            "is_return": ret,
        })
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
        customers += len(np.unique(cust))
    writer.close()
    return {"lines": lines, "customers": customers}


def _sorted(df):
    """A customer-level result as the library returns it: index ``customer_id``, sorted."""
    return df.set_index("customer_id").sort_index()


def step_ours_summary(path: str, as_of: str):
    import ibis

    from segmentation.features import lifetime_summary

    t = ibis.duckdb.connect().read_parquet(path)
    return lifetime_summary(t, as_of)


SQL = """
WITH d AS (
  SELECT customer_id, CAST(order_date AS DATE) AS d, SUM(amount) AS v
  FROM read_parquet('{path}') WHERE NOT is_return AND order_date < TIMESTAMP '{as_of}' GROUP BY 1, 2),
c AS (SELECT customer_id, MIN(d) AS f, MAX(d) AS l, COUNT(*) AS n, SUM(v) AS total, arg_min(v, d) AS first_value
      FROM d GROUP BY 1)
SELECT customer_id, (n - 1)::DOUBLE AS frequency, datediff('day', f, l)::DOUBLE / 7 AS recency,
       datediff('day', f, DATE '{as_of}' - 1)::DOUBLE / 7 AS "T",
       CASE WHEN n > 1 THEN (total - first_value) / (n - 1) ELSE 0.0 END::DOUBLE AS monetary_value
FROM c ORDER BY customer_id
"""


def step_duckdb_summary(path: str, as_of: str):
    import duckdb

    table = duckdb.sql(SQL.format(path=path, as_of=as_of)).arrow().read_all()
    return table.to_pandas().set_index("customer_id")


def step_polars_summary(path: str, as_of: str):
    from datetime import datetime, timedelta

    import polars as pl

    end = datetime.fromisoformat(as_of)
    last_day = (end - timedelta(days=1)).date()
    days = (pl.scan_parquet(path)
            .filter(~pl.col("is_return") & (pl.col("order_date") < end))
            .group_by("customer_id", pl.col("order_date").dt.date().alias("d"))
            .agg(pl.col("amount").sum().alias("v")))
    c = (days.group_by("customer_id")
         .agg(pl.col("d").min().alias("f"), pl.col("d").max().alias("l"), pl.len().alias("n"),
              pl.col("v").sum().alias("total"), pl.col("v").sort_by("d").first().alias("first_value"))
         .select("customer_id",
                 frequency=(pl.col("n") - 1).cast(pl.Float64),
                 recency=(pl.col("l") - pl.col("f")).dt.total_days() / 7.0,
                 T=(pl.lit(last_day) - pl.col("f")).dt.total_days() / 7.0,
                 monetary_value=pl.when(pl.col("n") > 1).then((pl.col("total") - pl.col("first_value")) / (pl.col("n") - 1))
                 .otherwise(0.0))
         .sort("customer_id").collect())
    return c.to_pandas().set_index("customer_id")


def step_pandas_summary(path: str, as_of: str):
    import pandas as pd

    df = pd.read_parquet(path, columns=["customer_id", "order_date", "amount", "is_return"])
    end = pd.Timestamp(as_of)
    buys = df[~df["is_return"] & (df["order_date"] < end)]
    days = buys.groupby([buys["customer_id"], buys["order_date"].dt.floor("D")])["amount"].sum().reset_index()
    g = days.groupby("customer_id")
    first, last, n = g["order_date"].min(), g["order_date"].max(), g.size()
    first_value = days.sort_values("order_date").groupby("customer_id")["amount"].first()
    s = pd.DataFrame({"frequency": n - 1.0, "recency": (last - first).dt.days / 7,
                      "T": (end - pd.Timedelta(days=1) - first).dt.days / 7})
    s["monetary_value"] = ((g["amount"].sum() - first_value) / s["frequency"].where(s["frequency"] > 0)).fillna(0.0)
    return s.sort_index()


def step_features(path: str, as_of: str, **duckdb_settings):
    import ibis

    from segmentation.features import customer_features

    con = ibis.duckdb.connect()
    for name, value in duckdb_settings.items():
        con.raw_sql(f"SET {name} = '{value}'")
    return customer_features(con.read_parquet(path), as_of)


def step_features_1gb(path: str, as_of: str):
    with tempfile.TemporaryDirectory() as spill:
        return step_features(path, as_of, memory_limit="1GB", temp_directory=spill)


def step_segments(path: str, as_of: str):
    from segmentation.features import behaviour_columns
    from segmentation.segments import Segmenter

    f = step_features(path, as_of)
    seg = Segmenter(features=behaviour_columns(f), random_state=0).fit(f)
    return seg.selection_


STEPS = {
    "summary: ours (Ibis/DuckDB)": (step_ours_summary, ("few", "many")),
    "summary: DuckDB SQL": (step_duckdb_summary, ("few", "many")),
    "summary: Polars": (step_polars_summary, ("few", "many")),
    "summary: pandas": (step_pandas_summary, ("few",)),
    "features: ours": (step_features, ("few", "many")),
    "features: ours, DuckDB 1GB": (step_features_1gb, ("many",)),
    "segmentation: auto k (KMeans)": (step_segments, ("few",)),
}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _peak_mb() -> float:
    """This process's own peak resident memory (ru_maxrss would keep the forking parent's)."""
    status = Path("/proc/self/status").read_text().splitlines()
    return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024


def _load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_step(name: str, path: str, as_of: str, out: str) -> None:
    import importlib

    for module in ("duckdb", "ibis", "pandas", "pyarrow", "segmentation.features", "segmentation.segments", "polars"):
        try:  # imports are not part of a step's time
            importlib.import_module(module)
        except ImportError:
            pass
    t0, c0 = time.perf_counter(), _cpu()
    result = STEPS[name][0](path, as_of)
    seconds, cpu = time.perf_counter() - t0, _cpu() - c0
    result.to_pickle(out)
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mb": _peak_mb(), "load": _load(), "rows": len(result)}))


# ----------------------------------------------------------------------------- the chain
def run_chain(path: str, as_of: str, memory_limit: str | None) -> None:
    """The customer-scale stages of a run, timed one by one, with the process's peak memory per
    stage (sampled every 0.1 s) and overall (VmHWM). DuckDB gets ``memory_limit`` (the
    documented out-of-core setting; it spills the cleaned lines to a temporary folder)."""
    from segmentation import analysis
    from segmentation.data import connect, load_store
    from segmentation.params import RunParameters

    peak = [0.0]

    def sample() -> None:
        while True:
            rss = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
            peak[0] = max(peak[0], rss)
            time.sleep(0.1)

    threading.Thread(target=sample, daemon=True).start()
    params = RunParameters(source=path, as_of=as_of)
    stages = []

    def timed(name, fn):
        peak[0] = 0.0
        t0, c0 = time.perf_counter(), _cpu()
        out = fn()
        stages.append({"stage": name, "seconds": round(time.perf_counter() - t0, 1), "cpu_s": round(_cpu() - c0, 1),
                       "peak_mb": round(peak[0]), "load": _load()})
        print(json.dumps(stages[-1]), file=sys.stderr, flush=True)
        return out

    spill = tempfile.mkdtemp(prefix="bench_chain_")
    con = connect("duckdb", memory_limit=memory_limit, temp_directory=spill)
    store = timed("load and clean", lambda: load_store(path, con=con, pseudonymize=False, suppress=[], as_of=as_of))
    seg, customers, _ = timed("segments", lambda: analysis.segments_stage(store, params))
    _, customers = timed("value", lambda: analysis.value_stage(store, params, customers))
    _, customers, built = timed("personas", lambda: analysis.personas_stage(store, params, customers, seg))
    timed("offers", lambda: analysis.offers_stage(store, params, customers, built.summary))
    shutil.rmtree(spill, ignore_errors=True)
    print(json.dumps({"stages": stages, "customers": len(customers), "peak_mb": _peak_mb(), "memory_limit": memory_limit}))


# ----------------------------------------------------------------------------- parent
def _child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:100]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(shape: str, path: Path, repeat: int, tmp: Path) -> list[dict]:
    import pandas as pd

    rows, reference = [], None
    for name, (_, shapes) in STEPS.items():
        if shape not in shapes:
            continue
        out = tmp / "result.pkl"
        runs = [_child(["--step", name, "--path", str(path), "--as-of", AS_OF[shape], "--out", str(out)]) for _ in range(repeat)]
        good = [r for r in runs if "error" not in r]
        if not good:
            rows.append({"shape": shape, "step": name, "note": "not run: " + runs[-1]["error"]})
            print(rows[-1], flush=True)
            continue
        row = {"shape": shape, "step": name, "rows": good[0]["rows"],
               **{k: round(statistics.median(x[k] for x in good), 2) for k in ("seconds", "cpu_s", "load")},
               "peak_mb": round(statistics.median(r["peak_mb"] for r in good)), "note": ""}
        if name.startswith("summary"):
            result = pd.read_pickle(out)
            if reference is None:
                reference = result
            else:
                diff = (result[reference.columns] - reference).abs().max().max() if result.index.equals(reference.index) else None
                row["note"] = "agrees with ours" if diff is not None and diff < 1e-9 else f"differs from ours ({diff})"
        rows.append(row)
        print(row, flush=True)
    return rows


def targets(rows: list[dict]) -> list[str]:
    """The figures issue 16 asks for, from the many-customers rows."""
    by = {(r["shape"], r["step"]): r for r in rows if "seconds" in r}
    lines = []
    ours, polars = by.get(("many", "summary: ours (Ibis/DuckDB)")), by.get(("many", "summary: Polars"))
    sql = by.get(("many", "summary: DuckDB SQL"))
    features = by.get(("many", "features: ours"))
    limited = by.get(("many", "features: ours, DuckDB 1GB"))
    if ours and (polars or sql):
        other, label = (polars, "Polars") if polars else (sql, "DuckDB SQL")
        lines.append(f"lifetime summary, ours / {label}: {ours['seconds'] / other['seconds']:.2f}x wall, "
                     f"{ours['cpu_s'] / other['cpu_s']:.2f}x CPU (target <= 1.2x)")
    if ours and features:
        lines.append(f"feature table / our summary: {features['seconds'] / ours['seconds']:.2f}x wall, "
                     f"{features['cpu_s'] / ours['cpu_s']:.2f}x CPU (target <= 3x)")
        lines.append(f"feature table peak: {features['peak_mb']} MB with DuckDB defaults"
                     + (f", {limited['peak_mb']} MB with memory_limit=1GB ({limited['seconds']} s)" if limited else "")
                     + " (target < 2048 MB)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--few", nargs="*", type=int, default=[100_000, 1_000_000], help="sizes (lines), few-customers shape")
    parser.add_argument("--many", nargs="*", type=int, default=[10_000_000], help="sizes (lines), many-customers shape")
    parser.add_argument("--repeat", type=int, default=1, help="runs per step (the median is printed)")
    parser.add_argument("--chain", action="store_true", help="also time the customer-scale stages (largest many size)")
    parser.add_argument("--memory-limit", default="1GB",
                        help="DuckDB memory_limit of the chain (default 1GB; 'none' for DuckDB's own default, 80%% of RAM)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    parser.add_argument("--chain-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--path", help=argparse.SUPPRESS)
    parser.add_argument("--as-of", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.path, args.as_of, args.out)
        return
    if args.chain_child:
        run_chain(args.path, args.as_of, None if args.memory_limit.lower() == "none" else args.memory_limit)
        return
    import pandas as pd

    rows, chain = [], None
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for shape, sizes, make in (("few", args.few, make_few), ("many", args.many, make_many)):
            for size in sizes:
                path = tmp / f"{shape}_{size}.parquet"
                info = make(size, path)
                print(f"{shape} customers, {size:,} lines: {info} ({path.stat().st_size / 2**20:.0f} MB of Parquet)", flush=True)
                rows += [{"lines": size, **r} for r in measure(shape, path, args.repeat, tmp)]
                if shape == "many" and args.chain and size == max(sizes):
                    chain = _child(["--chain-child", "--path", str(path), "--as-of", AS_OF[shape], "--memory-limit", args.memory_limit])
                path.unlink()
    print()
    print(pd.DataFrame(rows).to_string(index=False))
    if chain:
        print()
        if "error" in chain:
            print("chain failed:", chain["error"])
        else:
            stages = pd.DataFrame(chain["stages"])
            print(stages.to_string(index=False))
            print(f"chain at {chain['customers']:,} customers (DuckDB memory_limit {chain['memory_limit']}): "
                  f"{stages['seconds'].sum():.0f} s, peak {chain['peak_mb']:.0f} MB (target: under 180 s and 6144 MB)")
    print()
    for line in targets(rows):
        print(line)


if __name__ == "__main__":
    main()
