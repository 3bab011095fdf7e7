"""Privacy by design: pseudonymization, consent, small-group protection, access, erasure.

What this module guarantees (see PRIVACY.md for the full statement):

* **Pseudonymization** -- customer identifiers, normalised first
  (:func:`segmentation.data.normalize_customer_ids`), are replaced by a keyed hash
  (HMAC-SHA256, truncated to 20 hex characters = 80 bits) with a secret from the environment
  variable ``SEGMENTATION_PSEUDONYM_KEY`` or a key file named by
  ``SEGMENTATION_PSEUDONYM_KEY_FILE`` (kept outside the repository). Outside the synthetic demo
  store the key must have at least 32 characters and must not be the public demo key.
* **Consent** -- :func:`consented` keeps only customers who gave consent for every purpose asked
  (``profiling``, ``marketing``) and says how many were left out.
* **Small groups** -- :func:`suppress_small_groups` (one row per group) and
  :func:`suppress_cells` (cross-tables, share and lift tables) hide every value resting on fewer
  than ``min_group_size`` customers, plus complementary cells so that a hidden value cannot be
  worked out from the totals; :func:`scan_for_pii` checks rendered output for identifying strings.
* **Erasure** -- :func:`erase_customer` removes a customer from processed tables and from run
  folders (result and stakeholder tables, pages that mention them, links to those pages),
  records the pseudonymous id in a suppression list that every later load applies, and appends
  an audit line; :func:`locate_customer` lists where a customer appears without changing anything.
* **Access** -- :func:`export_customer` gathers the rows of named tables about one customer.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "KEY_ENV",
    "KEY_FILE_ENV",
    "DEMO_KEY",
    "MIN_KEY_LENGTH",
    "REMOVED_TEXT",
    "PrivacyError",
    "load_key",
    "pseudonymize",
    "pseudonymize_frame",
    "consented",
    "suppress_small_groups",
    "suppress_cells",
    "SuppressedCells",
    "scan_for_pii",
    "SuppressionList",
    "locate_customer",
    "is_customer_section",
    "erase_customer",
    "export_customer",
    "scrub_pii",
]

KEY_ENV = "SEGMENTATION_PSEUDONYM_KEY"
KEY_FILE_ENV = "SEGMENTATION_PSEUDONYM_KEY_FILE"
#: Public key for demo runs on the synthetic store only. Refused for any other data.
DEMO_KEY = b"segmentation-demo-key--not-a-secret"
#: Shortest key accepted outside the synthetic store (characters).
MIN_KEY_LENGTH = 32
#: Fewest different characters a key must contain ("aaaa..." is not a secret).
_MIN_KEY_VARIETY = 8
_MAKE_KEY = 'python -c "import secrets; print(secrets.token_urlsafe(48))"'
ID_LENGTH = 20


class PrivacyError(RuntimeError):
    """A privacy rule would be broken (no key or a weak key, no consent, identifying output)."""


# --------------------------------------------------------------------------------------------
# keys and pseudonyms
# --------------------------------------------------------------------------------------------
def load_key(*, demo: bool = False, key_file: str | Path | None = None) -> bytes:
    """The pseudonymization secret.

    Looked up in order: ``key_file``, the file named by ``$SEGMENTATION_PSEUDONYM_KEY_FILE``,
    the value of ``$SEGMENTATION_PSEUDONYM_KEY``. With none of them, a demo run
    (``demo=True``, the synthetic store) gets :data:`DEMO_KEY`; any other run raises.

    Parameters
    ----------
    demo : bool
        True only for the synthetic demo store: any configured key is accepted and, without one,
        the public :data:`DEMO_KEY` is used.
    key_file : str or Path, optional
        A file holding the key (surrounding whitespace ignored).

    Raises
    ------
    PrivacyError
        For a non-demo run: no key configured, a key shorter than :data:`MIN_KEY_LENGTH`
        characters or with fewer than 8 different characters, or the public demo key. Always:
        a key file that does not exist or lies inside this project's folder (it would end up in
        version control). The message says how to create a good key.
    """
    path = key_file or os.environ.get(KEY_FILE_ENV)
    if path:
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise PrivacyError(f"pseudonymization key file {path} does not exist; create one with {_MAKE_KEY} > {path}")
        project = Path(__file__).resolve().parents[2]
        if project in path.parents:
            raise PrivacyError(
                f"pseudonymization key file {path} is inside the project folder {project}; "
                "keep it outside the repository (e.g. ~/.config/segmentation/key)"
            )
        key, where = path.read_bytes().strip(), f"key file {path}"
    elif os.environ.get(KEY_ENV):
        key, where = os.environ[KEY_ENV].encode("utf-8"), f"${KEY_ENV}"
    elif demo:
        return DEMO_KEY
    else:
        raise PrivacyError(
            f"no pseudonymization key: set {KEY_ENV} to a secret of at least {MIN_KEY_LENGTH} characters "
            f"(create one with {_MAKE_KEY}), or {KEY_FILE_ENV} to a file holding it outside the repository; "
            "only the synthetic demo store runs without one"
        )
    if not demo:
        problem = None
        if key == DEMO_KEY:
            problem = "is the public demo key, which anybody can read in the source code"
        elif len(key.strip()) < MIN_KEY_LENGTH:
            problem = f"has {len(key.strip())} characters; at least {MIN_KEY_LENGTH} are needed"
        elif len(set(key)) < _MIN_KEY_VARIETY:
            problem = f"uses only {len(set(key))} different characters"
        if problem:
            raise PrivacyError(f"the pseudonymization key in {where} {problem}; create a good key with {_MAKE_KEY} "
                               "and keep it outside the repository")
    return key


def pseudonymize(ids: pd.Series | pd.Index | Iterable[Any], key: bytes) -> pd.Series:
    """Replace identifiers by ``HMAC-SHA256(key, id)`` truncated to 20 hex characters.

    Missing ids stay missing. Each *distinct* id is hashed once and the result mapped back, so
    the cost is O(distinct ids) HMACs plus an O(n) vectorized lookup. Ids are hashed as given:
    normalise them first (:func:`segmentation.data.normalize_customer_ids`).

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


