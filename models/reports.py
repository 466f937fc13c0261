"""Self-contained HTML reports (training curves, sample images, metrics), written atomically.

A report is a title, a list of :class:`Section` (a heading and a figure, a paragraph or a
preformatted block) and nothing else: capabilities build the sections, this module owns the
page, the embedding of figures as base64 PNG and the atomic write. Figures use matplotlib's
object API only (``matplotlib.figure.Figure``): pyplot and its global backend are never
touched, so this is safe inside QGIS's Python.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .atomic import write_text
from .normalization import stretch, stretch_limits


@dataclass
class Section:
    heading: str
    figure: object = None      # a matplotlib Figure
    text: str = ""             # a paragraph (plain text, escaped)
    preformatted: str = ""     # a <pre> block (plain text, escaped)
    level: int = 2


def new_figure(width: float, height: float):
    """A matplotlib ``Figure`` (object API, no pyplot)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def figure_png_base64(fig, dpi: int = 90) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def display_image(a: np.ndarray, rgb: Sequence[int] = (2, 1, 0), percentiles=(1, 99)) -> np.ndarray:
    """``(C, H, W)`` -> an RGB ``(H, W, 3)`` image in [0, 1] (bands ``rgb``), or the first band when there are too few."""
    a = np.asarray(a)
    if a.shape[0] >= 3 and max(rgb) < a.shape[0]:
        im = np.stack([a[i] for i in rgb], axis=-1)
        lo, hi = stretch_limits(im, percentiles)
        return stretch(im, lo, hi)
    return a[0]


def metrics_block(metrics: dict) -> str:
    """A metrics dictionary as indented JSON text (non-JSON values as strings)."""
    return json.dumps(metrics, indent=1, default=str)


def write_report(path: str, title: str, sections: Sequence[Section], intro: str = "", dpi: int = 90) -> str:
    """Write the HTML page atomically and return its path."""
    parts = ["<!DOCTYPE html><html><head><meta charset='utf-8'>", f"<title>{html.escape(title)}</title></head>",
             "<body style='font-family:sans-serif'>", f"<h1>{html.escape(title)}</h1>"]
    if intro:
        parts.append(f"<p>{html.escape(intro)}</p>")
    for s in sections:
        parts.append(f"<h{s.level}>{html.escape(s.heading)}</h{s.level}>")
        if s.text:
            parts.append(f"<p>{html.escape(s.text)}</p>")
        if s.figure is not None:
            parts.append(f"<img src='data:image/png;base64,{figure_png_base64(s.figure, dpi)}'/>")
        if s.preformatted:
            parts.append(f"<pre>{html.escape(s.preformatted)}</pre>")
    parts.append("</body></html>")
    return write_text(path, "\n".join(parts))
