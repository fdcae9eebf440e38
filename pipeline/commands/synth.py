"""``dmg synth``: build a synthetic DMG cohort from the MNI ICBM152 2009a template."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="build a synthetic DMG cohort (NIfTI + manifest.csv)",
                       description=__doc__)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--patients", type=int, required=True, help="number of patients")
    p.add_argument("--centers", default="center_a,center_b",
                   help="comma-separated center names; each has its own scanner effects (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the cohort is deterministic from it")
    p.add_argument("--preview", action="store_true", help="write one PNG per patient under OUT/preview/")
    p.add_argument("--lesion-free", action="store_true", help="healthy brains (for masked-image pretraining)")
    p.add_argument("--workers", type=int, default=None, help="parallel processes (default: up to 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.data.synthetic import generate_cohort

    centers = [c.strip() for c in args.centers.split(",") if c.strip()]
    if args.patients < 1:
        raise ValueError("--patients must be at least 1")
    if not centers:
        raise ValueError("--centers names no center")
    manifest = generate_cohort(args.out, args.patients, centers=centers, seed=args.seed, preview=args.preview,
                               workers=args.workers, lesion_free=args.lesion_free)
    print(f"wrote {args.patients} patients to {manifest}")
    return 0
