"""Per-center scanner effects and clinical acquisition geometry.

Each center has a deterministic :class:`CenterProfile`: the built-in presets
``center_a``/``center_b``/``center_c`` differ clearly; any other name is hashed with
``zlib.crc32`` into its own parameters, so the same name always gives the same scanner.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import torch

MATRIX_SIZES = (256, 320, 384, 448, 512)
IN_PLANE_RANGE_MM = (0.45, 1.0)
SLICE_THICKNESS_RANGE_MM = (5.0, 6.0)
INT16_MAX = 32767


@dataclass(frozen=True)
class CenterProfile:
    """Scanner and protocol of one center."""

    name: str
    orientation: str  # storage order of the voxel axes: "RAS" or "LPS"
    intensity_scale: float  # white matter ends up around 0.4-0.9 x this
    intensity_offset: float
    bias_strength: float  # max |log multiplicative bias| over the head
    noise_level: float  # Rician sigma relative to intensity_scale
    storage_slope: float  # NIfTI scl_slope of the int16 data
    slice_thickness_mm: tuple[float, ...]
    matrices: tuple[int, ...]
    fov_mm: tuple[float, float]


CENTER_PRESETS: dict[str, CenterProfile] = {
    "center_a": CenterProfile("center_a", "RAS", 1000.0, 0.0, 0.10, 0.015, 1.0, (5.0,), (384, 448, 512),
                              (230.0, 250.0)),
    "center_b": CenterProfile("center_b", "LPS", 2600.0, 120.0, 0.30, 0.035, 1.0, (6.0,), (256, 320),
                              (220.0, 240.0)),
    "center_c": CenterProfile("center_c", "LPS", 420.0, 0.0, 0.45, 0.055, 0.25, (5.0, 5.5, 6.0), (320, 384),
                              (220.0, 250.0)),
}


def center_profile(name: str) -> CenterProfile:
    """The preset for ``name``, or parameters derived from ``zlib.crc32(name)`` (stable across runs)."""
    if name in CENTER_PRESETS:
        return CENTER_PRESETS[name]
    rng = np.random.default_rng(zlib.crc32(name.encode("utf-8")))
    orientation = "LPS" if rng.random() < 0.5 else "RAS"
    scale = float(np.exp(rng.uniform(np.log(300.0), np.log(3000.0))))
    offset = float(rng.choice([0.0, 0.0, rng.uniform(0.0, 0.1) * scale]))
    thickness = (float(rng.choice([5.0, 5.5, 6.0])),)
    start = int(rng.integers(0, len(MATRIX_SIZES) - 1))
    matrices = MATRIX_SIZES[start:start + 2]
    fov_lo = float(rng.uniform(220.0, 235.0))
    return CenterProfile(name, orientation, round(scale, 3), round(offset, 3), round(float(rng.uniform(0.05, 0.45)), 4),
                         round(float(rng.uniform(0.01, 0.06)), 4), float(rng.choice([1.0, 0.5, 0.25])), thickness,
                         tuple(int(m) for m in matrices), (round(fov_lo, 2), round(fov_lo + 15.0, 2)))


@dataclass(frozen=True)
class AcquisitionGeometry:
    """Axial acquisition grid; ``affine`` maps RAS-ordered ``(i, j, k)`` indices to patient world mm."""

    shape: tuple[int, int, int]  # nx, ny, nz
    in_plane_mm: float
    thickness_mm: float
    affine: np.ndarray


def sample_geometry(profile: CenterProfile, rng: np.random.Generator, center_mm: np.ndarray,
                    z_range_mm: tuple[float, float]) -> AcquisitionGeometry:
    """Draw FOV, matrix and slice thickness; centre the FOV near ``center_mm`` and cover ``z_range_mm``."""
    thickness = float(rng.choice(profile.slice_thickness_mm))
    matrix = int(rng.choice(profile.matrices))
    lo = max(profile.fov_mm[0], IN_PLANE_RANGE_MM[0] * matrix)
    hi = min(profile.fov_mm[1], IN_PLANE_RANGE_MM[1] * matrix)
    if lo > hi:  # the center's FOV range does not fit this matrix: stay inside the clinical spacing range
        lo = hi = float(np.clip(np.mean(profile.fov_mm), IN_PLANE_RANGE_MM[0] * matrix, IN_PLANE_RANGE_MM[1] * matrix))
    fov = float(rng.uniform(lo, hi))
    spacing = fov / matrix
    z0, z1 = z_range_mm
    nz = int(np.ceil((z1 - z0) / thickness)) + 2  # one spare slice each side
    centre = np.array([center_mm[0], center_mm[1], 0.5 * (z0 + z1)]) + rng.normal(0.0, [3.0, 3.0, 1.5])
    affine = np.diag([spacing, spacing, thickness, 1.0])
    affine[:3, 3] = centre - np.array([(matrix - 1) / 2.0 * spacing, (matrix - 1) / 2.0 * spacing,
                                       (nz - 1) / 2.0 * thickness])
    return AcquisitionGeometry(shape=(matrix, matrix, nz), in_plane_mm=spacing, thickness_mm=thickness, affine=affine)


def bias_coefficients(rng: np.random.Generator, strength: float) -> np.ndarray:
    """Coefficients of a quadratic log-bias polynomial in normalised patient coordinates."""
    coef = rng.normal(0.0, 1.0, size=10)
    return coef * strength / np.sum(np.abs(coef))


def log_bias(points_mm: np.ndarray, center_mm: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Smooth log multiplicative bias at ``points_mm`` (``(..., 3)``); |value| <= strength within 100 mm."""
    u = (points_mm - center_mm) / 100.0
    x, y, z = u[..., 0], u[..., 1], u[..., 2]
    terms = (np.ones_like(x), x, y, z, x * x, y * y, z * z, x * y, x * z, y * z)
    return sum(c * t for c, t in zip(coef, terms))


