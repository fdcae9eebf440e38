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
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .anatomy import AnatomyRanges, sample_anatomy
from .artefacts import apply_ghosting, apply_gibbs, apply_nonlinearity
from .cohort import SEQUENCES
from .contrast import SEQUENCE_CONTRASTS, jitter_contrast, render_contrast
from evaluation.classification_ceiling import CEILING_KEY, bayes_ceiling
from transforms.vocabulary import prediction_file_name

from .h3k27m import STYLE_STATUS_INTERCEPT, STYLE_STATUS_WEIGHTS, draw_h3k27m, draw_style_h3k27m
from .head import head_tissues, load_head
from .lesion import SITES, LesionVolumes, render_lesion, sample_lesion_spec, sample_style_lesion
from .sampling import acquire
from .scanner import (AcquisitionGeometry, CenterProfile, bias_coefficients, center_profile, rician_magnitude,
                      sample_geometry, storage_orientation, tilted_geometry, to_int16)
from .style import (STYLE_NAMES, Style, sample_head_layers, sample_scanner, sample_sequence_contrasts,
                    style_anatomy_ranges, style_by_name, uniform)
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
STORAGE_HEADROOM = 30000.0  # randomised styles: the int16 maximum the brightest voxel may reach
_STREAMS = ("lesion", "anatomy", "status", "contrast", *SEQUENCES, "head")


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
    style: str = "classic"
    skull_stripped: bool = True
    skull_stripped_fraction: float = 0.0  # randomised styles: share of patients drawn skull-stripped
    status_signal: float = 1.0  # randomised styles: multiplier of the H3K27M status logit


@dataclass(frozen=True)
class _Scan:
    """How one sequence is acquired and reconstructed (geometry, scanner scaling, bias, noise, artefacts)."""

    geometry: AcquisitionGeometry
    bias_coef: np.ndarray
    gain: float
    noise_sigma: float
    offset: float
    slope: float
    orientation: str
    gamma: float = 1.0
    gibbs_alpha: float = 0.0
    ghost_amplitude: float = 0.0


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


def _classic_scan(profile: CenterProfile, rng: np.random.Generator, centre: np.ndarray,
                  z_range: tuple[float, float]) -> _Scan:
    geom = sample_geometry(profile, rng, centre, z_range)
    bias = bias_coefficients(rng, profile.bias_strength)
    gain = profile.intensity_scale * float(np.exp(rng.normal(0.0, GAIN_SD)))
    return _Scan(geom, bias, gain, profile.noise_level * profile.intensity_scale, profile.intensity_offset,
                 profile.storage_slope, profile.orientation)


def _style_scan(style: Style, rng: np.random.Generator, centre: np.ndarray, extent: np.ndarray) -> tuple[_Scan, dict]:
    draw = sample_scanner(rng, style)
    geom = tilted_geometry(draw.fov_mm, draw.in_plane_mm, draw.thickness_mm, draw.tilt_deg,
                           centre + rng.normal(0.0, [3.0, 3.0, 0.0]), extent)
    bias = bias_coefficients(rng, draw.bias_strength)
    scan = _Scan(geom, bias, draw.intensity_scale, draw.noise_level * draw.intensity_scale, 0.0, draw.storage_slope,
                 draw.orientation, draw.gamma, draw.gibbs_alpha, draw.ghost_amplitude)
    params = {**asdict(draw), "matrix": geom.shape[0], "in_plane_mm": geom.in_plane_mm, "n_slices": geom.shape[2]}
    return scan, params


def _coverage(anatomy, corners: np.ndarray, below_mm: float, above_mm: float) -> np.ndarray:
    """Patient-world corners of the region a scan must cover: the brain, extended below and above."""
    pts = anatomy.forward_linear(corners)
    lo, hi = pts.min(0), pts.max(0)
    lo[2] -= below_mm
    hi[2] += above_mm
    return np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])


