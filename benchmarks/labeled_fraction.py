"""Labeled-fraction experiment: semi-supervised MSCG (Hung et al. 2018) vs generator-only MSCG-Dis.

For every labeled fraction F, variant and seed, trains the segmentation bundle (``configs/train.json``, fold 0 of
the training cohort, ``--labeled_fraction F``) for the same number of generator steps (``base_epochs / F`` epochs
of the labeled loader), then scores the final generator (no model selection) on the fold-0 in-distribution
validation patients and on a held-out-style cohort: DSC and HD95 per patient on the bundle's preprocessed grid
(``spatial_size`` in-plane, HD95 in pixels of that grid), then the mean over patients. Both cohorts are
preprocessed once into ``RUNS/cohorts/`` (see :func:`preprocessed_cohort`).

    nice -n 19 env OMP_NUM_THREADS=1 python -m benchmarks.labeled_fraction --train DATA/train \\
        --heldout DATA/heldout --out RUNS --fractions 0.1,0.25,0.5,1.0 --seeds 0

Writes ``RUNS/labeled_fraction.csv`` (one row per run and cohort), ``RUNS/labeled_fraction.md`` (the table) and
``RUNS/labeled_fraction.png`` (DSC against labeled fraction, min-max over seeds).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from transforms.atomic_writer import atomic_write_bytes, atomic_write_text
from transforms.vocabulary import prediction_file_name

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "dmg_mscg_segmentation"
SEMI = {"disc_input": "hard", "k": 0.01, "unlabeled_weight": 0.1, "lambda_semi": 0.1, "t_semi": 0.2}
"""The semi-supervised GAN's settings: Hung et al.'s lambda_adv 0.01 (labeled) and 0.001 (unlabeled, = k *
unlabeled_weight), lambda_semi 0.1, T_semi 0.2; hard masks with straight-through gradients as the
discriminator's input (the choice measured by ``benchmarks.discriminator_giveaway``)."""


def width_args(spatial_size: int) -> list[str]:
    return ["--features", "[8,16,32,64,128]", "--disc_channels", "[16,32,64,128]", "--spatial_size", str(spatial_size)]


def train_run(args: argparse.Namespace, fraction: float, variant: str, seed: int, out: Path) -> None:
    """One bundle training run (skipped when its ``model.pt`` exists)."""
    if (out / "model.pt").exists():
        return
    epochs = max(1, math.ceil(args.base_epochs / fraction))
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", str(BUNDLE / "configs" / "train.json"),
               "--bundle_root", str(BUNDLE), "--dataset_dir", str(args.train), "--sequence", args.sequence,
               "--variant", variant, "--fold", "0", "--n_folds", "5", "--split_seed", "0", "--seed", str(seed),
               "--labeled_fraction", str(fraction), "--output_dir", str(out), "--num_epochs", str(epochs),
               "--val_interval", str(epochs), "--learning_rate", "0.0003", "--batch_size", "4", "--num_workers", "0",
               "--resume", "false", *width_args(args.spatial_size)]
    if variant != "MSCG-Dis":
        settings = {**SEMI, "semi_warmup_iterations": args.semi_warmup}
        for key, value in settings.items():
            command += [f"--{key}", str(value)]
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train.log", "w") as log:
        subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)


def trained_generator(variant: str, model_path: Path) -> torch.nn.Module:
    from pipeline.networks import build_variant

    generator = build_variant(variant, features=(8, 16, 32, 64, 128))[0]
    generator.load_state_dict(torch.load(model_path, map_location="cpu", weights_only=True))
    return generator.eval()


def preprocessed_volumes(items: list[dict], spatial_size: int) -> list[dict]:
    """The bundle's validation preprocessing of each item: ``(1, H, W, D)`` image and label."""
    from transforms import build_transforms

    transform = build_transforms("validate", spatial_size=spatial_size)
    return [transform(dict(item)) for item in items]


def score(generator: torch.nn.Module, volumes: list[dict], spatial_size: int) -> list[dict]:
    """Per-patient DSC and HD95 (pixels of the preprocessed grid) of the thresholded generator output."""
    from monai.inferers import SliceInferer
    from monai.metrics import compute_dice, compute_hausdorff_distance

    inferer = SliceInferer(roi_size=(spatial_size, spatial_size), sw_batch_size=16, spatial_dim=2)
    rows = []
    with torch.no_grad():
        for volume in volumes:
            pred = (torch.sigmoid(inferer(volume["image"][None].as_tensor(), generator)) > 0.5).float()
            label = volume["label"][None].as_tensor().float()
            dice = compute_dice(pred, label, include_background=True, ignore_empty=False).item()
            hd95 = compute_hausdorff_distance(pred, label, include_background=True, percentile=95).item()
            rows.append({"patient_id": volume["patient_id"], "dsc": dice, "hd95_px": hd95})
    return rows


