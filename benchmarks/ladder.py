"""Coarse-to-fine against a single scale at the same final size (issue: tubingen x starry_night
at 1024 px). Prints and writes benchmarks/results/ladder.{json,md}.

    python benchmarks/ladder.py                      # 1024 px: about 20 min on 2 CPU cores
    python benchmarks/ladder.py --size 256 --quick   # a smoke run

tubingen.jpg stays out of the repository (its licence is uncertain): it is read from
../shared/data. Both runs use the same optimiser and the final loss of each is the loss of the
same objective at the final size.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import onnxstyle  # noqa: E402
from onnxstyle.options import auto_ladder  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--content", type=Path, default=DATA / "content" / "tubingen.jpg")
    ap.add_argument("--style", type=Path, default=DATA / "style" / "starry_night.jpg")
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--single-iterations", type=int, default=60)
    ap.add_argument("--ladder-iterations", default="150,60,30", help="per scale, coarse to fine")
    ap.add_argument("--optimizer", default="lbfgs")
    ap.add_argument("--runs", default="single,ladder", help="which of the two runs to make")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    ladder_iters = [int(v) for v in args.ladder_iterations.split(",")]
    scales = auto_ladder(args.size, 256 if not args.quick else args.size // 4)
    scales = scales[-len(ladder_iters):]
    ladder_iters = ladder_iters[-len(scales):]
    single_iters = 3 if args.quick else args.single_iterations
    if args.quick:
        ladder_iters = [3] * len(scales)

    runs = {"single": dict(size=args.size, iterations=single_iters),
            "ladder": dict(size=None, scales=scales, iterations=ladder_iters)}
    rows = {}
    for name in args.runs.split(","):
        t = time.perf_counter()
        r = onnxstyle.stylize(args.content, args.style, optimizer=args.optimizer, **runs[name])
        rows[name] = {"seconds": time.perf_counter() - t, "final": r.final, "scales": r.scales,
                      "iterations": r.iterations}
        images.save(r.image, Path("/tmp") / f"ladder_{name}.jpg")  # tubingen: not for the repository
    lines = [f"# Coarse-to-fine vs single scale at {args.size} px", "",
             f"`python benchmarks/ladder.py` ({args.content.name} x {args.style.name}, optimiser "
             f"{args.optimizer}, default weights)", "",
             "| run | per scale: size, iterations, seconds | total s | final total loss | content | style |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        per = "; ".join(f"{s['size'][1]}x{s['size'][0]}: {s['iterations']} it, {s['seconds']:.0f} s"
                        for s in r["scales"])
        f = r["final"]
        lines.append(f"| {name} | {per} | {r['seconds']:.0f} | {f['total']:.4g} | {f['content']:.4g} | "
                     f"{f['style']:.4g} |")
    md = "\n".join(lines) + "\n"
    print(md)
    suffix = "_quick" if args.quick else ""
    (args.out / f"ladder{suffix}.json").write_text(json.dumps(rows, indent=2))
    (args.out / f"ladder{suffix}.md").write_text(md)


if __name__ == "__main__":
    main()
