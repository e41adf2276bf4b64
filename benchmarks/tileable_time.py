"""Time per loss+gradient evaluation with --tileable against the plain graph, in one process.

    python benchmarks/tileable_time.py --size 256 --repeats 3

astronaut x The Starry Night at --size (sides on the 16 px grid), default layers: the plain
graph, the circular graph (tileable, untiled) and wrapped tiles (tileable with tiles of half the
picture: the ordinary graph on each tile plus its wrapped halo, two passes; for big pictures), one call
of each in turn after a warm-up each, --repeats rounds; the medians and the 1-minute load average.
Writes benchmarks/results/tileable_time.{json,md}.
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

from onnxstyle.runtime import images, tiles  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    c, s = (images.load_rgb(DATA / n).astype(np.float32) for n in ("astronaut.png", "starry_night.jpg"))
    c = images.resize(c, tiles.on_grid(images.fit_size(c.shape, a.size)))
    s = images.resize(s, images.fit_size(s.shape, a.size))
    x = initial_canvas(c, "noise", 0)
    objs = {"plain": Objective(c, s, device="cpu"), "circular": Objective(c, s, device="cpu", tileable=True),
            "wrapped tiles": Objective(c, s, device="cpu", tileable=True, tile=max(c.shape[:2]) // 2)}
    times: dict[str, list[float]] = {k: [] for k in objs}
    for o in objs.values():
        o(x)
    load0 = os.getloadavg()[0]
    for _ in range(a.repeats):
        for k, o in objs.items():
            t = time.perf_counter()
            o(x)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    res = {"commit": commit, "shape": list(c.shape[:2]), "repeats": a.repeats, "load": [load0, os.getloadavg()[0]],
           "median_s": med, "ratio": {k: v / med["plain"] for k, v in med.items()}}
    (HERE / "results" / "tileable_time.json").write_text(json.dumps(res, indent=2))
    lines = ["# --tileable: time per evaluation (`benchmarks/tileable_time.py`)", "",
             f"`python benchmarks/tileable_time.py --size {a.size} --repeats {a.repeats}` at commit {commit}, CPU, "
             f"{c.shape[1]}x{c.shape[0]}, load {load0:.1f} -> {os.getloadavg()[0]:.1f} on 2 cores.", "",
             "| graph | median s | ratio to plain |", "|---|---|---|",
             *(f"| {k} | {v:.3f} | {res['ratio'][k]:.2f} |" for k, v in med.items())]
    (HERE / "results" / "tileable_time.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