def _reconstruct(scan: _Scan, acquired, rng: np.random.Generator) -> np.ndarray:
    """Signal with bias, gain, non-linearity and artefacts, then Rician noise: the float magnitude image."""
    signal = np.zeros(acquired.shape, np.float32)
    block = (slice(None), *acquired.block)
    signal[block] = acquired.channels[0] * acquired.bias * scan.gain
    if scan.gamma != 1.0:
        signal = apply_nonlinearity(signal, scan.gamma, scan.gain)
    signal = apply_gibbs(signal, scan.gibbs_alpha)
    signal = apply_ghosting(signal, scan.ghost_amplitude, rng)
    magnitude = rician_magnitude(acquired.shape, scan.noise_sigma, rng, signal)
    if scan.offset:
        magnitude += scan.offset
    return magnitude


def generate_patient(task: PatientTask) -> dict[str, str]:
    """Build and write one patient; returns its manifest row.

    ``task.style`` ``"classic"``: the per-center scanner presets of :mod:`.scanner`; otherwise a
    randomised :class:`~.style.Style` drawn per patient and sequence, with skull, scalp, orbits and neck
    unless ``task.skull_stripped``.
    """
    out = Path(task.out_dir)
    classic = task.style == "classic"
    style = None if classic else style_by_name(task.style)
    rngs = _streams(task.seed, task.index)
    stripped = classic or task.skull_stripped or rngs["head"].random() < task.skull_stripped_fraction
    head = None if stripped else load_head()
    template = load_template() if head is None else head.template
    profile = center_profile(task.center) if classic else None

    lesion: LesionVolumes | None = None
    spec = None
    if not task.lesion_free:
        spec = (sample_lesion_spec(rngs["lesion"]) if classic else
                sample_style_lesion(rngs["lesion"], style.edge_mm, style.texture_sd, style.texture_scale_mm))
        lesion = render_lesion(template, spec, rngs["lesion"])
    corners = _brain_corners(template)
    brain_centre = corners.mean(axis=0)
    anatomy = sample_anatomy(
        rngs["anatomy"], brain_centre, mass_center=None if spec is None else spec.center_mm,
        mass_strength=0.0 if spec is None else spec.mass_effect,
        mass_sigma=1.0 if spec is None else float(np.mean(spec.radii_mm)),
        ranges=AnatomyRanges() if classic else style_anatomy_ranges(style))
    patient_corners = anatomy.forward_linear(corners)
    patient_centre = anatomy.forward_linear(brain_centre)
    probability = None
    if lesion is None:
        status = ""
    elif classic:
        status = str(draw_h3k27m(rngs["status"], spec.site, lesion.enhancing_fraction))
    else:
        drawn, probability = draw_style_h3k27m(rngs["status"], spec, task.status_signal)
        status = str(drawn)
    if classic:
        contrasts = {seq: jitter_contrast(SEQUENCE_CONTRASTS[seq], rngs["contrast"]) for seq in SEQUENCES}
        z_range = (patient_corners[:, 2].min() - Z_MARGIN_MM, patient_corners[:, 2].max() + Z_MARGIN_MM)
        tissues = None
    else:
        contrasts = sample_sequence_contrasts(rngs["contrast"], style)
        head_scale = float(np.cbrt(abs(np.linalg.det(np.linalg.inv(anatomy.linear)))))
        layers = sample_head_layers(rngs["head"], style, head_scale)
        tissues = None if head is None else head_tissues(head, layers)
        below = uniform(rngs["head"], style.coverage_below_mm) if head is not None else Z_MARGIN_MM
        above = (uniform(rngs["head"], style.coverage_above_mm) if head is not None else 0.0) + Z_MARGIN_MM
        extent = _coverage(anatomy, corners, below, above)

    row = {"patient_id": task.patient_id, "center": task.center, "h3k27m": status,
           "site": "" if spec is None else spec.site, "enhancement": "" if spec is None else spec.enhancement}
    parameters: dict = {"sequences": {}}  # recorded for randomised styles only
    if not classic:
        parameters.update(style=task.style, skull_stripped=bool(head is None),
                          lesion=None if spec is None else asdict(spec),
                          h3k27m_probability=probability, anatomy_scale=head_scale,
                          ventricle_expansion=anatomy.ventricle_strength,
                          head_layers=asdict(layers), contrasts={k: asdict(v) for k, v in contrasts.items()})
    images, masks = {}, {}
    for seq in SEQUENCES:
        rng = rngs[seq]
        if classic:
            scan = _classic_scan(profile, rng, patient_centre, z_range)
            parameters["sequences"][seq] = {"thickness_mm": scan.geometry.thickness_mm}
        else:
            scan, parameters["sequences"][seq] = _style_scan(style, rng, patient_centre, extent)
        geom = scan.geometry
        slab = geom.thickness_mm * float(np.linalg.norm(anatomy.linear[:, 2])) / abs(template.affine[2, 2])
        image_t, mask_t = render_contrast(template, contrasts[seq], lesion, slab, MASK_COMPONENT[seq], head=tissues)
        channels = [image_t] if mask_t is None else [image_t, mask_t]
        acquired = acquire(template, channels, geom, anatomy, scan.bias_coef, patient_centre)
        magnitude = _reconstruct(scan, acquired, rng)
        slope = scan.slope if classic else max(scan.slope, float(magnitude.max()) / STORAGE_HEADROOM)
        data = to_int16(magnitude, slope)
        label = np.zeros(acquired.shape, dtype=np.uint8)
        if mask_t is not None:
            label[(slice(None), *acquired.block)] = acquired.channels[1] > 0.5
        # (nz, ny, nx) C-order -> (nx, ny, nz) view, then the storage orientation.
        img_data, affine = storage_orientation(data.T, geom.affine, scan.orientation)
        lab_data, _ = storage_orientation(label.T, geom.affine, scan.orientation)
        images[seq] = nifti_image(img_data, affine, slope=slope)
        masks[seq] = nifti_image(lab_data, affine)
        image_rel = f"images/{task.patient_id}_{seq}.nii.gz"
        label_rel = f"labels/{prediction_file_name(task.patient_id, seq)}"
        save_nifti_gz(out / image_rel, images[seq])
        save_nifti_gz(out / label_rel, masks[seq])
        row[seq], row[f"label_{seq}"] = image_rel, label_rel
        voxel_ml = geom.in_plane_mm ** 2 * geom.thickness_mm / 1000.0
        if seq == "t2":
            row["lesion_volume_ml"] = f"{int(label.sum()) * voxel_ml:.3f}"
            row["orientation"] = scan.orientation
        if seq == "t1c":
            row["enhancing_volume_ml"] = f"{int(label.sum()) * voxel_ml:.3f}"
    if not classic:
        atomic_write_text(out / "parameters" / f"{task.patient_id}.json",
                          json.dumps(parameters, indent=1, sort_keys=True, default=float) + "\n")

    if task.preview:
        from .preview import mask_centroid_world, write_preview

        state = {"": "healthy", "1": "H3K27M altered", "0": "H3K27M wild-type"}[status]
        titles = {seq: f"{seq.upper()} | {task.center} | {state}" for seq in SEQUENCES}
        where = "no lesion" if spec is None else f"{spec.site}, enhancement {spec.enhancement}"
        centroid = mask_centroid_world(masks["t2"])
        write_preview(out / "preview" / f"{task.patient_id}.png", images, masks,
                      f"{task.patient_id}: {where} ({row['orientation']} storage, radiological view)", titles,
                      world_z=None if centroid is None else float(centroid[2]))
    manifest_row = {k: row.get(k, "") for k in MANIFEST_COLUMNS}
    return manifest_row if probability is None else {**manifest_row, "h3k27m_probability": probability}


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
    """``fork`` (workers inherit the loaded template) only while this process runs a single thread: forking
    a process with other threads (a prefetching segmenter, a test runner's helpers) can leave a lock held
    in the child forever. Otherwise ``forkserver`` (or ``spawn``): each worker loads the template itself."""
    methods = mp.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return mp.get_context("fork")
    return mp.get_context("forkserver" if "forkserver" in methods else "spawn")


