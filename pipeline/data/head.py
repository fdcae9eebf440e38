"""The head around the template brain: skull, diploe, scalp fat, skin and muscle, orbits and neck.

The MNI ICBM152 T1 in nilearn is skull-stripped, but hospital scans are not: a model that has
only seen brains on black learns that anything bright at the edge of the head is not tumour
only by accident.  This module builds, once per process, a padded copy of the template grid
with the *distance* of every voxel outside the intracranial hull and masks of the orbits and
neck; :func:`head_tissues` turns them into soft tissue maps for one patient's layer
thicknesses, so skull and scalp vary from patient to patient at the cost of a few array
operations.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage as ndi

from .template import Template, load_template

PAD_MM = {"x": (28, 28), "y": (24, 40), "z": (70, 24)}  # (low, high) side: posterior/anterior, neck/vertex
HULL_CLOSING_MM = 14.0  # the skull wraps the brain's outer surface, not every sulcus and lobe
EYE_CENTRES_MNI = ((-31.0, 52.0, -36.0), (31.0, 52.0, -36.0))
EYE_RADIUS_MM = 12.0
NECK_CENTRE_XY_MNI = (0.0, -18.0)
NECK_RADII_MM = (52.0, 48.0)
NECK_TOP_MNI_Z = -55.0
SPINE_CENTRE_XY_MNI = (0.0, -32.0)
SPINE_RADIUS_MM = 9.0
CORD_RADIUS_MM = 5.0


@dataclass(frozen=True)
class HeadGeometry:
    """Patient-independent head geometry on the padded template grid (``(z, y, x)``, 1 mm)."""

    template: Template  # the padded brain template (its arrays zero in the padding)
    outside_mm: np.ndarray  # distance (mm) outside the intracranial hull; 0 inside
    face: np.ndarray  # soft-tissue region of the face around the orbits (bool)
    eyes: np.ndarray  # eye globes (float fraction)
    neck: np.ndarray  # neck soft tissue (bool), below the skull base
    spine: np.ndarray  # vertebral column (bool)
    cord: np.ndarray  # spinal cord (bool), inside the spinal canal


@dataclass(frozen=True)
class HeadLayers:
    """One patient's layer thicknesses (mm) outward from the intracranial hull."""

    csf_mm: float
    skull_mm: float
    diploe_fraction: float  # middle fraction of the skull that is fatty marrow
    fat_mm: float
    skin_mm: float


def _pad(template: Template) -> Template:
    pz, py, px = PAD_MM["z"], PAD_MM["y"], PAD_MM["x"]
    width = (pz, py, px)

    def pad(a: np.ndarray) -> np.ndarray:
        out = np.pad(a, width)
        out.setflags(write=False)
        return out

    shift = np.eye(4)
    shift[:3, 3] = [-px[0], -py[0], -pz[0]]
    affine = template.affine @ shift
    affine.setflags(write=False)
    return replace(template, t1=pad(template.t1), gm=pad(template.gm), wm=pad(template.wm), csf=pad(template.csf),
                   mask=pad(template.mask), affine=affine)


def _world_grid(template: Template) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MNI mm of the padded grid's voxel centres as broadcastable (z, y, x) arrays (axis-aligned affine)."""
    nz, ny, nx = template.t1.shape
    origin, step = template.affine[:3, 3], np.diag(template.affine)[:3]
    x = origin[0] + step[0] * np.arange(nx)
    y = origin[1] + step[1] * np.arange(ny)
    z = origin[2] + step[2] * np.arange(nz)
    return z[:, None, None], y[None, :, None], x[None, None, :]


