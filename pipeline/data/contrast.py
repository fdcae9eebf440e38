"""MRI contrasts (T1C, T2, T2-FLAIR) from tissue maps and lesion components, in template space.

Intensities are relative (white matter about 0.4-0.9); scanner gain, bias, noise and
storage scaling are applied later on the acquisition grid.  The slice profile of a
thick axial slice is simulated here by averaging the 1 mm volume along z over the
slice thickness (partial volume), for the image and its soft lesion mask alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from .lesion import LesionVolumes
from .template import Template


@dataclass(frozen=True)
class SequenceContrast:
    """Relative signal of each tissue class; ``t1_weight`` blends in the template T1 (T1C only)."""

    csf: float
    gm: float
    wm: float
    lesion: float
    enhancing: float
    necrosis: float
    t1_weight: float = 0.0
    # tissues around the brain (raw clinical scans; see :mod:`.head`)
    fat: float = 0.0
    muscle: float = 0.0
    marrow: float = 0.0
    eye: float = 0.0
    cord: float = 0.0
    bone: float = 0.0


# T2: CSF > GM > WM, lesion bright.  FLAIR: CSF dark, lesion bright.
# T1C: WM > GM > CSF, lesion hypointense, enhancing part bright, necrosis dark.
SEQUENCE_CONTRASTS: dict[str, SequenceContrast] = {
    "t1c": SequenceContrast(csf=0.22, gm=0.62, wm=0.88, lesion=0.48, enhancing=1.50, necrosis=0.25, t1_weight=0.6),
    "t2": SequenceContrast(csf=1.00, gm=0.52, wm=0.36, lesion=0.86, enhancing=0.68, necrosis=0.95),
    "flair": SequenceContrast(csf=0.08, gm=0.56, wm=0.42, lesion=0.95, enhancing=0.80, necrosis=0.45),
}
CONTRAST_JITTER_SD = 0.04  # log-normal per-patient variation of every coefficient


def jitter_contrast(contrast: SequenceContrast, rng: np.random.Generator) -> SequenceContrast:
    """Per-patient variation of the tissue signals (order of draws is fixed)."""
    f = np.exp(rng.normal(0.0, CONTRAST_JITTER_SD, size=6))
    c = contrast
    return replace(c, csf=c.csf * f[0], gm=c.gm * f[1], wm=c.wm * f[2], lesion=c.lesion * f[3],
                   enhancing=c.enhancing * f[4], necrosis=c.necrosis * f[5])


def slab_kernel(thickness_vox: float) -> np.ndarray:
    """Normalised box profile of width ``thickness_vox`` with fractional end weights."""
    half = thickness_vox / 2.0
    n = int(np.ceil(half - 0.5))
    offsets = np.arange(-n, n + 1, dtype=np.float64)
    weights = np.clip(half + 0.5 - np.abs(offsets), 0.0, 1.0)
    return (weights / weights.sum()).astype(np.float32)


HEAD_SIGNALS = {"fat": "fat", "muscle": "muscle", "marrow": "marrow", "eye": "eye", "cord": "cord", "bone": "bone",
                "csf_shell": "csf"}  # head tissue map -> SequenceContrast field


def render_contrast(template: Template, contrast: SequenceContrast, lesion: LesionVolumes | None,
                    slab_vox: float, mask_component: str = "whole",
                    head: dict[str, np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Template-space image and soft reference mask, both averaged over the slice profile along z.

    ``mask_component`` is the lesion part that the sequence's reference mask shows:
    ``"whole"`` (T2, FLAIR) or ``"enhancing"`` (T1C).  The mask is ``None`` without a lesion.
    ``head`` (tissue maps of :func:`~.head.head_tissues` on ``template``'s grid) adds skull, scalp,
    orbits and neck around the brain.
    """
    c = contrast
    tissue_mix = c.csf * template.csf + c.gm * template.gm + c.wm * template.wm
    if c.t1_weight > 0:
        # Template T1 rescaled so that its white matter matches ``c.wm``; keeps the template's fine structure.
        image = (1.0 - c.t1_weight) * tissue_mix + c.t1_weight * (c.wm / 0.87) * template.t1
    else:
        image = tissue_mix
    image = image.astype(np.float32, copy=False)
    for name, fraction in (head or {}).items():  # outside the brain: the T1 blend does not reach here
        image += np.float32(getattr(c, HEAD_SIGNALS[name])) * fraction
    mask = None
    if lesion is not None:
        b = lesion.box
        plain = lesion.whole - lesion.enhancing - lesion.necrotic
        tumour_signal = (plain * c.lesion * lesion.texture + lesion.enhancing * c.enhancing
                         + lesion.necrotic * c.necrosis)
        image[b] = image[b] * (1.0 - lesion.whole) + tumour_signal
        mask = np.zeros_like(image)
        mask[b] = getattr(lesion, mask_component)
    kernel = slab_kernel(slab_vox)
    if kernel.size > 1:
        image = ndi.convolve1d(image, kernel, axis=0, mode="constant")
        if mask is not None:
            b = lesion.box
            zpad = kernel.size // 2 + 1
            zb = slice(max(b[0].start - zpad, 0), min(b[0].stop + zpad, mask.shape[0]))
            mask[zb, b[1], b[2]] = ndi.convolve1d(mask[zb, b[1], b[2]], kernel, axis=0, mode="constant")
    return image, mask
