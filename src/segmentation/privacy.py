"""Privacy by design: pseudonymization, consent, access, erasure, small-group protection.

What this module guarantees (see PRIVACY.md for the full statement):

* **Pseudonymization** -- customer identifiers are replaced by a keyed hash
  (HMAC-SHA256, truncated to 20 hex characters = 80 bits) with a secret from the environment
  variable ``SEGMENTATION_PSEUDONYM_KEY`` or a key file named by
  ``SEGMENTATION_PSEUDONYM_KEY_FILE`` (kept outside the repository). Without a key only a demo
  run may proceed (with a fixed, public demo key); any other run stops with :class:`PrivacyError`.
* **Consent** -- :func:`consented` keeps only customers who gave consent for a purpose
  (``profiling`` or ``marketing``) and says how many were left out.
* **Erasure** -- :func:`erase_customer` removes a customer from processed tables and derived
  artifacts, records the pseudonymous id in a suppression list that every later load applies,
  and appends an audit line.
* **Access** -- :func:`export_customer` gathers everything held or derived about one customer
  into one JSON document.
* **Reports** -- :func:`suppress_small_groups` hides groups below a threshold;
  :func:`scan_for_pii` checks rendered output for identifying strings.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "DEMO_KEY",
    "PrivacyError",
    "load_key",
    "pseudonymize",
    "pseudonymize_frame",
    "consented",
    "suppress_small_groups",
    "scan_for_pii",
    "SuppressionList",
    "erase_customer",
    "export_customer",
    "scrub_pii",
]

KEY_ENV = "SEGMENTATION_PSEUDONYM_KEY"
KEY_FILE_ENV = "SEGMENTATION_PSEUDONYM_KEY_FILE"
#: Public key for demo runs on the synthetic store only. Never use it for real customers.
DEMO_KEY = b"segmentation-demo-key--not-a-secret"
ID_LENGTH = 20


class PrivacyError(RuntimeError):
    """A privacy rule would be broken (no key, no consent, identifying output)."""


def load_key(*, demo: bool = False, key_file: str | Path | None = None) -> bytes:
    """The pseudonymization secret.

    Looked up in order: ``key_file``, the file named by ``$SEGMENTATION_PSEUDONYM_KEY_FILE``,
    the value of ``$SEGMENTATION_PSEUDONYM_KEY``. With none of them, a demo run
    (``demo=True``, the synthetic store) gets :data:`DEMO_KEY`; any other run raises.

    Raises
    ------
    PrivacyError
        When no key is configured for a non-demo run, or the key is shorter than 16 bytes, or
        the key file sits inside this project's folder (it would end up in version control).
    """
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise PrivacyError(f"pseudonymization key file {path} does not exist")
        project = Path(__file__).resolve().parents[2]
        if project in path.parents:
            raise PrivacyError(
                f"pseudonymization key file {path} is inside the project folder {project}; "
                "keep it outside the repository (e.g. ~/.config/segmentation/key)"
            )
        key = path.read_bytes().strip()
    elif os.environ.get(KEY_ENV):
        key = os.environ[KEY_ENV].encode("utf-8")
    elif demo:
        return DEMO_KEY
    else:
        raise PrivacyError(
            "no pseudonymization key: set the environment variable "
            f"{KEY_ENV} to a secret of at least 16 characters, or {KEY_FILE_ENV} to a file "
            "holding it (outside the repository). Only the synthetic demo store runs without one."
        )
    if len(key) < 16:
        raise PrivacyError(f"pseudonymization key is {len(key)} bytes; use at least 16")
    return key


def pseudonymize(ids: pd.Series | pd.Index | Iterable[Any], key: bytes) -> pd.Series:
    """Replace identifiers by ``HMAC-SHA256(key, id)`` truncated to 20 hex characters.

    Missing ids stay missing. Each *distinct* id is hashed once and the result mapped back, so
    the cost is O(distinct ids) HMACs plus an O(n) vectorized lookup.

    Examples
    --------
    >>> p = pseudonymize(pd.Series(["42", "42", None]), b"0123456789abcdef")
    >>> p.iloc[0] == p.iloc[1], p.iloc[2] is None or pd.isna(p.iloc[2])
    (True, True)
    """
    s = pd.Series(ids, dtype="string") if not isinstance(ids, pd.Series) else ids.astype("string")
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    hashed = np.array(
        [hmac.new(key, str(u).encode("utf-8"), hashlib.sha256).hexdigest()[:ID_LENGTH] for u in uniques],
        dtype=object,
    )
    out = np.where(codes >= 0, hashed[np.maximum(codes, 0)] if len(hashed) else None, None)
    return pd.Series(out, index=s.index, dtype="string", name=s.name)


def pseudonymize_frame(df: pd.DataFrame, key: bytes, column: str = "customer_id") -> pd.DataFrame:
    """A copy of ``df`` with ``column`` pseudonymized (see :func:`pseudonymize`)."""
    out = df.copy()
    if column in out.columns:
        out[column] = pseudonymize(out[column], key)
    elif out.index.name == column:
        out.index = pd.Index(pseudonymize(out.index.to_series(), key), name=column)
    return out


def consented(
    customer_ids: pd.Index | pd.Series,
    customers: pd.DataFrame | None,
    purpose: str = "profiling",
) -> tuple[pd.Index, int]:
    """The customers among ``customer_ids`` who consented to ``purpose``, and how many did not.

    Parameters
    ----------
    customer_ids : Index or Series
        Candidate customer ids.
    customers : DataFrame or None
        The customers table with ``customer_id`` and ``consent_<purpose>``. Without the table or
        the column, the defaults of the data contract apply: profiling is allowed (legitimate
        interest on pseudonymous data), marketing is not (it needs an explicit yes).
    purpose : {"profiling", "marketing"}

    Returns
    -------
    allowed : Index
    n_excluded : int
    """
    if purpose not in ("profiling", "marketing"):
        raise ValueError(f"purpose must be 'profiling' or 'marketing', got {purpose!r}")
    ids = pd.Index(customer_ids, name="customer_id").astype("string")
    column = f"consent_{purpose}"
    default = purpose == "profiling"
    if customers is None or column not in customers.columns:
        allowed = ids if default else ids[:0]
    else:
        flags = customers.assign(customer_id=customers["customer_id"].astype("string")).set_index("customer_id")[column]
        flags = flags[~flags.index.duplicated()]
        ok = flags.reindex(ids).fillna(default).astype(bool).to_numpy()
        allowed = ids[ok]
    return allowed, int(len(ids) - len(allowed))


def suppress_small_groups(
    table: pd.DataFrame,
    count_column: str,
    min_size: int = 10,
    *,
    label: str = "suppressed (fewer than {n})",
) -> pd.DataFrame:
    """Hide the rows of an aggregate table whose group is smaller than ``min_size``.

    The values of such rows are blanked (NaN) except the index, and the count itself is replaced
    by missing; a column ``note`` says why. Totals computed elsewhere remain correct; only the
    small group's details disappear from what a stakeholder sees.

    Examples
    --------
    >>> t = pd.DataFrame({"customers": [120, 4], "revenue": [1e4, 50.0]}, index=["A", "B"])
    >>> suppress_small_groups(t, "customers", 10)["revenue"].isna().tolist()
    [False, True]
    """
    if min_size < 1:
        raise ValueError("min_size must be at least 1")
    out = table.copy()
    small = out[count_column].fillna(0).to_numpy() < min_size
    if small.any():
        for col in out.columns:
            if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
                out[col] = out[col].astype("float64").mask(small)
            else:
                out[col] = out[col].astype(object).mask(small, "")
        out["note"] = np.where(small, label.format(n=min_size), "")
    return out


def scan_for_pii(folder: str | Path, needles: Iterable[str]) -> pd.DataFrame:
    """Search every file below ``folder`` for any of ``needles`` (case-insensitive).

    Returns a DataFrame with columns ``file, needle`` (empty when clean). Used by the test that
    renders the full report on data seeded with recognizable names, e-mails and phone numbers.
    """
    needles = [n for n in {str(n) for n in needles} if n]
    lowered = [(n, n.lower().encode("utf-8")) for n in needles]
    hits = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        content = path.read_bytes().lower()
        hits.extend((str(path), n) for n, b in lowered if b in content)
    return pd.DataFrame(hits, columns=["file", "needle"])


class SuppressionList:
    """Pseudonymous ids of erased customers; applied at every load so they never come back.

    Stored one id per line in a text file (default ``data/privacy/suppression.txt``).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def ids(self) -> set[str]:
        """The suppressed pseudonymous ids."""
        if not self.path.is_file():
            return set()
        return {line.strip() for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()}

    def add(self, pseudonymous_id: str) -> None:
        """Append an id (idempotent)."""
        if pseudonymous_id in self.ids():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(pseudonymous_id + "\n")