def rician_magnitude(shape: tuple[int, ...], sigma: float, rng: np.random.Generator,
                     signal: np.ndarray | None = None, where: tuple[slice, ...] = ()) -> np.ndarray:
    """Magnitude of complex Gaussian noise (std ``sigma``) plus a real ``signal`` placed at ``where``; float32.

    Zero signal gives Rayleigh-distributed background, strong signal approximately Gaussian noise.
    """
    real = rng.standard_normal(shape, dtype=np.float32)
    imag = rng.standard_normal(shape, dtype=np.float32)
    real *= sigma
    imag *= sigma
    if signal is not None:
        real[where] += signal
    out = torch.from_numpy(real)
    torch.hypot(out, torch.from_numpy(imag), out=out)
    return real


def to_int16(values: np.ndarray, slope: float) -> np.ndarray:
    """Round ``values / slope`` into int16 (clipped)."""
    out = np.rint(values / slope)
    np.clip(out, -INT16_MAX - 1, INT16_MAX, out=out)
    return out.astype(np.int16)


def storage_orientation(data_xyz: np.ndarray, affine: np.ndarray, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """Reorder RAS-ordered ``data_xyz`` into ``orientation`` storage; world coordinates are unchanged."""
    if orientation == "RAS":
        return data_xyz, affine
    if orientation != "LPS":
        raise ValueError(f"unknown storage orientation {orientation!r}")
    nx, ny = data_xyz.shape[:2]
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [nx - 1, ny - 1]
    return data_xyz[::-1, ::-1, :], affine @ flip


def tilted_geometry(fov_mm: float, in_plane_mm: float, thickness_mm: float, tilt_deg: tuple[float, float],
                    center_mm: np.ndarray, cover_mm: np.ndarray) -> AcquisitionGeometry:
    """An oblique axial grid: square FOV of about ``fov_mm`` at about ``in_plane_mm`` (the matrix is rounded),
    slice planes tilted by ``(pitch, roll)`` degrees about x and y, slices covering every point of
    ``cover_mm`` (``(n, 3)`` patient mm) along the tilted slice normal, centred in-plane on ``center_mm``."""
    from .anatomy import rotation_matrix

    matrix = max(int(round(fov_mm / in_plane_mm)), 32)
    spacing = fov_mm / matrix
    rot = rotation_matrix(np.array([tilt_deg[0], tilt_deg[1], 0.0]))
    normal = rot[:, 2]
    depth = (np.asarray(cover_mm, dtype=np.float64) - center_mm) @ normal
    nz = int(np.ceil((depth.max() - depth.min()) / thickness_mm)) + 2  # one spare slice each side
    first = depth.min() - thickness_mm
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([spacing, spacing, thickness_mm])
    affine[:3, 3] = center_mm + rot @ np.array([-(matrix - 1) / 2.0 * spacing, -(matrix - 1) / 2.0 * spacing, first])
    return AcquisitionGeometry(shape=(matrix, matrix, nz), in_plane_mm=spacing, thickness_mm=thickness_mm, affine=affine)
