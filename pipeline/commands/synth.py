"""``dmg synth``: build a synthetic DMG cohort from the MNI ICBM152 2009a template."""

from __future__ import annotations

import argparse


from pipeline.data.style import STYLE_NAMES


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
    p.add_argument("--style", default="randomised", choices=STYLE_NAMES,
                   help="randomised: every patient and sequence draws anatomy, lesion look, contrast and scanner "
                        "from wide ranges (training); heldout: ranges outside the training ones (model selection); "
                        "classic: the fixed per-center presets (default: %(default)s)")
    p.add_argument("--skull-stripped", action="store_true",
                   help="brains only (randomised styles make raw clinical scans with skull, scalp, orbits and neck "
                        "by default; classic is always skull-stripped)")
    p.add_argument("--skull-stripped-fraction", type=float, default=0.0,
                   help="randomised styles: share of patients drawn skull-stripped (default: %(default)s)")
    p.add_argument("--status-signal", type=float, default=1.0,
                   help="randomised styles: multiplier of the H3K27M status logit (0: status unrelated to imaging; "
                        "1 gives a Bayes-optimal AUROC near 0.90; the cohort's ceiling goes to synth.json) "
                        "(default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pipeline.data.synthetic import generate_cohort

    centers = [c.strip() for c in args.centers.split(",") if c.strip()]
    if args.patients < 1:
        raise ValueError("--patients must be at least 1")
    if not centers:
        raise ValueError("--centers names no center")
    if not 0.0 <= args.skull_stripped_fraction <= 1.0:
        raise ValueError("--skull-stripped-fraction must be between 0 and 1")
    if not args.status_signal >= 0 or args.status_signal == float("inf"):
        raise ValueError("--status-signal must be a finite number >= 0")
    if args.style == "classic" and args.status_signal != 1.0:
        raise ValueError("--status-signal applies to the randomised styles only (the classic status model is fixed)")
    manifest = generate_cohort(args.out, args.patients, centers=centers, seed=args.seed, preview=args.preview,
                               workers=args.workers, lesion_free=args.lesion_free, style=args.style,
                               skull_stripped=args.skull_stripped,
                               skull_stripped_fraction=args.skull_stripped_fraction,
                               status_signal=args.status_signal)
    print(f"wrote {args.patients} patients to {manifest}")
    return 0
