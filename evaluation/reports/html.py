"""Building blocks of the self-contained HTML reports: figures to PNG bytes, values, tables, images.

Shared by :mod:`evaluation.reports.segmentation` (segmentation) and :mod:`evaluation.reports.classification`
(H3K27M status). Figures use matplotlib's Agg canvas directly (no pyplot, no display, no
global state); images are embedded as base64 ``data:`` URIs so a report is one file.
"""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CSS", "new_figure", "png_bytes", "fmt", "html_table", "img_tag", "page_start", "PAGE_END"]

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1400px}
h1{font-size:1.5em} h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;font-size:0.85em;margin:8px 0}
th,td{border:1px solid #ccc;padding:3px 7px;text-align:right} th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}
table.failures td{text-align:left} table.failures{background:#fff4f4}
.figs img{max-width:32%;margin:4px;border:1px solid #ddd} .overlays img{max-width:100%;margin:6px 0}
.pair img{max-width:49%;margin:4px;border:1px solid #ddd}
.ok{color:#1a7f37} .bad{color:#b42318} code{background:#f4f4f4;padding:0 3px}
"""

PAGE_END = "</body></html>\n"


def new_figure(width: float, height: float, facecolor: str = "white"):
    """A matplotlib ``Figure`` of ``width x height`` inches on an Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), facecolor=facecolor)
    FigureCanvasAgg(fig)
    return fig


def png_bytes(fig, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (``width*dpi x height*dpi`` pixels: no tight bounding box)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor=fig.get_facecolor())
    return buf.getvalue()


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, NaN/inf spelled out, booleans as yes/no."""
    if value is None or value is pd.NA:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        value = float(value)
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.{digits}f}"
    return str(value)


def html_table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table of plain-text cells (every cell is escaped)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>'


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` with the PNG embedded as a base64 data URI."""
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def page_start(title: str, css: str = CSS) -> str:
    """Doctype, head (title, inline CSS) and the ``<h1>`` title; close the page with :data:`PAGE_END`."""
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{css}</style></head><body>\n<h1>{html.escape(title)}</h1>")
