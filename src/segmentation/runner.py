"""Scheduled report runs: execute the notebooks with papermill, render HTML, publish atomically.

A run

1. reads a YAML config (``parameters``, ``notebooks``, ``output``, ``kernel``, ``timeout``,
   ``backend``) and command-line overrides into one validated
   :class:`~segmentation.params.RunParameters` (an unknown name or a wrong type is an error
   before anything runs);
2. loads the data once and computes the whole analysis once
   (:func:`segmentation.analysis.run_analysis`) into ``<staging>/results/`` -- a private staging
   folder ``<output>/.staging-<run id>/``, so overlapping runs never write into each other's
   folders;
3. executes ``notebooks/NN_*.ipynb`` in order; each notebook only renders the saved results
   (its one parameter is ``results_dir``);
4. renders each executed notebook to HTML with the code hidden (for stakeholders), writes an
   ``index.html`` and a ``manifest.json`` (parameters, package versions, git commit, input data
   fingerprint, durations, and the SHA-256 of every table the notebooks saved under
   ``tables/`` -- byte-identical for the same inputs and parameters);
5. on success renames the staging folder to ``<output>/<run id>/`` and atomically repoints the
   ``<output>/latest`` symlink; on failure renames it to ``<output>/<run id>.failed/`` (the failed
   notebook keeps its traceback), leaves ``latest`` untouched and raises :class:`RunFailed`.

A run killed midway leaves only a ``.staging-*`` folder behind; ``latest`` still points at the
last good report and the run can simply be started again.
"""

from __future__ import annotations

import ast
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

from segmentation.params import ParameterError, RunParameters, plain_value

__all__ = [
    "RunConfig",
    "RunFailed",
    "ParameterError",
    "load_config",
    "discover_notebooks",
    "run_reports",
    "compute_results",
    "load_run_store",
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


@dataclass
class RunConfig:
    """What a run executes and where it publishes.

    Attributes
    ----------
    parameters : RunParameters
        The run's parameters (validated), the same for every report.
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
    compute : bool
        Compute the analysis once before the notebooks (the normal run). False only for
        notebooks that need no results (tests of the runner itself).
    internal : bool
        An internal run: the customer profile shows the customer's name and contact details.
        It is written under ``<output>/INTERNAL-contains-personal-data/``, never becomes
        ``latest`` and is never linked from stakeholder pages.
    registry : Path, optional
        The run registry every published run is recorded in (erasure searches every
        registered run); default ``data/privacy/runs.txt`` of the project.
    workers : int, optional
        Notebooks rendered at the same time (default: one per CPU core).
    """

    parameters: RunParameters = field(default_factory=RunParameters)
    notebooks: list[str] | None = None
    output: Path = PROJECT_ROOT / "reports"
    notebook_dir: Path = DEFAULT_NOTEBOOK_DIR
    kernel: str = "segmentation"
    timeout: int = 1800
    backend: str = "duckdb"
    backend_options: dict[str, Any] = field(default_factory=dict)
    compute: bool = True
    internal: bool = False
    registry: Path | None = None
    workers: int | None = None


def _coerce_literal(text: str) -> Any:
    """Parse a ``--set key=value`` value as YAML (so 3 -> int, null -> None, 'a' -> str)."""
    return plain_value(yaml.safe_load(text)) if text != "" else ""


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
        On an unknown config key, a malformed override, or a parameter that
        :class:`~segmentation.params.RunParameters` refuses (unknown name, wrong type or value).
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
    params = {k: plain_value(v) for k, v in (raw.get("parameters") or {}).items()}
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"override {item!r} is not of the form key=value")
        params[key.strip()] = _coerce_literal(value)
    parameters = RunParameters.from_mapping(params)

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
        parameters=parameters,
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


def fingerprint(params: RunParameters) -> dict[str, Any]:
    """A fingerprint of the run's input data, for the manifest.

    For a file or folder ``source``: the SHA-256 of each file's bytes (sorted by path). For the
    synthetic store: the generator's settings (the data is a pure function of them).
    """
    source = params.source
    if params.is_synthetic:
        return {"source": "synthetic", "random_state": params.random_state, "n_customers": params.n_customers}
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


def _html_exporter() -> Any:
    """The HTML exporter for stakeholder pages (code, prompts and tracebacks' inputs hidden);
    one per process, as loading its templates is the costly part."""
    if "exporter" not in _KERNEL:
        from nbconvert import HTMLExporter

        _KERNEL["exporter"] = HTMLExporter(exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True)
    return _KERNEL["exporter"]


