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
# Randomised styles: more sites of DMG, more shapes, and more lesions without enhancement.
STYLE_SITES: dict[str, tuple[float, float, float]] = {**SITES, "midbrain": (0.0, -24.0, -12.0),
                                                      "medulla": (0.0, -38.0, -50.0)}
STYLE_SITE_PROBABILITIES: dict[str, float] = {"pons": 0.5, "thalamus_left": 0.15, "thalamus_right": 0.15,
                                              "midbrain": 0.12, "medulla": 0.08}
STYLE_ENHANCEMENT_PROBABILITIES: dict[str, float] = {"none": 0.4, "patchy": 0.25, "ring": 0.15, "nodular": 0.2}
FAMILY_PROBABILITIES: dict[str, float] = {"ellipsoid": 0.25, "lobulated": 0.2, "infiltrative": 0.25,
                                          "expansile": 0.15, "small": 0.15}
FAMILY_DIAMETER_MM: dict[str, tuple[float, float]] = {"ellipsoid": (14.0, 34.0), "lobulated": (12.0, 28.0),
                                                      "infiltrative": (16.0, 36.0), "expansile": (30.0, 46.0),
                                                      "small": (8.0, 13.0)}
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
    # randomised styles only (defaults give the classic lesion)
    family: str = "ellipsoid"  # "ellipsoid" | "lobulated" | "infiltrative" | "expansile" | "small"
    lobes: tuple[tuple[tuple[float, float, float], tuple[float, float, float]], ...] = ()  # (offset, radii) mm
    texture_sd: float = 0.07
    texture_scale_mm: float = 1.5
    necrotic_fraction: float = 0.0  # cystic/necrotic core without a ring (fraction of the radius)


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


def _pick(rng: np.random.Generator, probabilities: dict[str, float]) -> str:
    names = list(probabilities)
    return names[rng.choice(len(names), p=[probabilities[n] for n in names])]


def sample_style_lesion(rng: np.random.Generator, edge_mm: tuple[float, float], texture_sd: tuple[float, float],
                        texture_scale_mm: tuple[float, float]) -> LesionSpec:
    """A lesion of a randomised style: one of several shape families, sizes from under 1 mL to large
    expansile pontine tumours, no/patchy/ring/nodular enhancement, optional cystic-necrotic core, and
    heterogeneous texture and infiltrative rim drawn from the given ranges."""
    family = _pick(rng, FAMILY_PROBABILITIES)
    site = "pons" if family == "expansile" else _pick(rng, STYLE_SITE_PROBABILITIES)
    jitter = SITE_JITTER_SD_MM.get(site, (1.0, 2.0, 2.0))
    center = np.asarray(STYLE_SITES[site]) + rng.normal(0.0, jitter)
    diameter = rng.uniform(*FAMILY_DIAMETER_MM[family])
    radii = diameter / 2.0 * rng.uniform(0.75, 1.25, size=3)
    lobes: list = []
    if family == "lobulated":
        for _ in range(int(rng.integers(1, 4))):
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction)
            lobe_radii = radii * rng.uniform(0.5, 0.9, size=3)
            offset = direction * float(np.mean(radii)) * rng.uniform(0.5, 0.9)
            lobes.append((tuple(float(v) for v in offset), tuple(float(v) for v in lobe_radii)))
    infiltrative = family == "infiltrative"
    enhancement = _pick(rng, STYLE_ENHANCEMENT_PROBABILITIES)
    if family == "small" and enhancement == "ring":
        enhancement = "nodular"
    fraction = rng.uniform(*PATCHY_FRACTION_RANGE) if enhancement == "patchy" else 0.0
    necrotic = float(rng.uniform(0.25, 0.6)) if (enhancement != "ring" and rng.random() < 0.3) else 0.0
    return LesionSpec(
        site=site, center_mm=tuple(float(v) for v in center), radii_mm=tuple(float(v) for v in radii),
        angles_deg=tuple(float(v) for v in rng.uniform(-40.0, 40.0, size=3)),
        edge_mm=float(rng.uniform(*edge_mm)) * (1.5 if infiltrative else 1.0),
        irregularity_mm=float(rng.uniform(4.0, 8.0) if infiltrative else rng.uniform(1.0, 4.0)),
        noise_scale_mm=float(rng.uniform(5.0, 9.0) if infiltrative else rng.uniform(2.5, 5.0)),
        enhancement=enhancement, enhancing_fraction=float(fraction),
        mass_effect=float(rng.uniform(0.12, 0.25) if family == "expansile" else rng.uniform(0.0, 0.12)),
        family=family, lobes=tuple(lobes), texture_sd=float(rng.uniform(*texture_sd)),
        texture_scale_mm=float(rng.uniform(*texture_scale_mm)), necrotic_fraction=necrotic)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _unit_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma, mode="reflect")
    return field / max(float(field.std()), 1e-6)


