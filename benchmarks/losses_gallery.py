"""Pictures of the style losses, a texture, a tileable texture and a painting per scale, with the
seam of the tileable texture measured (docs/losses.md).

    python benchmarks/losses_gallery.py --size 160 --iterations 60

Small on purpose (2 shared CPU cores): chelsea x The Starry Night at --size, one scale, each
--style-loss; textures of The Starry Night (plain and --tileable, each shown repeated 2 x 2);
chelsea with The Scream at half --size then The Starry Night at --size (--style-per-scale).
Seam: the mean absolute difference between the last and the first column (row) of the texture,
against the same between neighbouring columns (rows) inside it (mean and 95th percentile).
Writes docs/gallery/losses/*.jpg and benchmarks/results/losses_gallery.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import onnxstyle  # noqa: E402
from onnxstyle.layout import STYLE_LOSSES  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"  # copies of ../shared/data (its CREDITS.md)
OUT = HERE.parent / "docs" / "gallery" / "losses"


def seam(x: np.ndarray) -> dict[str, float]:
    x = x.astype(np.float64)
    out = {}
    for axis, name in ((1, "columns"), (0, "rows")):
        inner = np.abs(np.diff(x, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
        edge = np.abs(np.take(x, [0], axis=axis) - np.take(x, [-1], axis=axis)).mean()
        out[name] = {"seam": float(edge), "inner_mean": float(inner.mean()),
                     "inner_p95": float(np.percentile(inner, 95))}
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=160)
    ap.add_argument("--iterations", type=int, default=60)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    c, sn, sc = (images.load_rgb(DATA / n) for n in ("chelsea.png", "starry_night.jpg", "the_scream.jpg"))
    common = {"size": a.size, "iterations": a.iterations, "until": "iterations", "device": "cpu"}
    runs = {f"loss_{k}": (c, sn, {"scales": None, "style_loss": k}) for k in STYLE_LOSSES}
    runs["texture_plain"] = (sn, sn, {"scales": None, "content_weight": 0.0, "noise_ratio": 1.0})
    runs["texture_tileable"] = (sn, sn, {"scales": None, "content_weight": 0.0, "noise_ratio": 1.0,
                                         "tileable": True})
    runs["per_scale"] = (c, [sc, sn], {"scales": (a.size // 2, a.size), "style_per_scale": True,
                                       "iterations": (a.iterations, a.iterations // 2)})
    res: dict = {"commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                          text=True, cwd=HERE).stdout.strip(), "size": a.size,
                 "iterations": a.iterations, "runs": {}}
    for stem, (content, style, kw) in runs.items():
        t = time.perf_counter()
        r = onnxstyle.stylize(content, style, **{**common, **kw})
        secs = time.perf_counter() - t
        img = r.image
        if stem.startswith("texture"):
            res.setdefault("seam", {})[stem] = seam(img)
            img = np.tile(img, (2, 2, 1))
        images.save(img, OUT / f"{stem}.jpg")
        res["runs"][stem] = {"shape": list(r.image.shape[:2]), "seconds": secs, "evaluations": r.evaluations,
                             "s_per_eval": secs / max(1, r.evaluations), "load": os.getloadavg()[0],
                             "loss": [r.initial["total"], r.final["total"]]}
        print(stem, res["runs"][stem], flush=True)
    (HERE / "results" / "losses_gallery.json").write_text(json.dumps(res, indent=2))
    lines = ["# Pictures of the style losses, textures, per-scale (`benchmarks/losses_gallery.py`)", "",
             f"`python benchmarks/losses_gallery.py --size {a.size} --iterations {a.iterations}` at commit "
             f"{res['commit']}, CPU, 2 cores shared with other jobs (s per evaluation is under that load).", "",
             "| picture | size | evaluations | s | s/eval | load | loss start -> end |",
             "|---|---|---|---|---|---|---|"]
    for stem, v in res["runs"].items():
        lines.append(f"| {stem} | {v['shape'][1]}x{v['shape'][0]} | {v['evaluations']} | {v['seconds']:.0f} | "
                     f"{v['s_per_eval']:.2f} | {v['load']:.1f} | {v['loss'][0]:.4g} -> {v['loss'][1]:.4g} |")
    lines += ["", "Seam (mean absolute difference, 0..255) across the texture's wrap edge against neighbouring "
              "columns / rows inside it:", "", "| texture | axis | seam | inside: mean | inside: 95th pct |",
              "|---|---|---|---|---|"]
    for stem, axes in res.get("seam", {}).items():
        for axis, v in axes.items():
            lines.append(f"| {stem} | {axis} | {v['seam']:.1f} | {v['inner_mean']:.1f} | {v['inner_p95']:.1f} |")
    (HERE / "results" / "losses_gallery.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
