"""Empty-case policy: what a per-case metric counts as when a mask is empty.

:func:`evaluation.metrics.compute_case_metrics` always returns the *raw*
values (NaN for 0/0, ``inf`` for a distance to an empty mask) together with
the flags ``ref_empty`` and ``pred_empty``. Aggregation (means, CIs, plots)
must use the values after :func:`apply_empty_policy`:

=====================  ==========================  =========================
case                   overlap metrics             distance metrics
                       (kind ``overlap`` in the    (kind ``distance``: hd95,
                       metric table: dsc, ...)     hd95_pooled)
=====================  ==========================  =========================
both non-empty         raw value                   raw value
both empty             ``both_empty_dsc`` (1.0)    ``both_empty_hd95`` (0.0)
exactly one empty      ``one_empty_dsc`` (0.0)     ``one_empty_hd95``
                                                   (373.13 mm)
=====================  ==========================  =========================

The defaults are the BraTS rule (373.13 mm is the diagonal of the
240x240x155 1 mm BraTS grid). ``mode="raw"`` leaves every value as it is,
so a mean over a cohort with a missed lesion is ``inf`` for HD95 and NaN
values must be handled explicitly by the caller. A missed or hallucinated
lesion is never scored as perfect: the one-empty values must be finite
(not NaN, which ``nanmean`` would silently drop) and may not be the
perfect score (DSC 1, HD95 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from evaluation.metric_table import SEGMENTATION_TABLE, names

__all__ = [
    "OVERLAP_KEYS",
    "DISTANCE_KEYS",
    "EmptyCasePolicy",
    "BRATS_POLICY",
    "RAW_POLICY",
    "empty_case",
    "apply_empty_policy",
]

OVERLAP_KEYS: tuple[str, ...] = names(SEGMENTATION_TABLE, "overlap")
DISTANCE_KEYS: tuple[str, ...] = names(SEGMENTATION_TABLE, "distance")


@dataclass(frozen=True)
class EmptyCasePolicy:
    """Values used for empty masks when aggregating.

    Args:
        mode: ``"brats"`` replaces the values of empty cases by the numbers
            below; ``"raw"`` keeps NaN / inf.
        both_empty_dsc: DSC, Jaccard, sensitivity and PPV when reference and
            prediction are both empty (a correct negative).
        both_empty_hd95: HD95 (both variants) in mm when both are empty.
        one_empty_dsc: DSC, Jaccard, sensitivity and PPV when exactly one of
            the two masks is empty (a missed or a hallucinated lesion).
        one_empty_hd95: HD95 penalty in mm when exactly one mask is empty.
    """

    mode: Literal["brats", "raw"] = "brats"
    both_empty_dsc: float = 1.0
    both_empty_hd95: float = 0.0
    one_empty_dsc: float = 0.0
    one_empty_hd95: float = 373.13

    def __post_init__(self) -> None:
        if self.mode not in ("brats", "raw"):
            raise ValueError(f"EmptyCasePolicy.mode must be 'brats' or 'raw', got {self.mode!r}.")
        for name in ("both_empty_dsc", "both_empty_hd95", "one_empty_dsc", "one_empty_hd95"):
            value = float(getattr(self, name))
            if math.isnan(value):
                raise ValueError(f"EmptyCasePolicy.{name} must not be NaN (NaN would drop the case from means).")
            object.__setattr__(self, name, value)
        for name in ("both_empty_dsc", "one_empty_dsc"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"EmptyCasePolicy.{name} must lie in [0, 1], got {getattr(self, name)}.")
        for name in ("both_empty_hd95", "one_empty_hd95"):
            if getattr(self, name) < 0.0:
                raise ValueError(f"EmptyCasePolicy.{name} must be >= 0 mm, got {getattr(self, name)}.")
        if self.one_empty_dsc >= 1.0 or self.one_empty_hd95 <= 0.0:
            raise ValueError(
                "EmptyCasePolicy: a case with exactly one empty mask is a failure and must not get the "
                f"perfect score (got one_empty_dsc={self.one_empty_dsc}, one_empty_hd95={self.one_empty_hd95})."
            )


BRATS_POLICY = EmptyCasePolicy()
RAW_POLICY = EmptyCasePolicy(mode="raw")


def empty_case(ref_empty: bool, pred_empty: bool) -> str:
    """``"none"``, ``"both"``, ``"ref"`` (only the reference is empty) or ``"pred"``."""
    if ref_empty and pred_empty:
        return "both"
    if ref_empty:
        return "ref"
    if pred_empty:
        return "pred"
    return "none"


def apply_empty_policy(row: dict[str, Any], policy: EmptyCasePolicy = BRATS_POLICY) -> dict[str, Any]:
    """Return a copy of a raw metrics row with the policy values for empty cases.

    Only the keys in :data:`OVERLAP_KEYS` and :data:`DISTANCE_KEYS` that are
    present are changed; flags, volumes and any other columns are copied.
    Rows where both masks are non-empty are returned unchanged.
    """
    out = dict(row)
    if policy.mode == "raw":
        return out
    case = empty_case(bool(row["ref_empty"]), bool(row["pred_empty"]))
    if case == "none":
        return out
    overlap, distance = (
        (policy.both_empty_dsc, policy.both_empty_hd95)
        if case == "both"
        else (policy.one_empty_dsc, policy.one_empty_hd95)
    )
    for key in OVERLAP_KEYS:
        if key in out:
            out[key] = overlap
    for key in DISTANCE_KEYS:
        if key in out:
            out[key] = distance
    return out