# --------------------------------------------------------------------------------------------
# consent
# --------------------------------------------------------------------------------------------
_PURPOSES = ("profiling", "marketing")


def consented(
    customer_ids: pd.Index | pd.Series,
    customers: pd.DataFrame | None,
    purpose: str | Sequence[str] = "profiling",
) -> tuple[pd.Index, int]:
    """The customers among ``customer_ids`` who consented to ``purpose``, and how many did not.

    Parameters
    ----------
    customer_ids : Index or Series
        Candidate customer ids.
    customers : DataFrame or None
        The customers table with ``customer_id`` and ``consent_<purpose>`` (booleans, as
        ``data.load_store`` parses them). Without the table or the column, the defaults of the
        data contract apply: profiling is allowed (legitimate interest on pseudonymous data),
        marketing is not (it needs an explicit yes).
    purpose : {"profiling", "marketing"} or a sequence of them
        With several purposes a customer must have consented to every one. A list built from a
        customer profile and used for marketing (offers, win-back, senior discount, key dates)
        needs ``("profiling", "marketing")``.

    Returns
    -------
    allowed : Index
    n_excluded : int

    Raises
    ------
    ValueError
        An unknown purpose, or a consent column holding text such as "yes"/"no" instead of
        booleans (``bool("no")`` is True: reading it as given would invent consent).
    """
    purposes = (purpose,) if isinstance(purpose, str) else tuple(purpose)
    if not purposes or any(p not in _PURPOSES for p in purposes):
        raise ValueError(f"purpose must be 'profiling', 'marketing' or a list of them, got {purpose!r}")
    ids = pd.Index(customer_ids, name="customer_id").astype("string")
    ok = np.ones(len(ids), dtype=bool)
    for p in purposes:
        column = f"consent_{p}"
        default = p == "profiling"
        if customers is None or column not in customers.columns:
            ok &= default
            continue
        _check_flags(customers[column], column)
        flags = customers.assign(customer_id=customers["customer_id"].astype("string")).set_index("customer_id")[column]
        flags = flags[~flags.index.duplicated()]
        ok &= flags.reindex(ids).astype("boolean").fillna(default).to_numpy(dtype=bool)
    allowed = ids[ok]
    return allowed, int(len(ids) - len(allowed))


def _check_flags(flags: pd.Series, column: str) -> None:
    """Refuse consent columns that are not booleans (or 0/1)."""
    if pd.api.types.is_bool_dtype(flags):
        return
    values = flags.dropna()
    if pd.api.types.is_numeric_dtype(values) and values.isin([0, 1]).all():
        return
    if pd.api.types.infer_dtype(values, skipna=True) in ("boolean", "empty"):
        return
    examples = list(pd.unique(values.astype("string")))[:5]
    raise ValueError(f"consent column {column!r} holds {examples} instead of true/false; parse consent flags at load "
                     "(segmentation.data.load_store reads the usual spellings) before asking who consented")