def render_lesion(template: Template, spec: LesionSpec, rng: np.random.Generator) -> LesionVolumes:
    """Rasterise ``spec`` on the template grid (local box only)."""
    spacing = np.abs(np.diag(template.affine)[:3])
    centre_vox = template.world_to_voxel(np.asarray(spec.center_mm))  # x, y, z
    reach = max([max(spec.radii_mm)] + [float(np.linalg.norm(o)) + max(r) for o, r in spec.lobes])
    half = reach * 1.3 + 2.0 * spec.irregularity_mm + 6.0 * spec.edge_mm + 6.0
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
    # Signed depth below the (perturbed) surface in mm; positive inside; the union of the lobes.
    depth = (1.0 - r) * mean_radius
    for offset, lobe_radii in spec.lobes:
        lobe_r = np.sqrt(np.sum(((local - np.asarray(offset)) / np.asarray(lobe_radii)) ** 2, axis=-1))
        depth = np.maximum(depth, (1.0 - lobe_r) * float(np.mean(lobe_radii)))
    depth = depth + spec.irregularity_mm * surface_noise
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
    elif spec.enhancement == "nodular":
        core = _sigmoid((depth - 1.5) / spec.edge_mm)
        inside = core > 0.5
        if inside.any():
            picks = rng.choice(np.flatnonzero(inside), size=min(int(rng.integers(1, 4)), int(inside.sum())),
                               replace=False)
            nodules = np.zeros(shape, np.float32)
            for flat in picks:
                centre = np.array(np.unravel_index(flat, shape), dtype=np.float64)  # z, y, x
                grid = np.stack([zz - lo[2], yy - lo[1], xx - lo[0]], axis=-1)
                dist = np.sqrt(np.sum(((grid - centre) * spacing[::-1]) ** 2, axis=-1))
                nodules = np.maximum(nodules, _sigmoid((rng.uniform(2.0, 6.0) - dist) / 0.7))
            enh_fraction = (core * nodules).astype(np.float32)
    elif spec.enhancement == "ring":
        outer = _sigmoid((depth - 0.4 * mean_radius) / 0.8)
        inner = _sigmoid((depth - 0.65 * mean_radius) / 0.8)
        broken = _sigmoid((blob_noise + 0.6) / 0.25)
        enh_fraction = ((outer - inner) * broken).astype(np.float32)
        nec_fraction = inner.astype(np.float32)
    if spec.necrotic_fraction > 0 and spec.enhancement != "ring":
        cyst = _sigmoid((depth - (1.0 - spec.necrotic_fraction) * mean_radius) / 0.8)
        nec_fraction = np.maximum(nec_fraction, cyst * (1.0 - enh_fraction)).astype(np.float32)
    texture = np.clip(1.0 + spec.texture_sd * _unit_noise(rng, shape, spec.texture_scale_mm / spacing.mean()),
                      0.2, None).astype(np.float32)
    return LesionVolumes(box=box, whole=whole.astype(np.float32), enhancing=(whole * enh_fraction).astype(np.float32),
                         necrotic=(whole * nec_fraction).astype(np.float32), texture=texture)
