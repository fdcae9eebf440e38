"""Looking a network configuration up by name: one rule for every registry of named networks.

The MSCG variants (:data:`pipeline.networks.variants.VARIANTS`) and the H3K27M ablations
(:data:`pipeline.networks.h3k27m_net.H3K27M_CONFIGS`) are both found with :func:`look_up_name`, so
``"mscg-dis"``, ``"MSCG_Dis"`` and ``" MSCG Dis "`` name the same variant as ``"CLS-only"`` and ``"cls_only"``
name the same ablation. Carried into bundles with the variants (standard library only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

__all__ = ["look_up_name", "normalise_name"]

T = TypeVar("T")
IGNORED_IN_NAMES = ("-", "_", " ")
"""Characters that do not count when names are compared (nor does case, nor surrounding space)."""


def normalise_name(name: object) -> str:
    """``" MSCG-Dis "`` -> ``"mscgdis"``: lower case, without :data:`IGNORED_IN_NAMES`."""
    text = str(name).strip().lower()
    for char in IGNORED_IN_NAMES:
        text = text.replace(char, "")
    return text


def look_up_name(registry: Mapping[str, T], name: object, what: str) -> T:
    """The entry of ``registry`` whose key equals ``name`` by :func:`normalise_name`; a ``ValueError`` that lists
    the valid names otherwise (``what`` says what is looked up, e.g. ``"MSCG variant"``)."""
    wanted = normalise_name(name)
    for key, entry in registry.items():
        if normalise_name(key) == wanted:
            return entry
    raise ValueError(f"unknown {what} {name!r}; valid names: {', '.join(registry)}.")
