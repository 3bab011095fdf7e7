"""Benchmark: the pipeline at 1M / 10M / 50M transaction lines, on DuckDB and Spark.

Every step runs in its own process; wall time is measured around the step and peak memory is the
highest resident memory of the step's whole process tree (the Python process plus, for Spark,
its JVM), sampled every 0.2 s from ``/proc``. Steps per data size:

* ``features: duckdb`` -- load + clean + customer features from the Parquet data set, DuckDB
  with no limit;
* ``features: duckdb 1GB`` -- the same with ``memory_limit=1GB`` (spills to a temp folder);
* ``features: spark`` -- the same on Spark local[2] (driver memory 6g);
* ``rules: duckdb`` -- co-occurrence rules counted in the engine (min support 0.1%);
* ``value: duckdb`` -- lifetime summary in the engine, BG/NBD on the compressed summary,
  Gamma-Gamma on a 100k-customer sample, scores streamed to Parquet in batches of 100k;
* ``rules: duckdb 1GB``, ``value: duckdb 1GB`` -- the same with ``memory_limit=1GB``;
* ``segments: sample + batches`` -- fit on a 100k-customer sample, assign all customers in
  batches, reproduction check.

With ``--customers`` the customer-scale steps also run on feature tables resampled to that many
customers (rows drawn with replacement from the 10M-line store's features, new ids), to show
that their memory stays bounded as the customer count grows.

Usage::

    python benchmarks/bench_scaling.py --sizes 1000000 10000000 50000000 --customers 1000000 5000000

Writes ``results.csv`` and ``scaling.png`` to ``--out`` (default ``reports/benchmarks``).
Not part of the test suite: it prints figures, it asserts nothing about speed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

AS_OF = "2026-01-01"
SAMPLE = 100_000
BATCH = 100_000


# ----------------------------------------------------------------------------- steps (child)
def _store(data: str, backend: str, **options):
    from segmentation.data import connect, load_store

    con = connect(backend, **options)
    return load_store(data, con=con, pseudonymize=False, as_of=AS_OF, suppress=[])


def step_features(data: str, work: str, backend: str = "duckdb", **options) -> dict:
    from segmentation.features import customer_features

    store = _store(data, backend, **_duckdb_options(work, options))
    features = customer_features(store.transactions, AS_OF)
    if backend == "duckdb" and not options:
        features.reset_index().to_parquet(Path(work) / "features.parquet")
    rows = store.quality.set_index("rule")["rows"]
    return {"lines": int(rows["rows_in"]), "customers": len(features)}


def _duckdb_options(work: str, options: dict) -> dict:
    if "memory_limit" in options:
        options.setdefault("temp_directory", str(Path(work) / "spill"))
    return options


def step_rules(data: str, work: str, **options) -> dict:
    from segmentation.recommend import association_rules_in_engine

    t = _store(data, "duckdb", **_duckdb_options(work, options)).transactions
    rules = association_rules_in_engine(t.filter(~t.is_return), min_support=0.001, min_confidence=0.05)
    return {"rules": len(rules)}


def step_value(data: str, work: str, **options) -> dict:
    from segmentation import scale
    from segmentation.features import lifetime_summary_table
    from segmentation.value import BetaGeo, GammaGamma, compress_summary

    summary = lifetime_summary_table(_store(data, "duckdb", **_duckdb_options(work, options)).transactions, AS_OF)
    compressed = compress_summary(summary).to_pandas()
    bgf = BetaGeo().fit(compressed, sample_weight="weight")
    ggf = GammaGamma().fit(scale.sample_customers(summary, SAMPLE, random_state=0))
    scale.score_value(summary, bgf, ggf, batch_size=BATCH, out=Path(work) / "value.parquet")
    return {"customers": bgf.n_customers_, "compressed_rows": len(compressed)}


def step_segments(features: str, work: str) -> dict:
    import pyarrow.parquet as pq

    from segmentation import scale
    from segmentation.features import behaviour_columns
    from segmentation.segments import Segmenter

    names = behaviour_columns(pq.read_schema(features).empty_table().to_pandas())  # the pipeline's default columns
    seg, sample = scale.fit_on_sample(Segmenter(features=names, random_state=0), features, n=SAMPLE, random_state=0)
    scale.assign_segments(seg, features, batch_size=BATCH, out=Path(work) / "segments.parquet")
    check = scale.reproduction_check(seg, sample, features, random_state=1, batch_size=BATCH)
    return {"customers": check.attrs["customers"], "k": seg.n_clusters_, "reproduction_ari": round(check.attrs["ari"], 3)}


def _run_child(step: str, args: list[str]) -> None:
    kwargs = json.loads(args[2]) if len(args) > 2 else {}
    t0 = time.perf_counter()
    info = globals()[f"step_{step}"](args[0], args[1], **kwargs)
    print(json.dumps({"seconds": time.perf_counter() - t0, **info}))


# ----------------------------------------------------------------------------- measuring (parent)
def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError):
                continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


def measure(step: str, *args: str) -> dict:
    """Run one step in a child process; wall time and peak memory of its process tree."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", step, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _tree_rss(proc.pid))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    t0 = time.perf_counter()
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    if proc.returncode != 0:
        return {"wall_s": round(wall, 1), "peak_mb": round(peak / 2**20), "error": err.strip().splitlines()[-1][:120]}
    info = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": round(wall, 1), "step_s": round(info.pop("seconds"), 1), "peak_mb": round(peak / 2**20), **info}


