"""Fit the H3K27M bundle's ``temperature`` and ``threshold`` on validation predictions.

Input: a ``predictions.csv`` of ``dmg status`` run on validation patients (any bundle temperature: the
column ``logit_uncalibrated`` is before scaling) with their known statuses in ``h3k27m`` (or a ``label``
column: 1 altered, 0 wild-type); skipped patients and unknown statuses are left out. Output: a JSON record
(:func:`evaluation.calibration.fit_calibration`: temperature, threshold and its rule, NLL and ECE before and
after) and, with ``--bundle``, the two values written into that bundle's ``configs/inference.json``
(top-level ``temperature`` and ``threshold``; every other key unchanged)::

    dmg status --bundle B --cohort VALIDATION --out val_pred
    python -m pipeline.inference.calibrate --predictions val_pred/predictions.csv --out calibration.json [--bundle B]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from evaluation.atomic_io import atomic_write_text
from evaluation.calibration import fit_calibration
from pipeline.checkpoint_io import INFERENCE_CONFIG

__all__ = ["calibration_from_predictions", "main", "write_bundle_calibration"]

LOGIT_COLUMN = "logit_uncalibrated"


def calibration_from_predictions(path: str | os.PathLike, bins: int = 10) -> dict[str, Any]:
    """:func:`~evaluation.calibration.fit_calibration` of the predicted patients with a known status in ``path``."""
    try:
        table = pd.read_csv(path)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValueError(f"{path}: not a readable predictions CSV ({type(exc).__name__}: {exc})") from exc
    status_column = next((c for c in ("h3k27m", "label") if c in table.columns), None)
    missing = [c for c, ok in ((LOGIT_COLUMN, LOGIT_COLUMN in table.columns), ("h3k27m", status_column)) if not ok]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing} (a predictions.csv of dmg status has both); "
                         f"columns: {list(table.columns)}")
    status = pd.to_numeric(table[status_column], errors="coerce")
    logits = pd.to_numeric(table[LOGIT_COLUMN], errors="coerce")
    used = status.isin([0, 1]) & np.isfinite(logits)
    if "status" in table.columns:
        used &= table["status"].astype(str).eq("done")
    if not used.any():
        raise ValueError(f"{path}: no predicted patient with a known status (0 or 1 in {status_column!r})")
    record = fit_calibration(status[used].astype(int).to_numpy(), logits[used].to_numpy(), bins=bins)
    return {"predictions": str(path), "n_left_out": int((~used).sum()), **record}


def write_bundle_calibration(bundle_dir: str | os.PathLike, temperature: float, threshold: float) -> Path:
    """Set the top-level ``temperature`` and ``threshold`` of ``BUNDLE/configs/inference.json`` (atomically;
    key order and every other value kept)."""
    path = Path(bundle_dir) / INFERENCE_CONFIG
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable inference config ({exc})") from exc
    if not isinstance(config, dict):
        raise ValueError(f"{path}: not a JSON object")
    config["temperature"], config["threshold"] = float(temperature), float(threshold)
    return atomic_write_text(path, json.dumps(config, indent=4) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inference.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictions", required=True, help="predictions.csv of dmg status on validation patients")
    parser.add_argument("--out", required=True, help="JSON file for the fitted temperature and threshold")
    parser.add_argument("--bins", type=int, default=10, help="bins of the expected calibration error (default 10)")
    parser.add_argument("--bundle", default=None, help="also write temperature and threshold into this bundle's "
                                                       "configs/inference.json")
    args = parser.parse_args(argv)
    try:
        record = calibration_from_predictions(args.predictions, bins=args.bins)
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")
        if args.bundle:
            write_bundle_calibration(args.bundle, record["temperature"], record["threshold"])
    except (ValueError, OSError) as exc:
        print(f"calibrate: error: {exc}", file=sys.stderr)
        return 2
    print(f"{record['n_patients']} validation patients ({record['n_altered']} altered; {record['n_left_out']} rows "
          f"left out): temperature {record['temperature']:.3f}, threshold {record['threshold']:.3f} "
          f"(Youden's J); NLL {record['nll_before']:.3f} -> {record['nll_after']:.3f}, ECE "
          f"{record['ece_before']:.3f} -> {record['ece_after']:.3f} ({record['ece_bins']} bins)")
    print(f"written: {args.out}" + (f" and {Path(args.bundle) / INFERENCE_CONFIG}" if args.bundle else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
