"""When is the picture done? Per-iteration curves for the stopping rule (issue 15).

For each content/style pair, one run of `--iterations` records after every iteration: the total
loss, the seconds so far, and the image (uint8, kept in /tmp for the side-by-side pictures).
From the images it derives the mean absolute pixel change over the last `window` iterations
(in 0..255 units per iteration) and the mean absolute distance to the final image.

    python benchmarks/convergence.py --size 128 --optimizer scipy
    python benchmarks/convergence.py --size 256 --optimizer lbfgs --pairs astronaut:starry_night

Writes benchmarks/results/convergence_{optimizer}_{size}.json (one entry per pair).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

import onnxstyle  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
CONTENTS = {"astronaut": "content/astronaut.png", "chelsea": "content/chelsea.png",
            "camera": "special/gray_L_camera.png", "tubingen": "content/tubingen.jpg"}
STYLES = {"starry_night": "style/starry_night.jpg", "the_scream": "style/the_scream.jpg",
          "matisse": "style/woman-with-hat-matisse.jpg"}
PAIRS = ("astronaut:starry_night,astronaut:matisse,chelsea:the_scream,chelsea:starry_night,"
         "camera:the_scream,tubingen:matisse")
FRAMES = Path(os.environ.get("ONNXSTYLE_FRAMES", "/tmp/onnxstyle_frames"))  # never committed


def curves(frames: np.ndarray, window: int) -> tuple[list[float], list[float]]:
    """(mean |x_k - x_{k-window}| / window per k, mean |x_k - x_final| per k), 0..255 units."""
    f = frames.astype(np.float32)
    change = [float("nan")] * len(f)
    for k in range(window, len(f)):
        change[k] = float(np.abs(f[k] - f[k - window]).mean()) / window
    final = [float(np.abs(fk - f[-1]).mean()) for fk in f]
    return change, final


def run_pair(pair: str, size: int, iterations: int, optimizer: str, window: int,
             threads: int | None = None) -> dict:
    c, s = pair.split(":")
    frames, losses, seconds = [], [], []

    def record(p) -> None:
        frames.append(np.clip(np.rint(p.image), 0, 255).astype(np.uint8))
        losses.append(p.terms["total"])
        seconds.append(p.elapsed)

    t = time.perf_counter()
    r = onnxstyle.stylize(DATA / CONTENTS[c], DATA / STYLES[s], size=size, iterations=iterations,
                          optimizer=optimizer, callback=record, threads=threads, until="iterations",
                          scales="none")
    wall = time.perf_counter() - t
    stack = np.stack(frames)
    FRAMES.mkdir(parents=True, exist_ok=True)
    np.save(FRAMES / f"{c}_{s}_{optimizer}_{size}.npy", stack)
    change, final = curves(stack, window)
    return {"pair": pair, "size": size, "optimizer": optimizer, "iterations": r.iterations,
            "evaluations": r.evaluations, "seconds": wall, "loss": losses, "elapsed": seconds,
            "change": change, "to_final": final, "initial": r.initial["total"], "final": r.final,
            "load": os.getloadavg()[0]}


def stop_at(row: dict, change: float, loss: float, window: int, checks: int = 1) -> int:
    """The iteration where onnxstyle's Convergence rule stops this recorded run (checks every
    `window` iterations, as the runtime does; `checks` in a row must meet it); the run's length
    where it never does."""
    losses, moved = row["loss"], row["change"]
    met = 0
    for k in range(2 * window, len(losses) + 1, window):
        drop = (losses[k - 1 - window] - losses[k - 1]) / losses[k - 1 - window]
        met = met + 1 if moved[k - 1] < change and drop < loss else 0
        if met >= checks:
            return k
    return len(losses)


def report(paths: list[Path], change: float, loss: float, window: int, pictures: Path | None,
           checks: int = 1) -> str:
    """A Markdown table: per run the stop iteration, the loss and the distance to the final image
    there, and the time saved; optionally a side-by-side picture (stop | final) of each pair
    whose content may be shown (tubingen's licence is uncertain: measured, never shown)."""
    lines = [f"Rule: every {window} iterations, mean |x_k - x_(k-{window})| / {window} < {change:g} (0..255) "
             f"and loss decrease over the window < {loss:.1%}, at {checks} check(s) in a row.", "",
             "| optimizer | size | pair | load | stop it | loss at stop / at last | mean abs px to last | "
             "time at stop / at last |", "|---|---|---|---|---|---|---|---|"]
    shots = []
    for path in paths:
        for pair, r in json.loads(path.read_text()).items():
            k = stop_at(r, change, loss, window, checks)
            n = len(r["loss"])
            lines.append(f"| {r['optimizer']} | {r['size']} | {pair} | {r['load']:.1f} | {k} | "
                         f"{r['loss'][k - 1] / r['loss'][-1]:.4f} | {r['to_final'][k - 1]:.2f} | "
                         f"{r['elapsed'][k - 1] / r['elapsed'][-1]:.2f} ({k}/{n} it) |")
            c = pair.split(":")[0]
            frames = FRAMES / f"{c}_{pair.split(':')[1]}_{r['optimizer']}_{r['size']}.npy"
            if pictures is not None and c != "tubingen" and frames.exists() and r["optimizer"] == "scipy":
                f = np.load(frames)
                shots.append((f[k - 1], f[-1], f"{pair} {r['size']} px: stop at {k}", f"{n} iterations"))
    if pictures is not None and shots:
        from PIL import Image, ImageDraw

        side = 192  # each picture enlarged (nearest: the pixels as they are) to this width
        rows = [max(round(a.shape[0] * side / a.shape[1]), 1) + 14 for a, *_ in shots]
        sheet = Image.new("RGB", (2 * side + 6, sum(rows)), "white")
        draw = ImageDraw.Draw(sheet)
        top = 0
        for (a, b, ta, tb), h in zip(shots, rows, strict=True):
            for j, (img, text) in enumerate(((a, ta), (b, tb))):
                big = Image.fromarray(img).resize((side, h - 14), Image.NEAREST)
                sheet.paste(big, (j * (side + 6), top + 14))
                draw.text((j * (side + 6) + 2, top + 1), text, fill="black")
            top += h
        sheet.save(pictures, quality=80)
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--iterations", type=int, default=500)
    ap.add_argument("--optimizer", default="scipy")
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--rule", choices=("gcp", "segment"), default="gcp",
                    help="with --optimizer lbfgs: the step's end point (segment: lbfgs-device's)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--report", nargs="*", type=Path, help="recorded JSON files: print the rule's stops")
    ap.add_argument("--pictures", type=Path, help="with --report: write the side-by-side jpg here")
    args = ap.parse_args()
    if args.report is not None:
        from onnxstyle import defaults

        print(report(args.report, defaults.CONVERGED_CHANGE, defaults.CONVERGED_LOSS, args.window, args.pictures,
                     defaults.CONVERGED_CHECKS))
        return
    if args.rule != "gcp":  # what stylize's optimizer="lbfgs" calls
        from functools import partial

        from onnxstyle.runtime import host_lbfgs

        host_lbfgs.minimize = partial(host_lbfgs.minimize, rule=args.rule)
    path = args.out / f"convergence_{args.optimizer}_{args.size}.json"
    rows = json.loads(path.read_text()) if path.exists() else {}
    for pair in args.pairs.split(","):
        rows[pair] = run_pair(pair, args.size, args.iterations, args.optimizer, args.window, args.threads)
        path.write_text(json.dumps(rows))
        print(pair, f"{rows[pair]['seconds']:.0f} s", f"final {rows[pair]['final']['total']:.5g}", flush=True)


if __name__ == "__main__":
    main()