def cohort_parameters(n_patients: int, centers: Sequence[str], seed: int, lesion_free: bool,
                      style: str = "classic", skull_stripped: bool = True, skull_stripped_fraction: float = 0.0) -> dict:
    """The generator parameters recorded in ``synth.json``."""
    common = {
        "generator": "pipeline.data.synthetic", "version": GENERATOR_VERSION, "template": TEMPLATE_NAME,
        "n_patients": n_patients, "centers": list(centers), "seed": seed, "lesion_free": lesion_free,
        "sequences": list(SEQUENCES), "mask_component": MASK_COMPONENT, "style": style,
        "skull_stripped": skull_stripped, "skull_stripped_fraction": 0.0 if skull_stripped else skull_stripped_fraction,
        "center_assignment": "patient i -> centers[i % len(centers)]",
    }
    if style == "classic":
        return {**common, "center_profiles": {c: asdict(center_profile(c)) for c in dict.fromkeys(centers)},
                "lesion_sites_mni_mm": SITES,
                "contrasts": {seq: asdict(c) for seq, c in SEQUENCE_CONTRASTS.items()}}
    return {**common, "style_ranges": style_by_name(style).as_dict(),
            "per_patient_parameters": "parameters/<patient_id>.json",
            "note": "centers are labels only: every patient and sequence draws its own scanner from the style"}


