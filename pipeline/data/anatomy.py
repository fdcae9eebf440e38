"""Per-patient anatomy: a random smooth deformation of the template plus small global rotation/scale.

The transform is a *pull* map: it takes points of the patient (scanner) world in mm
and returns where to read them in the template (MNI mm).  In order:
global similarity (rotation, per-axis scale, translation about the brain centre),
a smooth random displacement field (a few mm), and an optional radial mass effect
that expands the tissue around a lesion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

# Rotation about the brain centre, standard deviation in degrees for (pitch about x, roll about y, yaw about z).
ROTATION_SD_DEG = (3.0, 1.5, 1.5)
ROTATION_MAX_DEG = 8.0
GLOBAL_SCALE_RANGE = (0.93, 1.07)
AXIS_SCALE_RANGE = (0.97, 1.03)
TRANSLATION_SD_MM = 1.5
DISPLACEMENT_RMS_MM = (1.5, 3.5)
FIELD_SPACING_MM = 8.0
FIELD_SMOOTH_NODES = 3.0
FIELD_HALF_EXTENT_MM = 140.0
VENTRICLE_CENTRE_MNI = np.array([0.0, -8.0, 14.0])
VENTRICLE_SIGMA_MM = np.array([16.0, 26.0, 14.0])


@dataclass(frozen=True)
class AnatomyRanges:
    """Ranges of the per-patient anatomy draw (defaults: the classic cohorts)."""

    rotation_sd_deg: tuple[float, float, float] = ROTATION_SD_DEG
    rotation_max_deg: float = ROTATION_MAX_DEG
    global_scale: tuple[float, float] = GLOBAL_SCALE_RANGE
    axis_scale: tuple[float, float] = AXIS_SCALE_RANGE
    displacement_rms_mm: tuple[float, float] = DISPLACEMENT_RMS_MM
    ventricle_expansion: tuple[float, float] = (0.0, 0.0)


@dataclass(frozen=True)
class AnatomyTransform:
    """Pull map patient world (mm) -> template world (mm); see :meth:`pull`."""

    center: np.ndarray  # rotation/scale centre, template mm
    linear: np.ndarray  # 3x3 pull linear part: inverse of (rotation @ scale)
    translation: np.ndarray  # mm, patient world
    field: np.ndarray  # (3, nz, ny, nx) displacement in mm on a regular patient-world grid
    field_lo: np.ndarray  # patient-world mm of field node (0, 0, 0), xyz order
    field_spacing: float
    mass_center: np.ndarray | None = None  # template mm
    mass_strength: float = 0.0
    mass_sigma: float = 1.0
    ventricle_strength: float = 0.0  # expansion about the lateral ventricles (hydrocephalus, atrophy)

    def forward_linear(self, points: np.ndarray) -> np.ndarray:
        """Template mm -> patient mm, ignoring the displacement field and mass effect (for planning)."""
        fwd = np.linalg.inv(self.linear)
        return (points - self.center) @ fwd.T + self.center + self.translation

    def pull(self, points: np.ndarray) -> np.ndarray:
        """Patient world mm ``(..., 3)`` -> template mm ``(..., 3)`` (float64)."""
        pts = np.asarray(points, dtype=np.float64)
        out = (pts - self.center - self.translation) @ self.linear.T + self.center
        out = out + self._displacement(pts)
        if self.mass_center is not None and self.mass_strength > 0:
            rel = out - self.mass_center
            r2 = np.sum(rel * rel, axis=-1, keepdims=True)
            out = self.mass_center + rel * (1.0 - self.mass_strength * np.exp(-r2 / (2.0 * self.mass_sigma ** 2)))
        if self.ventricle_strength > 0:
            rel = out - VENTRICLE_CENTRE_MNI
            r2 = np.sum((rel / VENTRICLE_SIGMA_MM) ** 2, axis=-1, keepdims=True)
            out = VENTRICLE_CENTRE_MNI + rel * (1.0 - self.ventricle_strength * np.exp(-r2 / 2.0))
        return out

    def _displacement(self, pts: np.ndarray) -> np.ndarray:
        shape = pts.shape[:-1]
        size = np.array(self.field.shape[1:][::-1], dtype=np.float64)  # x, y, z node counts
        idx = (pts.reshape(-1, 3) - self.field_lo) / self.field_spacing
        norm = 2.0 * idx / (size - 1.0) - 1.0
        grid = torch.from_numpy(norm).view(1, 1, 1, -1, 3)
        field = torch.from_numpy(self.field).unsqueeze(0)
        disp = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return disp.view(3, -1).T.numpy().reshape(*shape, 3)


def rotation_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Rotation about x, then y, then z (degrees)."""
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def sample_anatomy(rng: np.random.Generator, center_mm: np.ndarray, mass_center: np.ndarray | None = None,
                   mass_strength: float = 0.0, mass_sigma: float = 1.0,
                   ranges: AnatomyRanges = AnatomyRanges()) -> AnatomyTransform:
    """Draw one patient's anatomy transform around ``center_mm`` (template brain centre)."""
    angles = np.clip(rng.normal(0.0, ranges.rotation_sd_deg), -ranges.rotation_max_deg, ranges.rotation_max_deg)
    scale = rng.uniform(*ranges.global_scale) * rng.uniform(*ranges.axis_scale, size=3)
    forward = rotation_matrix(angles) @ np.diag(scale)
    translation = rng.normal(0.0, TRANSLATION_SD_MM, size=3)

    n = int(round(2 * FIELD_HALF_EXTENT_MM / FIELD_SPACING_MM)) + 1
    noise = rng.standard_normal((3, n, n, n))
    field = np.stack([ndi.gaussian_filter(c, FIELD_SMOOTH_NODES, mode="wrap") for c in noise])
    rms = float(np.sqrt(np.mean(np.sum(field ** 2, axis=0))))
    field *= rng.uniform(*ranges.displacement_rms_mm) / max(rms, 1e-12)
    ventricles = float(rng.uniform(*ranges.ventricle_expansion)) if ranges.ventricle_expansion[1] > 0 else 0.0
    lo = np.asarray(center_mm, dtype=np.float64) - FIELD_HALF_EXTENT_MM
    return AnatomyTransform(
        center=np.asarray(center_mm, dtype=np.float64), linear=np.linalg.inv(forward), translation=translation,
        field=np.ascontiguousarray(field), field_lo=lo, field_spacing=FIELD_SPACING_MM,
        mass_center=None if mass_center is None else np.asarray(mass_center, dtype=np.float64),
        mass_strength=float(mass_strength), mass_sigma=float(mass_sigma), ventricle_strength=ventricles)
