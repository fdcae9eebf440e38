"""Preview PNGs: the three sequences side by side at one axial level, in radiological convention.

Images are reoriented to RAS (``nib.as_closest_canonical``) before slicing, so the
display is the same whether a file is stored RAS or LPS: anterior at the top, the
patient's right on the viewer's left.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from .writers import atomic_write_bytes

MASK_COLOURS = {"t1c": "#00e5ff", "t2": "#ff3b30", "flair": "#ffcc00"}


def mask_centroid_world(mask: nib.Nifti1Image) -> np.ndarray | None:
    """World (mm) centroid of the non-zero voxels, or ``None`` for an empty mask."""
    idx = np.argwhere(np.asanyarray(mask.dataobj) > 0)
    if idx.size == 0:
        return None
    return nib.affines.apply_affine(mask.affine, idx.mean(axis=0))


def radiological_axial_slice(img: nib.Nifti1Image, world_z: float) -> np.ndarray:
    """Axial slice nearest ``world_z`` as a 2D display array (rows: anterior->posterior, cols: right->left)."""
    can = nib.as_closest_canonical(img)
    data = np.asanyarray(can.dataobj)
    centre = nib.affines.apply_affine(can.affine, (np.array(data.shape[:3]) - 1) / 2.0)
    k = nib.affines.apply_affine(np.linalg.inv(can.affine), [centre[0], centre[1], world_z])[2]
    k = int(np.clip(np.rint(k), 0, data.shape[2] - 1))
    return np.asarray(data[:, :, k]).T[::-1, ::-1]


def write_preview(path: str | os.PathLike, images: Mapping[str, nib.Nifti1Image],
                  masks: Mapping[str, nib.Nifti1Image], title: str, panel_titles: Mapping[str, str] | None = None,
                  world_z: float | None = None) -> Path:
    """Write a PNG with one panel per sequence at ``world_z`` (default: the lesion's centroid level)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if world_z is None:
        centroids = [mask_centroid_world(m) for m in masks.values()]
        centroids = [c for c in centroids if c is not None]
        world_z = float(centroids[0][2]) if centroids else 5.0
    seqs = list(images)
    fig = Figure(figsize=(4.2 * len(seqs), 4.8), facecolor="black")
    FigureCanvasAgg(fig)
    for n, seq in enumerate(seqs):
        ax = fig.add_subplot(1, len(seqs), n + 1)
        image = radiological_axial_slice(images[seq], world_z).astype(np.float32)
        lo, hi = np.percentile(image, [1.0, 99.7])
        ax.imshow(image, cmap="gray", vmin=lo, vmax=max(hi, lo + 1e-6), interpolation="bilinear")
        if seq in masks:
            mask = radiological_axial_slice(masks[seq], world_z)
            if mask.any():
                ax.contour(mask.astype(np.float32), levels=[0.5], colors=MASK_COLOURS.get(seq, "red"),
                           linewidths=0.9)
        ax.set_title((panel_titles or {}).get(seq, seq.upper()), color="white", fontsize=10)
        ax.text(0.02, 0.5, "R", color="white", transform=ax.transAxes, fontsize=9, va="center")
        ax.text(0.96, 0.5, "L", color="white", transform=ax.transAxes, fontsize=9, va="center")
        ax.set_axis_off()
    fig.suptitle(title, color="white", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.03)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="black")
    return atomic_write_bytes(path, buf.getvalue())