def generate_cohort(out_dir: str | os.PathLike, n_patients: int, centers: Sequence[str] = ("center_a", "center_b"),
                    seed: int = 0, preview: bool = False, workers: int | None = None, lesion_free: bool = False,
                    progress: bool = True, style: str = "classic", skull_stripped: bool = False,
                    skull_stripped_fraction: float = 0.0, status_signal: float = 1.0) -> Path:
    """Write a synthetic DMG cohort to ``out_dir`` and return the path of its ``manifest.csv``.

    Patient ``i`` is scanned at ``centers[i % len(centers)]``.  ``lesion_free=True`` makes
    healthy brains (empty masks, empty ``h3k27m``).  ``workers`` processes (default
    ``min(2, cpu count)``) build patients in parallel; the output does not depend on it.
    ``style``: ``"classic"`` (per-center presets, skull-stripped) or a randomised style of
    :data:`pipeline.data.style.STYLES` (``"randomised"`` for training, ``"heldout"`` for selection),
    raw clinical scans with skull and scalp unless ``skull_stripped`` (or, per patient, with probability
    ``skull_stripped_fraction``).  Randomised styles draw the H3K27M status from a logistic model of the
    lesion's latent variables whose logit ``status_signal`` multiplies (:mod:`.h3k27m`), and ``synth.json``
    records the cohort's Bayes-optimal AUROC and accuracy under ``h3k27m_ceiling``.
    """
    if not 0.0 <= float(skull_stripped_fraction) <= 1.0:
        raise ValueError(f"skull_stripped_fraction must be in [0, 1], got {skull_stripped_fraction}")
    if style not in STYLE_NAMES:
        raise ValueError(f"unknown style {style!r}; expected one of {', '.join(STYLE_NAMES)}")
    if not (np.isfinite(status_signal) and status_signal >= 0):
        raise ValueError(f"status_signal must be a finite number >= 0, got {status_signal}")
    if style == "classic" and status_signal != 1.0:
        raise ValueError("status_signal applies to the randomised styles only; the classic status model is fixed")
    skull_stripped = True if style == "classic" else bool(skull_stripped)
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

    tasks = [PatientTask(str(out), i, pid, centers[i % len(centers)], seed, bool(lesion_free), bool(preview),
                         style, skull_stripped, float(skull_stripped_fraction), float(status_signal))
             for i, pid in enumerate(patient_ids(n_patients))]
    rows: list[dict[str, str] | None] = [None] * n_patients
    load_template() if skull_stripped else load_head()  # warm the cache once; forked workers inherit it
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
    writer = csv.DictWriter(buf, fieldnames=list(MANIFEST_COLUMNS), lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    document = cohort_parameters(n_patients, centers, seed, lesion_free, style, skull_stripped,
                                 float(skull_stripped_fraction))
    if style != "classic" and not lesion_free:
        ceiling = bayes_ceiling([int(r["h3k27m"]) for r in rows], [r["h3k27m_probability"] for r in rows])
        document[CEILING_KEY] = {**ceiling, "status_signal": float(status_signal),
                                 "status_model": {"intercept": STYLE_STATUS_INTERCEPT, "weights": STYLE_STATUS_WEIGHTS,
                                                  "source": "pipeline.data.h3k27m.style_status_probability"}}
    atomic_write_text(out / "synth.json", json.dumps(document, indent=2, sort_keys=True) + "\n")
    return atomic_write_text(out / "manifest.csv", buf.getvalue())