def resample_features(source: Path, n: int, path: Path) -> None:
    """``n`` customers drawn with replacement from a feature table, with new ids (batches of 1M)."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = pd.read_parquet(source)
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, n, 1_000_000):
        m = min(1_000_000, n - start)
        part = base.iloc[rng.integers(0, len(base), m)].reset_index(drop=True)
        part["customer_id"] = "R" + pd.Series(np.arange(start, start + m)).astype(str).str.zfill(9)
        table = pa.Table.from_pandas(part, preserve_index=False)
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def plot(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lines = results[results["axis"] == "lines"]
    if "error" in lines.columns:
        lines = lines[lines["error"].isna()]  # a failed step has no time to show
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for step, g in lines.groupby("step"):
        g = g.dropna(subset=["wall_s"]).sort_values("size")
        style = "--" if "1GB" in step else "-"  # under a 1 GB DuckDB memory limit
        axes[0].plot(g["size"], g["wall_s"], style, marker="o", label=step)
        axes[1].plot(g["size"], g["peak_mb"], style, marker="o", label=step)
    for ax, label in zip(axes, ("wall time (s)", "peak memory of the process tree (MB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("transaction lines")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[0].set_title("Wall time per step (2 cores)")
    axes[1].set_title("Peak memory per step")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 10_000_000])
    parser.add_argument("--customers", nargs="*", type=int, default=[])
    parser.add_argument("--steps", nargs="+", default=["duckdb", "duckdb 1GB", "spark", "rules", "rules 1GB", "value", "value 1GB", "segments"])
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _run_child(args.child[0], args.child[1:])
        return

    import pandas as pd

    from segmentation.synthetic import write_transactions_dataset

    args.out.mkdir(parents=True, exist_ok=True)
    feature_steps = {
        "duckdb": {},
        "duckdb 1GB": {"memory_limit": "1GB", "threads": 2},
        "spark": {"backend": "pyspark", "spark_conf": {"spark.driver.memory": "6g"}},
    }
    rows = []

    def record(axis: str, size: int, step: str, result: dict) -> None:
        rows.append({"axis": axis, "size": size, "step": step, **result})
        print(rows[-1], flush=True)
        pd.DataFrame(rows).to_csv(args.out / "results.csv", index=False)

    with tempfile.TemporaryDirectory() as tmp:
        features_for_resampling = None
        for size in args.sizes:
            data, work = Path(tmp) / f"lines_{size}", Path(tmp) / f"work_{size}"
            work.mkdir()
            t0 = time.perf_counter()
            parts = write_transactions_dataset(data, size, random_state=1)
            record("lines", size, "generate data", {"wall_s": round(time.perf_counter() - t0, 1), "lines": int(parts["lines"].sum()),
                                                     "disk_mb": round(sum(p.stat().st_size for p in data.iterdir()) / 2**20)})
            for name, options in feature_steps.items():
                if name in args.steps:
                    options = dict(options)
                    backend = options.pop("backend", "duckdb")
                    record("lines", size, f"features: {name}", measure("features", str(data), str(work), json.dumps({"backend": backend, **options})))
            for step in ("rules", "value"):
                for suffix, options in (("", {}), (" 1GB", feature_steps["duckdb 1GB"])):
                    if step + suffix in args.steps:
                        record("lines", size, f"{step}: duckdb{suffix}", measure(step, str(data), str(work), json.dumps(options)))
            if "segments" in args.steps and (work / "features.parquet").exists():
                record("lines", size, "segments: sample + batches", measure("segments", str(work / "features.parquet"), str(work)))
                if size <= 10_000_000 or features_for_resampling is None:  # resample the 10M-line store's customers
                    features_for_resampling = Path(tmp) / "features_base.parquet"
                    (work / "features.parquet").replace(features_for_resampling)
            for f in data.iterdir():
                f.unlink()
        for n in args.customers:
            if features_for_resampling is None:
                break
            path = Path(tmp) / f"features_{n}.parquet"
            resample_features(features_for_resampling, n, path)
            record("customers", n, "segments: sample + batches", measure("segments", str(path), tmp))
            path.unlink()
    results = pd.DataFrame(rows)
    plot(results, args.out / "scaling.png")
    print()
    print(results.to_string(index=False))


if __name__ == "__main__":
    main()
