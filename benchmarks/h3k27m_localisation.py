"""Does the H3K27M model find the lesion, and can it read it? Status AUROC with its own lesion slices and with the reference's.

The shipped rule (:mod:`pipeline.inference.status`) averages the slice probabilities over the slices the net's
**own** mask shows as tumour. When that mask misses the lesion, the status is read from the wrong slices, and a
weak AUROC says nothing about whether the classifier could read a lesion it was shown. This separates the two:
every patient is preprocessed as the model sees it (:func:`transforms.build_transforms` ``"validate"``), the net
runs over every axial slice once, and the patient's probability is taken twice with the same rule
(:func:`~pipeline.inference.status.patient_status_from_slices`): from the net's own mask, and from the
**reference** mask (an oracle localiser). Beside them: the mask Dice, how many slices each selects, and the
lesion's height in the preprocessed volume (mean selected slice over the last slice index) from each mask, with
their Pearson correlation, and the AUROC of the reference lesion's height alone (low = brainstem: 1 - height, so
that higher reads "altered"): what a reader that knows only where the lesion is gets.

Cross-validation: ``--model`` once per fold, in fold order, with ``--n-folds``: model ``k`` is read on the
validation patients of fold ``k`` (:func:`pipeline.data.datalists.status_datalists`, split seed 0, as
``train.json``). One ``--model`` without ``--n-folds``: every labelled patient of the cohort. ``--bundle``
instead: the bundle's own network and weights (PyTorch; e.g. the shipped five-model ensemble) with its input
settings (sequences, slice size, central crop), on every labelled patient of the cohort.

    python -m benchmarks.h3k27m_localisation COHORT --model RUNS/full_fold0/model.pt ... --n-folds 5 \\
        --base-width 16 --spatial-size 96 --extra-sequences t1c --center-crop-fraction 0.5 [--lesion-pooling] \\
        [--out localisation.md]
    python -m benchmarks.h3k27m_localisation COHORT --bundle bundles/h3k27m_classification [--out localisation.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from benchmarks.h3k27m_visible_ceiling import report_aurocs


def _height(slices: np.ndarray, depth: int) -> float:
    return float(np.mean(slices) / max(1, depth - 1)) if len(slices) else float("nan")


def patient_localisation(net: torch.nn.Module, data: dict, min_tumour_pixels: int = 20) -> dict[str, float]:
    """One preprocessed patient (``image`` ``(C, H, W, D)``, ``label`` ``(1, H, W, D)``, ``h3k27m``): the status
    probability from the net's own lesion slices and from the reference's, mask Dice, slices used, heights."""
    from pipeline.inference.status import patient_status_from_slices, predict_patient_status

    volume = torch.as_tensor(np.asarray(data["image"]), dtype=torch.float32)
    reference = torch.as_tensor(np.asarray(data["label"]), dtype=torch.float32)[:1] > 0
    own = predict_patient_status(net, volume, min_tumour_pixels=min_tumour_pixels)
    # the same slice probabilities as logits (softmax of [log(1 - p), log p] is p), read under the reference mask
    slice_logits = torch.as_tensor(np.log(np.stack([1 - own.slice_probabilities, own.slice_probabilities], 1)
                                          .clip(1e-300)))
    oracle = patient_status_from_slices(slice_logits, reference.float(), volume, min_tumour_pixels)
    depth = volume.shape[-1]
    ref_slices = np.flatnonzero(reference[0].sum((0, 1)).numpy() > 0)
    predicted = own.mask_probability[0] > 0.5 if own.mask_probability is not None else torch.zeros_like(reference[0])
    overlap = float((predicted & reference[0]).sum())
    size = float(predicted.sum() + reference[0].sum())
    return {
        "patient_id": data.get("patient_id", ""),
        "status": int(data["h3k27m"]),
        "probability_own_slices": own.probability,
        "probability_reference_slices": oracle.probability,
        "dice": 2 * overlap / size if size else 1.0,
        "slices_own": len(own.slices_used),
        "slices_reference": len(ref_slices),
        "height_own": _height(own.slices_used, depth),
        "height_reference": _height(ref_slices, depth),
    }


def localisation_summary(table: pd.DataFrame) -> dict[str, float]:
    """AUROCs (own slices, reference slices, reference height alone) and localisation statistics of the table."""
    y = table["status"].to_numpy()
    both = table.dropna(subset=["height_own", "height_reference"])
    return {
        "status AUROC, the net's own lesion slices (shipped rule)": roc_auc_score(y, table["probability_own_slices"]),
        "status AUROC, the reference lesion's slices (oracle localiser)":
            roc_auc_score(y, table["probability_reference_slices"]),
        "AUROC of the reference lesion's height alone (1 - height)":
            roc_auc_score(both["status"], 1 - both["height_reference"]),
        "mask Dice, median": float(table["dice"].median()),
        "slices used per patient, own mask (mean)": float(table["slices_own"].mean()),
        "lesion slices per patient, reference (mean)": float(table["slices_reference"].mean()),
        "lesion height, own vs reference: Pearson r": float(np.corrcoef(both["height_own"],
                                                                         both["height_reference"])[0, 1]),
    }


def fold_models(models: list[Path], net_kwargs: dict, spatial_size: int, in_channels: int) -> list[torch.nn.Module]:
    """The co-training networks (``build_h3k27m_net("full", ...)``) with the state dicts in ``models``."""
    from pipeline.networks import build_h3k27m_net

    nets = []
    for model in models:
        net = build_h3k27m_net("full", img_size=spatial_size, in_channels=in_channels, **net_kwargs)
        net.load_state_dict(torch.load(model, map_location="cpu", weights_only=True))
        nets.append(net)
    return nets


def localisation_table(cohort: str | Path, nets: list[torch.nn.Module], n_folds: int | None,
                       sequence: str = "t2", extra_sequences: tuple[str, ...] = (), spatial_size: int = 96,
                       center_crop_fraction: float = 1.0, min_tumour_pixels: int = 20) -> pd.DataFrame:
    """One row per patient (see :func:`patient_localisation`), with the fold that read it."""
    from pipeline.data.datalists import cohort_datalist, status_datalists
    from transforms import build_transforms

    if n_folds is not None and len(nets) != n_folds:
        raise ValueError(f"--n-folds {n_folds} needs one model per fold, got {len(nets)}")
    if n_folds is None and len(nets) != 1:
        raise ValueError(f"{len(nets)} models without --n-folds: give one model, or one per fold with --n-folds")
    transform = build_transforms("validate", spatial_size=spatial_size, center_crop_fraction=center_crop_fraction,
                                 extra_image_keys=tuple(extra_sequences))
    rows = []
    for fold, net in enumerate(nets):
        if n_folds is None:
            items = [d for d in cohort_datalist(cohort, sequence, require_label=True, extra_sequences=extra_sequences)
                     if d["h3k27m"] in (0, 1)]
        else:
            items = status_datalists(cohort, sequence, fold, n_folds, 0, extra_sequences=extra_sequences)["validate"]
        for item in items:
            rows.append({"fold": fold, **patient_localisation(net, transform(item), min_tumour_pixels)})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, action="append",
                        help="a co-training model.pt (state dict); once per fold, in fold order, with --n-folds")
    source.add_argument("--bundle", type=Path, help="an H3K27M bundle: its network, weights and input settings")
    parser.add_argument("--n-folds", type=int, default=None)
    parser.add_argument("--sequence", default="t2")
    parser.add_argument("--extra-sequences", nargs="*", default=[])
    parser.add_argument("--base-width", type=int, default=16)
    parser.add_argument("--spatial-size", type=int, default=96)
    parser.add_argument("--center-crop-fraction", type=float, default=1.0)
    parser.add_argument("--lesion-pooling", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    for model in args.model or ():
        if not model.is_file():
            parser.exit(2, f"{model}: no such model file\n")
    sequences, size, crop = (args.sequence, *args.extra_sequences), args.spatial_size, args.center_crop_fraction
    try:
        if args.bundle is not None:  # the bundle's network, weights and input settings replace the options
            from pipeline.inference.status_model import load_status_model

            model = load_status_model(args.bundle, device="cpu", runtime="torch")
            nets, read_by = [model.network], f"bundle {args.bundle}"
            sequences, size, crop = model.reads, model.spatial_size, model.center_crop_fraction
        else:
            nets = fold_models(args.model, {"base_width": args.base_width, "lesion_pooling": args.lesion_pooling},
                               size, len(sequences))
            read_by = f"{len(nets)} model(s)"
        table = localisation_table(args.cohort, nets, args.n_folds, sequences[0], sequences[1:], size, crop)
        summary = localisation_summary(table)
    except (ValueError, RuntimeError, FileNotFoundError) as exc:
        parser.exit(2, f"{args.cohort}: {exc}\n")
    report_aurocs(f"Cohort `{args.cohort}`: {len(table)} patients ({int(table['status'].sum())} altered), "
                  f"{'+'.join(sequences)}, {size} px, central crop {crop:g}, {read_by}",
                  "what the model finds and reads | value", summary, args.out)


if __name__ == "__main__":
    main()