def _render_html(executed: Path, target: Path) -> None:
    """Render an executed notebook to stakeholder HTML: code, prompts and tracebacks' inputs hidden."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    body, _ = _html_exporter().from_notebook_node(nb)
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


_ROLES = (
    ("CRM or marketing manager", ("03", "06", "04", "07")),
    ("Head of analytics", ("01", "02", "05", "07")),
)


def _write_index(run_dir: Path, manifest: dict[str, Any], results: Any = None) -> None:
    """The run's front page: key findings first (with links to the evidence), a banner for
    synthetic or limited data, a reading order by role, the reports, then provenance."""
    from segmentation.findings import REPORTS, data_banner, index_actions, index_findings
    from segmentation.params import PARAMETER_DOCS

    esc = html.escape
    pages = {item["notebook"][:2]: item for item in manifest["notebooks"]}

    def link(rid: str, text: str | None = None) -> str:
        item = pages.get(rid)
        title = text or REPORTS.get(rid, (rid, rid))[1]
        return f'<a href="{esc(item["html"])}">{esc(title)}</a>' if item and item.get("html") else esc(title)

    def bold(text: str) -> str:
        parts = esc(text).split("**")
        return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))

    findings_html, banner_html, actions_html = "", "", ""
    if results is not None:
        from segmentation.report import use_currency

        use_currency(results["data"].scalars.get("currency"))
        actions = index_actions(results)
        if actions:
            actions_html = ("<h2>What to do next</h2><ul>" + "".join(f"<li>{bold(a)}</li>" for a in actions)
                            + f"</ul><p>The full plan, with messages and test designs: {link('06', 'Recommendations and offers')}.</p>")
        items = index_findings(results)
        findings_html = "<ol>" + "".join(f"<li>{bold(f.text)} <span class=ev>({link(f.report, 'evidence')})</span></li>"
                                         for f in items) + "</ol>"
        banner = data_banner(results)
        if banner:
            banner_html = f'<div class="banner">{bold(banner)}</div>'
    elif manifest["status"] != "ok":
        findings_html = f"<p>The run did not finish: {esc(str(manifest.get('error') or manifest['notebooks'][-1].get('error', '')))}</p>"
    roles = "".join(f"<li><b>{esc(role)}</b>: " + " &rarr; ".join(link(r) for r in order if r in pages) + "</li>"
                    for role, order in _ROLES)
    rows = "".join(f"<tr><td>{link(rid, item['title'])}</td><td>{esc(item['status'])}</td></tr>"
                   for rid, item in sorted(pages.items()))
    shown = {k: v for k, v in manifest["parameters"].items() if k in PARAMETER_DOCS}
    shown["source"] = Path(str(shown.get("source"))).name  # the file, not the server's folders
    params = "".join(f"<tr><td>{esc(k.replace('_', ' '))}</td><td>{esc('—' if v is None else str(v))}</td>"
                     f"<td>{esc(PARAMETER_DOCS[k].replace('`', ''))}</td></tr>" for k, v in shown.items())
    status = "" if manifest["status"] == "ok" else f"<p class=failed>This run failed; see {esc(run_dir.name)}/error.txt or the failed report.</p>"
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Customer reports, as of {esc(str(manifest['parameters'].get('as_of') or ''))}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#1f2937;line-height:1.5}}
table{{border-collapse:collapse;font-size:14px}}td,th{{padding:.3em .8em;border-bottom:1px solid #e5e7eb;text-align:left;vertical-align:top}}
.banner{{background:#fff7ed;border:1px solid #fdba74;padding:.5em 1em;margin:1em 0}}
.findings{{background:#eef6ff;border-left:4px solid #2563eb;padding:.3em 1.2em}} .ev{{font-size:13px}}
.failed{{color:#b91c1c}} details{{margin-top:1em}}</style></head>
<body><h1>Customer reports</h1>
<p>Analysis date <b>{esc(str(manifest['parameters'].get('as_of') or ''))}</b> &middot; data: {esc(Path(str(manifest['parameters'].get('source'))).name)}
&middot; finished {esc(manifest.get('finished', ''))}</p>
{banner_html}{status}
<h2>Key findings</h2><div class="findings">{findings_html}</div>
{actions_html}
<h2>Where to start</h2><ul>{roles}</ul>
<h2>Reports</h2><table><tr><th>report</th><th>status</th></tr>{rows}</table>
<details><summary>Parameters of this run</summary><table><tr><th>parameter</th><th>value</th><th>meaning</th></tr>{params}</table></details>
<p>Provenance (package versions, code version, data fingerprint, table checksums, timings): <a href="manifest.json">manifest.json</a>.</p>
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


_KERNEL: dict[str, Any] = {}
#: Imported once in each worker's kernel while the analysis is computed (modules stay cached
#: when the namespace is cleared between notebooks).
_WARM_UP = "import segmentation.report, segmentation.findings, segmentation.explore, segmentation.segments, segmentation.personas"


def _start_worker(kernel: str, cwd: str) -> None:
    """Worker-process initializer: start one kernel for all the notebooks this worker renders,
    and import the library in it."""
    import atexit

    from jupyter_client import BlockingKernelClient
    from jupyter_client.manager import KernelManager

    km = KernelManager(kernel_name=kernel)
    km.start_kernel(extra_arguments=["--IPKernelApp.log_level=ERROR"], cwd=cwd)  # no transport warnings on the console
    atexit.register(km.shutdown_kernel, now=True)
    _KERNEL["km"] = km
    import papermill  # noqa: F401  -- imported here, while the kernel starts and the analysis is computed

    _html_exporter()
    _kernel_run(_WARM_UP)


def _kernel_run(code: str) -> None:
    from jupyter_client import BlockingKernelClient

    kc = BlockingKernelClient(connection_file=_KERNEL["km"].connection_file)
    kc.load_connection_file()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        kc.execute_interactive(code, timeout=300, output_hook=lambda _msg: None)
    finally:
        kc.stop_channels()


def _render_one(nb: str, executed: str, html: str, parameters: dict[str, Any], kernel: str, timeout: int,
                tables_dir: str) -> tuple[str, str | None, float, dict[str, Any]]:
    """Execute one notebook in this worker's kernel (namespace cleared first) and render its
    HTML. The notebook receives the names of ``parameters`` its ``parameters`` cell declares.
    Returns ``(status, error, seconds, parameters given)``."""
    import json as _json

    import papermill as pm

    from segmentation.report import TABLES_ENV

    t0 = time.perf_counter()
    declared = pm.inspect_notebook(nb)
    parameters = {k: v for k, v in parameters.items() if k in declared}
    # a clean namespace per notebook; the tables of this notebook go to its own folder
    _kernel_run(f"%reset -f\nimport os as _os\n_os.environ[{TABLES_ENV!r}] = {_json.dumps(tables_dir)}\n"
                "import matplotlib.pyplot as _plt\n_plt.close('all')\ndel _os, _plt")
    try:
        pm.execute_notebook(nb, executed, parameters=parameters, kernel_name=kernel, km=_KERNEL["km"],
                            cwd=str(Path(nb).parent), progress_bar=False, execution_timeout=timeout)
        _render_html(Path(executed), Path(html))
    except Exception as exc:  # papermill raises PapermillExecutionError; the executed notebook keeps the traceback
        text = str(exc).strip()
        return "failed", text.splitlines()[-1] if text else repr(exc), round(time.perf_counter() - t0, 1), parameters
    return "ok", None, round(time.perf_counter() - t0, 1), parameters


def render_pool(config: RunConfig, n_notebooks: int) -> Any:
    """The worker processes that render the notebooks: one kernel each, started (and the library
    imported in it) right away, so that this overlaps with computing the analysis."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    workers = max(1, min(config.workers or (os.cpu_count() or 1), n_notebooks))
    context = multiprocessing.get_context("spawn")  # a clean process per worker (no forked engine state)
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_worker,
                               initargs=(config.kernel, str(config.notebook_dir)))
    for _ in range(workers):  # start the workers (and their kernels) now
        pool.submit(time.sleep, 0)
    return pool


