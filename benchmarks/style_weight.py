"""The style-weight sweep behind defaults.STYLE_WEIGHT: `python benchmarks/style_weight.py`.

Each size (--sizes, 256 then 512), each pair (tests/data), each style weight (--weights, 1e2 to
1e7): one scale at that size, exactly `--iterations` (150) scipy iterations from the default noise
canvas (seed 0), content weight 1, TV weight 0, every other option the default (the look term
too, above its size); the final content and style terms (unweighted) and the wall time. The terms
do not depend on the machine's load (one start, one deterministic run), the seconds do. After
each run: OUT/style_weight.{json,md} (--out, default benchmarks/results) and the pictures side by
side, a row per size and pair, a column per weight (--sheet, default docs/defaults_sweep.jpg), so
a run cut short keeps what it made. --jobs N makes N runs at a time, each in its own process.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PAIRS = [("astronaut.png", "starry_night.jpg"), ("chelsea.png", "the_scream.jpg")]


def write(rows: list[dict], pictures: list[np.ndarray], args: argparse.Namespace) -> None:
    from onnxstyle.runtime import sheet

    lines = [f"# The style-weight sweep ({args.iterations} iterations, one scale)", "",
             f"`python benchmarks/style_weight.py --sizes {args.sizes} --weights {args.weights} --iterations "
             f"{args.iterations} --threads {args.threads} --jobs {args.jobs}`: final terms, unweighted; "
             "content weight 1, TV 0, the default noise canvas (seed 0).", "",
             "| size | pair | style_weight | content | style | seconds | load |", "|---|---|---|---|---|---|---|",
             *(f"| {r['size']} | {r['pair']} | {r['style_weight']} | {r['content']:.4g} | {r['style']:.4g} | "
               f"{r['seconds']} | {r['load']} |" for r in rows)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "style_weight.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "style_weight.md").write_text("\n".join(lines) + "\n")
    labels = [f"{r['pair'].split(':')[0]}, {r['size']} px, {r['style_weight']}" for r in rows]
    sheet.contact_sheet(pictures, labels, thumb=192, cols=len(args.weights.split(","))).save(args.sheet, quality=90)


def sweep_one(size: int, content: str, style: str, w: str, iterations: int, threads: int | None):
    """One run (in a worker process with --jobs): its row and its picture."""
    import onnxstyle
    from onnxstyle.runtime.images import load_rgb

    opts = onnxstyle.StyleOptions.parse({"size": size, "iterations": iterations, "until": "iterations",
                                         "scales": "none", "content_weight": 1, "tv_weight": 0, "seed": 0,
                                         "threads": threads, "style_weight": float(w)})
    r = onnxstyle.stylize(load_rgb(DATA / content), load_rgb(DATA / style), opts)
    return {"size": size, "pair": f"{Path(content).stem}:{Path(style).stem}", "style_weight": w,
            "content": r.final["content"], "style": r.final["style"], "iterations": r.iterations,
            "seconds": round(r.seconds, 1), "load": round(os.getloadavg()[0], 2)}, r.image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="1e2,1e3,1e4,1e5,1e6,1e7")
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime's threads (default: the library's)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each (the terms do not "
                    "depend on it; the seconds do)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--sheet", type=Path, default=ROOT / "docs" / "defaults_sweep.jpg")
    args = ap.parse_args()
    runs = [(size, content, style, w, args.iterations, args.threads) for size in map(int, args.sizes.split(","))
            for content, style in PAIRS for w in args.weights.split(",")]
    rows: list[dict] = []
    pictures: list[np.ndarray] = []
    with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for row, picture in pool.map(sweep_one, *zip(*runs, strict=True)):  # in order: the sheet's layout
            rows.append(row)
            pictures.append(picture)
            print(f"{row['size']} {row['pair']} {row['style_weight']}: content {row['content']:.4g}, "
                  f"style {row['style']:.4g}, {row['seconds']:.0f} s", file=sys.stderr)
            write(rows, pictures, args)


if __name__ == "__main__":
    main()
