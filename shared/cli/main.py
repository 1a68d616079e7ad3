"""Entry point of the `lineinspect` command.

Each command group lives in its own module with a `register(subparsers)` function that adds
its parser and sets `handler`; this module only assembles them and turns user errors
(`LineinspectError`) into a one-line message and exit status 2.
"""

import argparse
import sys
from collections.abc import Sequence

from lineinspect.shared.errors import LineinspectError
from lineinspect.shared.logs import configure_logging

COMMAND_MODULES = ("datasets", "train", "evaluate", "line", "monitor", "demo")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="lineinspect",
        description="Streaming visual inspection: datasets, model training and evaluation, and the inspection line.",
    )
    parser.add_argument("--log-level", default=None, help="DEBUG, INFO, WARNING (env LINEINSPECT_LOG_LEVEL)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"lineinspect.shared.cli.{name}")
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(level=args.log_level)
    try:
        result = args.handler(args)
    except LineinspectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
