"""A contact sheet of checkpoint images and a loss-curve plot, drawn with Pillow alone."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from onnxstyle.runtime.images import to_uint8

PAD, LABEL = 6, 14


def contact_sheet(images: Sequence[np.ndarray], labels: Sequence[str], thumb: int = 192,
                  cols: int = 4) -> Image.Image:
    """Thumbnails in a grid, each with its label (iteration and loss) underneath."""
    if not images:
        raise ValueError("no images for the contact sheet")
    thumbs = []
    for img in images:
        t = Image.fromarray(to_uint8(img))
        t.thumbnail((thumb, thumb), Image.Resampling.LANCZOS)
        thumbs.append(t)
    cols = min(cols, len(thumbs))
    rows = math.ceil(len(thumbs) / cols)
    cw = max(t.width for t in thumbs) + PAD
    ch = max(t.height for t in thumbs) + PAD + LABEL
    sheet = Image.new("RGB", (cols * cw + PAD, rows * ch + PAD), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (t, label) in enumerate(zip(thumbs, labels, strict=True)):
        x, y = PAD + (i % cols) * cw, PAD + (i // cols) * ch
        sheet.paste(t, (x, y))
        draw.text((x, y + t.height + 1), label, fill="black")
    return sheet


def loss_plot(history: Sequence[dict[str, float]], size: tuple[int, int] = (640, 360),
              keys: Sequence[str] = ("total", "content", "style")) -> Image.Image:
    """Log-scale loss curves over the iterations (one colour per term), with axis labels."""
    w, h = size
    left, right, top, bottom = 64, 12, 12, 28
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    colours = {"total": (0, 0, 0), "content": (31, 119, 180), "style": (214, 39, 40),
               "tv": (44, 160, 44)}
    series = {k: np.array([max(row[k], 1e-30) for row in history]) for k in keys if history}
    if not history:
        draw.text((left, top), "no iterations", fill="black")
        return img
    logs = {k: np.log10(v) for k, v in series.items() if (v > 0).any()}
    lo = min(float(v.min()) for v in logs.values())
    hi = max(float(v.max()) for v in logs.values())
    hi = hi if hi > lo else lo + 1
    n = len(history)
    pw, ph = w - left - right, h - top - bottom
    draw.rectangle([left, top, left + pw, top + ph], outline="black")

    def xy(i: int, v: float) -> tuple[float, float]:
        return left + pw * (i / max(n - 1, 1)), top + ph * (1 - (v - lo) / (hi - lo))

    for k, v in logs.items():
        draw.line([xy(i, float(val)) for i, val in enumerate(v)], fill=colours.get(k, "grey"), width=2)
    for frac in (0.0, 0.5, 1.0):
        val = lo + frac * (hi - lo)
        y = top + ph * (1 - frac)
        draw.text((4, y - 6), f"1e{val:.1f}", fill="black")
    draw.text((left, h - bottom + 6), "iteration 1", fill="black")
    draw.text((left + pw - 70, h - bottom + 6), f"iteration {n}", fill="black")
    x = left + 120
    for k in logs:
        draw.text((x, h - bottom + 6), k, fill=colours.get(k, "grey"))
        x += 60
    return img
