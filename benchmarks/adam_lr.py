"""Adam's learning rate (--optimizer adam): the loss after N iterations for a few step sizes on
real pairs, beside scipy's L-BFGS-B at the same iterations, to pick defaults.LEARNING_RATE.

    python benchmarks/adam_lr.py --size 128 --iterations 200 --rates 1,3,10,30

Writes benchmarks/results/adam.json and adam.md (losses as multiples of scipy's at each count).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import onnxstyle  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("ONNXSTYLE_DATA", HERE.parent.parent / "shared" / "data"))  # beside the checkout
CONTENTS = {"astronaut": "content/astronaut.png", "chelsea": "content/chelsea.png"}
STYLES = {"starry_night": "style/starry_night.jpg", "the_scream": "style/the_scream.jpg"}


def curve(pair: str, size: int, iterations: int, threads: int | None, **kw) -> dict:
    c, s = pair.split(":")
    losses: list[float] = []
    t = time.perf_counter()
    r = onnxstyle.stylize(DATA / CONTENTS[c], DATA / STYLES[s], size=size, iterations=iterations,
                          until="iterations", scales="none", threads=threads,
                          callback=lambda p: losses.append(p.terms["total"]), **kw)
    return {"losses": losses, "evaluations": r.evaluations, "seconds": time.perf_counter() - t}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--rates", default="1,3,10,30")
    ap.add_argument("--pairs", default="astronaut:starry_night,chelsea:the_scream")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rates = [float(v) for v in args.rates.split(",")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    rows = {}
    for pair in args.pairs.split(","):
        rows[pair] = {"scipy": curve(pair, args.size, args.iterations, args.threads)}
        for lr in rates:
            rows[pair][f"adam {lr:g}"] = curve(pair, args.size, args.iterations, args.threads,
                                               optimizer="adam", learning_rate=lr)
        print(pair, {k: round(v["losses"][-1], 1) for k, v in rows[pair].items()}, flush=True)
    result = {"commit": commit, "size": args.size, "iterations": args.iterations, "pairs": rows}
    (args.out / "adam.json").write_text(json.dumps(result, indent=1))
    report(result, args.out / "adam.md")


def report(result: dict, path: Path) -> None:
    rows, n = result["pairs"], result["iterations"]
    marks = [m for m in (50, 100, 200, 500) if m <= n]
    per = [runs["scipy"]["evaluations"] / n for runs in rows.values()]
    lines = [f"# Adam's learning rate at {result['size']} px (commit {result['commit']})", "",
             "`python benchmarks/adam_lr.py` (one scale, noise init, the default weights; one thread). "
             "Each cell: Adam's total loss after that many iterations (one evaluation each) as a "
             "multiple of scipy L-BFGS-B's after the same count "
             f"({min(per):.2f}-{max(per):.2f} evaluations each).", "",
             "| pair | optimizer | " + " | ".join(f"it {m}" for m in marks) + " |",
             "|---|---|" + "---|" * len(marks)]
    for pair, runs in rows.items():
        ref = runs["scipy"]["losses"]
        for name, run in runs.items():
            cells = [f"{run['losses'][m - 1]:.4g}" if name == "scipy" else f"{run['losses'][m - 1] / ref[m - 1]:.3f}x"
                     for m in marks]
            lines.append(f"| {pair} | {name} | " + " | ".join(cells) + " |")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
