"""The MNI ICBM152 2009a brain template (T1, tissue maps, brain mask) that ships inside nilearn.

Loaded once per process and cached.  Arrays are cropped to the brain and stored in
``(z, y, x)`` order, C-contiguous, because that is the ``(D, H, W)`` layout that
``torch.nn.functional.grid_sample`` reads fastest for axial acquisitions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

TEMPLATE_NAME = "MNI ICBM152 2009a nonlinear symmetric (nilearn copy, 1 mm)"
BRAIN_THRESHOLD = 0.2  # nilearn.datasets.load_mni152_brain_mask uses the same threshold on T1 / max
CROP_MARGIN_VOX = 6


@dataclass(frozen=True)
class Template:
    """Brain template on a 1 mm grid; every array is float32 in ``(z, y, x)`` order.

    ``affine`` maps ``(x, y, z)`` voxel indices of the cropped grid to MNI world mm.
    ``csf`` is the brain mask minus grey and white matter (clipped at 0).
    """

    t1: np.ndarray
    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    brain_lo_mm: np.ndarray  # MNI mm corners of the brain mask's bounding box
    brain_hi_mm: np.ndarray

    @property
    def shape_xyz(self) -> tuple[int, int, int]:
        z, y, x = self.t1.shape
        return x, y, z

    def world_to_voxel(self, points: np.ndarray) -> np.ndarray:
        """MNI mm ``(..., 3)`` -> fractional ``(x, y, z)`` voxel indices of the cropped grid."""
        inv = np.linalg.inv(self.affine)
        return points @ inv[:3, :3].T + inv[:3, 3]

    def voxel_to_world(self, index: np.ndarray) -> np.ndarray:
        """Fractional ``(x, y, z)`` voxel indices ``(..., 3)`` -> MNI mm."""
        return index @ self.affine[:3, :3].T + self.affine[:3, 3]

def template_files() -> dict[str, Path]:
    """Paths of the T1, GM and WM NIfTI files bundled with nilearn (never downloaded)."""
    import nilearn

    data = Path(nilearn.__file__).parent / "datasets" / "data"
    files = {k: data / f"mni_icbm152_{k}_tal_nlin_sym_09a_converted.nii.gz" for k in ("t1", "gm", "wm")}
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"MNI ICBM152 template files not found in the nilearn install: {missing}")
    return files


@functools.lru_cache(maxsize=1)
def load_template() -> Template:
    """Load, crop and cache the template (about 0.7 s the first time in a process)."""
    files = template_files()
    imgs = {k: nib.load(str(p)) for k, p in files.items()}
    affine = imgs["t1"].affine.astype(np.float64)
    vols = {k: np.asarray(img.dataobj, dtype=np.float32) for k, img in imgs.items()}
    t1 = vols["t1"] / max(float(vols["t1"].max()), 1e-6)
    gm = vols["gm"] / 255.0
    wm = vols["wm"] / 255.0
    mask = (t1 > BRAIN_THRESHOLD).astype(np.float32)
    tissue = gm + wm
    scale = np.maximum(tissue, 1.0)  # keep gm + wm <= 1
    gm, wm = gm / scale, wm / scale
    mask = np.maximum(mask, (tissue > 0.5).astype(np.float32))
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    idx = np.argwhere(mask > 0)
    lo = np.maximum(idx.min(0) - CROP_MARGIN_VOX, 0)
    hi = np.minimum(idx.max(0) + CROP_MARGIN_VOX + 1, mask.shape)
    crop = tuple(slice(a, b) for a, b in zip(lo, hi))
    shift = np.eye(4)
    shift[:3, 3] = lo
    cropped_affine = affine @ shift

    def prep(a: np.ndarray) -> np.ndarray:
        out = np.ascontiguousarray(a[crop].transpose(2, 1, 0), dtype=np.float32)
        out.setflags(write=False)
        return out

    corners = nib.affines.apply_affine(affine, np.stack([idx.min(0), idx.max(0)]).astype(np.float64))
    cropped_affine.setflags(write=False)
    return Template(t1=prep(t1 * mask), gm=prep(gm), wm=prep(wm), csf=prep(csf), mask=prep(mask),
                    affine=cropped_affine, brain_lo_mm=corners.min(0), brain_hi_mm=corners.max(0))
