"""``dmg demo``: the pipeline end to end on a synthetic cohort from a center the shipped models never saw.

Builds a small ``center_c`` cohort (its own scanner: stronger bias field and noise than the training
centers ``center_a``/``center_b``), segments every patient with the bundle's shipped weights for T2,
FLAIR and T1C (``BUNDLE/models/model_<sequence>.pt``, else ``.ts``), evaluates the masks against the
cohort's references and writes the HTML report. Prints DSC and HD95 per sequence and where the report is.

Output folder: ``cohort/`` (NIfTI, manifest.csv, previews), ``predictions/`` (masks and
``segment_report.csv``), ``report/`` (cases.csv, summary.csv/json, figures, report.html).

H3K27M status: when the status bundle (``--status-bundle``) has trained weights, the demo also builds
``--status-patients`` patients of the held-out synthetic style (ranges outside the training ranges, with a
known Bayes-optimal ceiling), predicts their status as ``dmg status`` does and prints accuracy, AUROC (95%
CIs), the ceiling beside them and the calibration error (``status_cohort/``, ``status/``); without weights it
says so in one line and skips it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

DEFAULT_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
DEFAULT_STATUS_BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification"
STATUS_STYLE = "heldout"


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
    p.add_argument("--status-bundle", default=str(DEFAULT_STATUS_BUNDLE),
                   help="H3K27M status bundle (default: the shipped one; skipped when it has no weights)")
    p.add_argument("--status-patients", type=int, default=12,
                   help="held-out-style patients for the H3K27M status part (default: %(default)s)")
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
    status_model, status_skipped = _load_status_model(args)

    manifest = generate_cohort(out / "cohort", args.patients, centers=[args.center], seed=args.seed, preview=True,
                               workers=args.workers)
    cohort = load_cohort(manifest, strict=True, progress=False)
    predictions = out / "predictions"
    segmenter = CohortSegmenter(list(models.values()), predictions)  # one run, sequence after sequence
    try:
        report = segmenter.run(cohort)
    finally:
        segmenter.ranks.close()
    for problem in report.problems:
        print(f"  {problem.status.upper()} {problem.sequence} patient {problem.patient_id!r}: {problem.reason}")

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
          f"previews:    {out / 'cohort' / 'preview'}")
    if status_model is not None:
        _status_part(args, status_model, out)
    else:
        print(f"\nH3K27M status: skipped ({status_skipped})")
    print(f"time:        {time.perf_counter() - start:.0f} s")
    return 0 if result.n_evaluated else 1


def _load_status_model(args: argparse.Namespace):
    """``(status model, None)``, or ``(None, why)`` when the status bundle has no trained weights."""
    from pipeline.inference.status_model import NoStatusWeightsError, load_status_model

    if args.status_patients < 2:
        raise ValueError("--status-patients must be at least 2")
    try:
        return load_status_model(args.status_bundle, device=args.device, trust_bundle=args.trust_bundle), None
    except NoStatusWeightsError as exc:
        return None, str(exc)


def _status_part(args: argparse.Namespace, model, out: Path, resamples: int = 2000) -> None:
    """Predict the status of a held-out-style cohort and print accuracy and AUROC (``resamples`` bootstrap draws
    for their CIs) beside the ceiling."""
    from pipeline.data.synthetic import generate_cohort
    from pipeline.inference.status_prediction import predict_status

    manifest = generate_cohort(out / "status_cohort", args.status_patients, centers=[args.center], seed=args.seed,
                               workers=args.workers, style=STATUS_STYLE)
    result = predict_status(model, manifest, out / "status", inputs={"model": model.describe()}, resamples=resamples)
    done = int((result.predictions["status"] == "done").sum())
    print(f"\nH3K27M status of {args.status_patients} synthetic {STATUS_STYLE}-style patients (seed {args.seed}, "
          f"styles the model never saw): {done} predicted; {model.describe()}")
    for row in result.predictions[result.predictions["status"] != "done"].itertuples():
        print(f"  SKIPPED patient {row.patient_id!r}: {row.status.removeprefix('skipped: ')}")
    if result.report is not None:
        print(result.report.summary_text())