# --------------------------------------------------------------------------------------------
# small groups
# --------------------------------------------------------------------------------------------
def suppress_small_groups(
    table: pd.DataFrame,
    count_column: str,
    min_group_size: int = 10,
    *,
    total_shown: bool = True,
    label: str = "suppressed (fewer than {n})",
    complement_label: str = "hidden so that a small group cannot be worked out from the total",
) -> pd.DataFrame:
    """Hide the rows of an aggregate table whose group is smaller than ``min_group_size``.

    The values of such rows are blanked (NaN; text becomes ``""``) and a column ``note`` says
    why. With ``total_shown`` (the default: a report nearly always shows or implies the overall
    count, e.g. shares that add up to 100%), when exactly one non-empty group is hidden the
    next smallest group is hidden too, so the hidden one cannot be worked out as the total minus
    the rest.

    Parameters
    ----------
    table : DataFrame
        One row per group.
    count_column : str
        Number of customers (or other units) in each group.
    min_group_size : int
        Smallest group shown.
    total_shown : bool
        Whether the table's total is shown or implied anywhere (then complementary suppression).
    label, complement_label : str
        ``note`` text for a small group (``{n}`` = ``min_group_size``) and for a complement.

    Returns
    -------
    DataFrame
        The table with hidden rows blanked, plus ``note`` when any row is hidden.

    Examples
    --------
    >>> t = pd.DataFrame({"customers": [120, 40, 4], "revenue": [1e4, 900.0, 50.0]}, index=["A", "B", "C"])
    >>> suppress_small_groups(t, "customers", 10)["revenue"].isna().tolist()
    [False, True, True]
    >>> suppress_small_groups(t, "customers", 10, total_shown=False)["revenue"].isna().tolist()
    [False, False, True]
    """
    if min_group_size < 1:
        raise ValueError("min_group_size must be at least 1")
    counts = pd.to_numeric(table[count_column], errors="coerce").fillna(0).to_numpy(dtype=float)[None, :]
    small = counts < min_group_size
    hidden = _complementary(counts, small, row_totals=total_shown, column_totals=False)
    small, hidden = small[0], hidden[0]
    out = table.copy()
    if hidden.any():
        for col in out.columns:
            if pd.api.types.is_numeric_dtype(out[col]) and not pd.api.types.is_bool_dtype(out[col]):
                out[col] = out[col].astype("float64").mask(hidden)
            else:
                out[col] = out[col].astype(object).mask(hidden, "")
        out["note"] = np.where(small, label.format(n=min_group_size), np.where(hidden, complement_label, ""))
    return out


@dataclass(frozen=True)
class SuppressedCells:
    """Result of :func:`suppress_cells`.

    Attributes
    ----------
    table : DataFrame
        The values with every hidden cell set to NaN.
    hidden : DataFrame of bool
        True where a cell is hidden (small or complementary); apply it to any other table of the
        same shape with :meth:`apply`.
    complementary : DataFrame of bool
        True where a cell is hidden only so that another one cannot be worked out from totals.
    recoverable : DataFrame of bool
        Hidden cells that the shown totals still determine exactly (only possible when a line
        has a single cell, e.g. a one-column table with row totals): do not show those totals.
    note : str
        Plain-language statement for the report ("" when nothing is hidden).
    """

    table: pd.DataFrame
    hidden: pd.DataFrame
    complementary: pd.DataFrame
    recoverable: pd.DataFrame
    note: str

    def apply(self, other: pd.DataFrame) -> pd.DataFrame:
        """``other`` (same rows and columns, e.g. the shares or lifts behind these counts) with
        the same cells hidden."""
        return other.mask(self.hidden.reindex(index=other.index, columns=other.columns, fill_value=False))


