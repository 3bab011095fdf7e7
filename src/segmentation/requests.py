"""Data-subject requests: right of access (``segmentation export``) and right to erasure
(``segmentation erase``).

Both answer from the same places a run uses and writes:

* the **source data** as a run loads it (:func:`segmentation.runner.load_run_store` with the
  run config's :class:`segmentation.params.RunParameters`);
* every **run folder** the project knows of (:func:`run_folders`): the run folders below the
  config's ``output`` folder (published and failed runs) and every folder recorded in the run
  registry (:mod:`segmentation.registry`; runs written elsewhere with ``--output``);
* the **processed data** below ``data/`` (every folder but ``data/privacy``).

Nothing is refitted: an export reads the results the runs saved (``results/*.parquet``), so it
answers on any data a run could handle, and in seconds.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from segmentation import privacy
from segmentation.registry import known_runs
from segmentation.runner import PROJECT_ROOT, SUPPRESSION_LIST

__all__ = [
    "RequestError",
    "UnknownCustomer",
    "PRIVACY_DIR",
    "DATA_DIR",
    "DEFAULT_CONFIG",
    "request_customer_id",
    "find_run_folders",
    "run_folders",
    "processed_dirs",
    "in_store",
    "customer_record",
    "erase",
]

#: Suppression list and audit log (``data/privacy``; the run registry lives there too).
PRIVACY_DIR = SUPPRESSION_LIST.parent
#: Processed data (every sub-folder except ``privacy``) searched by erasure.
DATA_DIR = PROJECT_ROOT / "data"
#: The run config ``export`` and ``erase`` use when none is given.
DEFAULT_CONFIG = PROJECT_ROOT / "configs" / "default.yaml"
_PSEUDONYM = re.compile(rf"[0-9a-f]{{{privacy.ID_LENGTH}}}")


class RequestError(Exception):
    """A request cannot be answered; the message is one line saying why and what to do."""


class UnknownCustomer(RequestError, LookupError):
    """The customer appears nowhere: not in the source data, processed data or any run folder."""


def request_customer_id(*, customer: str | None = None, raw_customer: str | None = None, synthetic: bool = False,
                        key: bytes | None = None) -> str:
    """The pseudonymous id a request is about.

    Parameters
    ----------
    customer : str, optional
        A pseudonymous id as shown in reports (surrounding spaces ignored).
    raw_customer : str, optional
        The customer's own id in the source data: normalised exactly as at load
        (:func:`segmentation.data.normalize_customer_ids`) and pseudonymized with the key.
    synthetic : bool
        Whether the run config reads the synthetic demo store (the demo key is allowed).
    key : bytes, optional
        Default :func:`segmentation.privacy.load_key`.

    Raises
    ------
    RequestError
        Neither or both ids given, or an id that is empty or a spelling of "missing".
    PrivacyError
        No usable key for ``raw_customer``.
    """
    from segmentation.data.readers import MISSING_ID_SPELLINGS, normalize_customer_ids

    if (customer is None) == (raw_customer is None):
        raise RequestError("give exactly one of --customer (pseudonymous id) and --raw-customer (the customer's own id)")
    given = customer if customer is not None else raw_customer
    normalised = normalize_customer_ids([given]).iloc[0]
    if pd.isna(normalised):
        raise RequestError(f"customer id {given!r} is empty or a spelling of 'missing' "
                           f"({', '.join(repr(s) for s in MISSING_ID_SPELLINGS)}); give the customer's id")
    if customer is not None:
        return str(normalised)
    key = key or privacy.load_key(demo=synthetic)
    return str(privacy.pseudonymize([normalised], key).iloc[0])


def find_run_folders(root: str | Path) -> tuple[list[Path], list[Path]]:
    """Run folders below ``root`` (an output folder), and staging folders of unfinished runs.

    A run folder is a folder holding ``manifest.json``, ``results/`` or (below ``root``)
    ``index.html``: published, ``.failed`` and internal runs; its own sub-folders are part of it. ``.staging-*``
    folders belong to runs still in progress (or killed) and are returned separately. Symbolic
    links (``latest``) are not followed.

    Returns
    -------
    runs, staging : list of Path
    """
    root = Path(root)
    runs: list[Path] = []
    staging: list[Path] = []
    if not root.is_dir():
        return runs, staging
    for folder, dirs, names in os.walk(root, followlinks=False):
        here = Path(folder)
        if here != root and here.name.startswith(".staging-"):
            staging.append(here)
            dirs[:] = []
        elif "manifest.json" in names or "results" in dirs or (here != root and "index.html" in names):
            runs.append(here)
            dirs[:] = []
        else:
            dirs[:] = sorted(d for d in dirs if not (here / d).is_symlink())
    return sorted(runs), sorted(staging)


def run_folders(output: str | Path | None, registry: str | Path | None) -> tuple[list[Path], list[Path]]:
    """Every existing run folder the config's ``output`` folder or the run registry knows of.

    Returns
    -------
    runs, staging : list of Path
        Run folders (each once, by resolved path) and staging folders of unfinished runs.
    """
    runs, staging = find_run_folders(output) if output is not None else ([], [])
    seen = {p.resolve() for p in runs}
    for path in known_runs(registry) if registry is not None else []:
        if path.is_dir() and path.resolve() not in seen:
            seen.add(path.resolve())
            runs.append(path)
    return runs, staging


def processed_dirs(data_dir: str | Path, privacy_dir: str | Path) -> list[Path]:
    """Folders of processed data: every sub-folder of ``data_dir`` except ``privacy_dir``."""
    data_dir, privacy_dir = Path(data_dir), Path(privacy_dir).resolve()
    if not data_dir.is_dir():
        return []
    return sorted(p for p in data_dir.iterdir() if p.is_dir() and p.resolve() != privacy_dir)


def _held_tables(store: Any, customer_id: str) -> dict[str, pd.DataFrame | None]:
    from segmentation.data import to_pandas

    t = store.transactions
    return {"transactions": to_pandas(t.filter(t.customer_id == customer_id)), "customers": store.customers,
            "pii": store.pii, "events": store.events, "feedback": store.feedback}


def in_store(store: Any, customer_id: str) -> bool:
    """Whether the source data holds any row about the customer."""
    return any(rows is not None and len(rows) > 0
               for rows in (_rows_of(df, customer_id) for df in _held_tables(store, customer_id).values()))


def _customer_rows(path: Path, customer_id: str) -> pd.DataFrame | None:
    """The rows of a result table (Parquet with ``customer_id`` index or column, or CSV with a
    ``customer_id`` column) about one customer; None when the table has no ``customer_id``."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        if "customer_id" not in schema.names:
            return None
        if str(schema.field("customer_id").type) in ("string", "large_string"):
            df = pd.read_parquet(path, filters=[("customer_id", "==", customer_id)])
        else:
            df = pd.read_parquet(path)
    else:
        header = pd.read_csv(path, nrows=0).columns
        if "customer_id" not in header:
            return None
        df = pd.read_csv(path, dtype={"customer_id": "string"})
    return _rows_of(df, customer_id)


