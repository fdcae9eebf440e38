"""The one set of helpers that draws MRI slices: windowed image, mask outlines, side marks, saliency heat maps.

Shared by the cohort previews (:mod:`pipeline.data.preview`), the segmentation report's overlays
(:mod:`evaluation.reports.segmentation`) and the H3K27M saliency pictures (:mod:`pipeline.inference.saliency`,
:mod:`evaluation.reports.classification`). Display convention: axial slices of a RAS volume in radiological
view, rows anterior -> posterior and columns the patient's right -> left (``R`` marked on the viewer's left).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from evaluation.reports.html import new_figure, png_bytes

__all__ = ["axial_display", "draw_outline", "draw_slice", "mark_sides", "saliency_overlay_png", "window"]


def axial_display(volume: np.ndarray, k: int) -> np.ndarray:
    """Axial slice ``k`` of a RAS volume as a 2D display array (rows anterior->posterior, columns right->left)."""
    return np.asarray(volume[:, :, k]).T[::-1, ::-1]


def window(image: np.ndarray) -> tuple[float, float]:
    """Grey-level window: the 1st and 99.7th percentiles (``(0, 1)`` for an all-zero image)."""
    if not np.any(image):
        return 0.0, 1.0
    lo, hi = np.percentile(image, [1.0, 99.7])
    return float(lo), float(max(hi, lo + 1e-6))


def draw_slice(ax, image: np.ndarray, aspect: Any = None) -> None:
    """``image`` in grey on ``ax``, windowed with :func:`window`."""
    lo, hi = window(image)
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="bilinear", aspect=aspect)


def draw_outline(ax, mask: np.ndarray, colour: str, linewidth: float = 0.9) -> None:
    """The outline of ``mask > 0.5`` (nothing for an empty mask)."""
    mask = np.asarray(mask, dtype=np.float32)
    if (mask > 0.5).any():
        ax.contour(mask, levels=[0.5], colors=colour, linewidths=linewidth)


def mark_sides(ax) -> None:
    """``R`` on the viewer's left and ``L`` on the right (radiological view)."""
    ax.text(0.02, 0.5, "R", color="white", transform=ax.transAxes, fontsize=9, va="center")
    ax.text(0.96, 0.5, "L", color="white", transform=ax.transAxes, fontsize=9, va="center")


def saliency_overlay_png(image: Any, heat: Any, mask: Any = None, title: str = "", alpha: float = 0.6,
                         cmap: str = "jet", figsize: tuple[float, float] = (8.0, 4.3)) -> bytes:
    """Two panels: the slice (with the mask outline) and the slice with ``heat`` overlaid; PNG bytes.

    ``image``, ``heat`` and ``mask`` are 2D arrays of one shape, drawn as stored (row 0 at
    the top). ``heat`` is drawn on a fixed 0-1 scale (normalise it first), its opacity rising
    to ``alpha`` at 0.4 so that low saliency leaves the anatomy visible; the mask outline
    (``mask > 0.5``) is green. The image is windowed with :func:`window`.
    """
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    img = np.asarray(image, dtype=np.float64)
    hm = np.asarray(heat, dtype=np.float64)
    if img.ndim != 2 or hm.shape != img.shape:
        raise ValueError(f"image and heat must be 2D of one shape, got {img.shape} and {hm.shape}")
    m = None
    if mask is not None:
        m = np.asarray(mask, dtype=np.float64)
        if m.shape != img.shape:
            raise ValueError(f"mask shape {m.shape} differs from the image's {img.shape}")
    fig = new_figure(*figsize, facecolor="black")
    for n in range(2):
        ax = fig.add_subplot(1, 2, n + 1)
        draw_slice(ax, img)
        if n == 1:
            rgba = colormaps[cmap](np.clip(hm, 0.0, 1.0))
            rgba[..., 3] = alpha * np.clip(2.5 * hm, 0.0, 1.0)  # low saliency fades out, the anatomy stays visible
            ax.imshow(rgba, interpolation="bilinear")
            bar = fig.colorbar(ScalarMappable(Normalize(0.0, 1.0), cmap), ax=ax, fraction=0.046, pad=0.02)
            bar.ax.tick_params(colors="white", labelsize=7)
        if m is not None:
            draw_outline(ax, m, "#00e000", linewidth=1.0)
        ax.set_title("slice" + (" and tumour mask" if m is not None else "") if n == 0 else "saliency",
                     color="white", fontsize=9)
        ax.set_axis_off()
    if title:
        fig.suptitle(title, color="white", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.95, bottom=0.02, top=0.86, wspace=0.05)
    return png_bytes(fig)