def suppress_cells(
    counts: pd.DataFrame,
    min_group_size: int = 10,
    *,
    values: pd.DataFrame | None = None,
    group_sizes: pd.Series | None = None,
    row_totals: bool = True,
    column_totals: bool = True,
) -> SuppressedCells:
    """Hide every cell of a cross-table that rests on fewer than ``min_group_size`` customers,
    with complementary suppression so no hidden cell can be worked out from the totals.

    Use it for counts, shares and lifts alike (customers per persona x country, category mix
    per segment, lift of a category in a persona): ``counts`` holds the number of customers
    behind each cell, ``values`` what is shown.

    Rules, in order:

    1. *Small cells*: a cell with 0 < count < ``min_group_size`` is hidden (a zero is shown: it
       describes nobody). With ``group_sizes`` (the customers of each row group, e.g. the
       denominators of shares), every cell of a row whose group is smaller is hidden, zeros too.
    2. *Complementary cells*: for each line whose total is shown (a row with ``row_totals``, a
       column with ``column_totals``; a share table whose rows add up to 100% has row totals)
       that holds exactly one hidden non-empty cell, the smallest other non-empty cell of that
       line is hidden too (a zero only when nothing else is left); repeated until every line is
       protected.
    3. *Cycles*: with both row and column totals, a hidden cell could still be determined by
       combining several lines (it is then a "bridge" of the hidden pattern). Such a cell gets
       the cheapest rectangle of hidden cells through it, and rule 2 is applied again. The
       check is exact (a cell is determined by the totals exactly when it lies on no cycle of
       hidden cells), so :attr:`SuppressedCells.recoverable` is empty unless a line has a
       single cell.

    The complements are chosen greedily (smallest counts first), which hides a few more cells
    than an optimal pattern in some tables but never fewer than needed.

    Parameters
    ----------
    counts : DataFrame
        Customers behind each cell (non-negative; NaN read as 0).
    min_group_size : int
        Smallest number of customers a shown value may rest on.
    values : DataFrame, optional
        Values to show, same index and columns as ``counts`` (default: ``counts``).
    group_sizes : Series, optional
        Customers per row group, indexed like ``counts``' rows.
    row_totals, column_totals : bool
        Whether the sums along rows / down columns are shown or implied anywhere in the report.

    Returns
    -------
    SuppressedCells

    Examples
    --------
    >>> counts = pd.DataFrame({"a": [50, 3], "b": [40, 30], "c": [60, 25]}, index=["x", "y"])
    >>> out = suppress_cells(counts, 10)
    >>> int(out.hidden.to_numpy().sum()), bool(out.hidden.loc["y", "a"])
    (4, True)
    """
    if min_group_size < 1:
        raise ValueError("min_group_size must be at least 1")
    if values is not None and (not values.index.equals(counts.index) or not values.columns.equals(counts.columns)):
        raise ValueError("values must have the same index and columns as counts "
                         f"(counts: {counts.shape}, values: {values.shape}); align them with .reindex first")
    c = counts.apply(pd.to_numeric, errors="coerce").fillna(0).to_numpy(dtype=float)
    if (c < 0).any():
        raise ValueError("counts must be numbers of customers (non-negative); found negative values")
    small = (c > 0) & (c < min_group_size)
    if group_sizes is not None:
        sizes = pd.to_numeric(group_sizes.reindex(counts.index), errors="coerce").fillna(0).to_numpy(dtype=float)
        small |= (sizes < min_group_size)[:, None]
    hidden = _complementary(c, small, row_totals=row_totals, column_totals=column_totals)
    if row_totals and column_totals:
        for _ in range(c.size):  # each pass adds hidden cells; ends long before this bound
            determined = _determined(hidden, row_totals, column_totals) & (c > 0)
            fixable = determined & ~_single_cell_lines(c.shape, row_totals, column_totals)
            if not fixable.any():
                break
            i, j = map(int, np.argwhere(fixable)[0])
            if not _hide_rectangle(c, hidden, i, j):
                break
            hidden = _complementary(c, hidden, row_totals=True, column_totals=True)
    recoverable = _determined(hidden, row_totals, column_totals) & (c > 0)
    complementary = hidden & ~small

    def frame(mask: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(mask, index=counts.index, columns=counts.columns)

    shown = (values if values is not None else counts).astype("float64").mask(frame(hidden))
    n_small, n_comp = int(small.sum()), int(complementary.sum())
    note = ""
    if n_small or n_comp:
        note = (f"{n_small} cell(s) resting on fewer than {min_group_size} customers are hidden"
                + (f", and {n_comp} more so that they cannot be worked out from the totals" if n_comp else "") + ".")
    if recoverable.any():
        note += (f" {int(recoverable.sum())} hidden cell(s) equal their line's total (a line with one cell): "
                 "do not show that total.")
    return SuppressedCells(table=shown, hidden=frame(hidden), complementary=frame(complementary),
                           recoverable=frame(recoverable), note=note)


def _complementary(counts: np.ndarray, hidden: np.ndarray, *, row_totals: bool, column_totals: bool) -> np.ndarray:
    """Add complementary cells until no line with a shown total has a lone hidden non-empty cell."""
    hidden = hidden.copy()
    positive = counts > 0
    for _ in range(hidden.size + 1):
        changed = False
        for on, c, h, p in ((row_totals, counts, hidden, positive), (column_totals, counts.T, hidden.T, positive.T)):
            if not on:
                continue
            n_hidden, n_hidden_pos = h.sum(axis=1), (h & p).sum(axis=1)
            visible_pos = ~h & p
            has_visible_pos = visible_pos.any(axis=1)
            exposed = (n_hidden_pos >= 1) & ((n_hidden == 1) | ((n_hidden_pos == 1) & has_visible_pos))
            candidates = np.where(has_visible_pos[:, None], np.where(visible_pos, c, np.inf), np.where(~h, c, np.inf))
            best = candidates.argmin(axis=1)
            add = exposed & np.isfinite(candidates.min(axis=1))
            if add.any():
                rows = np.nonzero(add)[0]
                h[rows, best[rows]] = True  # h is hidden or a view of it
                changed = True
        if not changed:
            break
    return hidden


def _determined(hidden: np.ndarray, row_totals: bool, column_totals: bool) -> np.ndarray:
    """Hidden cells whose value the shown line totals fix exactly (given the shown cells).

    With totals of one kind only, a cell is determined when it is the only hidden cell of its
    line. With both, the hidden values satisfy one equation per row and per column; seen as a
    bipartite graph (rows and columns as nodes, hidden cells as edges) the solutions differ by
    alternating sums around cycles, so a cell is determined exactly when its edge lies on no
    cycle: a bridge (found in O(cells) with Tarjan's algorithm)."""
    if row_totals and column_totals:
        return _bridges(hidden)
    if row_totals:
        return hidden & (hidden.sum(axis=1) == 1)[:, None]
    if column_totals:
        return hidden & (hidden.sum(axis=0) == 1)[None, :]
    return np.zeros_like(hidden)


def _bridges(hidden: np.ndarray) -> np.ndarray:
    """Hidden cells that are bridges of the row-column graph of hidden cells (iterative DFS)."""
    n_rows, n_cols = hidden.shape
    cells = np.argwhere(hidden)
    adjacency: list[list[tuple[int, int]]] = [[] for _ in range(n_rows + n_cols)]
    for k, (i, j) in enumerate(cells.tolist()):
        adjacency[i].append((n_rows + j, k))
        adjacency[n_rows + j].append((i, k))
    order = [-1] * (n_rows + n_cols)
    low = [0] * (n_rows + n_cols)
    bridge = np.zeros(len(cells), dtype=bool)
    clock = 0
    for start in range(n_rows + n_cols):
        if order[start] != -1 or not adjacency[start]:
            continue
        order[start] = low[start] = clock
        clock += 1
        stack = [(start, -1, iter(adjacency[start]))]
        while stack:
            node, via, edges = stack[-1]
            for nxt, k in edges:
                if k == via:
                    continue
                if order[nxt] == -1:
                    order[nxt] = low[nxt] = clock
                    clock += 1
                    stack.append((nxt, k, iter(adjacency[nxt])))
                    break
                low[node] = min(low[node], order[nxt])
            else:
                stack.pop()
                if stack:
                    parent = stack[-1][0]
                    low[parent] = min(low[parent], low[node])
                    if low[node] > order[parent]:
                        bridge[via] = True
    out = np.zeros_like(hidden)
    out[cells[bridge, 0], cells[bridge, 1]] = True
    return out


def _single_cell_lines(shape: tuple[int, int], row_totals: bool, column_totals: bool) -> np.ndarray:
    """Cells that are alone in a line with a shown total (their total is the cell itself)."""
    alone = np.zeros(shape, dtype=bool)
    if row_totals and shape[1] == 1:
        alone[:] = True
    if column_totals and shape[0] == 1:
        alone[:] = True
    return alone


def _hide_rectangle(counts: np.ndarray, hidden: np.ndarray, i: int, j: int) -> bool:
    """Hide the cheapest rectangle (i, j), (i, q), (p, j), (p, q) so cell (i, j) lies on a cycle.

    Cost of a cell: 0 when already hidden, its count when non-empty, a large penalty when empty
    (an empty complement is weak protection). Returns False when no rectangle exists."""
    n_rows, n_cols = counts.shape
    if n_rows < 2 or n_cols < 2:
        return False
    cost = np.where(hidden, 0.0, np.where(counts > 0, counts, 1e12))
    total = cost[i, :][None, :] + cost[:, j][:, None] + cost  # (p, q): cost(i,q) + cost(p,j) + cost(p,q)
    total[i, :] = np.inf
    total[:, j] = np.inf
    p, q = np.unravel_index(np.argmin(total), total.shape)
    hidden[i, q] = hidden[p, j] = hidden[p, q] = True
    return True


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


# --------------------------------------------------------------------------------------------
# erasure
# --------------------------------------------------------------------------------------------
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


#: What replaces a link to a page deleted by an erasure.
REMOVED_TEXT = "removed on request"
#: What replaces any other mention of an erased id in a text file of a run folder.
_REDACTED = "[erased]"
_TEXT_SUFFIXES = {".html", ".htm", ".ipynb", ".json", ".jsonl", ".csv", ".tsv", ".txt", ".md", ".yaml", ".yml",
                  ".svg", ".xml", ".log"}
_PAGE_SUFFIXES = {".html", ".htm", ".ipynb"}
_INDEX_PAGE = "index.html"
_LINK = re.compile(r"""<a\b[^>]*?\bhref\s*=\s*(["'])(.*?)\1[^>]*>(.*?)</a\s*>""", re.IGNORECASE | re.DOTALL)
_HIT_COLUMNS = ["path", "kind", "rows"]


def _files(root: Path) -> list[Path]:
    """Regular files below ``root``, sorted; symbolic links are neither followed nor listed."""
    out = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not Path(folder, d).is_symlink())
        out.extend(Path(folder, n) for n in names if not Path(folder, n).is_symlink())
    return sorted(out)


