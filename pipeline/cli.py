"""The ``dmg`` command line: one subcommand a module under :mod:`pipeline.commands`.

Every error ends in one line on stderr, ``dmg COMMAND: error: ...``, and exit status 2 (130 when
interrupted); ``--debug`` prints the traceback too.
"""

from __future__ import annotations

import argparse
import errno
import logging
import re
import sys
import traceback
from collections.abc import Sequence

from pipeline.cpu_threads import configure_process_threads

configure_process_threads()  # before any import of torch (OpenMP reads its wait policy once, when it starts)

from pipeline.commands import COMMANDS  # noqa: E402  (some commands import torch at import time)

_OS_HINTS = {errno.ENOSPC: "disk full", errno.EDQUOT: "disk quota exceeded", errno.EROFS: "read-only file system",
             errno.EACCES: "permission denied", errno.ELOOP: "symlink loop"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmg",
        description="Diffuse midline glioma (H3K27M) segmentation and status prediction pipeline.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _weights_only_refusal(exc: BaseException) -> str | None:
    """Why torch.load(weights_only=True) refused a file: the cause only, without torch's advice to set
    weights_only=False (never right for a file from elsewhere)."""
    chain, cause = [], exc
    while cause is not None and len(chain) < 10:
        chain.append(str(cause))
        cause = cause.__cause__ or cause.__context__
    texts = [t for t in chain if "Weights only load failed" in t]
    if not texts:
        return None
    found = re.search(r"WeightsUnpickler error:(.*?)(Check the documentation|$)", texts[-1], re.S)  # torch's own
    reason = " ".join(found.group(1).split()) if found else ""
    reason = reason.split(" Please use `torch.serialization", 1)[0].rstrip(" .")
    return "torch.load(weights_only=True) refused it" + (f": {reason}" if reason else "")


def error_line(exc: BaseException) -> str:
    """One line that names the file and the problem of ``exc``."""
    refusal = _weights_only_refusal(exc)
    if refusal is not None:
        text = str(exc)
        head = text.split(" (", 1)[0] if ": cannot load the weights" in text else "cannot load the weights"
        return f"{head}: {refusal}"
    if isinstance(exc, OSError) and exc.strerror:
        text = (f"{exc.filename}: " if exc.filename else "") + exc.strerror
        hint = _OS_HINTS.get(exc.errno or -1)
        if hint and hint.lower() not in exc.strerror.lower():
            text += f" ({hint})"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            text += "; nothing half-written was left behind"
        return text
    if isinstance(exc, MemoryError):
        return f"out of memory{': ' + str(exc) if str(exc) else ''} (an input larger than this machine's memory?)"
    text = str(exc).strip()
    if type(exc).__name__ != "CohortError":  # a strict cohort check lists one problem a line
        text = " ".join(text.split())
    ours = isinstance(exc, (ValueError, OSError)) or type(exc).__module__.startswith(("pipeline.", "evaluation."))
    if text and ours:
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

def main(argv: Sequence[str] | None = None) -> int:
    configure_process_threads()  # torch's intra-op threads from the usable CPUs (OMP_NUM_THREADS when set)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"dmg {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # every error path: one line (the traceback with --debug)
        if args.debug:
            traceback.print_exc()
        print(f"dmg {args.command}: error: {error_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
