"""Time to a finished picture: onnxstyle's default command against the peers' recipe.

For each content/style pair at --size px, in one process, side by side:
  onnxstyle  `onnxstyle.stylize(content, style, size=SIZE)` with every default (the default
             command, its schedule of scales included): wall time to the finished picture and
             its final total loss;
  scipy500   500 scipy L-BFGS-B iterations, single scale, the same start (the loss target:
             the default's final loss must be <= 1.05x this);
  torch      the peers' recipe: torch autograd of the same math (torch_ref.TorchObjective) with
             torch.optim.LBFGS (history 100, no line search, lr 1, tolerances off), as
             jcjohnson/neural-style runs it for 1000 iterations, from the same start: the wall
             time until its finished picture (its pixels clamped to [0, 255], as it saves them)
             first reaches the default run's final loss (or its 1000), and the time its
             unclamped pixels first reached it.
All losses are the same objective at the output size. PyTorch is benchmark-only:
pip install torch==2.13.0.

    python benchmarks/time_to_picture.py --size 512          # three pairs
    python benchmarks/time_to_picture.py --size 128 --pairs astronaut:starry_night --no-scipy

Writes benchmarks/results/time_to_picture_{size}.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import numpy as np  # noqa: E402
from convergence import CONTENTS, DATA, STYLES  # noqa: E402

import onnxstyle  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

PAIRS = "astronaut:starry_night,chelsea:the_scream,camera:the_scream"
TORCH_ITERATIONS = 1000  # jcjohnson/neural-style's -num_iterations


def originals(pair: str) -> list[np.ndarray]:
    """Content and style at their own sizes, float32."""
    c, s = pair.split(":")
    return [images.load_rgb(path).astype(np.float32) for path in (DATA / CONTENTS[c], DATA / STYLES[s])]


def inputs(pair: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Content and style as stylize(size=size) sees them (the default style_scale of 1)."""
    c, s = (images.resize(img, images.fit_size(img.shape, size)) for img in originals(pair))
    return c, s


def torch_to_loss(content: np.ndarray, style: np.ndarray, target: float, threads: int,
                  budget: float = math.inf) -> dict:
    """The peers' recipe from the default start: seconds until its finished picture's loss first
    reaches `target` (or until `budget` seconds have gone by: then its time is a lower bound).

    The recipe optimises unconstrained pixels and clamps them to [0, 255] only when it saves the
    picture (jcjohnson/neural-style saves with torch7's image.save, which saturates to [0, 1]),
    so its finished picture is clamp(x): whenever the loss at x reaches the target, the clamped
    picture's loss is computed too (that check's time is left out of the clock) and the run
    stops when it also reaches the target. The first time the unclamped loss reached it is kept
    as `unclamped` (what earlier runs measured)."""
    import torch
    from torch_ref import TorchObjective

    torch.set_num_threads(threads)
    obj = TorchObjective(content, [style])
    x = torch.from_numpy(initial_canvas(content, "noise", onnxstyle.defaults.SEED)).requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1, max_iter=TORCH_ITERATIONS, max_eval=TORCH_ITERATIONS * 5 // 4,
                            tolerance_grad=-1, tolerance_change=-1, history_size=100)
    seen: dict = {"evals": 0, "reached": None, "best": math.inf, "best_clamped": math.inf,
                  "unclamped": None, "checked": 0.0}
    start = time.perf_counter()

    def clock() -> float:  # seconds of the recipe's own work
        return time.perf_counter() - start - seen["checked"]

    class Reached(Exception):
        pass

    def closure():
        opt.zero_grad()
        loss = obj.terms(x)["total"]
        loss.backward()
        value = float(loss.detach())
        seen["evals"] += 1
        seen["best"] = min(seen["best"], value)
        if value <= target:
            now = clock()
            if seen["unclamped"] is None:
                seen["unclamped"] = {"seconds": now, "evaluations": seen["evals"]}
            t = time.perf_counter()
            with torch.no_grad():
                clamped = float(obj.terms(x.detach().clamp(0, 255))["total"])
            seen["checked"] += time.perf_counter() - t
            seen["best_clamped"] = min(seen["best_clamped"], clamped)
            if clamped <= target:
                seen["reached"] = now
                raise Reached
        if clock() > budget:
            raise Reached
        return loss

    try:
        opt.step(closure)
    except Reached:
        pass
    # how far out of the pixel box [0, 255], where onnxstyle's optimisers stay, its image went
    v = x.detach().numpy()
    return {"seconds": seen["reached"] if seen["reached"] is not None else clock(),
            "reached": seen["reached"] is not None, "evaluations": seen["evals"], "best": seen["best"],
            "best_clamped": seen["best_clamped"], "unclamped": seen["unclamped"],
            "outside_box": float(((v < 0) | (v > 255)).mean()), "range": [float(v.min()), float(v.max())]}


