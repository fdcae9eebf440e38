"""Does N4 bias-field correction help the segmentation model?  Dice with and without it, same model and cohort.

    python -m benchmarks.n4_effect --model runs/t2/model.pt --cohort data/heldout/manifest.csv --sequence t2

Each patient is preprocessed twice with the bundle's preprocessing (``build_transforms('validate')``),
once with ``n4=True``, segmented with ``SliceInferer`` and scored (Dice, on the network's grid) against
its reference; prints the per-patient difference, its mean and a paired Wilcoxon test.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from monai.inferers import SliceInferer
from scipy.stats import wilcoxon

from pipeline.data.cohort import load_cohort
from pipeline.networks import build_variant
from transforms import build_transforms


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    total = pred.sum() + ref.sum()
    return 1.0 if total == 0 else float(2.0 * (pred & ref).sum() / total)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--cohort", required=True)
    p.add_argument("--sequence", default="t2")
    p.add_argument("--features", default="8,16,32,64,128")
    p.add_argument("--spatial_size", type=int, default=160)
    p.add_argument("--limit", type=int, default=0, help="first N patients only")
    args = p.parse_args(argv)
    net = build_variant("MSCG-Dis", features=[int(f) for f in args.features.split(",")])[0]
    net.load_state_dict(torch.load(args.model, map_location="cpu", weights_only=True))
    net.eval()
    inferer = SliceInferer(roi_size=(args.spatial_size, args.spatial_size), sw_batch_size=16, spatial_dim=2)
    items = load_cohort(args.cohort, strict=False).datalist(args.sequence, require_label=True)
    if args.limit:
        items = items[: args.limit]
    rows = []
    for item in items:
        scores = {}
        for n4 in (False, True):
            data = build_transforms("validate", spatial_size=args.spatial_size, n4=n4)(dict(item))
            with torch.no_grad():
                logits = inferer(data["image"][None].float(), net)
            pred = (logits[0, 0] > 0).numpy()
            scores["n4" if n4 else "plain"] = dice(pred, data["label"][0].numpy() > 0.5)
        rows.append({"patient_id": item["patient_id"], **scores})
        print(f"{item['patient_id']}: Dice {scores['plain']:.3f} -> {scores['n4']:.3f} with N4", flush=True)
    plain = np.array([r["plain"] for r in rows])
    with_n4 = np.array([r["n4"] for r in rows])
    diff = with_n4 - plain
    test = wilcoxon(with_n4, plain) if np.any(diff != 0) else None
    summary = {"n": len(rows), "dice_plain_mean": float(plain.mean()), "dice_n4_mean": float(with_n4.mean()),
               "mean_difference": float(diff.mean()), "wilcoxon_p": None if test is None else float(test.pvalue)}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