def _csv_read(path: Path) -> pd.DataFrame | None:
    """A CSV as text cells (nothing parsed, so writing it back keeps every other row's bytes);
    row 0 is the header. None for an empty file."""
    try:
        return pd.read_csv(path, header=None, dtype=str, na_filter=False, keep_default_na=False, encoding="utf-8")
    except pd.errors.EmptyDataError:
        return None


def _table_rows(path: Path, customer_id: str, *, drop: bool = False) -> int:
    """Rows of a Parquet/CSV table whose ``customer_id`` (column, or Parquet index) equals the id;
    with ``drop`` the file is rewritten without them (atomically). 0 when there is no such column."""
    tmp = path.with_name(f".{path.name}.erasing")
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if "customer_id" not in pq.read_schema(path).names:
            return 0
        table = pq.read_table(path) if drop else pq.read_table(path, columns=["customer_id"])
        match = pc.fill_null(pc.equal(pc.cast(table.column("customer_id"), pa.string()), customer_id), False)
        n = int(pc.sum(match).as_py() or 0)
        if drop and n:
            pq.write_table(table.filter(pc.invert(match)), tmp)
            os.replace(tmp, path)
        return n
    cells = _csv_read(path)
    if cells is None or cells.empty:
        return 0
    header = cells.iloc[0].tolist()
    if "customer_id" not in header:
        return 0
    match = cells.iloc[:, header.index("customer_id")].eq(customer_id).to_numpy(copy=True)
    match[0] = False
    n = int(match.sum())
    if drop and n:
        with path.open("rb") as fh:
            terminator = "\r\n" if fh.readline().endswith(b"\r\n") else "\n"
        cells[~match].to_csv(tmp, header=False, index=False, lineterminator=terminator, encoding="utf-8")
        os.replace(tmp, path)
    return n


