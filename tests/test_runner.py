"""The scheduled report run: validation, atomic publish, failure handling.

These tests use small stand-in notebooks and ``compute=False`` (no analysis); the full run with
the real notebooks is tested in ``test_notebooks.py``."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from segmentation.params import RunParameters
from segmentation.runner import (
    ParameterError,
    RunConfig,
    RunFailed,
    discover_notebooks,
    load_config,
    run_reports,
)


def _notebook(path: Path, body: str, params: str = "results_dir = None\n") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# Title of {path.stem}"), cell, nbformat.v4.new_code_cell(body)]
    nbformat.write(nb, path)
    return path


@pytest.fixture()
def notebooks(tmp_path: Path) -> Path:
    d = tmp_path / "notebooks"
    d.mkdir()
    _notebook(d / "01_first.ipynb", "SECRET_CODE_MARKER = 7\nprint('result', 21 * 2)")
    _notebook(d / "02_second.ipynb", "import os\nif os.environ.get('PLANT_FAILURE'):\n    raise RuntimeError('planted failure')\nprint('second ok')")
    (d / "helper.ipynb").write_text("not a report notebook")
    return d


def _config(notebooks: Path, tmp_path: Path, **params) -> RunConfig:
    return RunConfig(parameters=RunParameters(**params), notebook_dir=notebooks, output=tmp_path / "reports",
                     kernel="python3", timeout=120, compute=False, registry=tmp_path / "runs.txt")


def test_discover_orders_and_selects(notebooks):
    assert [p.name for p in discover_notebooks(notebooks)] == ["01_first.ipynb", "02_second.ipynb"]
    assert [p.name for p in discover_notebooks(notebooks, ["02"])] == ["02_second.ipynb"]
    with pytest.raises(ParameterError, match="notebook '09' not found"):
        discover_notebooks(notebooks, ["09"])


def test_unknown_or_mistyped_parameter_stops_before_anything_runs(tmp_path):
    cfg = tmp_path / "configs" / "run.yaml"
    cfg.parent.mkdir()
    cfg.write_text("parameters:\n  vlaue: 3\n")
    with pytest.raises(ParameterError, match=r"unknown run parameter\(s\) 'vlaue'"):
        load_config(cfg)
    cfg.write_text("parameters: {}\n")
    with pytest.raises(ParameterError, match="n_clusters='three'"):
        load_config(cfg, ["n_clusters=three"])
    assert load_config(cfg, ["n_clusters=5"]).parameters.n_clusters == 5


def test_successful_run_publishes_html_without_code(notebooks, tmp_path):
    lines = []
    run_dir = run_reports(_config(notebooks, tmp_path, min_group_size=7), run_id="r1", log=lines.append)
    assert run_dir == tmp_path / "reports" / "r1"
    latest = tmp_path / "reports" / "latest"
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()
    html = (run_dir / "01_first.html").read_text()
    assert "result 42" in html
    assert "SECRET_CODE_MARKER" not in html  # code hidden from stakeholders
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["status"] == "ok"
    assert manifest["parameters"]["min_group_size"] == 7 and manifest["parameters"]["as_of"] == "2026-01-01"
    assert [n["status"] for n in manifest["notebooks"]] == ["ok", "ok"]
    assert manifest["data_fingerprint"]["source"] == "synthetic"
    assert "pandas" in manifest["versions"]
    index = (run_dir / "index.html").read_text()
    assert "Title of 01_first" in index and "Key findings" in index
    assert any("[2/2] 02_second: ok" in line for line in lines)
    assert not list((tmp_path / "reports").glob(".staging-*"))
    from segmentation.registry import known_runs

    assert known_runs(tmp_path / "runs.txt") == [run_dir]  # erasure will find this run


def test_failed_notebook_keeps_traceback_and_latest(notebooks, tmp_path, monkeypatch):
    good = run_reports(_config(notebooks, tmp_path), run_id="good", log=lambda _: None)
    monkeypatch.setenv("PLANT_FAILURE", "1")
    with pytest.raises(RunFailed, match="02_second.ipynb failed"):
        run_reports(_config(notebooks, tmp_path), run_id="bad", log=lambda _: None)
    reports = tmp_path / "reports"
    assert (reports / "latest").resolve() == good.resolve()
    failed = reports / "bad.failed"
    assert "planted failure" in (failed / "02_second.ipynb").read_text()
    manifest = json.loads((failed / "manifest.json").read_text())
    assert manifest["status"] == "failed"
    assert manifest["notebooks"][-1]["status"] == "failed"
    assert not (reports / "bad").exists()


def test_overlapping_runs_use_separate_folders(notebooks, tmp_path):
    cfg = _config(notebooks, tmp_path)
    a = run_reports(cfg, log=lambda _: None)
    b = run_reports(cfg, log=lambda _: None)
    assert a != b and a.is_dir() and b.is_dir()
    assert (tmp_path / "reports" / "latest").resolve() == b.resolve()


def test_load_config_overrides_and_errors(tmp_path):
    cfg_dir = tmp_path / "configs"
    cfg_dir.mkdir()
    cfg = cfg_dir / "run.yaml"
    cfg.write_text("parameters:\n  as_of: '2026-01-01'\n  random_state: 1\nnotebooks: ['01']\noutput: out\n")
    config = load_config(cfg, ["random_state=7", "preset=null", "as_of=2026-02-01"])
    assert config.parameters == RunParameters(as_of="2026-02-01", random_state=7, preset=None)
    assert config.notebooks == ["01"]
    assert config.output == tmp_path / "out"
    with pytest.raises(ParameterError, match="not of the form key=value"):
        load_config(cfg, ["random_state"])
    cfg.write_text("paramters: {}\n")
    with pytest.raises(ParameterError, match=r"unknown config keys \['paramters'\]"):
        load_config(cfg)


def test_shipped_configs_load_and_secrets_stay_out_of_the_manifest(notebooks, tmp_path, monkeypatch):
    import os

    from segmentation.runner import redact

    monkeypatch.delenv("SEGMENTATION_BACKEND", raising=False)

    root = Path(__file__).resolve().parents[1] / "configs"
    default, spark = load_config(root / "default.yaml"), load_config(root / "spark.yaml")
    assert default.backend == "duckdb" and spark.backend == "pyspark"
    assert spark.parameters == default.parameters and spark.backend_options["master"] == "local[2]"
    options = {"account": "acme", "password": "hunter2", "spark_conf": {"spark.authenticate.secret": "s3", "x": 1}}
    assert redact(options) == {"account": "acme", "password": "***", "spark_conf": {"spark.authenticate.secret": "***", "x": 1}}
    config = _config(notebooks, tmp_path)
    config.notebooks = ["01"]
    config.backend_options = {"database": ":memory:", "api_token": "hunter2"}
    run = run_reports(config)
    manifest = (run / "manifest.json").read_text()
    assert "hunter2" not in manifest and json.loads(manifest)["backend"]["options"]["api_token"] == "***"
    assert "SEGMENTATION_BACKEND" not in os.environ  # the run's engine does not leak into this process
