"""The main job against one in-process pass: does "compute once, render many" pay off?

Prints two figures measured on this machine in this session:

1. one in-process pass: ``load_store`` + ``segment_customers`` + ``build_personas`` + a value
   pass (BG/NBD + Gamma-Gamma + CLV) on the default store;
2. the main job (``segmentation run --config configs/default.yaml``: the whole analysis once,
   then seven notebooks rendered to HTML), wall time in a subprocess.

Target (issue 12): main job <= 3x the in-process pass, and under 45 s with the environment in
place on the 2-core reference machine.

    .venv/bin/python benchmarks/bench_run.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def in_process() -> float:
    from segmentation.features import lifetime_summary
    from segmentation.params import RunParameters
    from segmentation.personas import build_personas
    from segmentation.pipeline import segment_customers
    from segmentation.runner import load_run_store
    from segmentation.value import BetaGeo, GammaGamma, customer_value

    p = RunParameters()
    t0 = time.perf_counter()
    store = load_run_store(p)
    seg = segment_customers(store, p.analysis_date, random_state=p.random_state)
    build_personas(seg.table, store.transactions, products=store.products, min_group_size=p.min_group_size)
    summary = lifetime_summary(store.transactions, p.analysis_date)
    customer_value(summary, BetaGeo().fit(summary), GammaGamma().fit(summary), horizon_weeks=p.horizon_weeks)
    return time.perf_counter() - t0


def main_job() -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([str(ROOT / ".venv" / "bin" / "segmentation"), "run", "--config", str(ROOT / "configs" / "default.yaml"),
                        "--output", out], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0


if __name__ == "__main__":
    one = in_process()
    job = main_job()
    print(f"in-process pass (load, segment, personas, value): {one:6.1f} s")
    print(f"main job (analysis once + 7 reports rendered):    {job:6.1f} s")
    print(f"ratio: {job / one:.1f}x (target <= 3x); main job under 45 s: {'yes' if job < 45 else 'no'}")
    sys.exit(0)
