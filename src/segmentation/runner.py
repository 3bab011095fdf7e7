"""Scheduled report runs: execute the notebooks with papermill, render HTML, publish atomically.

A run

1. reads a YAML config (``parameters``, ``notebooks``, ``output``, ``kernel``, ``timeout``) and
   command-line overrides, and validates every parameter against the notebooks' ``parameters``
   cells (papermill itself only *warns* on an unknown name: here it is an error, as is a value
   whose type does not match the notebook's default);
2. executes ``notebooks/NN_*.ipynb`` in order into a private staging folder
   ``<output>/.staging-<run id>/`` (so overlapping runs never write into each other's folders);
3. renders each executed notebook to HTML with the code hidden (for stakeholders), writes an
   ``index.html`` and a ``manifest.json`` (parameters, package versions, git commit, input data
   fingerprint, durations, and the SHA-256 of every table the notebooks saved under
   ``tables/`` -- byte-identical for the same inputs and parameters);
4. on success renames the staging folder to ``<output>/<run id>/`` and atomically repoints the
   ``<output>/latest`` symlink; on failure renames it to ``<output>/<run id>.failed/`` (the failed
   notebook keeps its traceback), leaves ``latest`` untouched and raises :class:`RunFailed`.

A run killed midway leaves only a ``.staging-*`` folder behind; ``latest`` still points at the
last good report and the run can simply be started again.
"""

from __future__ import annotations

import ast
import contextlib
import datetime as dt
import hashlib
import html
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "RunConfig",
    "RunFailed",
    "ParameterError",
    "load_config",
    "discover_notebooks",
    "validate_parameters",
    "run_reports",
    "fingerprint",
]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
REPORTED_PACKAGES = (
    "segmentation", "pandas", "numpy", "scipy", "scikit-learn", "ibis-framework", "duckdb",
    "pyarrow", "matplotlib", "seaborn", "papermill", "nbconvert",
)


class RunFailed(RuntimeError):
    """A notebook failed; the run folder with the failed notebook is kept for inspection."""


class ParameterError(ValueError):
    """A run parameter is unknown to every notebook or has the wrong type."""


