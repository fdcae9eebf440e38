"""Helpers the tests share (fixtures are in ``conftest.py``): a tiny labelled cohort written with nibabel (fast,
unlike the full synthetic generator), a copy of a bundle's configs, a tiny random MSCG generator, DICOM series
written from a NIfTI, and a module counter."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import SimpleITK as sitk
import torch

from evaluation.image_io import kept_locale
from pipeline.networks import build_generator
from transforms import build_transforms
from transforms.vocabulary import prediction_file_name

TINY_SHAPE = (40, 36, 8)
TINY_FEATURES = [4, 8, 16]


def write_tiny_cohort(root: Path, n_patients: int = 6, seed: int = 0, unlabeled: int = 0,
                      extra_sequences: tuple[str, ...] = ()) -> Path:
    """Patients with a bright blob (the 'lesion') in a dim ellipse (the 'head'), two centers, RAS and LPS storage.
    ``extra_sequences`` (e.g. ``("flair",)``): an image and label of each beside the T2 ones (other contrast and
    noise, same lesion; drawn from their own random stream, so the T2 images do not change)."""
    rng = np.random.default_rng(seed)
    extra_rng = np.random.default_rng([seed, 1])
    rows = []
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in TINY_SHAPE], indexing="ij"), -1).astype(float)
    for i in range(n_patients + unlabeled):
        pid, center = f"tiny_{i:02d}", ("center_a", "center_b")[i % 2]
        head = (((grid - np.array(TINY_SHAPE) / 2) / (np.array(TINY_SHAPE) * 0.42)) ** 2).sum(-1) < 1
        centre = np.array([20, 18, 4]) + rng.integers(-4, 5, 3) * np.array([1, 1, 0])
        blob = (((grid - centre) / np.array([5, 4, 2.5])) ** 2).sum(-1) < 1
        image = (head * 100 + blob * 150 + rng.normal(0, 5, TINY_SHAPE) * head).astype(np.float32)
        affine = np.diag([0.9, 0.9, 5.5, 1.0])
        if i % 2:  # LPS storage
            affine = np.diag([-0.9, -0.9, 5.5, 1.0])
            affine[:2, 3] = 0.9 * (np.array(TINY_SHAPE[:2]) - 1)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), str(root / "images" / f"{pid}_t2.nii.gz"))
        row = {"patient_id": pid, "center": center, "t2": f"images/{pid}_t2.nii.gz", "h3k27m": i % 2}
        if i < n_patients:
            nib.save(nib.Nifti1Image(blob.astype(np.uint8), affine), str(root / "labels" / prediction_file_name(pid, "t2")))
            row["label_t2"] = f"labels/{prediction_file_name(pid, 't2')}"
        for k, seq in enumerate(extra_sequences, start=1):
            extra = (head * (100 - 15 * k) + blob * (150 + 40 * k) + extra_rng.normal(0, 8, TINY_SHAPE) * head)
            nib.save(nib.Nifti1Image(extra.astype(np.float32), affine), str(root / "images" / f"{pid}_{seq}.nii.gz"))
            row[seq] = f"images/{pid}_{seq}.nii.gz"
            if i < n_patients:
                nib.save(nib.Nifti1Image(blob.astype(np.uint8), affine),
                         str(root / "labels" / prediction_file_name(pid, seq)))
                row[f"label_{seq}"] = f"labels/{prediction_file_name(pid, seq)}"
        rows.append(row)
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


def count_modules(module: torch.nn.Module, kind: type) -> int:
    """How many submodules of ``module`` (itself included) are instances of ``kind``."""
    return sum(isinstance(m, kind) for m in module.modules())


ONE_NET_H3K27M = {"ensemble_size": 1}
"""inference.json key of a bundle with one H3K27M net (the shipped bundle is an ensemble of the five fold models): for
tests that put one tiny net in a bundle copy."""
ONE_CHANNEL_H3K27M = {"extra_sequences": [], "lesion_pooling": False, "center_crop_fraction": 1.0, **ONE_NET_H3K27M}
"""inference.json keys of one one-channel H3K27M net with the paper's head (the shipped bundle reads T2 + T1C with lesion
pooling): for tests that put a tiny ``build_h3k27m_export_net("full", base_width=8, img_size=64)`` in a bundle copy."""


def h3k27m_net_keys(bundle: Path) -> dict[str, object]:
    """``in_channels`` and ``lesion_pooling`` of the network a bundle's inference.json builds (the shipped one reads
    T2 + T1C with lesion pooling): a tiny checkpoint must have them to load into its ``network_def``."""
    config = json.loads((bundle / "configs" / "inference.json").read_text())
    return {"in_channels": 1 + len(config["extra_sequences"]), "lesion_pooling": config["lesion_pooling"]}


def copy_bundle(src: Path, dest: Path, **config: object) -> Path:
    """configs/, docs/, scripts/ (the carried code its configs name) and LICENSE of ``src`` with ``config`` written
    into the copied inference.json."""
    for folder in ("configs", "docs", "scripts"):
        if (src / folder).is_dir():
            shutil.copytree(src / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(src / "LICENSE", dest / "LICENSE")
    inference = dest / "configs" / "inference.json"
    inference.write_text(json.dumps({**json.loads(inference.read_text()), **config}, indent=4))
    (dest / "models").mkdir()
    return dest


def tiny_generator(cohort_dir: Path, seed: int = 0, features: list[int] = TINY_FEATURES) -> torch.nn.Module:
    """Seeded random generator at 32² whose head bias is centred on patient tiny_00's median logit."""
    torch.manual_seed(seed)
    net = build_generator("MSCG", features=features).eval()
    volume = build_transforms("infer", spatial_size=32)({"image": str(cohort_dir / "images" / "tiny_00_t2.nii.gz")})
    with torch.no_grad():
        net.head.bias -= net(volume["image"].as_tensor().permute(3, 0, 1, 2)).median()
    return net