def _mentions(path: Path, needle: bytes) -> bool:
    return needle in path.read_bytes()


def _data_hits(data_dirs: Iterable[str | Path], customer_id: str) -> list[tuple[str, str, int]]:
    hits = []
    for root in data_dirs:
        if not Path(root).is_dir():
            continue
        for path in _files(Path(root)):
            if path.suffix in (".csv", ".parquet") and (n := _table_rows(path, customer_id)):
                hits.append((str(path), "rows", n))
    return hits


def _run_hits(run_dir: Path, customer_id: str) -> list[tuple[str, str, int]]:
    """Where a run folder holds the customer: table rows, pages mentioning them, other mentions."""
    needle = customer_id.encode("utf-8")
    hits = []
    for path in _files(run_dir):
        suffix = path.suffix.lower()
        if suffix in (".csv", ".parquet") and (n := _table_rows(path, customer_id)):
            hits.append((str(path), "rows", n))
        elif suffix in _TEXT_SUFFIXES and _mentions(path, needle):
            if suffix in _PAGE_SUFFIXES and path.name != _INDEX_PAGE:
                kind = "page"
            elif is_customer_section(path, customer_id):
                kind = "section"
            else:
                kind = "mention"
            hits.append((str(path), kind, 0))
    return hits


def is_customer_section(path: str | Path, customer_id: str) -> bool:
    """Whether ``path`` is the ``scalars.json`` of a results section about this one customer:
    ``{"scalars": {"customer_id": <id>, ...}, ...}`` (the single-customer profile); every table
    of that section then describes the customer."""
    path = Path(path)
    if path.name != "scalars.json":
        return False
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    scalars = content.get("scalars") if isinstance(content, dict) else None
    return isinstance(scalars, dict) and scalars.get("customer_id") == customer_id


