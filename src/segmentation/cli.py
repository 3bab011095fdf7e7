"""Command line: ``segmentation run`` (the scheduled report run) and the privacy requests.

Examples
--------
    segmentation run --config configs/default.yaml --set as_of=2026-02-01 --set n_customers=5000
    segmentation run --config configs/default.yaml --notebooks 01 02
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``segmentation`` command."""
    parser = argparse.ArgumentParser(prog="segmentation", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute the report notebooks and publish HTML reports")
    run.add_argument("--config", default=None, help="YAML run config (default: built-in defaults)")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a notebook parameter (repeatable), e.g. --set as_of=2026-02-01")
    run.add_argument("--output", default=None, help="output folder (default: the config's, or reports/)")
    run.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                     help="run only these notebooks (file names, stems or NN prefixes)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``segmentation`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from segmentation.runner import main_run

        return main_run(args)
    return 2  # pragma: no cover - argparse enforces a known command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
