"""One default stylize per pair with the stopping rule's thresholds set per scale (issue 15):
iterations, stop and evaluations per scale, the cost in evaluations weighted by pixels / the
output's, and the final loss. The rows of benchmarks/results/schedule.md.

    python benchmarks/schedule.py --size 256 --pairs camera:the_scream --loss 0.005,0.002
    python benchmarks/schedule.py --size 256 --checks 1 --scales none

Prints one JSON line per pair.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

from convergence import CONTENTS, DATA, STYLES  # noqa: E402

import onnxstyle  # noqa: E402
from onnxstyle import defaults  # noqa: E402
from onnxstyle.runtime import stylize as runtime  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--pairs", default="astronaut:starry_night,chelsea:the_scream,camera:the_scream")
    ap.add_argument("--loss", default=str(defaults.CONVERGED_LOSS), help="per scale, coarse to fine (the last "
                    "value repeats)")
    ap.add_argument("--checks", type=int, default=defaults.CONVERGED_CHECKS)
    ap.add_argument("--scales", default=defaults.SCALES, help="auto | none | sizes such as 256,512")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--optimizers", default=defaults.OPTIMIZER,
                    help="comma-separated: each pair runs with each, one after the other")
    args = ap.parse_args()
    losses = [float(v) for v in args.loss.split(",")]
    rule = runtime.Convergence
    made: list = []

    def per_scale(**_) -> runtime.Convergence:  # stylize makes one rule per scale, in order
        made.append(rule(loss=losses[min(len(made), len(losses) - 1)], checks=args.checks))
        return made[-1]

    runtime.Convergence = per_scale
    for pair, optimizer in ((p, o) for p in args.pairs.split(",") for o in args.optimizers.split(",")):
        made.clear()
        c, s = pair.split(":")
        t = time.perf_counter()
        r = onnxstyle.stylize(DATA / CONTENTS[c], DATA / STYLES[s], size=args.size, threads=args.threads,
                              scales=args.scales, optimizer=optimizer)
        h, w = r.scales[-1]["size"]
        print(json.dumps({
            "pair": pair, "optimizer": optimizer, "size": args.size, "loss": losses, "checks": args.checks,
            "scales": args.scales,
            "per_scale": [(sc["size"], sc["iterations"], sc["stop"], sc["evaluations"]) for sc in r.scales],
            "cost": sum(sc["evaluations"] * sc["size"][0] * sc["size"][1] / (h * w) for sc in r.scales),
            "final": r.final["total"], "seconds": time.perf_counter() - t}), flush=True)


if __name__ == "__main__":
    main()
