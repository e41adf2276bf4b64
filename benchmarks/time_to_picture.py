"""Time to a finished picture: onnxstyle's default command against 500 scipy iterations and
the peers' recipe, all in one run (issue 23 items 2-3; issue 25's time-left proof).

For each content/style pair at --size px, in one process, one after the other, same threads:
  onnxstyle  `onnxstyle.stylize(content, style, size=SIZE)` with every default (the default
             command, its schedule of scales included): wall time to the finished picture, its
             final total loss, the cost split (loss+gradient evaluations, the optimiser and the
             stopping rule, elsewhere: targets, resizing, sessions), and its Progress trace
             (each iteration's scale, evaluations, elapsed time and the time left it showed);
  scipy500   500 scipy L-BFGS-B iterations, single scale, from the same start (the default
             start at the output size): the default earns its name when it is faster and its
             final loss is at most 1.05x this one's;
  torch      the peers' recipe: torch autograd of the same math (torch_ref.TorchObjective) with
             torch.optim.LBFGS (history 100, no line search, lr 1, tolerances off), as
             jcjohnson/neural-style runs it for 1000 iterations, from the same start: the wall
             time until its finished picture (its pixels clamped to [0, 255], as it saves them)
             first reaches the default run's final loss (or its budget), and the time its
             unclamped pixels first reached it.
All losses are the same objective at the output size. PyTorch is benchmark-only:
pip install torch==2.13.0 (without it the torch column is left out).

    python benchmarks/time_to_picture.py --size 256 --torch-minutes 4
    python benchmarks/time_to_picture.py --size 128 --pairs astronaut:starry_night --no-torch

Writes benchmarks/results/time_to_picture_{size}.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
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
from report import torch_cells  # noqa: E402

import onnxstyle  # noqa: E402
from onnxstyle import defaults  # noqa: E402
from onnxstyle.runtime import images, prepare  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402
from onnxstyle.runtime.stylize import initial_canvas  # noqa: E402

PAIRS = "astronaut:starry_night,chelsea:the_scream,camera:the_scream"
# What decides where the default run's scales stop, recorded with each row: clock_replay.py pools
# and holds out the stops of the rows run under the rule as it is now
RULE = {k: getattr(defaults, k) for k in ("UNTIL", "ITERATIONS", "CONVERGED_WINDOW", "CONVERGED_CHANGE",
                                          "CONVERGED_LOSS", "CONVERGED_CHECKS", "SCALES", "LADDER_START",
                                          "OPTIMIZER", "LBFGS_MEMORY", "LOOK_SIZE", "LOOK_WEIGHT", "STYLE_WEIGHT")}
TORCH_ITERATIONS = 1000  # jcjohnson/neural-style's -num_iterations


def originals(pair: str) -> list[np.ndarray]:
    """Content and style at their own sizes, float32."""
    c, s = pair.split(":")
    return [images.load_rgb(path).astype(np.float32) for path in (DATA / CONTENTS[c], DATA / STYLES[s])]


def inputs(pair: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Content and style as stylize(size=size) sees them (the default style_scale of 1)."""
    c, s = (images.resize(img, images.fit_size(img.shape, size)) for img in originals(pair))
    return c, s


def torch_loss(pair: str, size: int):
    """x -> the total loss in torch (torch_ref.TorchObjective), the objective of the default's last
    scale at `size`: above defaults.LOOK_SIZE with the look term (defaults.LOOK_WEIGHT) as runtime/prepare.py builds it
    (the picture shrunk by the same box matrices, scored at that size, TV weight 0)."""
    import torch
    from torch_ref import TorchObjective

    from onnxstyle.runtime.look import box_matrix

    content, style = inputs(pair, size)
    whole = TorchObjective(content, [style])
    look = onnxstyle.defaults.LOOK_SIZE
    if max(content.shape[:2]) <= look:
        return lambda x: whole.terms(x)["total"]
    small = inputs(pair, look)
    coarse = TorchObjective(small[0], [small[1]], tv_weight=0.0)
    (h, w), (hh, ww) = content.shape[:2], small[0].shape[:2]
    rows, cols = torch.from_numpy(box_matrix(hh, h)), torch.from_numpy(box_matrix(ww, w))
    weight = onnxstyle.defaults.LOOK_WEIGHT
    return lambda x: (whole.terms(x)["total"]
                      + weight * coarse.terms(torch.einsum("ih,hwc,jw->ijc", rows, x, cols))["total"])


