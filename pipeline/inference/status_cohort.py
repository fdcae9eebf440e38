"""H3K27M status inference on a cohort: one CSV row per patient plus the tumour mask on the input grid.

``predictions.csv``, one row per patient in the datalist's order:

* ``patient_id``, ``center``;
* ``probability_altered``: ``sigmoid(logit_uncalibrated / temperature)`` (:mod:`evaluation.calibration`);
* ``predicted_status``: ``altered`` when ``probability_altered >= threshold``, else ``wild-type``;
* ``slices_used``: the axial slices the patient's probability is the mean over (:mod:`.status`);
* ``logit_uncalibrated``: the patient's log-odds before temperature scaling (what
  ``python -m pipeline.inference.calibrate`` fits a temperature to);
* ``h3k27m``: the known status from the cohort (1 altered, 0 wild-type; empty when unknown);
* ``mask``: the written mask file; ``status``: ``done`` or ``skipped: <file>: <reason>``.

Masks are ``<patient_id>_<sequence>_seg.nii.gz`` (the project's prediction naming), mapped back to the input's
grid and affine with the shared ``Invertd`` postprocessing; a DICOM series gets a NIfTI mask with its affine.
Every file is written atomically; a patient whose image cannot be read or preprocessed (or that the caller
marks with a ``skip`` reason) is skipped and reported, the rest go on.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from evaluation.atomic_io import atomic_write_text
from evaluation.image_io import load_image
from pipeline.data.writers import save_nifti_gz
from pipeline.inference.segmenter import _model_input, _reason, mask_image_like
from pipeline.inference.status import predict_patient_status
from transforms import build_postprocessing, build_transforms
from transforms.vocabulary import prediction_file_name

PREDICTIONS_CSV = "predictions.csv"
PREDICTION_COLUMNS = ("patient_id", "center", "probability_altered", "predicted_status", "slices_used",
                      "logit_uncalibrated", "h3k27m", "mask", "status")
logger = logging.getLogger(__name__)


def _known_status(value: object) -> int | None:
    return int(value) if value in (0, 1) else None


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
    temperature: float = 1.0,
    features: MutableMapping[str, np.ndarray] | None = None,
    center_crop_fraction: float = 1.0,
    extra_sequences: Sequence[str] = (),
) -> pd.DataFrame:
    """Predict every patient of ``datalist`` (per-sequence dicts from ``Cohort.datalist``); returns the table
    written to ``out_dir/predictions.csv`` (columns: :data:`PREDICTION_COLUMNS`).

    An item with a ``skip`` entry (the reason) is listed as skipped without being read. ``features``, when
    given, receives each predicted patient's feature vector (mean over the slices used) by patient id, for
    the t-SNE of a report. ``extra_sequences``: the items' other sequence files read as input channels
    (resampled onto ``image``'s grid, where the mask is written)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    preprocessing = build_transforms("infer", spatial_size=spatial_size, center_crop_fraction=center_crop_fraction,
                                     extra_image_keys=tuple(extra_sequences))
    postprocessing = build_postprocessing(preprocessing, threshold=0.5)
    rows = []
    for item in tqdm(datalist, desc="H3K27M status", unit="patient", disable=not progress):
        row = {"patient_id": item["patient_id"], "center": item.get("center", ""), "probability_altered": np.nan,
               "predicted_status": "", "slices_used": 0, "logit_uncalibrated": np.nan,
               "h3k27m": _known_status(item.get("h3k27m")), "mask": "", "status": "done"}
        rows.append(row)
        if item.get("skip"):
            row["status"] = f"skipped: {item.get('image') or '-'}: {item['skip']}"
            continue
        try:
            reference = load_image(item["image"])
            with ExitStack() as files:
                inputs = {key: files.enter_context(_model_input(item[key], reference if key == "image" else None))
                          for key in ("image", *extra_sequences)}
                data = preprocessing({**inputs, "patient_id": item["patient_id"]})
            if not torch.isfinite(torch.as_tensor(data["image"])).all():
                raise ValueError("image contains NaN or infinite values")
        except Exception as exc:  # an unreadable or corrupt image: skip the patient, report why
            row["status"] = f"skipped: {item['image']}: {_reason(exc)}"
            logger.warning("skipped %s: %s", item["patient_id"], row["status"])
            continue
        pred = predict_patient_status(net, data["image"], sw_batch_size, min_tumour_pixels, temperature=temperature)
        row.update(probability_altered=pred.probability, slices_used=len(pred.slices_used),
                   logit_uncalibrated=pred.logit,
                   predicted_status="altered" if pred.probability >= threshold else "wild-type")
        if features is not None:
            features[str(item["patient_id"])] = pred.features
        if write_masks and pred.mask_probability is not None:
            mask = postprocessing({**data, "pred": pred.mask_probability})["pred"]
            path = out / prediction_file_name(item["patient_id"], item.get("sequence", "t2"))
            save_nifti_gz(path, mask_image_like(np.asarray(mask[0]), reference))
            row["mask"] = path.name
    table = pd.DataFrame(rows, columns=list(PREDICTION_COLUMNS))
    table["h3k27m"] = table["h3k27m"].astype("Int64")
    atomic_write_text(out / PREDICTIONS_CSV, table.to_csv(index=False))
    return table
