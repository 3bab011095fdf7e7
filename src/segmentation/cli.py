"""Command line: ``segmentation run`` (the scheduled report run) and the privacy requests.

Examples
--------
    segmentation run --config configs/default.yaml --set as_of=2026-02-01 --set n_customers=5000
    segmentation run --config configs/default.yaml --notebooks 01 02
    segmentation export --raw-customer C00042 --output customer.json
    segmentation erase --customer 3f2a9c...
    segmentation check --source data/shop --as-of 2026-02-01
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
    run.add_argument("--internal", action="store_true",
                     help="internal run: the customer profile shows name and contact details; written under "
                          "<output>/INTERNAL-contains-personal-data/, never 'latest', never linked from stakeholder pages")
    run.add_argument("--notebooks", nargs="+", default=None, metavar="NN",
                     help="run only these notebooks (file names, stems or NN prefixes)")

    check = sub.add_parser("check", help="show what a data source maps to, its data quality and what each report can show")
    check.add_argument("--source", required=True, help="folder, file or YAML data config (or 'synthetic')")
    check.add_argument("--preset", default=None, help="built-in format: online_retail, cdnow, instacart, completejourney")
    check.add_argument("--as-of", default=None, help="analysis date (required except for the synthetic store)")
    check.add_argument("--columns", default=None, help="YAML column mapping for the transactions (your column: canonical)")
    check.add_argument("--duplicates", default=None, choices=("drop", "keep"), help="exact duplicate lines (default: drop)")

    for name, text in (("export", "write everything held or derived about one customer as JSON (right of access)"),
                       ("erase", "erase one customer from stored data and derived artifacts (right to erasure)")):
        p = sub.add_parser(name, help=text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--customer", help="pseudonymous customer id, as shown in reports")
        who.add_argument("--raw-customer", help="the customer's own id in the source data (pseudonymized with the key)")
        p.add_argument("--config", default=None,
                       help="YAML run config, the same as for `run` (default: configs/default.yaml): data source, "
                            "parameters and output folder")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
        if name == "export":
            p.add_argument("--output", default=None, help="JSON file (default: standard output)")
        else:
            p.add_argument("--force", action="store_true",
                           help="add the id to the suppression list even when it is found nowhere")
    return parser


def _one_line(exc: BaseException) -> str:
    """An exception as one line: its message, with the type for errors that are not ours."""
    from segmentation.data import DataContractError
    from segmentation.params import ParameterError
    from segmentation.privacy import PrivacyError
    from segmentation.registry import RegistryError
    from segmentation.requests import RequestError

    text = " ".join(str(exc).split())
    ours = (RequestError, PrivacyError, ParameterError, DataContractError, RegistryError, FileNotFoundError)
    return text if isinstance(exc, ours) and text else f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _request(args: argparse.Namespace) -> int:
    """``export`` and ``erase``: the run config as for ``run``; every failure is one line on
    standard error and exit status 1, never a traceback."""
    try:
        return _export(args) if args.command == "export" else _erase(args)
    except Exception as exc:  # a request must answer with one clear line, whatever failed
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _request_context(args: argparse.Namespace):
    """The run config and parameters, the pseudonymous id, the engine, and the run folders known."""
    from segmentation import requests, runner
    from segmentation.data import connect

    config = runner.load_config(args.config or requests.DEFAULT_CONFIG, args.set)
    params = config.parameters
    customer = requests.request_customer_id(customer=args.customer, raw_customer=args.raw_customer,
                                            synthetic=params.is_synthetic)
    runs, staging = requests.run_folders(config.output, runner.RUN_REGISTRY)
    con = connect(config.backend, **config.backend_options)
    return params, customer, con, runs, staging


def _load_source(params, con):
    """The source data exactly as a run loads it, with the erasure suppression list applied."""
    from segmentation import requests, runner

    return runner.load_run_store(params, con=con, suppression_list=requests.PRIVACY_DIR / "suppression.txt")


def _export(args: argparse.Namespace) -> int:
    import json

    from segmentation import requests

    params, customer, con, runs, _ = _request_context(args)
    record = requests.customer_record(_load_source(params, con), customer, run_dirs=runs)
    record["as_of"] = params.as_of
    text = json.dumps(record, indent=2, default=str, ensure_ascii=False)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def _erase(args: argparse.Namespace) -> int:
    from segmentation import requests

    params, customer, con, runs, staging = _request_context(args)

    def in_source() -> bool:
        try:
            store = _load_source(params, con)
        except Exception as exc:
            raise requests.RequestError(
                f"customer {customer} is in no processed table or run folder, and the source data could not be read "
                f"to check it ({_one_line(exc)}); fix that, or add --force to suppress the id anyway") from exc
        return requests.in_store(store, customer)

    removed = requests.erase(customer, run_dirs=runs, data_dirs=requests.processed_dirs(requests.DATA_DIR, requests.PRIVACY_DIR),
                             privacy_dir=requests.PRIVACY_DIR, in_source=in_source, in_progress=staging, force=args.force)
    print(removed.to_string(index=False))
    print(f"customer {customer} erased from {len(runs)} run folder(s) and the processed data; "
          "later loads drop them (suppression list); audit line written")
    return 0


def _check(args: argparse.Namespace) -> int:
    """``check``: load the source as a run would (no key needed: ids are not shown) and print
    the tables, the quality summary and the preflight table; bad input is one line, exit 2."""
    from segmentation.data import load_store
    from segmentation.preflight import check_text, preflight

    try:
        store = load_store(args.source, preset=args.preset, as_of=args.as_of, columns=args.columns,
                           duplicates=args.duplicates, pseudonymize=False)
        table = preflight(store)
    except Exception as exc:  # one clear line, whatever failed
        text = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error: {text}", file=sys.stderr)
        return 2
    print(check_text(store, table))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``segmentation`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return _check(args)
    if args.command == "run":
        from segmentation.runner import main_run

        return main_run(args)
    return _request(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
