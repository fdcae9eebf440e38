"""Randomised synthetic styles: per-patient ranges of anatomy, lesion look, contrast and acquisition.

SynthSeg's lesson (Billot et al., Medical Image Analysis 2023): a network trained on images whose
contrast, shape and artefacts are drawn from wide ranges learns the anatomy instead of the
generator.  A :class:`Style` is a set of ranges; every patient of a cohort draws its own values.

* ``randomised`` -- the training style: wide ranges around clinical reality.
* ``heldout`` -- for model selection and honest reporting: its scanner, anatomy and lesion-texture
  ranges lie *outside* the training ranges (thicker slices, coarser in-plane resolution, stronger
  bias, noise, tilt, non-linearity and deformation, smaller and larger heads, more heterogeneous
  lesions), so a model that scores well on it has learned something that transfers.

The classic per-center cohorts (``center_a``/``b``/``c``) stay in :mod:`.scanner` and
:mod:`.contrast`; ``style="classic"`` in :func:`~pipeline.data.synthetic.generate_cohort` keeps them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .anatomy import AnatomyRanges
from .contrast import SequenceContrast
from .head import HeadLayers

Range = tuple[float, float]


@dataclass(frozen=True)
class Style:
    """Parameter ranges of a randomised cohort; values are drawn uniformly (``log_*``: log-uniformly)."""

    name: str
    # anatomy
    rotation_deg: Range = (0.0, 12.0)  # |pitch| of the head in the scanner; roll/yaw a third of it
    global_scale: Range = (0.84, 1.08)  # paediatric to large adult heads
    axis_scale: Range = (0.93, 1.07)
    displacement_rms_mm: Range = (1.5, 5.5)
    ventricle_expansion: Range = (0.0, 0.3)
    # head around the brain
    skull_mm: Range = (3.5, 9.0)
    fat_mm: Range = (1.5, 9.0)
    skin_mm: Range = (1.0, 3.5)
    csf_shell_mm: Range = (0.5, 3.0)
    # lesion look (relative to the patient's own tissue signals)
    t2_lesion_position: Range = (0.12, 1.05)  # 0 = grey matter, 1 = CSF brightness
    flair_lesion_ratio: Range = (1.15, 2.4)  # lesion / grey matter
    t1_lesion_ratio: Range = (0.45, 0.98)  # lesion / white matter (hypo- to isointense)
    faint_enhancement_ratio: Range = (1.08, 1.35)  # enhancing / white matter
    strong_enhancement_ratio: Range = (1.35, 2.3)
    texture_sd: Range = (0.02, 0.3)  # heterogeneity of the non-enhancing tumour
    texture_scale_mm: Range = (1.0, 4.0)
    edge_mm: Range = (0.7, 3.5)  # infiltrative rim width
    # acquisition
    slice_thickness_mm: Range = (3.0, 7.0)
    in_plane_mm: Range = (0.4, 1.2)
    tilt_deg: Range = (0.0, 20.0)  # oblique axial planes (pitch); roll a quarter of it
    log_intensity_scale: Range = (float(np.log(150.0)), float(np.log(4000.0)))
    bias_strength: Range = (0.0, 0.6)
    noise_level: Range = (0.005, 0.07)
    gamma: Range = (0.75, 1.35)  # intensity non-linearity of the reconstruction
    gibbs_alpha: Range = (0.0, 0.5)  # fraction of k-space lost to truncation (MONAI GibbsNoise)
    ghost_amplitude: Range = (0.0, 0.06)  # motion ghosts along the phase direction
    artefact_prob: float = 0.4  # probability of each of Gibbs ringing and ghosting
    fov_mm: Range = (210.0, 260.0)
    coverage_below_mm: Range = (8.0, 45.0)  # below the cerebellum: foramen magnum to C2
    coverage_above_mm: Range = (6.0, 18.0)
    storage_orientations: tuple[str, ...] = ("RAS", "LPS")

    def as_dict(self) -> dict:
        return asdict(self)


STYLES: dict[str, Style] = {
    "randomised": Style("randomised"),
    "heldout": Style(
        "heldout",
        rotation_deg=(12.0, 15.0), global_scale=(0.8, 0.84), axis_scale=(1.07, 1.09),
        displacement_rms_mm=(5.5, 7.0), ventricle_expansion=(0.3, 0.38),
        skull_mm=(9.0, 10.0), fat_mm=(9.0, 11.0),
        texture_sd=(0.3, 0.36), texture_scale_mm=(4.0, 5.5),
        slice_thickness_mm=(7.0, 7.5), in_plane_mm=(1.2, 1.3), tilt_deg=(20.0, 23.0),
        log_intensity_scale=(float(np.log(4000.0)), float(np.log(7000.0))), bias_strength=(0.6, 0.7),
        noise_level=(0.07, 0.08), gamma=(0.68, 0.75), gibbs_alpha=(0.5, 0.55), ghost_amplitude=(0.06, 0.07),
        artefact_prob=0.5,
    ),
}
STYLE_NAMES: tuple[str, ...] = ("classic", *STYLES)


def style_by_name(name: str) -> Style:
    """The randomised :class:`Style` called ``name``; ``ValueError`` naming the choices otherwise."""
    if name not in STYLES:
        raise ValueError(f"unknown style {name!r}; expected one of {', '.join(STYLE_NAMES)}")
    return STYLES[name]


def uniform(rng: np.random.Generator, r: Range) -> float:
    return float(rng.uniform(r[0], r[1]))


def sample_head_layers(rng: np.random.Generator, style: Style, head_scale: float) -> HeadLayers:
    """Layer thicknesses, scaled with the head (children have thinner skulls and scalps)."""
    return HeadLayers(csf_mm=uniform(rng, style.csf_shell_mm), skull_mm=uniform(rng, style.skull_mm) * head_scale,
                      diploe_fraction=float(rng.uniform(0.0, 0.6)), fat_mm=uniform(rng, style.fat_mm) * head_scale,
                      skin_mm=uniform(rng, style.skin_mm))


# Nominal tissue signals per sequence before per-patient randomisation (white matter about 0.4-0.9).
_TISSUES = {
    "t2": dict(csf=1.00, gm=0.52, wm=0.36, fat=0.80, muscle=0.28, marrow=0.75, eye=1.0, cord=0.45, bone=0.03),
    "flair": dict(csf=0.08, gm=0.56, wm=0.42, fat=0.75, muscle=0.32, marrow=0.70, eye=0.10, cord=0.45, bone=0.03),
    "t1c": dict(csf=0.22, gm=0.62, wm=0.88, fat=1.05, muscle=0.55, marrow=0.95, eye=0.18, cord=0.75, bone=0.03),
}
TISSUE_SD = 0.15  # log-normal spread of every nominal tissue signal


def sample_sequence_contrasts(rng: np.random.Generator, style: Style) -> dict[str, SequenceContrast]:
    """Per-patient tissue and lesion signals of T2, FLAIR and T1C; keeps each sequence's defining order
    (T2: CSF > GM > WM; FLAIR: CSF dark; T1C: WM > GM > CSF) but not its ratios."""
    out = {}
    for seq, nominal in _TISSUES.items():
        t = {k: v * float(np.exp(rng.normal(0.0, TISSUE_SD))) for k, v in nominal.items()}
        if seq == "t2":
            t["gm"] = max(t["gm"], t["wm"] * 1.08)
            t["csf"] = max(t["csf"], t["gm"] * 1.3)
            lesion = t["gm"] + uniform(rng, style.t2_lesion_position) * (t["csf"] - t["gm"])
            enhancing = lesion * float(rng.uniform(0.7, 1.0))
            necrosis = t["csf"] * float(rng.uniform(0.75, 1.05))  # cystic / necrotic: fluid-bright
        elif seq == "flair":
            t["csf"] = min(t["csf"], t["wm"] * 0.4)
            lesion = t["gm"] * uniform(rng, style.flair_lesion_ratio)
            enhancing = lesion * float(rng.uniform(0.75, 1.0))
            necrosis = lesion * float(rng.uniform(0.3, 1.0))  # fluid suppressed or proteinaceous
        else:
            t["wm"] = max(t["wm"], t["gm"] * 1.08)
            t["csf"] = min(t["csf"], t["gm"] * 0.6)
            lesion = t["wm"] * uniform(rng, style.t1_lesion_ratio)
            strong = rng.random() < 0.6
            enhancing = t["wm"] * uniform(rng, style.strong_enhancement_ratio if strong
                                          else style.faint_enhancement_ratio)
            necrosis = t["csf"] * float(rng.uniform(0.6, 1.3))
        out[seq] = SequenceContrast(csf=t["csf"], gm=t["gm"], wm=t["wm"], lesion=lesion, enhancing=enhancing,
                                    necrosis=necrosis, t1_weight=float(rng.uniform(0.3, 0.7)) if seq == "t1c" else 0.0,
                                    fat=t["fat"], muscle=t["muscle"], marrow=t["marrow"], eye=t["eye"],
                                    cord=t["cord"], bone=t["bone"])
    return out


@dataclass(frozen=True)
class ScannerDraw:
    """One sequence's acquisition and reconstruction, drawn per patient and sequence."""

    orientation: str
    intensity_scale: float
    bias_strength: float
    noise_level: float
    storage_slope: float
    thickness_mm: float
    in_plane_mm: float
    fov_mm: float
    tilt_deg: tuple[float, float]  # pitch (about x), roll (about y)
    gamma: float
    gibbs_alpha: float
    ghost_amplitude: float


