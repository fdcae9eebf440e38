"""Before a bundle is instantiated: refuse configs that would run code, unsafe logging configs and carried code
that this package did not generate.

:func:`bundle_code_problems` lists them (nothing is evaluated or imported from the bundle);
:func:`require_safe_bundle` is what ``dmg segment`` / ``dmg demo`` (and ``dmg bundle verify``) call first:
it raises :class:`UntrustedBundleError` with one line naming the first problem, unless ``trust=True``,
which prints a loud warning to stderr and goes on. :func:`use_bundle_code` makes the bundle's ``scripts/``
importable, as ``monai.bundle run`` started in the bundle folder does.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.bundle_trust.carried_code import check_carried_code
from pipeline.bundle_trust.config_allowlist import check_config_files

__all__ = ["UntrustedBundleError", "bundle_code_problems", "check_logging_config", "require_safe_bundle",
           "use_bundle_code", "activate_bundle_code"]

LOGGING_CONFIG = Path("configs") / "logging.conf"
_ACTIVATED: set[str] = set()  # bundle folders this process put on sys.path


class UntrustedBundleError(ValueError):
    """A bundle's configs would run code outside the allow-list (or its carried code is not this package's)."""


def check_logging_config(bundle_dir: str | os.PathLike) -> list[str]:
    """MONAI 1.6's own scrutiny of ``configs/logging.conf`` (``fileConfig`` ``eval()``s ``class=``/``args=``):
    only stdlib logging classes, literal arguments."""
    from monai.bundle.workflows import _reject_executable_logging_config

    path = Path(bundle_dir) / LOGGING_CONFIG
    if not path.is_file():
        return []
    try:
        _reject_executable_logging_config(str(path))
    except ValueError as exc:
        return [str(exc).replace(str(path), LOGGING_CONFIG.as_posix()).splitlines()[0]]
    return []


def bundle_code_problems(bundle_dir: str | os.PathLike) -> list[str]:
    """Every refused config expression, logging setting and carried-code file of the bundle, one line each."""
    bundle = Path(bundle_dir)
    problems = [str(p) for p in check_config_files(bundle / "configs", relative_to=bundle)]
    problems += check_logging_config(bundle)
    problems += check_carried_code(bundle)
    return problems


def require_safe_bundle(bundle_dir: str | os.PathLike, trust: bool = False) -> list[str]:
    """Raise :class:`UntrustedBundleError` when :func:`bundle_code_problems` finds anything (unless ``trust``:
    then warn on stderr). Returns the problems."""
    problems = bundle_code_problems(bundle_dir)
    if trust:
        print(f"WARNING: --trust-bundle: {bundle_dir} is used without the config allow-list"
              + (f"; it has {len(problems)} refused item(s), e.g. {problems[0]}" if problems else ""),
              file=sys.stderr)
        return problems
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UntrustedBundleError(f"refusing bundle {bundle_dir}: {problems[0]}{more}; `dmg bundle verify` lists "
                                   "every problem, --trust-bundle runs it anyway")
    return problems


def activate_bundle_code(bundle_dir: str | os.PathLike) -> bool:
    """Make ``BUNDLE/scripts`` importable as ``scripts``, as in ``monai.bundle run`` started in the bundle
    folder: the folder is appended to ``sys.path`` (so a bundle file never shadows an installed module) and a
    ``scripts`` package imported from another folder is forgotten first. Returns whether the path was added."""
    root = str(Path(bundle_dir).resolve())
    loaded = sys.modules.get("scripts")
    if loaded is not None and root not in [str(Path(p).resolve().parent) for p in getattr(loaded, "__path__", [])]:
        for name in [n for n in sys.modules if n == "scripts" or n.startswith("scripts.")]:
            del sys.modules[name]
    for other in sorted(_ACTIVATED - {root}):
        while other in sys.path:
            sys.path.remove(other)  # an earlier bundle's scripts/ must not be found first
    if root in sys.path:
        return False
    sys.path.append(root)
    _ACTIVATED.add(root)
    return True


@contextmanager
def use_bundle_code(bundle_dir: str | os.PathLike) -> Iterator[None]:
    """:func:`activate_bundle_code` for the ``with`` block (what was imported stays imported)."""
    root = str(Path(bundle_dir).resolve())
    added = activate_bundle_code(bundle_dir)
    try:
        yield
    finally:
        while added and root in sys.path:
            sys.path.remove(root)