def torch_to_loss(pair: str, size: int, target: float, threads: int, budget: float = math.inf) -> dict:
    """The peers' recipe from the default start: seconds until its finished picture's loss first
    reaches `target` (or until `budget` seconds have gone by: then its time is a lower bound).

    The recipe optimises unconstrained pixels and clamps them to [0, 255] only when it saves the
    picture (jcjohnson/neural-style saves with torch7's image.save, which saturates to [0, 1]),
    so its finished picture is clamp(x): whenever the loss at x reaches the target, the clamped
    picture's loss is computed too (that check's time is left out of the clock) and the run
    stops when it also reaches the target. The first time the unclamped loss reached it is kept
    as `unclamped` (what earlier runs measured)."""
    import torch

    torch.set_num_threads(threads)
    total = torch_loss(pair, size)
    content = inputs(pair, size)[0]
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
        loss = total(x)
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
                clamped = float(total(x.detach().clamp(0, 255)))
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


@contextlib.contextmanager
def cost_split(into: dict):
    """Seconds in the loss+gradient graph (Objective._run) and in the optimiser's runs
    (Prepared.run: the optimiser, its evaluations and the stopping rule) while the block runs;
    `into` gets evaluations, optimiser (the runs less their evaluations) and elsewhere (the rest
    of the wall time: targets, resizing, sessions) once the block ends."""
    spent = {"eval": 0.0, "runs": 0.0}
    graph, run = Objective._run, prepare.Prepared.run

    def timed(method, key: str):
        def wrapper(self, *a, **k):
            t = time.perf_counter()
            try:
                return method(self, *a, **k)
            finally:
                spent[key] += time.perf_counter() - t
        return wrapper

    Objective._run, prepare.Prepared.run = timed(graph, "eval"), timed(run, "runs")
    t0 = time.perf_counter()
    try:
        yield
    finally:
        Objective._run, prepare.Prepared.run = graph, run
        wall = time.perf_counter() - t0
        into.update(evaluations_s=spent["eval"], optimizer_s=spent["runs"] - spent["eval"],
                    elsewhere_s=wall - spent["runs"])


def time_left(trace: list[list[float]], total: float, at: int = 20) -> list[dict]:
    """Per scale: the time left shown after its `at`-th iteration against the real remainder
    (the run's wall time then to its end). trace rows: scale, iteration, evaluations, the
    callback's wall time since the run's start, the time left shown (None: not yet measured)."""
    rows = []
    for scale, iteration, _, wall, shown in trace:
        if iteration == at and shown is not None:
            real = total - wall
            rows.append({"scale": int(scale), "shown": shown, "real": real, "ratio": shown / real if real else None})
    return rows


