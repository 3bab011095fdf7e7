"""Command line: ``segmentation run`` (the scheduled report run) and the privacy requests.

Examples
--------
    segmentation run --config configs/default.yaml --set as_of=2026-02-01 --set n_customers=5000
    segmentation run --config configs/default.yaml --notebooks 01 02
    segmentation export --raw-customer C00042 --output customer.json
    segmentation erase --customer 3f2a9c...
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

    for name, text in (("export", "write everything held or derived about one customer as JSON (right of access)"),
                       ("erase", "erase one customer from stored data and derived artifacts (right to erasure)")):
        p = sub.add_parser(name, help=text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--customer", help="pseudonymous customer id, as shown in reports")
        who.add_argument("--raw-customer", help="the customer's own id in the source data (pseudonymized with the key)")
        p.add_argument("--config", default=None, help="YAML run config giving the data source")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter")
        if name == "export":
            p.add_argument("--output", default=None, help="JSON file (default: standard output)")
    return parser


def _customer_id(args: argparse.Namespace, parameters: dict) -> str:
    if args.customer:
        return args.customer
    from segmentation import privacy

    key = privacy.load_key(demo=parameters.get("source", "synthetic") == "synthetic")
    return str(privacy.pseudonymize([args.raw_customer], key).iloc[0])


def _request(args: argparse.Namespace) -> int:
    import json

    from segmentation.runner import load_config

    config = load_config(args.config, args.set)
    params = {"source": "synthetic", "seed": 42, "n_customers": 2000, "as_of": "2026-01-01", "preset": None, **config.parameters}
    customer = _customer_id(args, params)
    if args.command == "erase":
        from segmentation.requests import erase

        removed = erase(customer)
        print(removed.to_string(index=False))
        print(f"customer {customer} erased; later loads drop them (suppression list); audit line written")
        return 0
    from segmentation.data import load_store
    from segmentation.requests import customer_record

    store = load_store(params["source"], preset=params["preset"], seed=params["seed"], n_customers=params["n_customers"], as_of=params["as_of"])
    try:
        record = customer_record(store, customer, params["as_of"], seed=params["seed"])
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 1
    text = json.dumps(record, indent=2, default=str)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(f"wrote {args.output}")
    else:
        print(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``segmentation`` console script."""
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from segmentation.runner import main_run

        return main_run(args)
    return _request(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
