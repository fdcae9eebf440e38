"""``dmg check-cohort``: validate a cohort (manifest CSV, datalist JSON or BraTS folder) and list its problems."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check-cohort", help="validate a cohort and list every problem", description=__doc__)
    p.add_argument("source", help="manifest.csv, datalist .json, or a folder (with manifest.csv, or BraTS 2021)")
    p.add_argument("--sequence", default=None, help="sequence of Decathlon-style image/label items")
    p.add_argument("--headers-only", action="store_true", help="check headers only, do not read voxel data")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.data.cohort import SEQUENCES, load_cohort

    cohort = load_cohort(args.source, strict=False, read_data=not args.headers_only, sequence=args.sequence,
                         progress=True)
    counts = ", ".join(f"{seq} {len(cohort.datalist(seq))}" for seq in SEQUENCES)
    print(f"{cohort.source}: {len(cohort.cases)} patients; usable images per sequence: {counts}")
    for issue in cohort.issues:
        print(f"  SKIPPED {issue}")
    return 1 if cohort.issues else 0
