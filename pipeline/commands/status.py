"""``dmg status``: predict the H3K27M status of every patient of a cohort with a trained status bundle.

Writes to ``--out``: ``predictions.csv`` (patient_id, center, probability_altered, predicted_status,
slices_used, logit_uncalibrated, h3k27m, mask, status), each patient's tumour mask
``<patient_id>_<sequence>_seg.nii.gz`` on the input's own grid and affine, and, when the cohort gives
statuses, ``report/`` (metrics with 95% bootstrap CIs per center and pooled, ROC and PR curves, the
calibration plot and its ECE, t-SNE of the features, the Bayes-optimal ceiling of a synthetic cohort,
report.html). Probabilities are temperature-scaled and thresholded with the bundle's ``temperature`` and
``threshold`` (configs/inference.json). Patients whose image cannot be read are skipped and named.
Exit code 0 when at least one patient was predicted, else 1.
"""

from __future__ import annotations

import argparse

from transforms.vocabulary import SEQUENCES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="predict the H3K27M status of every patient of a cohort with a trained bundle",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="H3K27M bundle folder (with configs/inference.json)")
    p.add_argument("--cohort", required=True, help="manifest.csv, datalist .json, or a folder (manifest or BraTS)")
    p.add_argument("--out", required=True, help="output folder for predictions.csv, the masks and report/")
    p.add_argument("--sequence", default=None, choices=SEQUENCES,
                   help="MRI sequence the model reads (default: the bundle's 'sequence')")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="weights: state dict, TorchScript or ONNX file (default: the bundle's model_file)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--runtime", choices=("auto", "onnx", "torch"), default="auto",
                   help="auto (default): ONNX Runtime when the bundle has a current .onnx export beside its .pt "
                        "and can run it on the device, else PyTorch")
    p.add_argument("--trust-bundle", action="store_true",
                   help="run the bundle even if its configs fail the allow-list (they may run arbitrary code)")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override ids of the bundle's inference.json, e.g. --set threshold=0.4")
    p.add_argument("--no-report", action="store_true", help="predictions and masks only, even with known statuses")
    p.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples of the patients for the 95%% CIs of the report (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import time

    from pipeline.inference.model import parse_overrides
    from pipeline.inference.status_cohort import PREDICTIONS_CSV
    from pipeline.inference.status_model import load_status_model
    from pipeline.inference.status_prediction import predict_status

    start = time.perf_counter()
    model = load_status_model(args.bundle, args.sequence, model_file=args.model, device=args.device,
                              overrides=parse_overrides(args.overrides), runtime=args.runtime,
                              trust_bundle=args.trust_bundle)
    logging.getLogger(__name__).info("model: %s", model.describe())
    if args.resamples < 0:
        raise ValueError("--resamples must be 0 (no CIs) or more")
    result = predict_status(model, args.cohort, args.out, report=not args.no_report, resamples=args.resamples,
                            inputs={"bundle": str(args.bundle), "model": model.describe(), "cohort": str(args.cohort)})
    table = result.predictions
    done = int((table["status"] == "done").sum())
    print(f"{model.sequence}: {done} predicted, {len(table) - done} skipped of {len(table)} patients in "
          f"{time.perf_counter() - start:.1f} s (temperature {model.temperature:g}, threshold {model.threshold:g}); "
          f"{PREDICTIONS_CSV} and masks in {args.out}")
    for row in table[table["status"] != "done"].itertuples():
        print(f"  SKIPPED patient {row.patient_id!r}: {row.status.removeprefix('skipped: ')}")
    if result.report is not None:
        print(result.report.summary_text())
    elif not args.no_report:
        print("no patient with a known H3K27M status was predicted: no report")
    return 0 if done else 1
