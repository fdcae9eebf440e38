"""Synthetic DMG cohort: patients built from the MNI ICBM152 2009a template, written as a manifest cohort.

Per patient: a random smooth deformation of the anatomy, a midline lesion (pons or
thalamus), T1C/T2/T2-FLAIR contrasts, clinical axial geometry per sequence (5-6 mm
slices, 0.45-1 mm in-plane, matrix 256-512), per-center scanner effects and an
H3K27M status correlated with imaging.  Output (paths in the CSV are relative to it)::

    DIR/images/{pid}_{seq}.nii.gz      int16, seq in t1c, t2, flair
    DIR/labels/{pid}_{seq}_seg.nii.gz  uint8 0/1 on the image's grid
    DIR/manifest.csv                   patient_id, center, t1c, t2, flair, label_t1c, label_t2,
                                       label_flair, h3k27m, then site, enhancement,
                                       lesion_volume_ml, enhancing_volume_ml, orientation
    DIR/synth.json                     generator parameters
    DIR/preview/{pid}.png              with preview=True

Everything is deterministic from ``seed``: patient ``i`` draws from
``np.random.SeedSequence([seed, i])`` only, so files are byte-identical across runs and
for any number of workers.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import multiprocessing as mp
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .anatomy import sample_anatomy
from .cohort import SEQUENCES
from .contrast import SEQUENCE_CONTRASTS, jitter_contrast, render_contrast
from .h3k27m import draw_h3k27m
from .lesion import SITES, LesionVolumes, render_lesion, sample_lesion_spec
from .sampling import acquire
from .scanner import bias_coefficients, center_profile, rician_magnitude, sample_geometry, storage_orientation, to_int16
from .template import TEMPLATE_NAME, Template, load_template
from .writers import atomic_write_text, nifti_image, save_nifti_gz

GENERATOR_VERSION = 1
MANIFEST_COLUMNS: tuple[str, ...] = (
    "patient_id", "center", "t1c", "t2", "flair", "label_t1c", "label_t2", "label_flair", "h3k27m",
    "site", "enhancement", "lesion_volume_ml", "enhancing_volume_ml", "orientation")
# Reference mask of each sequence: T2/FLAIR show the whole abnormal region, T1C the enhancing part.
MASK_COMPONENT = {"t1c": "enhancing", "t2": "whole", "flair": "whole"}
GAIN_SD = 0.1  # per-sequence receive-gain variation (log scale)
Z_MARGIN_MM = 4.0  # head coverage margin above and below the brain
_STREAMS = ("lesion", "anatomy", "status", "contrast", *SEQUENCES)


@dataclass(frozen=True)
class PatientTask:
    """Everything one worker needs to write one patient."""

    out_dir: str
    index: int
    patient_id: str
    center: str
    seed: int
    lesion_free: bool
    preview: bool


def patient_ids(n_patients: int) -> list[str]:
    """Stable ids ``synth_0000``, ``synth_0001``, ... (wider when ``n_patients`` > 10000)."""
    width = max(4, len(str(n_patients - 1)))
    return [f"synth_{i:0{width}d}" for i in range(n_patients)]


def _streams(seed: int, index: int) -> dict[str, np.random.Generator]:
    children = np.random.SeedSequence([seed, index]).spawn(len(_STREAMS))
    return {name: np.random.default_rng(s) for name, s in zip(_STREAMS, children)}


def _brain_corners(template: Template) -> np.ndarray:
    lo, hi = template.brain_lo_mm, template.brain_hi_mm
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def generate_patient(task: PatientTask) -> dict[str, str]:
    """Build and write one patient; returns its manifest row."""
    out = Path(task.out_dir)
    template = load_template()
    profile = center_profile(task.center)
    rngs = _streams(task.seed, task.index)

    lesion: LesionVolumes | None = None
    spec = None
    if not task.lesion_free:
        spec = sample_lesion_spec(rngs["lesion"])
        lesion = render_lesion(template, spec, rngs["lesion"])
    corners = _brain_corners(template)
    brain_centre = corners.mean(axis=0)
    anatomy = sample_anatomy(
        rngs["anatomy"], brain_centre, mass_center=None if spec is None else spec.center_mm,
        mass_strength=0.0 if spec is None else spec.mass_effect,
        mass_sigma=1.0 if spec is None else float(np.mean(spec.radii_mm)))
    patient_corners = anatomy.forward_linear(corners)
    patient_centre = anatomy.forward_linear(brain_centre)
    z_range = (patient_corners[:, 2].min() - Z_MARGIN_MM, patient_corners[:, 2].max() + Z_MARGIN_MM)
    status = "" if lesion is None else str(draw_h3k27m(rngs["status"], spec.site, lesion.enhancing_fraction))
    contrasts = {seq: jitter_contrast(SEQUENCE_CONTRASTS[seq], rngs["contrast"]) for seq in SEQUENCES}

    row = {"patient_id": task.patient_id, "center": task.center, "h3k27m": status,
           "site": "" if spec is None else spec.site, "enhancement": "" if spec is None else spec.enhancement,
           "orientation": profile.orientation}
    images, masks = {}, {}
    for seq in SEQUENCES:
        rng = rngs[seq]
        geom = sample_geometry(profile, rng, patient_centre, z_range)
        slab = geom.thickness_mm * float(np.linalg.norm(anatomy.linear[:, 2])) / abs(template.affine[2, 2])
        image_t, mask_t = render_contrast(template, contrasts[seq], lesion, slab, MASK_COMPONENT[seq])
        channels = [image_t] if mask_t is None else [image_t, mask_t]
        acquired = acquire(template, channels, geom, anatomy, bias_coefficients(rng, profile.bias_strength),
                           patient_centre)
        gain = profile.intensity_scale * float(np.exp(rng.normal(0.0, GAIN_SD)))
        signal = acquired.channels[0]
        signal *= acquired.bias
        signal *= gain
        where = (slice(None), *acquired.block)
        magnitude = rician_magnitude(acquired.shape, profile.noise_level * profile.intensity_scale, rng, signal, where)
        if profile.intensity_offset:
            magnitude += profile.intensity_offset
        data = to_int16(magnitude, profile.storage_slope)
        label = np.zeros(acquired.shape, dtype=np.uint8)
        if mask_t is not None:
            label[where] = acquired.channels[1] > 0.5
        # (nz, ny, nx) C-order -> (nx, ny, nz) view, then the center's storage orientation.
        img_data, affine = storage_orientation(data.T, geom.affine, profile.orientation)
        lab_data, _ = storage_orientation(label.T, geom.affine, profile.orientation)
        images[seq] = nifti_image(img_data, affine, slope=profile.storage_slope)
        masks[seq] = nifti_image(lab_data, affine)
        image_rel = f"images/{task.patient_id}_{seq}.nii.gz"
        label_rel = f"labels/{task.patient_id}_{seq}_seg.nii.gz"
        save_nifti_gz(out / image_rel, images[seq])
        save_nifti_gz(out / label_rel, masks[seq])
        row[seq], row[f"label_{seq}"] = image_rel, label_rel
        voxel_ml = geom.in_plane_mm ** 2 * geom.thickness_mm / 1000.0
        if seq == "t2":
            row["lesion_volume_ml"] = f"{int(label.sum()) * voxel_ml:.3f}"
        if seq == "t1c":
            row["enhancing_volume_ml"] = f"{int(label.sum()) * voxel_ml:.3f}"

    if task.preview:
        from .preview import mask_centroid_world, write_preview

        state = {"": "healthy", "1": "H3K27M altered", "0": "H3K27M wild-type"}[status]
        titles = {seq: f"{seq.upper()} | {task.center} | {state}" for seq in SEQUENCES}
        where = "no lesion" if spec is None else f"{spec.site}, enhancement {spec.enhancement}"
        centroid = mask_centroid_world(masks["t2"])
        write_preview(out / "preview" / f"{task.patient_id}.png", images, masks,
                      f"{task.patient_id}: {where} ({profile.orientation} storage, radiological view)", titles,
                      world_z=None if centroid is None else float(centroid[2]))
    return {k: row.get(k, "") for k in MANIFEST_COLUMNS}


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _init_worker() -> None:
    torch.set_num_threads(1)


def _pool_context() -> mp.context.BaseContext:
    methods = mp.get_all_start_methods()
    return mp.get_context("fork" if "fork" in methods else "spawn")


def cohort_parameters(n_patients: int, centers: Sequence[str], seed: int, lesion_free: bool) -> dict:
    """The generator parameters recorded in ``synth.json``."""
    return {
        "generator": "pipeline.data.synthetic", "version": GENERATOR_VERSION, "template": TEMPLATE_NAME,
        "n_patients": n_patients, "centers": list(centers), "seed": seed, "lesion_free": lesion_free,
        "sequences": list(SEQUENCES), "mask_component": MASK_COMPONENT,
        "center_assignment": "patient i -> centers[i % len(centers)]",
        "center_profiles": {c: asdict(center_profile(c)) for c in dict.fromkeys(centers)},
        "lesion_sites_mni_mm": SITES,
        "contrasts": {seq: asdict(c) for seq, c in SEQUENCE_CONTRASTS.items()},
    }


def generate_cohort(out_dir: str | os.PathLike, n_patients: int, centers: Sequence[str] = ("center_a", "center_b"),
                    seed: int = 0, preview: bool = False, workers: int | None = None, lesion_free: bool = False,
                    progress: bool = True) -> Path:
    """Write a synthetic DMG cohort to ``out_dir`` and return the path of its ``manifest.csv``.

    Patient ``i`` is scanned at ``centers[i % len(centers)]``.  ``lesion_free=True`` makes
    healthy brains (empty masks, empty ``h3k27m``).  ``workers`` processes (default
    ``min(2, cpu count)``) build patients in parallel; the output does not depend on it.
    """
    if isinstance(centers, str):
        centers = [centers]
    centers = [str(c) for c in centers]
    if int(n_patients) < 1:
        raise ValueError(f"n_patients must be at least 1, got {n_patients}")
    if not centers or any(not c.strip() for c in centers):
        raise ValueError(f"centers must be non-empty names, got {centers!r}")
    n_patients = int(n_patients)
    seed = int(seed)
    workers = min(2, os.cpu_count() or 1) if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    workers = min(workers, n_patients)
    out = Path(out_dir)
    for sub in ("images", "labels") + (("preview",) if preview else ()):
        (out / sub).mkdir(parents=True, exist_ok=True)

    tasks = [PatientTask(str(out), i, pid, centers[i % len(centers)], seed, bool(lesion_free), bool(preview))
             for i, pid in enumerate(patient_ids(n_patients))]
    rows: list[dict[str, str] | None] = [None] * n_patients
    load_template()  # warm the cache once; forked workers inherit it
    with tqdm(total=n_patients, desc="synth", unit="patient", disable=not progress) as bar:
        if workers == 1:
            with _torch_threads(1):
                for task in tasks:
                    rows[task.index] = generate_patient(task)
                    bar.update()
        else:
            with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                     initializer=_init_worker) as pool:
                futures = {pool.submit(generate_patient, task): task.index for task in tasks}
                for future in as_completed(futures):
                    rows[futures[future]] = future.result()
                    bar.update()

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(out / "synth.json", json.dumps(cohort_parameters(n_patients, centers, seed, lesion_free),
                                                     indent=2, sort_keys=True) + "\n")
    return atomic_write_text(out / "manifest.csv", buf.getvalue())