def _json_rows(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records", date_format="iso"))


def customer_record(store: Any, customer_id: str, *, run_dirs: Iterable[str | Path] = ()) -> dict[str, Any]:
    """Everything held and derived about one (pseudonymous) customer, JSON-ready.

    Parameters
    ----------
    store : segmentation.data.Store
        The source data as a run loads it (:func:`segmentation.runner.load_run_store`).
    customer_id : str
        Pseudonymous id.
    run_dirs : folders
        Run folders to search (:func:`run_folders`).

    Returns
    -------
    dict
        ``customer_id``; ``consent`` (``profiling``, ``marketing``: what the data says now);
        ``held`` -- the customer's rows of every source table (``transactions, customers, pii,
        events, feedback``; PII included: it is their own data); ``derived`` -- one entry per
        run folder holding rows about them (``run_id``, ``path``, ``tables``: their rows of each
        ``results/**/*.parquet`` and ``tables/**/*.csv``, and the whole of a results section
        about them alone such as the profile, keyed by path within the run); ``notes``.

    Raises
    ------
    UnknownCustomer
        When the customer is in no source table and no run folder.
    """
    held = {name: _json_rows(rows) if (rows := _rows_of(df, customer_id)) is not None else []
            for name, df in _held_tables(store, customer_id).items()}
    derived = []
    runs = [Path(r) for r in run_dirs]
    for run in runs:
        tables: dict[str, Any] = {}
        for scalars in sorted(run.glob("results/**/scalars.json")):
            if privacy.is_customer_section(scalars, customer_id):  # e.g. the profile: all of it is about them
                tables[scalars.relative_to(run).as_posix()] = json.loads(scalars.read_text(encoding="utf-8"))
                for path in sorted(scalars.parent.glob("*.parquet")):
                    tables[path.relative_to(run).as_posix()] = _json_rows(pd.read_parquet(path))
        for path in sorted([*run.glob("results/**/*.parquet"), *run.glob("tables/**/*.csv")]):
            rows = _customer_rows(path, customer_id)
            if rows is not None and len(rows):
                tables[path.relative_to(run).as_posix()] = _json_rows(rows)
        if tables:
            derived.append({"run_id": run.name, "path": str(run), "tables": tables})
    if not any(held.values()) and not derived:
        raise UnknownCustomer(f"customer {customer_id} not found in the source data ({len(held)} tables) "
                              f"or in any of {len(runs)} run folders{_id_hint(customer_id)}")
    allowed = {p: bool(len(privacy.consented(pd.Index([customer_id]), store.customers, p)[0])) for p in ("profiling", "marketing")}
    notes = [
        "held: the source data as the run config loads it (cleaned; customer id pseudonymized with the project's key).",
        f"derived: results saved by {len(derived)} of the {len(runs)} run folders this project knows of; nothing was recomputed.",
    ]
    if not allowed["profiling"]:
        notes.append("No profiling consent: this customer is not segmented or profiled.")
    return {"customer_id": customer_id, "consent": allowed, "held": held, "derived": derived, "notes": notes}


def _rows_of(df: pd.DataFrame | None, customer_id: str) -> pd.DataFrame | None:
    if df is None:
        return None
    if "customer_id" in df.columns:
        return df[df["customer_id"].astype("string") == customer_id]
    if df.index.name == "customer_id":
        return df[df.index.astype("string") == customer_id].reset_index()
    return None


def _id_hint(customer_id: str) -> str:
    if _PSEUDONYM.fullmatch(customer_id):
        return ""
    return (f" ({customer_id!r} is not a pseudonymous id, which has {privacy.ID_LENGTH} hex characters; "
            "for the customer's own id use --raw-customer)")


def erase(
    customer_id: str,
    *,
    run_dirs: Iterable[str | Path] = (),
    data_dirs: Iterable[str | Path] = (),
    privacy_dir: str | Path = PRIVACY_DIR,
    in_source: Callable[[], bool] | None = None,
    in_progress: Iterable[str | Path] = (),
    force: bool = False,
) -> pd.DataFrame:
    """Erase a (pseudonymous) customer everywhere the project knows of
    (see :func:`segmentation.privacy.erase_customer`).

    Parameters
    ----------
    customer_id : str
        Pseudonymous id.
    run_dirs, data_dirs : folders
        Run folders (:func:`run_folders`) and processed-data folders (:func:`processed_dirs`).
    privacy_dir : path
        Holds ``suppression.txt`` and ``audit.jsonl`` (never searched itself).
    in_source : callable, optional
        Asked only when the id is found in no table, run folder or suppression list: whether the
        source data holds it (a customer never analysed, e.g. without consent, can still ask).
    in_progress : folders
        Staging folders of runs not finished: listed in the result as not searched.
    force : bool
        Suppress an id found nowhere anyway (e.g. to block a customer before their data arrives).

    Returns
    -------
    DataFrame
        ``path, action, rows`` for every artifact touched.

    Raises
    ------
    UnknownCustomer
        The id is found nowhere and ``force`` is False; nothing is changed.
    """
    privacy_dir = Path(privacy_dir)
    run_dirs, data_dirs = [Path(p) for p in run_dirs], [Path(p) for p in data_dirs]
    suppression = privacy.SuppressionList(privacy_dir / "suppression.txt")
    found = privacy.locate_customer(customer_id, data_dirs=data_dirs, run_dirs=run_dirs)
    known = (not found.empty or customer_id in suppression.ids()
             or (in_source is not None and in_source()))
    if not known and not force:
        raise UnknownCustomer(
            f"customer {customer_id} not found: not in the source data, in no table under {len(data_dirs)} processed-data "
            f"folder(s) and in none of the {len(run_dirs)} run folders known (the config's output folder and the run "
            f"registry){_id_hint(customer_id)}; nothing was changed. Check the id, or add --force to put it on the "
            "suppression list anyway"
        )
    removed = privacy.erase_customer(customer_id, data_dirs=data_dirs, run_dirs=run_dirs, suppression=suppression,
                                     audit_log=privacy_dir / "audit.jsonl", forced=not known)
    pending = pd.DataFrame([(str(p), "run in progress: not searched; erase again when it has finished", 0)
                            for p in in_progress], columns=removed.columns)
    return pd.concat([removed, pending], ignore_index=True) if len(pending) else removed