def preprocessed_cohort(source: Path, dest: Path, sequence: str, spatial_size: int) -> Path:
    """``source``'s ``sequence`` images and masks after the bundle's 3D preprocessing (crop, resize to
    ``spatial_size``, normalise), written once as a small cohort so that every run does not redo it on a busy
    CPU. The bundle preprocesses them again (a near no-op on this grid); every run and score sees the same data."""
    import nibabel as nib

    from pipeline.data.datalists import cohort_datalist

    manifest = dest / "manifest.csv"
    if manifest.exists():
        return dest
    (dest / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    items = cohort_datalist(source, sequence, require_label=True)
    for item, volume in zip(items, preprocessed_volumes(items, spatial_size)):
        pid = item["patient_id"]
        label_name = f"images/{prediction_file_name(pid, sequence)}"
        for key, name in (("image", f"images/{pid}_{sequence}.nii.gz"), ("label", label_name)):
            data = volume[key][0].numpy().astype(np.float32 if key == "image" else np.uint8)
            nib.save(nib.Nifti1Image(data, volume[key].affine.numpy()), str(dest / name))
        rows.append({"patient_id": pid, "center": item["center"], sequence: f"images/{pid}_{sequence}.nii.gz",
                     f"label_{sequence}": label_name, "h3k27m": item["h3k27m"]})
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=["patient_id", "center", "t1c", "t2", "flair", "label_t1c", "label_t2",
                                                "label_flair", "h3k27m"], restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(manifest, buffer.getvalue())
    return dest


def all_scores(out: Path) -> list[dict]:
    """The scores of every finished run under ``out`` (each run's ``scores.json``), so that separate invocations
    (e.g. more seeds at one fraction, or the longer ablation) add up to one table."""
    rows = []
    for path in sorted(out.glob("F*_s*/scores.json")):
        rows += json.loads(path.read_text())
    return rows


def summarise(rows: list[dict]) -> str:
    """Markdown table: mean DSC / HD95 over patients, then min-max over seeds."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in rows:
        groups[(r["cohort"], r["fraction"], r["variant"])].append(r)
    lines = ["| cohort | labeled fraction | variant | seeds | DSC mean (min-max over seeds) | HD95 px |",
             "|---|---|---|---|---|---|"]
    for (cohort, fraction, variant), group in sorted(groups.items()):
        dsc = [r["dsc"] for r in group]
        hd = [r["hd95_px"] for r in group if np.isfinite(r["hd95_px"])]
        lines.append(f"| {cohort} | {fraction:g} | {variant} | {len(group)} | {np.mean(dsc):.3f} "
                     f"({min(dsc):.3f}-{max(dsc):.3f}) | {np.mean(hd) if hd else float('nan'):.1f} |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohorts = sorted({r["cohort"] for r in rows})
    fig, axes = plt.subplots(1, len(cohorts), figsize=(4.5 * len(cohorts), 3.5), squeeze=False)
    for ax, cohort in zip(axes[0], cohorts):
        for variant in sorted({r["variant"] for r in rows}):
            by_fraction: dict[float, list[float]] = defaultdict(list)
            for r in rows:
                if r["cohort"] == cohort and r["variant"] == variant:
                    by_fraction[r["fraction"]].append(r["dsc"])
            xs = sorted(by_fraction)
            mean = [np.mean(by_fraction[x]) for x in xs]
            low = [m - min(by_fraction[x]) for m, x in zip(mean, xs)]
            high = [max(by_fraction[x]) - m for m, x in zip(mean, xs)]
            ax.errorbar(xs, mean, yerr=[low, high], marker="o", capsize=3, label=variant)
        ax.set(xscale="log", xlabel="labeled fraction", ylabel="DSC", title=cohort)
        ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    atomic_write_bytes(path, buffer.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, required=True, help="training cohort (fold 0 is the in-distribution "
                        "validation)")
    parser.add_argument("--heldout", type=Path, required=True, help="held-out-style cohort")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    parser.add_argument("--variants", default="MSCG,MSCG-Dis")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--sequence", default="t2")
    parser.add_argument("--spatial_size", type=int, default=96)
    parser.add_argument("--base_epochs", type=float, default=2.0, help="epochs at F=1; F<1 trains base/F epochs")
    parser.add_argument("--semi_warmup", type=int, default=100, help="semi_warmup_iterations of the GAN runs")
    args = parser.parse_args(argv)

    from pipeline.data.datalists import cohort_datalist, segmentation_datalists

    args.train = preprocessed_cohort(args.train, args.out / "cohorts" / "train", args.sequence, args.spatial_size)
    args.heldout = preprocessed_cohort(args.heldout, args.out / "cohorts" / "heldout", args.sequence, args.spatial_size)
    fold0 = segmentation_datalists(args.train, args.sequence, fold=0, n_folds=5, seed=0)
    cohorts = {"in-distribution (fold 0)": fold0["validate"],
               "held-out style": cohort_datalist(args.heldout, args.sequence, require_label=True)}
    volumes = {name: preprocessed_volumes(items, args.spatial_size) for name, items in cohorts.items()}
    for seed in [int(s) for s in args.seeds.split(",")]:
        for fraction in [float(f) for f in args.fractions.split(",")]:
            for variant in args.variants.split(","):
                run = args.out / f"F{fraction:g}_{variant}_s{seed}"
                train_run(args, fraction, variant, seed, run)
                if not (run / "scores.json").exists():
                    generator = trained_generator(variant, run / "model.pt")
                    scores = []
                    for name, vols in volumes.items():
                        per_patient = score(generator, vols, args.spatial_size)
                        hd = [r["hd95_px"] for r in per_patient if np.isfinite(r["hd95_px"])]
                        scores.append({"cohort": name, "fraction": fraction, "variant": variant, "seed": seed,
                                       "dsc": float(np.mean([r["dsc"] for r in per_patient])),
                                       "hd95_px": float(np.mean(hd)) if hd else float("nan")})
                        print(scores[-1], flush=True)
                    atomic_write_text(run / "scores.json", json.dumps(scores, indent=1))
                rows = all_scores(args.out)
                buffer = io.StringIO()
                writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)
                atomic_write_text(args.out / "labeled_fraction.csv", buffer.getvalue())
                atomic_write_text(args.out / "labeled_fraction.md", summarise(rows))
    rows = all_scores(args.out)
    plot(rows, args.out / "labeled_fraction.png")
    print(summarise(rows))


if __name__ == "__main__":
    main()
