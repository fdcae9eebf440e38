"""``dmg demo``: the pipeline end to end on a synthetic cohort from a center the shipped models never saw.

Builds a small ``center_c`` cohort (its own scanner: stronger bias field and noise than the training
centers ``center_a``/``center_b``), segments every patient with the bundle's shipped weights for T2,
FLAIR and T1C (``BUNDLE/models/model_<sequence>.pt``, else ``.ts``), evaluates the masks against the
cohort's references and writes the HTML report. Prints DSC and HD95 per sequence and where the report is.

Output folder: ``cohort/`` (NIfTI, manifest.csv, previews), ``predictions/`` (masks and
``segment_report.csv``), ``report/`` (cases.csv, summary.csv/json, figures, report.html).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="segment and evaluate a synthetic cohort from an unseen center with the shipped "
                                    "models", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="demo_output", help="output folder (default: %(default)s)")
    p.add_argument("--patients", type=int, default=6, help="patients in the demo cohort (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2026, help="random seed of the cohort (default: %(default)s)")
    p.add_argument("--center", default="center_c",
                   help="scanner profile of the demo cohort (default: %(default)s, not used in training)")
    p.add_argument("--bundle", default=str(DEFAULT_BUNDLE), help="segmentation bundle (default: the shipped one)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--trust-bundle", action="store_true",
                   help="run the bundle even if its configs fail the allow-list (they may run arbitrary code)")
    p.add_argument("--workers", type=int, default=2, help="processes for the cohort generation and evaluation")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from evaluation import CohortEvaluator, EmptyCasePolicy, pair_cohort
    from evaluation.summary import summary_table_text
    from pipeline.data.cohort import SEQUENCES, load_cohort
    from pipeline.data.evaluation_items import labelled_items
    from pipeline.data.synthetic import generate_cohort
    from pipeline.inference import CohortSegmenter, load_segmentation_model

    if args.patients < 1:
        raise ValueError("--patients must be at least 1")
    start = time.perf_counter()
    out = Path(args.out)
    # load every model first: a bundle without weights fails before minutes of cohort generation
    models = {seq: load_segmentation_model(args.bundle, seq, device=args.device,
                                           trust_bundle=args.trust_bundle) for seq in SEQUENCES}

    manifest = generate_cohort(out / "cohort", args.patients, centers=[args.center], seed=args.seed, preview=True,
                               workers=args.workers)
    cohort = load_cohort(manifest, strict=True, progress=False)
    predictions = out / "predictions"
    for seq, model in models.items():
        report = CohortSegmenter(model, predictions).run(cohort)
        for problem in report.problems:
            print(f"  {problem.status.upper()} {seq} patient {problem.patient_id!r}: {problem.reason}")

    items, failures, _ = labelled_items(cohort, SEQUENCES)
    evaluator = CohortEvaluator(policy=EmptyCasePolicy(), workers=args.workers)
    result = evaluator.run(
        pair_cohort(predictions, items, failures), out / "report",
        title=f"dmg demo: shipped MSCG models on {len(cohort.cases)} synthetic {args.center} patients",
        inputs={"cohort": str(manifest.resolve()), "predictions": str(predictions.resolve()),
                "models": ", ".join(f"{seq}: {m.model_file}" for seq, m in models.items())})

    print(f"\nSynthetic {args.center} cohort (seed {args.seed}, a center the models never saw): "
          f"{len(cohort.cases)} patients, {result.n_evaluated} masks evaluated, {result.n_failed} failed")
    if result.n_evaluated:
        print(summary_table_text(result.summary, levels=("sequence", "overall")))
    for failure in result.failures:
        print(f"  FAILED {failure}")
    print(f"\nreport:      {out / 'report' / 'report.html'}\npredictions: {predictions}\n"
          f"previews:    {out / 'cohort' / 'preview'}\ntime:        {time.perf_counter() - start:.0f} s")
    return 0 if result.n_evaluated else 1