def write_dicom_series(nifti: nib.Nifti1Image, folder: Path, series_uid: str = "1.2.826.0.1.3680043.2.1125.1",
                       reverse_names: bool = True) -> Path:
    """One DICOM file per axial slice of ``nifti`` (int16), written with SimpleITK/GDCM.

    The file names run against the slice order when ``reverse_names``, so a reader that sorts by
    name instead of by position gets the volume upside down.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asanyarray(nifti.dataobj).astype(np.int16)
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0))  # (x, y, z) -> sitk's (z, y, x)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nifti.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with kept_locale():  # GDCM's writer sets LC_CTYPE to "C"
        _write_slices(image, writer, folder, series_uid, spacing, reverse_names)
    return folder


def _write_slices(image, writer, folder: Path, series_uid: str, spacing: np.ndarray, reverse_names: bool) -> None:
    direction, n = image.GetDirection(), image.GetDepth()
    for k in range(n):
        slice_k = image[:, :, k]
        for tag, value in {
            "0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0010|0020": "SYNTH",
            "0020|000d": series_uid + ".0", "0020|000e": series_uid, "0020|0013": str(k + 1),
            "0020|0037": "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6],
                                                         direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": f"{spacing[2]:.10g}", "0008|0018": f"{series_uid}.{k + 1}",
        }.items():
            slice_k.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{(n - 1 - k) if reverse_names else k:03d}.dcm"))
        writer.Execute(slice_k)


def dicom_cohort(tiny_cohort: Path, root: Path, patients: tuple[str, ...] = ("tiny_00", "tiny_01")) -> Path:
    """A copy of the tiny cohort whose ``patients`` have their T2 as a DICOM series folder (labels stay NIfTI)."""
    shutil.copytree(tiny_cohort.parent, root / "cohort")
    manifest = root / "cohort" / tiny_cohort.name
    table = pd.read_csv(manifest)
    for pid in patients:
        image = nib.load(root / "cohort" / "images" / f"{pid}_t2.nii.gz")
        write_dicom_series(image, root / "cohort" / "dicom" / pid)
        table.loc[table.patient_id == pid, "t2"] = f"dicom/{pid}"
    table.to_csv(manifest, index=False)
    return manifest