def locate_customer(pseudonymous_id: str, *, data_dirs: Iterable[str | Path] = (),
                    run_dirs: Iterable[str | Path] = ()) -> pd.DataFrame:
    """Where one customer appears in stored tables and run folders (nothing is changed).

    Parameters
    ----------
    pseudonymous_id : str
    data_dirs : folders
        Processed data: every CSV/Parquet file below them with a ``customer_id`` column.
    run_dirs : folders
        Run folders: every CSV/Parquet table (``customer_id`` column or Parquet index), every page
        (``*.html``, ``*.ipynb``) and other text file (JSON, CSV, ...) that mentions the id.

    Returns
    -------
    DataFrame
        ``path, kind, rows``: ``kind`` is ``rows`` (``rows`` of a table are the customer's),
        ``page`` (a page that mentions them: deleted on erasure), ``section`` (a results
        section about this one customer, e.g. the profile: its ``scalars.json`` names them;
        emptied on erasure) or ``mention`` (another text file that mentions them, e.g.
        ``index.html`` or ``manifest.json``: the id is redacted).
    """
    hits = _data_hits(data_dirs, pseudonymous_id)
    for run in run_dirs:
        if Path(run).is_dir():
            hits.extend(_run_hits(Path(run), pseudonymous_id))
    return pd.DataFrame(hits, columns=_HIT_COLUMNS)


def _unlink_pages(page: Path, deleted: set[Path]) -> bool:
    """Replace links in ``page`` that point at a deleted page by plain text; True if changed."""
    text = page.read_text(encoding="utf-8", errors="surrogateescape")

    def _replace(match: re.Match) -> str:
        target = html.unescape(match.group(2)).split("#")[0].split("?")[0]
        if not target or "://" in target or target.startswith(("mailto:", "/")):
            return match.group(0)
        if (page.parent / target).resolve() in deleted:
            return f"{match.group(3)} ({REMOVED_TEXT})"
        return match.group(0)

    new = _LINK.sub(_replace, text)
    if new != text:
        page.write_text(new, encoding="utf-8", errors="surrogateescape")
    return new != text


def _refresh_manifest(run_dir: Path, deleted: set[Path]) -> bool:
    """Update ``manifest.json``: table hashes of rewritten tables, deleted tables and pages."""
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict):
        return False
    before = json.dumps(manifest, sort_keys=True)
    if isinstance(manifest.get("tables"), dict):
        manifest["tables"] = {
            rel: hashlib.sha256((run_dir / rel).read_bytes()).hexdigest()
            for rel in manifest["tables"] if (run_dir / rel).is_file()
        }
    for entry in manifest.get("notebooks") or []:
        if isinstance(entry, dict) and entry.get("html") and (run_dir / entry["html"]).resolve() in deleted:
            entry.update(html=None, status=REMOVED_TEXT)
    if json.dumps(manifest, sort_keys=True) == before:
        return False
    path.write_text(json.dumps(manifest, indent=2, default=str), encoding="utf-8")
    return True