@dataclass
class RunConfig:
    """What a run executes and where it publishes.

    Attributes
    ----------
    parameters : dict
        Notebook parameters (``source``, ``preset``, ``as_of``, ``seed``, ...). Each notebook gets
        only the names its ``parameters`` cell declares.
    notebooks : list of str or None
        Notebook file names (or their ``NN`` prefixes) to run; ``None`` = all, in order.
    output : Path
        Folder that receives ``<run id>/`` and the ``latest`` pointer.
    notebook_dir : Path
        Where the notebooks live.
    kernel : str
        Jupyter kernel name.
    timeout : int
        Per-cell execution timeout in seconds.
    backend : str
        Transaction-scale engine: ``duckdb`` (default) or ``pyspark``.
    backend_options : dict
        Passed to :func:`segmentation.data.connect`, e.g. ``{"memory_limit": "8GB"}`` or
        ``{"master": "spark://host:7077"}``.
    """

    parameters: dict[str, Any] = field(default_factory=dict)
    notebooks: list[str] | None = None
    output: Path = PROJECT_ROOT / "reports"
    notebook_dir: Path = DEFAULT_NOTEBOOK_DIR
    kernel: str = "segmentation"
    timeout: int = 1800
    backend: str = "duckdb"
    backend_options: dict[str, Any] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    """YAML reads 2026-01-01 as a date; notebooks take dates as ISO strings."""
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _coerce_literal(text: str) -> Any:
    """Parse a ``--set key=value`` value as YAML (so 3 -> int, null -> None, 'a' -> str)."""
    return _plain(yaml.safe_load(text)) if text != "" else ""


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config and apply ``key=value`` overrides to its parameters.

    Parameters
    ----------
    path : str or Path, optional
        YAML file with keys ``parameters``, ``notebooks``, ``output``, ``notebook_dir``,
        ``kernel``, ``timeout``. Relative ``output`` and ``notebook_dir`` are resolved against
        the config file's folder's parent (the project root for ``configs/*.yaml``).
    overrides : list of str, optional
        ``["as_of=2026-02-01", "n_customers=5000"]``; values are parsed as YAML scalars.

    Raises
    ------
    ParameterError
        On an unknown config key or a malformed override.
    """
    raw: dict[str, Any] = {}
    base = PROJECT_ROOT
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"run config {path} not found")
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(raw, dict):
            raise ParameterError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
        base = path.resolve().parent.parent
    known = {"parameters", "notebooks", "output", "notebook_dir", "kernel", "timeout", "backend", "backend_options"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ParameterError(f"{path}: unknown config keys {unknown}; allowed: {sorted(known)}")
    params = {k: _plain(v) for k, v in (raw.get("parameters") or {}).items()}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"override {item!r} is not of the form key=value")
        params[key.strip()] = _coerce_literal(value)

    def _path(value: Any, default: Path) -> Path:
        if value is None:
            return default
        p = Path(value)
        return p if p.is_absolute() else base / p

    notebooks = raw.get("notebooks")
    if notebooks in ("all", None):
        notebooks = None
    elif isinstance(notebooks, (str, int)):
        notebooks = [str(notebooks)]
    return RunConfig(
        parameters=params,
        notebooks=[str(n) for n in notebooks] if notebooks is not None else None,
        output=_path(raw.get("output"), PROJECT_ROOT / "reports"),
        notebook_dir=_path(raw.get("notebook_dir"), DEFAULT_NOTEBOOK_DIR),
        kernel=str(raw.get("kernel", "segmentation")),
        timeout=int(raw.get("timeout", 1800)),
        backend=str(raw.get("backend", "duckdb")),
        backend_options=dict(raw.get("backend_options") or {}),
    )


def discover_notebooks(notebook_dir: Path, selection: list[str] | None = None) -> list[Path]:
    """The report notebooks ``NN_*.ipynb`` in order, optionally restricted to ``selection``.

    ``selection`` items may be file names (``02_segmentation.ipynb``), stems or ``NN`` prefixes.
    """
    found = sorted(p for p in Path(notebook_dir).glob("[0-9][0-9]_*.ipynb"))
    if not found:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {notebook_dir}")
    if selection is None:
        return found
    chosen = []
    for item in selection:
        hits = [p for p in found if item in (p.name, p.stem, p.stem[:2])]
        if not hits:
            raise ParameterError(f"notebook {item!r} not found in {notebook_dir}; available: {[p.name for p in found]}")
        chosen.extend(h for h in hits if h not in chosen)
    return sorted(chosen)


_ACCEPTED = {int: (int,), float: (int, float), str: (str,), bool: (bool,), list: (list, tuple), dict: (dict,)}


def _declared_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The notebook's parameters with their default literal's Python type (``None``: any type)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(notebook))
    for info in declared.values():
        try:
            default = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            default = None
        info["type"] = None if default is None else type(default)
    return declared


def validate_parameters(notebooks: list[Path], parameters: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Check every parameter against the notebooks' ``parameters`` cells.

    Returns, per notebook, the subset of ``parameters`` it declares.

    Raises
    ------
    ParameterError
        When a name is declared by no notebook (papermill would only warn and run on with the
        default), or a value's type differs from the declared default's type (``None`` defaults
        accept any value; an ``int`` is accepted where a ``float`` is declared; ``bool`` is never
        taken for ``int``).
    """
    declared = {nb: _declared_parameters(nb) for nb in notebooks}
    all_names = set().union(*(d.keys() for d in declared.values()))
    unknown = sorted(set(parameters) - all_names)
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {unknown}: no notebook declares them; "
            f"known parameters: {sorted(all_names)}"
        )
    per_notebook: dict[Path, dict[str, Any]] = {}
    for nb, decl in declared.items():
        chosen = {}
        for name, value in parameters.items():
            if name not in decl:
                continue
            expected = decl[name]["type"]
            types = _ACCEPTED.get(expected, (expected,)) if expected is not None else None
            ok = types is None or value is None or (
                isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            )
            if not ok:
                raise ParameterError(
                    f"parameter {name}={value!r} has type {type(value).__name__}, but {nb.name} "
                    f"declares {name} = {decl[name]['default']} ({expected.__name__})"
                )
            chosen[name] = value
        per_notebook[nb] = chosen
    return per_notebook


def fingerprint(parameters: dict[str, Any]) -> dict[str, Any]:
    """A fingerprint of the run's input data, for the manifest.

    For a file or folder ``source``: the SHA-256 of each file's bytes (sorted by path). For the
    synthetic store: the generator's settings (the data is a pure function of them).
    """
    source = parameters.get("source", "synthetic")
    if source == "synthetic" or source is None:
        return {"source": "synthetic", "seed": parameters.get("seed"), "n_customers": parameters.get("n_customers")}
    root = Path(str(source))
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    digests = {}
    for f in files:
        if not f.exists():
            continue
        h = hashlib.sha256()
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        digests[str(f)] = h.hexdigest()
    return {"source": str(source), "sha256": digests}


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in REPORTED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _render_html(executed: Path, target: Path) -> None:
    """Render an executed notebook to stakeholder HTML: code, prompts and tracebacks' inputs hidden."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(executed, as_version=4)
    exporter = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    body, _ = exporter.from_notebook_node(nb)
    target.write_text(body, encoding="utf-8")


def _title(notebook: Path) -> str:
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return notebook.stem


def _write_index(run_dir: Path, manifest: dict[str, Any]) -> None:
    rows = []
    for item in manifest["notebooks"]:
        link = f'<a href="{html.escape(item["html"])}">{html.escape(item["title"])}</a>' if item.get("html") else html.escape(item["title"])
        rows.append(
            f"<tr><td>{link}</td><td>{html.escape(item['status'])}</td><td>{item['seconds']:.1f} s</td></tr>"
        )
    params = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
        for k, v in sorted(manifest["parameters"].items())
    )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Customer reports {html.escape(manifest['run_id'])}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:.3em .8em;border-bottom:1px solid #ddd;text-align:left}}</style></head>
<body><h1>Customer reports</h1>
<p>Run <b>{html.escape(manifest['run_id'])}</b>: status <b>{html.escape(manifest['status'])}</b>,
as of <b>{html.escape(str(manifest['parameters'].get('as_of', '')))}</b>,
finished {html.escape(manifest['finished'])} in {manifest['seconds']:.0f} s.</p>
<h2>Reports</h2><table><tr><th>report</th><th>status</th><th>time</th></tr>{''.join(rows)}</table>
<h2>Parameters</h2><table>{params}</table>
<p>Full provenance (package versions, git commit, data fingerprint): <a href="manifest.json">manifest.json</a>.</p>
</body></html>
"""
    (run_dir / "index.html").write_text(page, encoding="utf-8")


def _point_latest(output: Path, run_dir: Path) -> None:
    """Atomically repoint ``output/latest`` to ``run_dir`` (symlink swap via rename)."""
    tmp = output / f".latest-{uuid.uuid4().hex}"
    os.symlink(run_dir.name, tmp)
    os.replace(tmp, output / "latest")


_SECRET_WORDS = ("password", "secret", "token", "key", "credential", "auth")


def redact(options: dict[str, Any]) -> dict[str, Any]:
    """Backend options as recorded in the manifest: values of secret-looking keys (password,
    token, key, ...) replaced by ``"***"``, nested mappings included."""
    return {k: redact(v) if isinstance(v, dict) else ("***" if any(w in k.lower() for w in _SECRET_WORDS) else v)
            for k, v in options.items()}


def _execute(notebooks: list[Path], per_notebook: dict[Path, dict[str, Any]], staging: Path, config: RunConfig,
             manifest: dict[str, Any], log) -> BaseException | None:
    """Run the notebooks in order into ``staging``; stop at the first failure and return it."""
    import papermill as pm

    from segmentation.report import TABLES_ENV

    failure: BaseException | None = None
    for i, nb in enumerate(notebooks, 1):
        log(f"[{i}/{len(notebooks)}] {nb.stem} ...")
        executed = staging / nb.name
        t0 = time.perf_counter()
        entry = {"notebook": nb.name, "title": _title(nb), "parameters": per_notebook[nb]}
        try:
            with _environment(**{TABLES_ENV: str(staging / "tables" / nb.stem)}):  # where report.save_table saves
                pm.execute_notebook(
                    str(nb), str(executed), parameters=per_notebook[nb], kernel_name=config.kernel,
                    cwd=str(nb.parent), progress_bar=False, execution_timeout=config.timeout,
                )
            _render_html(executed, staging / f"{nb.stem}.html")
            entry.update(status="ok", html=f"{nb.stem}.html")
        except Exception as exc:  # papermill raises PapermillExecutionError; keep the notebook
            entry.update(status="failed", error=str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc))
            failure = exc
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        manifest["notebooks"].append(entry)
        log(f"[{i}/{len(notebooks)}] {nb.stem}: {entry['status']} ({entry['seconds']:.1f} s)")
        if failure is not None:
            break
    return failure


@contextlib.contextmanager
def _environment(**variables: str):
    """Set environment variables (inherited by the kernels) and restore the previous values."""
    previous = {k: os.environ.get(k) for k in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_reports(config: RunConfig, *, run_id: str | None = None, log=print) -> Path:
    """Execute the report notebooks and publish them; returns the published run folder.

    Parameters
    ----------
    config : RunConfig
        What to run (see :func:`load_config`).
    run_id : str, optional
        Folder name of the run; default ``<as_of>_<UTC time>_<random>`` (unique, so overlapping
        runs never share a folder).
    log : callable
        Receives one progress line per notebook.

    Raises
    ------
    ParameterError
        Before anything runs, on an unknown or mistyped parameter.
    RunFailed
        When a notebook fails; the failed run is kept as ``<output>/<run id>.failed``.
    """
    notebooks = discover_notebooks(config.notebook_dir, config.notebooks)
    per_notebook = validate_parameters(notebooks, config.parameters)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    as_of = str(config.parameters.get("as_of", "")).replace(":", "") or "run"
    run_id = run_id or f"{as_of}_{stamp}_{uuid.uuid4().hex[:6]}"
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".staging-{run_id}"
    staging.mkdir()
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": config.parameters,
        "notebooks": [],
        "versions": _versions(),
        "git_commit": _git_commit(),
        "data_fingerprint": fingerprint(config.parameters),
        "backend": {"name": config.backend, "options": redact(config.backend_options)},
        "status": "running",
    }
    t_run = time.perf_counter()
    from segmentation.data import BACKEND_ENV, BACKEND_OPTIONS_ENV

    # read by data.connect_from_environment in the kernels
    with _environment(**{BACKEND_ENV: config.backend, BACKEND_OPTIONS_ENV: json.dumps(config.backend_options)}):
        failure = _execute(notebooks, per_notebook, staging, config, manifest, log)
    manifest["tables"] = {
        str(p.relative_to(staging)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((staging / "tables").rglob("*.csv"))
    }
    manifest["status"] = "failed" if failure else "ok"
    manifest["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest["seconds"] = round(time.perf_counter() - t_run, 1)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    _write_index(staging, manifest)
    if failure is not None:
        failed_dir = output / f"{run_id}.failed"
        os.replace(staging, failed_dir)
        raise RunFailed(
            f"notebook {manifest['notebooks'][-1]['notebook']} failed: {manifest['notebooks'][-1]['error']}\n"
            f"the executed notebook with its traceback is in {failed_dir}; "
            f"the last good report (reports/latest) is unchanged"
        ) from failure
    run_dir = output / run_id
    os.replace(staging, run_dir)
    _point_latest(output, run_dir)
    log(f"published {run_dir} ({manifest['seconds']:.0f} s); open {run_dir / 'index.html'}")
    return run_dir


def clean_stale_staging(output: Path, older_than_hours: float = 24.0) -> list[Path]:
    """Remove ``.staging-*`` folders left by killed runs older than ``older_than_hours``."""
    cutoff = time.time() - older_than_hours * 3600
    removed = []
    for p in Path(output).glob(".staging-*"):
        if p.is_dir() and p.stat().st_mtime < cutoff:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


def main_run(args: Any) -> int:
    """Entry for ``segmentation run`` (see :mod:`segmentation.cli`)."""
    config = load_config(args.config, args.set)
    if args.output:
        config.output = Path(args.output).resolve()
    if args.notebooks:
        config.notebooks = args.notebooks
    clean_stale_staging(config.output)
    try:
        run_reports(config, log=lambda line: print(line, flush=True))
    except (ParameterError, RunFailed, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
