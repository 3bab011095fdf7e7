"""The run registry: an append-only record of every run folder ever published.

Erasure (``segmentation erase``) must find a customer in every run folder that exists, including
runs written with ``--output`` or another config's ``output``. The runner therefore records each
published run folder here, and erasure and export read the record back.

The registry is a text file of JSON lines, one per published run (the runner's
``segmentation.runner.RUN_REGISTRY`` in ``data/privacy/``; the caller always passes the path)::

    {"path": "/abs/path/reports/2026-01-01_20260105T060000Z_3f2a9c", "run_id": "...", "time": "2026-01-05T06:00:12+00:00"}

Appends are safe from several processes at once: each record is written with one ``write`` call
on a file opened with ``O_APPEND`` (the kernel moves to the end and writes atomically for a line
this short), under an exclusive ``flock`` where the platform has one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

__all__ = ["RegistryError", "record_run", "known_runs"]

_MAX_LINE = 4000  # well below PIPE_BUF (4096) and any filesystem block: one write stays whole


class RegistryError(RuntimeError):
    """The registry file cannot be read (a damaged line) or a record cannot be written."""


def record_run(registry_path: str | Path, run_dir: str | Path, *, run_id: str | None = None,
               now: dt.datetime | None = None) -> dict[str, str]:
    """Append one published run folder to the registry.

    Parameters
    ----------
    registry_path : str or Path
        The registry file (created with its folder when missing), e.g. ``data/privacy/runs.txt``.
    run_dir : str or Path
        The published run folder; stored as an absolute path.
    run_id : str, optional
        Default: the folder's name.
    now : datetime, optional
        Time of the record (UTC); default: now.

    Returns
    -------
    dict
        The record written: ``path``, ``run_id``, ``time``.

    Raises
    ------
    RegistryError
        When the record would be too long to append atomically (a path over ~3,900 characters).
    """
    path = Path(run_dir).expanduser().resolve()
    record = {
        "path": str(path),
        "run_id": run_id or path.name,
        "time": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
    }
    line = (json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
    if len(line) > _MAX_LINE:
        raise RegistryError(f"run folder path too long to record atomically ({len(line)} bytes): {path}")
    registry = Path(registry_path)
    registry.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(registry, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        _lock(fd)
        written = os.write(fd, line)
        if written != len(line):  # pragma: no cover - a full disk
            raise RegistryError(f"could not append to the run registry {registry} (wrote {written} of {len(line)} bytes)")
    finally:
        os.close(fd)  # closing releases the lock
    return record


def known_runs(registry_path: str | Path) -> list[Path]:
    """Every run folder the registry records, in the order first recorded, without repeats.

    Folders recorded but since deleted or moved are included (callers check ``exists()``);
    a missing registry file means no run was recorded yet (empty list).

    Raises
    ------
    RegistryError
        On a line that is not a record (the file was edited or damaged), naming the line, so
        that erasure never silently skips a run folder.
    """
    registry = Path(registry_path)
    if not registry.is_file():
        return []
    seen: dict[Path, None] = {}
    for number, line in enumerate(registry.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            seen.setdefault(Path(json.loads(line)["path"]), None)
        except (ValueError, KeyError, TypeError) as exc:
            raise RegistryError(
                f"run registry {registry}, line {number} is not a run record: {line[:80]!r}; "
                'each line must be {"path": ..., "run_id": ..., "time": ...}: repair or remove that line'
            ) from exc
    return list(seen)


def _lock(fd: int) -> None:
    """Exclusive advisory lock on ``fd`` where the platform has ``fcntl`` (released on close)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: O_APPEND alone
        return
    fcntl.flock(fd, fcntl.LOCK_EX)