def _erase_from_run(run_dir: Path, customer_id: str, hits: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    actions: list[tuple[str, str, int]] = []
    deleted: set[Path] = set()
    for name, kind, _ in sorted(hits, key=lambda hit: hit[1] == "rows"):  # sections and pages first
        path = Path(name)
        if kind == "rows" and path.exists() and (n := _table_rows(path, customer_id, drop=True)):
            actions.append((name, "rows removed", n))
        elif kind == "section" and path.exists():
            for other in _files(path.parent):
                if other != path:
                    other.unlink()
                    actions.append((str(other), "table of a section about the customer deleted", 0))
            path.write_text(json.dumps({"scalars": {}, "notes": [REMOVED_TEXT]}, indent=2), encoding="utf-8")
            actions.append((name, f"section emptied ('{REMOVED_TEXT}')", 0))
        elif kind == "page" and path.exists():
            path.unlink()
            deleted.add(path.resolve())
            actions.append((name, "page deleted", 0))
            tables = run_dir / "tables" / path.stem  # the tables that page published describe the customer too
            if tables.is_dir() and not tables.is_symlink():
                shutil.rmtree(tables)
                actions.append((str(tables), "tables of the deleted page deleted", 0))
    if deleted:
        for page in _files(run_dir):
            if page.suffix.lower() in (".html", ".htm") and _unlink_pages(page, deleted):
                actions.append((str(page), f"links to deleted pages replaced by '{REMOVED_TEXT}'", 0))
    needle = customer_id.encode("utf-8")
    for path in _files(run_dir):
        if path.suffix.lower() in _TEXT_SUFFIXES and _mentions(path, needle):
            path.write_bytes(path.read_bytes().replace(needle, _REDACTED.encode("utf-8")))
            actions.append((str(path), f"mention replaced by '{_REDACTED}'", 0))
    if actions and _refresh_manifest(run_dir, deleted):
        actions.append((str(run_dir / "manifest.json"), "table hashes and page list updated", 0))
    return actions


def erase_customer(
    pseudonymous_id: str,
    *,
    data_dirs: Iterable[str | Path] = (),
    run_dirs: Iterable[str | Path] = (),
    suppression: SuppressionList,
    audit_log: str | Path,
    forced: bool = False,
    now: dt.datetime | None = None,
) -> pd.DataFrame:
    """Erase one customer (by pseudonymous id) from stored tables and run folders.

    * **Processed data**: every CSV/Parquet file below ``data_dirs`` with a ``customer_id``
      column (feature tables, segment assignments, offer lists) is rewritten without the
      customer's rows.
    * **Run folders** (``run_dirs``): every table (``results/*.parquet`` with a ``customer_id``
      index or column, ``tables/**/*.csv``) loses the customer's rows; a results section
      about this one customer (its ``scalars.json`` names them, e.g. the profile) is emptied;
      every page (``*.html``, ``*.ipynb``) that mentions the id is deleted together with the
      tables it published (``tables/<page>/``); links to deleted pages (``index.html`` and other pages) become the
      plain text "... (removed on request)"; any other mention in a text file (the run's
      parameters in ``index.html`` or ``manifest.json``) is replaced by ``[erased]``; the
      manifest's table hashes are updated. Rewrites are atomic per file.
    * The id joins the suppression list, so a later load from an older raw file drops it.
    * One JSON line is appended to ``audit_log``: id, UTC time, whether it was forced, and
      what was removed.

    Raw source files are not modified (they belong to the source system); the suppression list
    guarantees they cannot bring the customer back. Whether the id is known at all is the
    caller's question (:func:`locate_customer`; ``segmentation erase`` refuses unknown ids
    unless ``--force``).

    Returns
    -------
    DataFrame
        ``path, action, rows`` for every artifact touched.
    """
    now = now or dt.datetime.now(dt.UTC)
    actions = [(path, "rows removed", _table_rows(Path(path), pseudonymous_id, drop=True))
               for path, _, _ in _data_hits(data_dirs, pseudonymous_id)]
    for run in run_dirs:
        run = Path(run)
        if run.is_dir():
            actions.extend(_erase_from_run(run, pseudonymous_id, _run_hits(run, pseudonymous_id)))
    suppression.add(pseudonymous_id)
    actions.append((str(suppression.path), "added to suppression list", 1))
    removed = pd.DataFrame(actions, columns=["path", "action", "rows"])
    audit = Path(audit_log)
    audit.parent.mkdir(parents=True, exist_ok=True)
    line = {
        "customer_id": pseudonymous_id,
        "time": now.isoformat(timespec="seconds"),
        "forced": forced,
        "removed": removed.to_dict(orient="records"),
    }
    with audit.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
    return removed


# --------------------------------------------------------------------------------------------
# access
# --------------------------------------------------------------------------------------------
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
    """The rows of each table about one customer, as a JSON-ready dict (right of access).

    Parameters
    ----------
    customer_id : str
        The (pseudonymous) customer id.
    tables : mapping of name -> DataFrame
        Tables with a ``customer_id`` column or index, e.g. ``transactions, customers, pii,
        events, feedback`` or a run's result tables.

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
