"""Preview PNGs: the three sequences side by side at one axial level, in radiological convention.

Images are reoriented to RAS (``nib.as_closest_canonical``) before slicing, so the
display is the same whether a file is stored RAS or LPS: anterior at the top, the
patient's right on the viewer's left.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import nibabel as nib
import numpy as np

from evaluation.reports.html import new_figure, png_bytes
from evaluation.reports.slice_figures import axial_display, draw_outline, draw_slice, mark_sides
from transforms.atomic_writer import atomic_write_bytes

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
    return axial_display(data, int(np.clip(np.rint(k), 0, data.shape[2] - 1)))


def write_preview(path: str | os.PathLike, images: Mapping[str, nib.Nifti1Image],
                  masks: Mapping[str, nib.Nifti1Image], title: str, panel_titles: Mapping[str, str] | None = None,
                  world_z: float | None = None) -> Path:
    """Write a PNG with one panel per sequence at ``world_z`` (default: the lesion's centroid level)."""
    if world_z is None:
        centroids = [mask_centroid_world(m) for m in masks.values()]
        centroids = [c for c in centroids if c is not None]
        world_z = float(centroids[0][2]) if centroids else 5.0
    seqs = list(images)
    fig = new_figure(4.2 * len(seqs), 4.8, facecolor="black")
    for n, seq in enumerate(seqs):
        ax = fig.add_subplot(1, len(seqs), n + 1)
        draw_slice(ax, radiological_axial_slice(images[seq], world_z).astype(np.float32))
        if seq in masks:
            draw_outline(ax, radiological_axial_slice(masks[seq], world_z) > 0, MASK_COLOURS.get(seq, "red"))
        ax.set_title((panel_titles or {}).get(seq, seq.upper()), color="white", fontsize=10)
        mark_sides(ax)
        ax.set_axis_off()
    fig.suptitle(title, color="white", fontsize=11)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.86, wspace=0.03)
    return atomic_write_bytes(path, png_bytes(fig))