def _previous_seconds(output: Path, notebooks: list[Path]) -> dict[str, float]:
    """Seconds each notebook took in the last good run, to start the longest first; without one,
    a rough guess from the notebook (figures drawn, loops over personas)."""
    try:
        manifest = json.loads((output / "latest" / "manifest.json").read_text(encoding="utf-8"))
        return {n["notebook"]: float(n.get("seconds", 0.0)) for n in manifest.get("notebooks", [])}
    except (OSError, ValueError):
        guess = {}
        for nb in notebooks:
            text = nb.read_text(encoding="utf-8")
            guess[nb.name] = text.count("fig = ") + 5.0 * text.count("for ")
        return guess


def _execute(notebooks: list[Path], parameters: dict[str, Any], staging: Path, config: RunConfig,
             manifest: dict[str, Any], log, pool: Any) -> BaseException | None:
    """Render the notebooks into ``staging`` with the workers of ``pool`` (:func:`render_pool`;
    each takes the next notebook when it is free -- they only read the results, so they are
    independent); returns a :class:`RunFailed` naming the first failed one.

    Each notebook receives the names of ``parameters`` its ``parameters`` cell declares."""
    started = time.perf_counter()
    futures = []
    previous = _previous_seconds(Path(config.output), notebooks)
    order = sorted(notebooks, key=lambda nb: -previous.get(nb.name, 0.0))  # longest first: the workers finish together
    for i, nb in enumerate(order, 1):
        log(f"[{i}/{len(notebooks)}] {nb.stem} ...")
        futures.append((nb, pool.submit(_render_one, str(nb), str(staging / nb.name), str(staging / f"{nb.stem}.html"),
                                        parameters, config.kernel, config.timeout, str(staging / "tables" / nb.stem))))
    futures.sort(key=lambda f: notebooks.index(f[0]))
    for i, (nb, future) in enumerate(futures, 1):
        status, error, seconds, chosen = future.result()
        entry = {"notebook": nb.name, "title": _title(nb), "parameters": chosen, "status": status, "seconds": seconds}
        if status == "ok":
            entry["html"] = f"{nb.stem}.html"
        else:
            entry["error"] = error
        manifest["notebooks"].append(entry)
        log(f"[{i}/{len(notebooks)}] {nb.stem}: {status} ({seconds:.1f} s)")
    manifest["render_seconds"] = round(time.perf_counter() - started, 1)
    failed = [e for e in manifest["notebooks"] if e["status"] != "ok"]
    if failed:
        return RunFailed(f"notebook {failed[0]['notebook']} failed: {failed[0]['error']}")
    return None


