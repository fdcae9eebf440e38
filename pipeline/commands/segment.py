"""``dmg segment``: run a trained segmentation bundle (or a TorchScript model) over every patient of a cohort.

``--sequence t2 flair t1c`` segments several sequences in one process, each with its own model (loaded
once), one after the other. Writes ``<patient_id>_<sequence>_seg.nii.gz`` (uint8, on each input's own
grid, affine and header) and one ``segment_report.csv`` (patient_id, sequence, status
done/reused/skipped/failed, reason, seconds, stage times) to ``--out``.
Resumes: a patient whose mask already exists and is readable is not redone unless ``--overwrite``;
``segment_model_<sequence>.json`` records the weights (SHA-256) and threshold, and resuming a folder
with other ones is refused, so a folder never mixes two models' masks.
Weights: ``--model FILE`` (state dict or TorchScript; one sequence only), else
``BUNDLE/models/model_<sequence>.pt``, else ``BUNDLE/models/model_<sequence>.ts``.
Exit code 0 when every named sequence has at least one patient with a mask, else 1.
"""

from __future__ import annotations

import argparse

from transforms.vocabulary import SEQUENCES


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("segment", help="segment every patient of a cohort with a trained bundle",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle folder (with configs/inference.json)")
    p.add_argument("--cohort", required=True, help="manifest.csv, datalist .json, or a folder (manifest or BraTS)")
    p.add_argument("--sequence", required=True, nargs="+", choices=SEQUENCES,
                   help="MRI sequence(s) to segment, each with its bundle model (e.g. --sequence t2 flair t1c)")
    p.add_argument("--out", required=True, help="output folder for the masks and segment_report.csv")
    p.add_argument("--model", default=None, metavar="FILE",
                   help="weights: PyTorch state dict or TorchScript file "
                        "(default: BUNDLE/models/model_<sequence>.pt, else .ts); with one --sequence only")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    p.add_argument("--overwrite", action="store_true", help="redo patients whose mask already exists")
    p.add_argument("--trust-bundle", action="store_true",
                   help="run the bundle even if its configs fail the allow-list (they may run arbitrary code)")
    p.add_argument("--runtime", choices=("auto", "onnx", "torch"), default="auto",
                   help="auto (default): ONNX Runtime when the bundle has a current models/model_<sequence>.onnx "
                        "and can run it on the device (CPU; CUDA needs onnxruntime-gpu), else PyTorch")
    p.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                   help="override ids of the bundle's inference.json, e.g. --set features=[4,8,16] spatial_size=32")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from pipeline.inference import CohortSegmenter, load_segmentation_model, parse_overrides

    sequences = list(dict.fromkeys(args.sequence))
    if args.model is not None and len(sequences) > 1:
        raise ValueError(f"--model {args.model} is one sequence's weights: give one --sequence with it, "
                         f"not {' '.join(sequences)}")
    overrides = parse_overrides(args.overrides)
    models = []
    for sequence in sequences:  # all loaded before the first patient: a missing model fails at once
        models.append(load_segmentation_model(args.bundle, sequence, model_file=args.model, device=args.device,
                                              overrides=overrides, runtime=args.runtime,
                                              trust_bundle=args.trust_bundle))
        logging.getLogger(__name__).info("model: %s", models[-1].describe())
    segmenter = CohortSegmenter(models, args.out, overwrite=args.overwrite)
    try:
        report = segmenter.run(args.cohort)
    finally:
        segmenter.ranks.close()  # under torchrun: leave the gloo group before exit (or the process aborts)
    print(report.summary())
    for result in report.problems:  # with several sequences each line says which (as check-cohort's do)
        which = f", {result.sequence}" if len(sequences) > 1 else ""
        print(f"  {result.status.upper()} patient {result.patient_id!r}{which}: {result.image or '-'}: {result.reason}")
    return 0 if report.ok else 1