def markdown(rows: list[dict], size: int, threads: int) -> str:
    """The results as a table. Where torch never reaches the loss, its time is a lower bound and
    the ratio an upper bound (<=)."""
    lines = [f"# Time to a finished picture at {size} px", "",
             f"`python benchmarks/time_to_picture.py --size {size}`, {threads} thread(s) each, one process. The "
             "machine is a 2-core CPU shared with other work: the load average (1 min) at each pair's start is in "
             "the table, and the evaluation counts compare the two without the load. torch's recipe optimises "
             "unconstrained pixels and clamps them to [0, 255] when it saves the picture: 'finished' is the time "
             "its clamped picture first reached onnxstyle's final loss, 'unclamped' the time its unclamped "
             "pixels did (runs before the clamped check measured only that).", "",
             "| pair | load | onnxstyle default: s, evaluations | its stop | final loss | scipy 500 it loss "
             "(ratio) | torch LBFGS, finished picture to that loss: s, evaluations | time ratio "
             "onnxstyle/torch | torch unclamped: s, evaluations (ratio) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        o, tr = row["onnxstyle"], row["torch"]
        ref = row.get("scipy500")
        refs = f"{ref['final']:.4g} ({o['final'] / ref['final']:.3f})" if ref else "-"
        stop = "; ".join(f"{s['size'][1]}x{s['size'][0]}: {s['iterations']} it ({s['stop']})" for s in o["scales"])
        evals = sum(s["evaluations"] for s in o["scales"])
        bound = "" if tr["reached"] else "> "
        tt = f"{bound}{tr['seconds']:.0f} s, " + (f"{bound}{tr['evaluations']}" if tr["evaluations"] else "?")
        if not tr["reached"]:
            best = tr.get("best_clamped", tr["best"])
            if best == math.inf:  # its unclamped loss never reached the target: clamped never checked
                tt += f" (not reached: unclamped best {tr['best']:.4g})"
            else:
                tt += f" (not reached: best {best:.4g})" if best else f" (stopped {tr['stopped']})"
        ratio = ("" if tr["reached"] else "<= ") + f"{o['seconds'] / tr['seconds']:.2f}"
        un = tr.get("unclamped")
        if "unclamped" not in tr:  # an earlier run: the unclamped time is the only one
            un = {"seconds": tr["seconds"], "evaluations": tr["evaluations"]} if tr["reached"] else None
            tt, ratio = "not measured", "-"
        uns = (f"{un['seconds']:.0f} s, {un['evaluations']} ({o['seconds'] / un['seconds']:.2f})" if un
               else "not reached" + (f" (best {tr['best']:.4g})" if tr["best"] else ""))
        pair = row["pair"] + (f" ({row['note']})" if row.get("note") else "")
        lines.append(f"| {pair} | {row['load']:.1f} | {o['seconds']:.0f} s, {evals} | {stop} | "
                     f"{o['final']:.4g} | {refs} | {tt} | {ratio} | {uns} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--no-scipy", action="store_true", help="skip the 500-iteration scipy reference")
    ap.add_argument("--scipy-from", type=Path, help="take the scipy reference from a convergence.py JSON "
                    "(500 recorded iterations of the same pair and size) instead of running it")
    ap.add_argument("--threads", type=int, default=None, help="both frameworks (default: physical cores)")
    ap.add_argument("--torch-minutes", type=float, default=math.inf, help="stop torch's run after this long")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--report", type=Path, help="print the table of a results JSON and exit")
    args = ap.parse_args()
    if args.report is not None:
        print(markdown(json.loads(args.report.read_text()), args.size, args.threads or 2))
        return
    from onnxstyle.runtime.session import cpu_threads

    threads = args.threads or cpu_threads() or os.cpu_count() or 1  # torch needs a count
    rows = []
    for pair in args.pairs.split(","):
        content, style = inputs(pair, args.size)
        row: dict = {"pair": pair, "size": list(content.shape[:2]), "load": os.getloadavg()[0]}
        t = time.perf_counter()
        r = onnxstyle.stylize(*originals(pair), size=args.size, threads=threads)  # the default command
        row["onnxstyle"] = {"seconds": time.perf_counter() - t, "final": r.final["total"],
                            "iterations": r.iterations, "scales": r.scales, "stop": r.reason}
        recorded = json.loads(args.scipy_from.read_text()) if args.scipy_from else {}
        if pair in recorded:
            rec = recorded[pair]
            assert rec["optimizer"] == "scipy" and rec["iterations"] == 500 and rec["size"] == max(row["size"]), pair
            row["scipy500"] = {"seconds": rec["seconds"], "final": rec["loss"][-1], "from": str(args.scipy_from)}
        elif not args.no_scipy:
            t = time.perf_counter()
            ref = onnxstyle.stylize(content, style, size=None, iterations=500, until="iterations",
                                    optimizer="scipy", scales="none", threads=threads)
            row["scipy500"] = {"seconds": time.perf_counter() - t, "final": ref.final["total"]}
        print(json.dumps({k: v for k, v in row.items()}), flush=True)  # in case torch is cut short
        row["torch"] = torch_to_loss(content, style, r.final["total"], threads, args.torch_minutes * 60)
        rows.append(row)
        print(json.dumps(row), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"time_to_picture_{args.size}.json").write_text(json.dumps(rows, indent=2))
    md = markdown(rows, args.size, threads)
    (args.out / f"time_to_picture_{args.size}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
