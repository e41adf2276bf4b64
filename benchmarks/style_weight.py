"""The style-weight sweep behind defaults.STYLE_WEIGHT: `python benchmarks/style_weight.py`.

Each pair (tests/data) at each style weight: one scale at `--size` (256), exactly `--iterations`
(150) scipy iterations from the default noise canvas (seed 0), content weight 1, TV weight 0; the
final content and style terms (unweighted) and the wall time. The terms do not depend on the
machine's load (one start, one deterministic run), the seconds do. Writes OUT/style_weight.{json,md}
(--out, default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PAIRS = [("astronaut.png", "starry_night.jpg"), ("chelsea.png", "the_scream.jpg")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default="1e2,1e3,1e4,1e5")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    import onnxstyle
    from onnxstyle.runtime.images import load_rgb

    opts = onnxstyle.StyleOptions.parse({"size": args.size, "iterations": args.iterations, "until": "iterations",
                                         "scales": "none", "content_weight": 1, "tv_weight": 0, "seed": 0})
    rows = []
    for content, style in PAIRS:
        c, s = load_rgb(DATA / content), load_rgb(DATA / style)
        for w in args.weights.split(","):
            r = onnxstyle.stylize(c, s, opts.replace(style_weight=float(w)))
            rows.append({"pair": f"{Path(content).stem}:{Path(style).stem}", "style_weight": w,
                         "content": r.final["content"], "style": r.final["style"], "iterations": r.iterations,
                         "seconds": round(r.seconds, 1), "load": round(os.getloadavg()[0], 2)})
            print(f"{rows[-1]['pair']} {w}: content {r.final['content']:.4g}, style {r.final['style']:.4g}",
                  file=sys.stderr)
    lines = [f"# The style-weight sweep ({args.size} px, {args.iterations} iterations, one scale)", "",
             f"`python benchmarks/style_weight.py --size {args.size} --iterations {args.iterations}`: final "
             "terms, unweighted; content weight 1, TV 0, the default noise canvas (seed 0).", "",
             "| pair | style_weight | content | style | seconds | load |", "|---|---|---|---|---|---|",
             *(f"| {r['pair']} | {r['style_weight']} | {r['content']:.4g} | {r['style']:.4g} | {r['seconds']} | "
               f"{r['load']} |" for r in rows)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "style_weight.json").write_text(json.dumps(rows, indent=1) + "\n")
    (args.out / "style_weight.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