def sample_scanner(rng: np.random.Generator, style: Style) -> ScannerDraw:
    """Acquisition parameters of one sequence (thickness, resolution, obliquity, artefacts, scaling)."""
    pitch = uniform(rng, style.tilt_deg) * float(rng.choice([-1.0, 1.0]))
    roll = uniform(rng, style.tilt_deg) * 0.25 * float(rng.choice([-1.0, 1.0]))
    gibbs = uniform(rng, style.gibbs_alpha) if rng.random() < style.artefact_prob else 0.0
    ghost = uniform(rng, style.ghost_amplitude) if rng.random() < style.artefact_prob else 0.0
    return ScannerDraw(
        orientation=str(rng.choice(style.storage_orientations)),
        intensity_scale=float(np.exp(uniform(rng, style.log_intensity_scale))),
        bias_strength=uniform(rng, style.bias_strength), noise_level=uniform(rng, style.noise_level),
        storage_slope=float(rng.choice([1.0, 1.0, 0.5, 0.25])), thickness_mm=round(uniform(rng, style.slice_thickness_mm), 2),
        in_plane_mm=uniform(rng, style.in_plane_mm), fov_mm=uniform(rng, style.fov_mm),
        tilt_deg=(pitch, roll), gamma=uniform(rng, style.gamma), gibbs_alpha=gibbs, ghost_amplitude=ghost)


def style_anatomy_ranges(style: Style) -> AnatomyRanges:
    """The anatomy draw of a style: head pitch up to ``rotation_deg`` (roll and yaw a third of it)."""
    hi = style.rotation_deg[1]
    return AnatomyRanges(rotation_sd_deg=(hi / 2.0, hi / 6.0, hi / 6.0), rotation_max_deg=hi,
                         global_scale=style.global_scale, axis_scale=style.axis_scale,
                         displacement_rms_mm=style.displacement_rms_mm, ventricle_expansion=style.ventricle_expansion)
