"""One resampling per sequence: acquisition grid -> patient world -> template, with trilinear ``grid_sample``.

The mapping (acquisition affine, anatomy deformation, mass effect) and the scanner bias
field are smooth, so they are evaluated on a coarse in-plane lattice of the acquisition
grid (every ``COARSE_STEP_VOX`` voxels) and interpolated bilinearly per slice; the
template channels are then read once, and only inside the in-plane box that can reach
the template (everything else is empty background).  Output arrays are ``(z, y, x)`` =
``(nz, ny, nx)`` in RAS index order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .anatomy import AnatomyTransform
from .scanner import AcquisitionGeometry, log_bias
from .template import Template

COARSE_STEP_VOX = 4


def acquisition_lattice(geometry: AcquisitionGeometry, step: int = COARSE_STEP_VOX) -> np.ndarray:
    """Patient-world mm ``(nz, my, mx, 3)`` of lattice nodes at in-plane indices ``0, step, 2 step, ...``.

    The last node lies at or beyond the last voxel, so the lattice covers the whole grid.
    """
    nx, ny, nz = geometry.shape
    mx, my = -(-(nx - 1) // step) + 1, -(-(ny - 1) // step) + 1
    ii, jj = np.arange(mx, dtype=np.float64) * step, np.arange(my, dtype=np.float64) * step
    k3, j3, i3 = np.meshgrid(np.arange(nz, dtype=np.float64), jj, ii, indexing="ij")
    idx = np.stack([i3, j3, k3], axis=-1)
    return idx @ geometry.affine[:3, :3].T + geometry.affine[:3, 3]


def _node_range(inside: np.ndarray, axis: int) -> tuple[int, int]:
    """First and last lattice node along ``axis`` (of a ``(nz, my, mx)`` array) touching ``inside``, +-1 node."""
    other = tuple(a for a in range(3) if a != axis)
    hit = np.flatnonzero(inside.any(axis=other))
    if hit.size == 0:
        return 0, 1
    return max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 1, inside.shape[axis] - 1)


@dataclass(frozen=True)
class Acquired:
    """Sampled channels and bias inside ``block`` (in-plane ``(y, x)`` slices of the ``(nz, ny, nx)`` grid).

    Outside the block the channels are exactly zero (no template there) and the bias is irrelevant.
    """

    shape: tuple[int, int, int]  # nz, ny, nx
    block: tuple[slice, slice]
    channels: list[np.ndarray]  # (nz, hy, hx) float32 each
    bias: np.ndarray | None  # (nz, hy, hx) float32 multiplicative bias

    def full(self, channel: int) -> np.ndarray:
        """One channel on the whole ``(nz, ny, nx)`` grid."""
        out = np.zeros(self.shape, dtype=np.float32)
        out[:, self.block[0], self.block[1]] = self.channels[channel]
        return out


def acquire(template: Template, channels: list[np.ndarray], geometry: AcquisitionGeometry,
            anatomy: AnatomyTransform, bias_coef: np.ndarray | None = None,
            bias_center: np.ndarray | None = None, step: int = COARSE_STEP_VOX) -> Acquired:
    """Sample template-space ``channels`` (``(z, y, x)`` float32) on ``geometry`` (RAS index order).

    With ``bias_coef`` the multiplicative bias field (see :func:`~.scanner.log_bias`) is
    evaluated on the same block.
    """
    nx, ny, nz = geometry.shape
    world = acquisition_lattice(geometry, step)
    vox = template.world_to_voxel(anatomy.pull(world))
    size = np.array(template.shape_xyz, dtype=np.float64)
    norm = 2.0 * vox / (size - 1.0) - 1.0  # grid_sample order (x, y, z) = (W, H, D)
    inside = np.all(np.abs(norm) <= 1.0, axis=-1)
    y0, y1 = _node_range(inside, 1)
    x0, x1 = _node_range(inside, 2)
    coarse = [norm[..., 0], norm[..., 1], norm[..., 2]]
    if bias_coef is not None:
        coarse.append(np.exp(log_bias(world, bias_center, bias_coef)))
    lattice = np.stack(coarse, axis=1)[:, :, y0:y1 + 1, x0:x1 + 1].astype(np.float32)  # (nz, C, by, bx)
    lattice_t = torch.from_numpy(lattice).contiguous(memory_format=torch.channels_last)
    fine = F.interpolate(lattice_t, size=((y1 - y0) * step + 1, (x1 - x0) * step + 1), mode="bilinear",
                         align_corners=True)
    fy0, fx0 = y0 * step, x0 * step
    hy, hx = min(fine.shape[2], ny - fy0), min(fine.shape[3], nx - fx0)
    fine = fine[:, :, :hy, :hx].permute(0, 2, 3, 1)  # (nz, hy, hx, C), channels contiguous per voxel
    volume = torch.from_numpy(channels[0][None] if len(channels) == 1 else np.stack(channels)).unsqueeze(0)
    sampled = F.grid_sample(volume, fine[..., :3].unsqueeze(0), mode="bilinear", padding_mode="zeros",
                            align_corners=True)[0]
    bias = fine[..., 3].numpy() if bias_coef is not None else None
    return Acquired(shape=(nz, ny, nx), block=(slice(fy0, fy0 + hy), slice(fx0, fx0 + hx)),
                    channels=[sampled[c].numpy() for c in range(len(channels))], bias=bias)
