"""The style losses (--style-loss) against gram: their balance and their time per evaluation.

    python benchmarks/losses.py --balance-size 128 --time-size 512 --repeats 5 --threads 1

Balance: on four pairs (astronaut, chelsea x The Starry Night, The Scream) at --balance-size,
the norm of each loss's style gradient (default layers and style weight, content weight 0) at
the default initial canvas, over gram's: the scale that gives the default style weight gram's
balance is STYLE_LOSS_SCALE / that ratio (geometric mean over the pairs; defaults.py).
Time: one loss+gradient call of each loss in turn (after a warm-up each), --repeats rounds, in
one process (the same load for all), astronaut x The Starry Night at --time-size, --threads
threads (default: onnxruntime's); the 1-minute load average before and after is recorded.
Writes benchmarks/results/losses.{json,md}.
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

from onnxstyle import defaults  # noqa: E402
from onnxstyle.layout import STYLE_LOSSES  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "tests" / "data"  # copies of ../shared/data (its CREDITS.md)
PAIRS = [("astronaut.png", "starry_night.jpg"), ("astronaut.png", "the_scream.jpg"),
         ("chelsea.png", "starry_night.jpg"), ("chelsea.png", "the_scream.jpg")]


def pair(content: str, style: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    c, s = (images.load_rgb(DATA / n).astype(np.float32) for n in (content, style))
    return images.resize(c, images.fit_size(c.shape, size)), images.resize(s, images.fit_size(s.shape, size))


def balance(size: int, threads: int | None) -> dict:
    out = {}
    for cname, sname in PAIRS:
        c, s = pair(cname, sname, size)
        x = initial_canvas(c, defaults.INIT, defaults.SEED, defaults.NOISE_RATIO)
        norms = {k: float(np.linalg.norm(Objective(c, s, content_weight=0.0, style_loss=k, device="cpu",
                                                         threads=threads)(x)[1]))
                 for k in STYLE_LOSSES}
        out[f"{cname} x {sname}"] = {k: v / norms["gram"] for k, v in norms.items()}
    return out


def timing(size: int, repeats: int, threads: int | None) -> dict:
    load = os.getloadavg()[0]
    c, s = pair(*PAIRS[0], size)
    x = initial_canvas(c, defaults.INIT, defaults.SEED, defaults.NOISE_RATIO)
    objs = {k: Objective(c, s, style_loss=k, device="cpu", threads=threads) for k in STYLE_LOSSES}
    times: dict[str, list[float]] = {k: [] for k in objs}
    for o in objs.values():
        o(x)  # warm-up
    for _ in range(repeats):
        for k, o in objs.items():
            t = time.perf_counter()
            o(x)
            times[k].append(time.perf_counter() - t)
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"size": size, "repeats": repeats, "threads": threads, "load": load, "load_after": os.getloadavg()[0],
            "median_s": med,
            "ratio": {k: v / med["gram"] for k, v in med.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--balance-size", type=int, default=128)
    ap.add_argument("--time-size", type=int, default=512)  # the size
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime's threads (default: its own)")
    a = ap.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    res = {"commit": commit, "scale": dict(defaults.STYLE_LOSS_SCALE), "balance_size": a.balance_size,
           "balance": balance(a.balance_size, a.threads), "time": timing(a.time_size, a.repeats, a.threads)}
    gmean = {k: float(np.exp(np.mean([np.log(r[k]) for r in res["balance"].values()]))) for k in STYLE_LOSSES}
    res["balance_gmean"] = gmean
    out = HERE / "results"
    (out / "losses.json").write_text(json.dumps(res, indent=2))
    t = res["time"]
    lines = [
        "# Style losses against gram (`benchmarks/losses.py`)", "",
        f"`python benchmarks/losses.py --balance-size {a.balance_size} --time-size {a.time_size} "
        f"--repeats {a.repeats} --threads {a.threads}` at commit {commit}, CPU ({os.cpu_count()} cores).", "",
        f"## Balance: style gradient norm over gram's at the initial canvas, {a.balance_size} px, "
        "default layers and style weight, with the scales of defaults.STYLE_LOSS_SCALE then", "",
        "| pair | " + " | ".join(STYLE_LOSSES) + " |", "|---" * (len(STYLE_LOSSES) + 1) + "|",
        *(f"| {p} | " + " | ".join(f"{r[k]:.3g}" for k in STYLE_LOSSES) + " |" for p, r in res["balance"].items()),
        "| geometric mean | " + " | ".join(f"{gmean[k]:.3g}" for k in STYLE_LOSSES) + " |",
        "| scale then | " + " | ".join(f"{res['scale'][k]:.3g}" for k in STYLE_LOSSES) + " |", "",
        f"## Time per loss+gradient evaluation, {t['size']} px, median of {t['repeats']} "
        f"(load {t['load']:.1f} before, {t['load_after']:.1f} after)", "",
        "| loss | s | ratio to gram |", "|---|---|---|",
        *(f"| {k} | {t['median_s'][k]:.3f} | {t['ratio'][k]:.2f} |" for k in STYLE_LOSSES),
    ]
    (out / "losses.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
