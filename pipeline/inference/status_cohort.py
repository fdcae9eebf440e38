"""H3K27M status inference on a cohort: one CSV row per patient plus the tumour mask on the input grid.

``predictions.csv``: ``patient_id, center, probability_altered, predicted_status`` (``altered`` when
the probability is at least ``threshold``, else ``wild-type``), ``n_slices_used``, ``mask`` (the
written file) and ``status`` (``done`` or ``skipped`` with the reason). Masks are
``<patient_id>_<sequence>_seg.nii.gz`` (the project's prediction naming), mapped back to the input's grid and affine with the shared
``Invertd`` postprocessing. Every file is written atomically; a patient whose image cannot be read or
preprocessed is skipped and reported, the rest go on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from evaluation.atomic_io import atomic_write_text
from pipeline.data.writers import save_nifti_gz
from pipeline.inference.segmenter import mask_image_like
from pipeline.inference.status import predict_patient_status
from transforms import build_postprocessing, build_transforms
from transforms.vocabulary import prediction_file_name

PREDICTIONS_CSV = "predictions.csv"
logger = logging.getLogger(__name__)


def predict_cohort_status(
    net: torch.nn.Module,
    datalist: list[dict],
    out_dir: str | os.PathLike,
    spatial_size: int = 256,
    threshold: float = 0.5,
    sw_batch_size: int = 16,
    min_tumour_pixels: int = 20,
    write_masks: bool = True,
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every patient of ``datalist`` (per-sequence dicts from ``Cohort.datalist``); returns the table."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preprocessing = build_transforms("infer", spatial_size=spatial_size)
    postprocessing = build_postprocessing(preprocessing, threshold=0.5)
    rows = []
    for item in tqdm(datalist, desc="H3K27M status", unit="patient", disable=not progress):
        row = {"patient_id": item["patient_id"], "center": item.get("center", ""), "probability_altered": np.nan,
               "predicted_status": "", "n_slices_used": 0, "mask": "", "status": "done"}
        try:
            data = preprocessing({"image": item["image"], "patient_id": item["patient_id"]})
        except Exception as exc:  # an unreadable or corrupt image: skip the patient, report why
            row["status"] = f"skipped: {item['image']}: {type(exc).__name__}: {exc}"
            logger.warning("skipped %s: %s", item["patient_id"], row["status"])
            rows.append(row)
            continue
        pred = predict_patient_status(net, data["image"], sw_batch_size, min_tumour_pixels)
        row.update(probability_altered=pred.probability, n_slices_used=len(pred.slices_used),
                   predicted_status="altered" if pred.probability >= threshold else "wild-type")
        if write_masks and pred.mask_probability is not None:
            mask = postprocessing({**data, "pred": pred.mask_probability})["pred"]
            reference = nib.load(item["image"])
            path = out / prediction_file_name(item["patient_id"], item.get("sequence", "t2"))
            save_nifti_gz(path, mask_image_like(np.asarray(mask[0]), reference))
            row["mask"] = path.name
        rows.append(row)
    table = pd.DataFrame(rows)
    atomic_write_text(out / PREDICTIONS_CSV, table.to_csv(index=False))
    return table
