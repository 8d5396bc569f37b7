"""The `runlog` command: thin wrappers over the library; messages to stderr, results to stdout."""

import argparse
import sys

from appliance import __version__
from appliance.core.errors import RunlogError


def _demo(args: argparse.Namespace) -> int:
    from appliance.demo import run_demo

    run_demo()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runlog", description="Provable automation runs: log, sign, anchor, verify.")
    parser.add_argument("--version", action="version", version=f"runlog {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser("demo", help="log one run in memory, sign a checkpoint, verify proofs",
                               description="Demonstrate the evidence core without touching disk or network.")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RunlogError as error:
        print(f"runlog: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