def markdown(rows: list[dict], size: int, threads: int) -> str:
    """The comparison table and the time-left table."""
    lines = [f"# Time to a finished picture at {size} px", "",
             f"`python benchmarks/time_to_picture.py --size {size}`, {threads} thread(s) for every run, one process; "
             "per pair the default command, then 500 scipy iterations, then the peers' recipe. Split: seconds in "
             "the loss+gradient graph / in the optimiser and stopping rule / elsewhere (targets, resizing, "
             "sessions). The default wins when it is faster and its loss at most 1.05x scipy's.", "",
             "| pair | px | load | default: s, evaluations | its stop | final loss | 500 scipy: s, evaluations, loss "
             "| loss ratio | time ratio | wins | split default | split scipy | torch finished picture | "
             "default/torch | torch unclamped |",
             "|" + "---|" * 15]
    for r in rows:
        o, s = r["onnxstyle"], r["scipy500"]
        stop = "; ".join(f"{c['size'][1]}x{c['size'][0]}: {c['iterations']} it ({c['stop']})" for c in o["scales"])
        split = [f"{d['evaluations_s']:.0f} / {d['optimizer_s']:.0f} / {d['elsewhere_s']:.0f}" for d in (o, s)]
        lines.append(f"| {r['pair']} | {r['size'][1]}x{r['size'][0]} | {r['load']:.1f}-{r['load_after']:.1f} | "
                     f"{o['seconds']:.0f} s, {o['evaluations']} | {stop} | {o['final']:.4g} | "
                     f"{s['seconds']:.0f} s, {s['evaluations']}, {s['final']:.4g} | {o['final'] / s['final']:.3f} | "
                     f"{o['seconds'] / s['seconds']:.2f} | {'yes' if r['wins'] else '**no**'} | {split[0]} | "
                     f"{split[1]} | " + " | ".join(torch_cells(r.get("torch"), o["seconds"])) + " |")
    lines += ["", "Time left shown after the 20th iteration of each scale against the real remainder:", "",
              "| pair | scale | shown s | real s | ratio |", "|---|---|---|---|---|"]
    for r in rows:
        for t in r["onnxstyle"]["time_left"]:
            c = r["onnxstyle"]["scales"][t["scale"]]
            lines.append(f"| {r['pair']} | {c['size'][1]}x{c['size'][0]} | {t['shown']:.0f} | {t['real']:.0f} | "
                         f"{t['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def default_run(pair: str, size: int, threads: int, pictures: Path | None = None) -> dict:
    """The default command, timed, with its cost split and its progress trace; its picture saved
    to `pictures` as CONTENT_STYLE_SIZE.png (look.py --pictures measures it)."""
    trace: list[list[float]] = []
    t0 = time.perf_counter()

    def record(p) -> None:
        trace.append([p.scale, p.iteration, p.evaluations, time.perf_counter() - t0, p.remaining])

    split: dict = {}
    with cost_split(split):
        r = onnxstyle.stylize(*originals(pair), size=size, threads=threads, callback=record)
    seconds = time.perf_counter() - t0
    if pictures is not None:
        pictures.mkdir(parents=True, exist_ok=True)
        images.save(r.image, pictures / f"{pair.replace(':', '_')}_{size}.png")
    return {"seconds": seconds, "final": r.final["total"], "iterations": r.iterations,
            "evaluations": r.evaluations, "scales": r.scales, "stop": r.reason, **split,
            "time_left": time_left(trace, seconds), "trace": trace}


def scipy500(pair: str, size: int, threads: int) -> dict:
    """500 single-scale scipy iterations of the same objective (the default's last scale, from the
    same originals: the look term's targets too) from the same start."""
    split: dict = {}
    t = time.perf_counter()
    with cost_split(split):
        r = onnxstyle.stylize(*originals(pair), size=size, iterations=500, until="iterations", optimizer="scipy",
                              scales="none", threads=threads)
    return {"seconds": time.perf_counter() - t, "final": r.final["total"], "evaluations": r.evaluations, **split}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--no-torch", action="store_true", help="leave the peers' recipe out")
    ap.add_argument("--threads", type=int, default=None, help="every run (default: physical cores)")
    ap.add_argument("--torch-minutes", type=float, default=4.0, help="stop torch's run after this long")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    ap.add_argument("--pictures", type=Path, help="save the default's pictures here")
    args = ap.parse_args()
    from onnxstyle.runtime.session import cpu_threads

    threads = args.threads or cpu_threads() or os.cpu_count() or 1  # torch needs a count
    try:
        import torch  # noqa: F401
    except ImportError:
        args.no_torch = True
        print("torch is not installed: the peers' recipe is left out", file=sys.stderr)
    rows = []
    for pair in args.pairs.split(","):
        content = inputs(pair, args.size)[0]
        row: dict = {"pair": pair, "size": list(content.shape[:2]), "threads": threads, "rule": RULE,
                     "load": os.getloadavg()[0]}
        row["onnxstyle"] = default_run(pair, args.size, threads, args.pictures)
        row["scipy500"] = scipy500(pair, args.size, threads)
        o, s = row["onnxstyle"], row["scipy500"]
        row["wins"] = o["seconds"] < s["seconds"] and o["final"] <= 1.05 * s["final"]
        print(json.dumps({k: v for k, v in row.items() if k != "onnxstyle"}), flush=True)
        if not args.no_torch:
            row["torch"] = torch_to_loss(pair, args.size, o["final"], threads, args.torch_minutes * 60)
        row["load_after"] = os.getloadavg()[0]
        rows.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "onnxstyle"}), flush=True)
        write(rows, args.out, args.size, threads)  # after each pair: a run cut short keeps its pairs
    print(markdown(rows, args.size, threads))


def write(rows: list[dict], out: Path, size: int, threads: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"time_to_picture_{size}.json").write_text(json.dumps(rows, indent=1))
    (out / f"time_to_picture_{size}.md").write_text(markdown(rows, size, threads))


if __name__ == "__main__":
    main()