@functools.lru_cache(maxsize=1)
def load_head() -> HeadGeometry:
    """Build (about 3 s) and cache the padded template with the patient-independent head geometry."""
    padded = _pad(load_template())
    brain = padded.mask > 0.5
    # morphological closing with a ball of HULL_CLOSING_MM, by two distance transforms
    dilated = ndi.distance_transform_edt(~brain) <= HULL_CLOSING_MM
    hull = ndi.distance_transform_edt(dilated) > HULL_CLOSING_MM
    hull = ndi.binary_fill_holes(hull | brain)
    outside = ndi.distance_transform_edt(~hull).astype(np.float32)
    z, y, x = _world_grid(padded)
    eyes = np.zeros(padded.t1.shape, np.float32)
    for cx, cy, cz in EYE_CENTRES_MNI:
        r = np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2)
        eyes = np.maximum(eyes, np.clip(EYE_RADIUS_MM + 0.5 - r, 0.0, 1.0))
    eyes *= outside > 1.0
    face = (y > 15.0) & ((x / 46.0) ** 2 + ((y - 45.0) / 40.0) ** 2 + ((z + 42.0) / 34.0) ** 2 < 1.0)
    nx0, ny0 = NECK_CENTRE_XY_MNI
    ellipse = ((x - nx0) / NECK_RADII_MM[0]) ** 2 + ((y - ny0) / NECK_RADII_MM[1]) ** 2
    neck = (ellipse < 1.0) & (z < NECK_TOP_MNI_Z)
    sx, sy = SPINE_CENTRE_XY_MNI
    r_spine = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
    spine = (r_spine < SPINE_RADIUS_MM) & (z < NECK_TOP_MNI_Z - 5.0)
    cord = (r_spine < CORD_RADIUS_MM) & (z < NECK_TOP_MNI_Z + 5.0) & (outside > 0)
    for a in (outside, eyes, face, neck, spine, cord):
        a.setflags(write=False)
    return HeadGeometry(padded, outside, face, eyes, neck & ~spine, spine & ~cord, cord)


def head_tissues(head: HeadGeometry, layers: HeadLayers) -> dict[str, np.ndarray]:
    """Soft tissue fractions outside the brain for one patient: ``fat``, ``bone`` (cortical, no signal),
    ``marrow`` (fatty diploe), ``muscle`` (skin, muscle, face and neck soft tissue), ``eye`` (vitreous),
    plus ``csf_shell`` (subarachnoid CSF between brain and skull).  Fractions sum to at most 1."""
    d = head.outside_mm

    def band(lo: float, hi: float) -> np.ndarray:
        return (np.clip(d - lo + 0.5, 0.0, 1.0) * np.clip(hi - d + 0.5, 0.0, 1.0)).astype(np.float32)

    inner = layers.csf_mm
    skull_out = inner + layers.skull_mm
    fat_out = skull_out + layers.fat_mm
    skin_out = fat_out + layers.skin_mm
    skull = band(inner, skull_out)
    mid_lo = inner + layers.skull_mm * (0.5 - layers.diploe_fraction / 2.0)
    mid_hi = inner + layers.skull_mm * (0.5 + layers.diploe_fraction / 2.0)
    marrow = np.minimum(band(mid_lo, mid_hi), skull)
    csf_shell = band(0.0, inner) * (1.0 - head.template.mask)
    fat = band(skull_out, fat_out)
    muscle = band(fat_out, skin_out)
    eye = head.eyes.copy()
    soft = (head.face | head.neck).astype(np.float32) * (d > inner)
    # the face and neck: muscle where no other layer is, with fat between (orbital and neck fat)
    free = np.clip(1.0 - skull - fat - muscle - eye - csf_shell, 0.0, 1.0)
    face_fat = soft * free * 0.45
    muscle = muscle + soft * free * 0.55
    fat = fat + face_fat
    spine = head.spine.astype(np.float32)
    taken = np.clip(skull + fat + muscle + eye + csf_shell, 0.0, 1.0)
    spine = spine * (1.0 - taken)
    bone = skull - marrow + 0.5 * spine
    marrow = marrow + 0.5 * spine
    cord = head.cord.astype(np.float32) * (1.0 - taken)
    return {"fat": fat, "bone": bone, "marrow": marrow, "muscle": muscle, "eye": eye,
            "csf_shell": csf_shell, "cord": cord}
