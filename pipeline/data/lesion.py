"""DMG-like lesions in template space: pons/brainstem or thalamus, irregular, infiltrative, variably enhancing.

A lesion is a jittered, rotated ellipsoid (1.5-3.5 cm) whose surface is perturbed by
smoothed noise, with a soft (infiltrative) edge, restricted to brain tissue (grey +
white matter).  Enhancement is ``"none"`` (about 30 %), ``"patchy"`` (noise blobs in
the core) or ``"ring"`` (a broken rim around a necrotic core).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from .anatomy import rotation_matrix
from .template import Template

# Nominal MNI centres (mm) and the probability of each site.
SITES: dict[str, tuple[float, float, float]] = {
    "pons": (0.0, -28.0, -35.0),
    "thalamus_left": (-12.0, -18.0, 8.0),
    "thalamus_right": (12.0, -18.0, 8.0),
}
SITE_PROBABILITIES: dict[str, float] = {"pons": 0.6, "thalamus_left": 0.2, "thalamus_right": 0.2}
SITE_JITTER_SD_MM: dict[str, tuple[float, float, float]] = {
    "pons": (1.0, 2.0, 2.5), "thalamus_left": (1.5, 2.0, 2.0), "thalamus_right": (1.5, 2.0, 2.0)}
DIAMETER_RANGE_MM = (16.0, 33.0)  # the mass effect grows the visible lesion a little (~35 mm max)
ENHANCEMENT_PROBABILITIES: dict[str, float] = {"none": 0.3, "patchy": 0.45, "ring": 0.25}
PATCHY_FRACTION_RANGE = (0.1, 0.45)


@dataclass(frozen=True)
class LesionSpec:
    """Random parameters of one lesion (template space)."""

    site: str
    center_mm: tuple[float, float, float]
    radii_mm: tuple[float, float, float]
    angles_deg: tuple[float, float, float]
    edge_mm: float  # logistic width of the infiltrative edge
    irregularity_mm: float  # amplitude of the surface noise
    noise_scale_mm: float  # smoothness of the surface noise
    enhancement: str  # "none" | "patchy" | "ring"
    enhancing_fraction: float  # patchy: target fraction of the core that enhances
    mass_effect: float  # strength of the radial expansion (0-1)


@dataclass(frozen=True)
class LesionVolumes:
    """Voxel fractions of the lesion components inside ``box`` (a ``(z, y, x)`` slice of the template grid).

    ``whole`` is the tumour fraction (already restricted to tissue); ``enhancing`` and
    ``necrotic`` are sub-fractions of the voxel (each <= ``whole``, together <= ``whole``);
    ``texture`` is a multiplicative intensity modulation of the non-enhancing tumour.
    """

    box: tuple[slice, slice, slice]
    whole: np.ndarray
    enhancing: np.ndarray
    necrotic: np.ndarray
    texture: np.ndarray

    @property
    def volume_ml(self) -> float:
        return float(self.whole.sum()) / 1000.0

    @property
    def enhancing_fraction(self) -> float:
        """Enhancing volume / whole-lesion volume (template space)."""
        total = float(self.whole.sum())
        return float(self.enhancing.sum()) / total if total > 0 else 0.0


def sample_lesion_spec(rng: np.random.Generator) -> LesionSpec:
    """Draw the site, size, shape and enhancement pattern of one lesion."""
    sites = list(SITES)
    site = sites[rng.choice(len(sites), p=[SITE_PROBABILITIES[s] for s in sites])]
    center = np.asarray(SITES[site]) + rng.normal(0.0, SITE_JITTER_SD_MM[site])
    diameter = rng.uniform(*DIAMETER_RANGE_MM)
    radii = diameter / 2.0 * rng.uniform(0.8, 1.2, size=3)
    angles = rng.uniform(-30.0, 30.0, size=3)
    kinds = list(ENHANCEMENT_PROBABILITIES)
    enhancement = kinds[rng.choice(len(kinds), p=[ENHANCEMENT_PROBABILITIES[k] for k in kinds])]
    fraction = rng.uniform(*PATCHY_FRACTION_RANGE) if enhancement == "patchy" else 0.0
    return LesionSpec(
        site=site, center_mm=tuple(float(v) for v in center), radii_mm=tuple(float(v) for v in radii),
        angles_deg=tuple(float(v) for v in angles), edge_mm=float(rng.uniform(0.8, 1.8)),
        irregularity_mm=float(rng.uniform(1.5, 4.0)), noise_scale_mm=float(rng.uniform(2.5, 4.5)),
        enhancement=enhancement, enhancing_fraction=float(fraction), mass_effect=float(rng.uniform(0.04, 0.12)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    return field / max(float(field.std()), 1e-6)


def render_lesion(template: Template, spec: LesionSpec, rng: np.random.Generator) -> LesionVolumes:
    """Rasterise ``spec`` on the template grid (local box only)."""
    spacing = np.abs(np.diag(template.affine)[:3])
    centre_vox = template.world_to_voxel(np.asarray(spec.center_mm))  # x, y, z
    half = max(spec.radii_mm) * 1.3 + 2.0 * spec.irregularity_mm + 6.0 * spec.edge_mm + 6.0
    shape_xyz = np.array(template.shape_xyz)
    lo = np.maximum(np.floor(centre_vox - half / spacing).astype(int), 0)
    hi = np.minimum(np.ceil(centre_vox + half / spacing).astype(int) + 1, shape_xyz)
    box = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))  # z, y, x
    zz, yy, xx = np.meshgrid(*(np.arange(lo[a], hi[a]) for a in (2, 1, 0)), indexing="ij")
    vox = np.stack([xx, yy, zz], axis=-1).astype(np.float64)
    rel = template.voxel_to_world(vox) - np.asarray(spec.center_mm)
    local = rel @ rotation_matrix(np.asarray(spec.angles_deg))  # rotate into the ellipsoid frame
    radii = np.asarray(spec.radii_mm)
    r = np.sqrt(np.sum((local / radii) ** 2, axis=-1))
    mean_radius = float(np.mean(radii))
    shape = zz.shape
    surface_noise = _unit_noise(rng, shape, spec.noise_scale_mm / spacing.mean())
    # Signed depth below the (perturbed) surface in mm; positive inside.
    depth = (1.0 - r) * mean_radius + spec.irregularity_mm * surface_noise
    raw = _sigmoid(depth / spec.edge_mm).astype(np.float32)
    tissue = np.clip(template.gm[box] + template.wm[box], 0.0, 1.0)
    whole = raw * tissue

    enh_fraction = np.zeros(shape, np.float32)
    nec_fraction = np.zeros(shape, np.float32)
    blob_noise = _unit_noise(rng, shape, 1.6 / spacing.mean())
    if spec.enhancement == "patchy":
        core = _sigmoid((depth - 2.0) / spec.edge_mm)
        inside = core > 0.5
        if inside.any():
            thr = float(np.quantile(blob_noise[inside], 1.0 - spec.enhancing_fraction))
            enh_fraction = (core * _sigmoid((blob_noise - thr) / 0.15)).astype(np.float32)
    elif spec.enhancement == "ring":
        outer = _sigmoid((depth - 0.4 * mean_radius) / 0.8)
        inner = _sigmoid((depth - 0.65 * mean_radius) / 0.8)
        broken = _sigmoid((blob_noise + 0.6) / 0.25)
        enh_fraction = ((outer - inner) * broken).astype(np.float32)
        nec_fraction = inner.astype(np.float32)
    texture = (1.0 + 0.07 * _unit_noise(rng, shape, 1.5 / spacing.mean())).astype(np.float32)
    return LesionVolumes(box=box, whole=whole.astype(np.float32), enhancing=(whole * enh_fraction).astype(np.float32),
                         necrotic=(whole * nec_fraction).astype(np.float32), texture=texture)
