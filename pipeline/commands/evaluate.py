"""``dmg evaluate``: evaluate a folder of predicted masks against a cohort's references or a reference folder.

Cohort mode (``--cohort SRC --sequence SEQ``): the prediction of each patient is
``PRED_DIR/<patient_id>_<sequence>_seg.nii.gz``. Several sequences (``--sequence t2 flair t1c``) are
evaluated in one process, each into its own report folder ``REPORT_DIR/<sequence>`` (the same files a
run with that one sequence writes into ``REPORT_DIR``). Folder mode (``--ref REF_DIR``): every
``REF_DIR/<name>.nii.gz`` is paired with ``PRED_DIR/<name>.nii.gz``; ``--cohort`` then only
supplies centers (and images for the overlays). Missing, unreadable and misaligned cases are
reported by name and skipped; the rest is evaluated. Writes ``cases.csv``, ``summary.csv``,
``summary.json``, ``figures/`` and ``report.html`` into ``--out``. Exit status 0 when at
least one case (of every sequence named) was evaluated, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from transforms.vocabulary import SEQUENCES


def _default_workers() -> int:
    return min(2, os.cpu_count() or 1)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate predicted masks against references (per-case CSV, summary, report)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pred", required=True, metavar="PRED_DIR", help="folder of predicted masks (NIfTI)")
    p.add_argument("--cohort", metavar="SRC", help="cohort: manifest.csv, datalist .json or a folder")
    p.add_argument("--sequence", nargs="+", choices=SEQUENCES,
                   help="sequence(s) to evaluate (required with --cohort alone; several: one report each, "
                        "in REPORT_DIR/<sequence>)")
    p.add_argument("--ref", metavar="REF_DIR", help="folder of reference masks, paired by file name")
    p.add_argument("--out", required=True, metavar="REPORT_DIR", help="output folder for the report")
    p.add_argument("--workers", type=int, default=_default_workers(),
                   help="parallel processes (default: %(default)s)")
    p.add_argument("--policy", choices=("brats", "raw"), default="brats",
                   help="empty-case policy for the summary: brats (default) or raw (keep NaN/inf)")
    p.add_argument("--one-empty-hd95", type=float, default=373.13, metavar="MM",
                   help="HD95 penalty when exactly one mask is empty (default: %(default)s mm)")
    p.add_argument("--affine-tol", type=float, default=1e-3, metavar="MM",
                   help="largest allowed affine difference between prediction and reference (default: %(default)s)")
    p.add_argument("--ref-classes", default=None, metavar="LABELS",
                   help="folder mode: comma-separated label values that are foreground in the references "
                        "(e.g. 1,2,4 for the BraTS whole tumour; default: binary masks)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples for the 95%% CI (default: 2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    p.add_argument("--title", default=None, help="report title")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation import EmptyCasePolicy
    from evaluation.atomic_io import check_writable_folder
    from pipeline.data.cohort import load_cohort
    from pipeline.inference.sharded_evaluation import cohort_evaluator  # sharded under torchrun

    sequences = list(dict.fromkeys(args.sequence or []))
    if args.ref is None and args.cohort is None:
        raise ValueError("give references: --cohort SRC --sequence SEQ, or --ref REF_DIR")
    if args.ref is None and not sequences:
        raise ValueError("--cohort needs --sequence (t1c, t2 or flair)")
    if args.ref is not None and len(sequences) > 1:
        raise ValueError("--ref pairs files by name whatever their sequence: give at most one --sequence with it")
    if args.workers < 1:
        raise ValueError("--workers must be at least 1")
    if args.bootstrap < 0:
        raise ValueError("--bootstrap must be >= 0")
    if args.affine_tol < 0:
        raise ValueError("--affine-tol must be >= 0 mm")
    for flag, value in (("--pred", args.pred), ("--ref", args.ref)):
        if value is not None and not Path(value).is_dir():
            raise FileNotFoundError(f"{flag} {value}: no such folder")
    if args.ref is None and args.ref_classes is not None:
        raise ValueError("--ref-classes applies to --ref folder mode only (a cohort knows its label classes)")
    ref_classes = None
    if args.ref_classes is not None:
        try:
            ref_classes = [int(v) for v in args.ref_classes.split(",") if v.strip()]
        except ValueError:
            raise ValueError(f"--ref-classes must be comma-separated integers, got {args.ref_classes!r}") from None
    policy = (EmptyCasePolicy(mode="raw") if args.policy == "raw"
              else EmptyCasePolicy(one_empty_hd95=args.one_empty_hd95))

    # one sequence (or --ref): the report in --out; several: one report per sequence in --out/<sequence>
    outs = {seq: Path(args.out) / seq for seq in sequences} if len(sequences) > 1 else \
        {sequences[0] if sequences else None: Path(args.out)}
    for out in outs.values():
        check_writable_folder(out)  # before computing anything
    cohort = load_cohort(args.cohort, strict=False, read_data=False, progress=False) if args.cohort else None
    jobs = {seq: (_cohort_job(args, cohort, seq) if args.ref is None else _folder_job(args, cohort, seq, ref_classes))
            for seq in outs}  # every sequence paired (and checked) before any is evaluated
    evaluator = cohort_evaluator(policy=policy, workers=args.workers, affine_atol=args.affine_tol,
                                bootstrap=args.bootstrap, seed=args.seed)
    evaluated = []
    for seq, (pairing, inputs, unlabeled) in jobs.items():
        title = args.title or f"Cohort evaluation: {Path(args.pred).name}" + (f" ({seq})" if seq else "")
        result = evaluator.run(pairing, outs[seq], title=title, inputs=inputs)
        _print_result(result, policy.mode, outs[seq], seq, unlabeled, prefix=f"{seq}: " if len(outs) > 1 else "")
        evaluated.append(result.n_evaluated)
    return 0 if all(evaluated) else 1


def _cohort_job(args: argparse.Namespace, cohort, sequence: str):
    """``(pairing, report inputs, unlabeled patients)`` of one sequence of ``--cohort``."""
    from evaluation import pair_cohort
    from pipeline.data.evaluation_items import labelled_items

    items, known_failures, unlabeled = labelled_items(cohort, [sequence])
    if not items and not known_failures:
        raise ValueError(f"{args.cohort}: no patient has a {sequence} reference label")
    inputs = {"predictions": str(Path(args.pred).resolve()), "cohort": str(cohort.source.resolve()),
              "sequence": sequence}
    if unlabeled:
        inputs["without a reference label (not evaluated)"] = ", ".join(unlabeled)
    return pair_cohort(args.pred, items, known_failures), inputs, unlabeled


def _folder_job(args: argparse.Namespace, cohort, sequence: str | None, ref_classes: list[int] | None):
    """``(pairing, report inputs, [])`` of ``--ref`` folder mode (the cohort, if any, only supplies centers)."""
    from evaluation import pair_folders
    from pipeline.data.evaluation_items import all_label_items

    items = all_label_items(cohort, [sequence] if sequence else list(SEQUENCES)) if cohort is not None else None
    pairing = pair_folders(args.pred, args.ref, cohort_items=items, sequence=sequence, ref_label_classes=ref_classes)
    inputs = {"predictions": str(Path(args.pred).resolve()), "references": str(Path(args.ref).resolve())}
    if cohort is not None:
        inputs["cohort (centers)"] = str(cohort.source.resolve())
    return pairing, inputs, []


def _print_result(result, policy_mode: str, out: Path, sequence: str | None, unlabeled: list[str],
                  prefix: str = "") -> None:
    from evaluation.summary import summary_table_text

    print(f"{prefix}{len(result.cases)} cases: {result.n_evaluated} evaluated, {result.n_failed} failed "
          f"(empty-case policy: {policy_mode})")
    if result.n_evaluated:
        print(summary_table_text(result.summary))
    for failure in result.failures:
        print(f"  FAILED {failure}")
    if unlabeled:
        print(f"  {len(unlabeled)} patient(s) without a {sequence} reference label were not evaluated: "
              + ", ".join(unlabeled))
    if result.unpaired_predictions:
        print(f"  {len(result.unpaired_predictions)} prediction(s) match no reference (see the report)")
    print(f"report: {out / 'report.html'}")
