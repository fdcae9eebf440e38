"""``predictions.csv`` of the H3K27M bundle's ``SupervisedEvaluator``: an Ignite handler, one row per patient.

The bundle's ``inference.json`` runs :class:`~pipeline.networks.H3K27MExportNet` over every axial slice of a
preprocessed volume with MONAI's ``SliceInferer``; its ``pred`` ``(3, H, W, D)`` holds, per slice, the status
logits (broadcast over the slice) and the tumour-mask logit. :class:`PatientStatusWriter` turns each decollated
item into a patient's probability with :func:`~pipeline.inference.status.patient_status_from_volume_output`
(the rule of :mod:`pipeline.inference.status`: mean slice probability over the slices the mask branch marks as
tumour; temperature scaling on the patient logit) and writes, when the run completes, the table of
:func:`~pipeline.inference.status_cohort.predict_cohort_status` (its columns,
:data:`~pipeline.inference.status_cohort.PREDICTION_COLUMNS`), atomically. ``mask`` is the file the
postprocessing's ``SaveImaged`` wrote (``savepath_in_metadict=True``), or empty; ``h3k27m`` the known status
when the data list has one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from evaluation.atomic_io import atomic_write_text
from pipeline.inference.status import patient_status_from_volume_output
from pipeline.inference.status_cohort import PREDICTION_COLUMNS, PREDICTIONS_CSV
from transforms.vocabulary import STATUS_NAMES, nifti_stem

if TYPE_CHECKING:
    from ignite.engine import Engine

__all__ = ["PatientStatusWriter"]


class PatientStatusWriter:
    """Collect one status row per patient at every iteration; write ``output_dir/predictions.csv`` at the end.

    Args:
        output_dir: folder of ``predictions.csv`` (created when missing).
        threshold: ``predicted_status`` is ``altered`` when ``probability_altered >= threshold``.
        temperature: P(altered) = sigmoid(patient logit / temperature) (1: unchanged; :mod:`.status`).
        min_tumour_pixels: a slice counts as tumour when the mask branch marks at least this many pixels.
        aggregation: slice probabilities -> patient (``evaluation.patient_probabilities``' ``how``).
        pred_key: the network output ``(num_classes + 1, H, W, D)`` on the preprocessed grid.
        image_key: the preprocessed image ``(1, H, W, D)`` (decides which slices show the head).
        mask_key: the postprocessed mask written by ``SaveImaged(savepath_in_metadict=True)``, if any.
        num_classes: status classes at the front of ``pred``.
        filename: name of the table in ``output_dir``.

    Example (in a bundle config)::

        {"_target_": "pipeline.inference.status_writer.PatientStatusWriter", "output_dir": "@output_dir",
         "threshold": "@threshold", "temperature": "@temperature"}
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        threshold: float = 0.5,
        temperature: float = 1.0,
        min_tumour_pixels: int = 20,
        aggregation: str = "mean",
        pred_key: str = "pred",
        image_key: str = "image",
        mask_key: str | None = "pred_mask",
        num_classes: int = 2,
        filename: str = PREDICTIONS_CSV,
    ) -> None:
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.output_dir, self.filename = Path(output_dir), filename
        self.threshold, self.temperature = float(threshold), float(temperature)
        self.min_tumour_pixels, self.aggregation, self.num_classes = int(min_tumour_pixels), aggregation, num_classes
        self.pred_key, self.image_key, self.mask_key = pred_key, image_key, mask_key
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def reset(self, engine: Engine | None = None) -> None:
        self.rows = []

    def __call__(self, engine: Engine) -> None:
        batch, output = engine.state.batch, engine.state.output
        if isinstance(output, dict):  # an evaluator that does not decollate
            raise ValueError("PatientStatusWriter needs decollated items (SupervisedEvaluator(decollate=True))")
        for item, out in zip(batch, output):
            self.rows.append(self.row({**item, **out}))

    def row(self, data: dict) -> dict:
        """The ``predictions.csv`` row of one decollated item (batch and output keys together)."""
        image = data[self.image_key]
        source = str(getattr(image, "meta", {}).get("filename_or_obj", ""))
        status = patient_status_from_volume_output(data[self.pred_key], image, self.min_tumour_pixels,
                                                   self.aggregation, self.temperature, self.num_classes)
        mask = data.get(self.mask_key) if self.mask_key else None
        saved = str(getattr(mask, "meta", {}).get("saved_to", "")) if mask is not None else ""
        known = data.get("h3k27m")
        return {"patient_id": data.get("patient_id") or nifti_stem(source), "center": data.get("center", ""),
                "probability_altered": status.probability,
                "predicted_status": STATUS_NAMES[int(status.probability >= self.threshold)],
                "slices_used": len(status.slices_used), "logit_uncalibrated": status.logit,
                "h3k27m": int(known) if known in (0, 1) else None, "mask": Path(saved).name if saved else "",
                "status": "done"}

    def write(self, engine: Engine | None = None) -> Path:
        """Write the collected rows (atomically); returns the table's path."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / self.filename
        table = pd.DataFrame(self.rows, columns=list(PREDICTION_COLUMNS))
        table["h3k27m"] = table["h3k27m"].astype("Int64")
        atomic_write_text(path, table.to_csv(index=False))
        return path