SUPPRESSION_LIST = PROJECT_ROOT / "data" / "privacy" / "suppression.txt"
RUN_REGISTRY = PROJECT_ROOT / "data" / "privacy" / "runs.txt"


def load_run_store(params: RunParameters, *, con: Any = None, suppression_list: Path = SUPPRESSION_LIST):
    """The store a run analyses: ``params.source`` loaded with the run's parameters, the
    erasure suppression list applied (used by the runner, by notebooks opened by hand and by
    the privacy requests, so all three see the same customers)."""
    from segmentation.data import load_store
    from segmentation.privacy import SuppressionList

    return load_store(params.source, preset=params.preset, random_state=params.random_state,
                      n_customers=params.n_customers, as_of=params.as_of, max_age_days=params.max_age_days,
                      duplicates=params.duplicates, suppress=SuppressionList(suppression_list).ids(), con=con)


def _previous_model(output: Path, params: RunParameters) -> Any:
    """The model of the last good run on the same source (segment identity across runs)."""
    latest = output / "latest" / "results"
    try:
        before = json.loads((latest / "parameters.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    same = all(before.get(k) == getattr(params, k) for k in ("source", "preset", "feature_set", "method"))
    if not same or not (latest / "segmenter.joblib").is_file():
        return None
    from segmentation.segments import Segmenter

    return Segmenter.load(latest / "segmenter.joblib")


def compute_results(config: RunConfig, folder: Path, *, log=print, loaded=None) -> tuple[Any, dict[str, float]]:
    """Load the data once, compute the whole analysis once and save it in ``folder``.

    ``loaded``, if given, is called once the data are loaded (the runner starts its rendering
    kernels then, so that they do not slow the load down). Returns the
    :class:`~segmentation.analysis.Results` and the seconds per step (``load`` and one entry per
    analysis stage)."""
    from segmentation.analysis import run_analysis
    from segmentation.data import connect

    t0 = time.perf_counter()
    con = connect(config.backend, **config.backend_options)
    store = load_run_store(config.parameters, con=con)
    timings = {"load": round(time.perf_counter() - t0, 2)}
    log(f"data loaded: {timings['load']:.1f} s")
    if loaded is not None:
        loaded()
    results = run_analysis(store, config.parameters, previous_model=_previous_model(Path(config.output), config.parameters),
                           progress=lambda line: log(f"  {line}"))
    if config.internal and store.pii is not None:
        who = results["profile"].scalars["customer_id"]
        results["profile"].tables["identity"] = store.pii[store.pii["customer_id"] == who].reset_index(drop=True)
    results.save(folder)
    timings.update(results.timings)
    return results, timings


def run_reports(config: RunConfig, *, run_id: str | None = None, log=print) -> Path:
    """Compute the results once, render every report notebook from them and publish.

    Parameters
    ----------
    config : RunConfig
        What to run (see :func:`load_config`).
    run_id : str, optional
        Folder name of the run; default ``<as_of>_<UTC time>_<random>`` (unique, so overlapping
        runs never share a folder).
    log : callable
        Receives one progress line per step and notebook.

    Raises
    ------
    ParameterError
        Before anything runs, on an unknown or mistyped parameter.
    RunFailed
        When the analysis or a notebook fails; the failed run is kept as ``<output>/<run id>.failed``.
    """
    notebooks = discover_notebooks(config.notebook_dir, config.notebooks)
    params = config.parameters
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    as_of = str(params.as_of or "").replace(":", "") or "run"
    run_id = run_id or f"{as_of}_{stamp}_{uuid.uuid4().hex[:6]}"
    output = Path(config.output)
    if config.internal:
        output = output / INTERNAL_FOLDER
    output.mkdir(parents=True, exist_ok=True)
    staging = output / f".staging-{run_id}"
    staging.mkdir()
    manifest: dict[str, Any] = {
        "run_id": run_id,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "parameters": params.to_dict(),
        "internal": config.internal,
        "notebooks": [],
        "versions": _versions(),
        "git_commit": _git_commit(),
        "data_fingerprint": fingerprint(params),
        "backend": {"name": config.backend, "options": redact(config.backend_options)},
        "status": "running",
    }
    t_run = time.perf_counter()
    failure: BaseException | None = None
    nb_parameters: dict[str, Any] = {}
    results = None
    pools: list[Any] = []

    def start_rendering() -> None:  # kernels start while the analysis is computed
        if not pools:
            pools.append(render_pool(config, len(notebooks)))

    if config.compute:
        log("computing the analysis once ...")
        try:
            results, manifest["compute_seconds"] = compute_results(config, staging / "results", log=log, loaded=start_rendering)
            nb_parameters["results_dir"] = str(staging / "results")
        except Exception as exc:
            failure = exc
            manifest["error"] = f"{type(exc).__name__}: {exc}"
            (staging / "error.txt").write_text("".join(__import__("traceback").format_exception(exc)), encoding="utf-8")
            log(f"analysis failed: {type(exc).__name__}: {exc}")
    if failure is None:
        start_rendering()
        try:
            failure = _execute(notebooks, nb_parameters, staging, config, manifest, log, pools[0])
        finally:
            pools[0].shutdown(wait=True, cancel_futures=True)
    elif pools:
        pools[0].shutdown(wait=False, cancel_futures=True)
    manifest["tables"] = {
        str(p.relative_to(staging)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((staging / "tables").rglob("*.csv"))
    }
    manifest["status"] = "failed" if failure else "ok"
    manifest["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    manifest["seconds"] = round(time.perf_counter() - t_run, 1)
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    _write_index(staging, manifest, results)
    if failure is not None:
        failed_dir = output / f"{run_id}.failed"
        os.replace(staging, failed_dir)
        failed = [e for e in manifest["notebooks"] if e["status"] != "ok"]
        where = (f"notebook {failed[0]['notebook']} failed: {failed[0]['error']}" if failed
                 else f"the analysis failed: {manifest.get('error')}")
        raise RunFailed(
            f"{where}\nthe run with its traceback is in {failed_dir}; "
            f"the last good report (latest) is unchanged"
        ) from failure
    # results keep the staging path the notebooks read from; the published folder is the run folder
    run_dir = output / run_id
    os.replace(staging, run_dir)
    if not config.internal:
        _point_latest(output, run_dir)
    _register(config.registry or RUN_REGISTRY, run_dir)
    log(f"published {run_dir} ({manifest['seconds']:.0f} s); open {run_dir / 'index.html'}")
    return run_dir


INTERNAL_FOLDER = "INTERNAL-contains-personal-data"


def _register(registry_path: Path, run_dir: Path) -> None:
    """Record the run folder in the run registry (erasure requests search every registered run)."""
    from segmentation import registry

    registry.record_run(registry_path, run_dir)


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
    try:
        config = load_config(args.config, args.set)
    except (ParameterError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.output:
        config.output = Path(args.output).resolve()
    if args.notebooks:
        config.notebooks = args.notebooks
    config.internal = bool(getattr(args, "internal", False))
    clean_stale_staging(config.output)
    try:
        run_reports(config, log=lambda line: print(line, flush=True))
    except (ParameterError, RunFailed, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
