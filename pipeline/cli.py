"""The ``dmg`` command line: one subcommand a module under :mod:`pipeline.commands`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipeline.commands import COMMANDS
from pipeline.cpu_threads import configure_process_threads


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmg",
        description="Diffuse midline glioma (H3K27M) segmentation and status prediction pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    configure_process_threads()  # before any command imports torch: threads from the usable CPUs, no spinning
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"dmg {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
