"""lbfgs against scipy's L-BFGS-B at equal iterations (issue 15): the table of
benchmarks/results/lbfgs_vs_scipy.md from convergence.py's recordings.

    python benchmarks/convergence.py --size 64 --optimizer scipy --threads 1 --out DIR
    python benchmarks/convergence.py --size 64 --optimizer lbfgs --threads 1 --out DIR
    (the same at --size 128, e.g. --pairs astronaut:starry_night,chelsea:starry_night,camera:the_scream)
    python benchmarks/lbfgs_vs_scipy.py DIR [DIR2 ...]

Reads DIR/convergence_{scipy,lbfgs}_{size}.json (later directories override earlier ones, pair by
pair) and prints, per size and pair, both final losses and lbfgs / scipy, with the mean and max
per size. Compare runs made with the same --threads: onnxruntime's sums change with the thread
count, and on this non-convex loss that alone moves one run's final loss by up to ~2%.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def load(dirs: list[Path], optimizer: str) -> dict[int, dict[str, dict]]:
    runs: dict[int, dict[str, dict]] = {}
    for d in dirs:
        for path in sorted(d.glob(f"convergence_{optimizer}_*.json")):
            size = int(path.stem.rsplit("_", 1)[1])
            runs.setdefault(size, {}).update(json.loads(path.read_text()))
    return runs


def table(dirs: list[Path]) -> str:
    scipy, ours = load(dirs, "scipy"), load(dirs, "lbfgs")
    lines = ["| pair | size | scipy | lbfgs | ratio | evaluations (scipy / lbfgs) |", "|---|---|---|---|---|---|"]
    for size in sorted(set(scipy) & set(ours)):
        ratios = []
        for pair in (p for p in ours[size] if p in scipy[size]):
            a, b = scipy[size][pair], ours[size][pair]
            fa, fb = a["final"]["total"], b["final"]["total"]
            ratios.append(fb / fa)
            lines.append(f"| {pair.replace(':', ' x ')} | {size} | {fa:.2f} | {fb:.2f} | {fb / fa:.3f} | "
                         f"{a['evaluations']} / {b['evaluations']} |")
        if ratios:
            lines.append(f"| **mean (max) at {size} px** | | | | **{sum(ratios) / len(ratios):.3f} "
                         f"({max(ratios):.3f})** | |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table([Path(a) for a in sys.argv[1:]] or [Path(__file__).resolve().parent / "results"]), end="")