def _rewrite_without(path: Path, customer_id: str) -> int:
    """Remove the customer's rows from a CSV/Parquet table with a ``customer_id`` column."""
    if path.suffix == ".parquet":
        df = pd.read_parquet(path)
    else:
        df = pd.read_csv(path, dtype={"customer_id": "string"})
    if "customer_id" not in df.columns:
        return 0
    keep = df["customer_id"].astype("string") != customer_id
    removed = int((~keep).sum())
    if removed:
        tmp = path.with_name(path.name + ".tmp")
        if path.suffix == ".parquet":
            df[keep].to_parquet(tmp, index=False)
        else:
            df[keep].to_csv(tmp, index=False)
        os.replace(tmp, path)
    return removed


def erase_customer(
    pseudonymous_id: str,
    *,
    data_dirs: Iterable[str | Path],
    report_dirs: Iterable[str | Path] = (),
    suppression: SuppressionList,
    audit_log: str | Path,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Erase one customer (by pseudonymous id) from stored tables and derived artifacts.

    * Every CSV/Parquet file below ``data_dirs`` with a ``customer_id`` column (processed tables,
      segment assignments, offer lists, scores) is rewritten without the customer's rows.
    * Every file below ``report_dirs`` that mentions the id (e.g. an internal customer-profile
      run) is deleted; stakeholder reports never list individuals, so they are not affected.
    * The id joins the suppression list, so a later load from an older raw file drops it.
    * One JSON line is appended to ``audit_log``: id, UTC time, what was removed.

    Raw source files are not modified (they belong to the source system); the suppression list
    guarantees they cannot bring the customer back.

    Returns
    -------
    DataFrame
        ``path, action, rows`` for every artifact touched.
    """
    now = now or dt.datetime.now(dt.UTC)
    actions = []
    for root in data_dirs:
        for path in sorted(Path(root).rglob("*")):
            if path.suffix in (".csv", ".parquet") and path.is_file():
                n = _rewrite_without(path, pseudonymous_id)
                if n:
                    actions.append((str(path), "rows removed", n))
    needle = pseudonymous_id.encode("utf-8")
    for root in report_dirs:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
                path.unlink()
                actions.append((str(path), "file deleted", 0))
    suppression.add(pseudonymous_id)
    actions.append((str(suppression.path), "added to suppression list", 1))
    removed = pd.DataFrame(actions, columns=["path", "action", "rows"])
    audit = Path(audit_log)
    audit.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "customer_id": pseudonymous_id,
        "time": now.isoformat(timespec="seconds"),
        "removed": removed.to_dict(orient="records"),
    }
    with audit.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    return removed


def _records(df: pd.DataFrame | None, customer_id: str) -> list[dict[str, Any]]:
    if df is None:
        return []
    if "customer_id" in df.columns:
        rows = df[df["customer_id"].astype("string") == customer_id]
    elif df.index.name == "customer_id":
        rows = df[df.index.astype("string") == customer_id].reset_index()
    else:
        return []
    return json.loads(rows.to_json(orient="records", date_format="iso"))


def export_customer(customer_id: str, tables: Mapping[str, pd.DataFrame | None]) -> dict[str, Any]:
    """Everything held or derived about one customer, as a JSON-ready dict (right of access).

    Parameters
    ----------
    customer_id : str
        The (pseudonymous) customer id.
    tables : mapping of name -> DataFrame
        Source rows and derived tables, each with a ``customer_id`` column or index, e.g.
        ``transactions, customers, pii, events, feedback, features, segments, scores,
        recommendations, offers``.

    Returns
    -------
    dict
        ``{"customer_id", "tables": {name: [row, ...]}}``; tables without the customer are empty
        lists (so the subject sees what kinds of data exist).

    Raises
    ------
    KeyError
        When the customer appears in none of the tables.
    """
    out = {name: _records(df, customer_id) for name, df in tables.items()}
    if not any(out.values()):
        raise KeyError(f"customer {customer_id!r} not found in any of {sorted(tables)}")
    return {"customer_id": customer_id, "tables": out}


_PII_PATTERNS = (
    (r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+", "[email]"),
    (r"https?://\S+|www\.\S+", "[url]"),
    (r"\+?\d[\d\s().-]{7,}\d", "[phone]"),
    (r"\b\d{6,}\b", "[number]"),
)


def scrub_pii(text: pd.Series) -> pd.Series:
    """Replace e-mail addresses, URLs, phone numbers and long digit runs in free text by
    placeholders (vectorized regular expressions; the one place where text is scrubbed).

    Examples
    --------
    >>> scrub_pii(pd.Series(["mail me: ann.lee@example.com or +44 7700 900123"])).iloc[0]
    'mail me: [email] or [phone]'
    """
    out = text.astype("string")
    for pattern, placeholder in _PII_PATTERNS:
        out = out.str.replace(pattern, placeholder, regex=True)
    return out
