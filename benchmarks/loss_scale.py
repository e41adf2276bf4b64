"""The scale per style loss that gives gram's balance at the result (STYLE_LOSS_SCALE, issue 27).

    python benchmarks/loss_scale.py --jobs 1 --threads 1 [--tries "w2=0.065/0.032,..."]

On the gallery's three pairs (losses_gallery.PAIRS) at --size with the ladder --scales and a
fixed count of iterations per rung (--until iterations), gram once and each other loss at two
scales (--tries: absolute STYLE_LOSS_SCALE values, applied as the style weight times scale over
today's scale; default: today's scale times 1.41 and 0.71, a check). Each result is seen at 256 px
by the float64 VGG19 (look.Seen): its content distance from the photo. Per loss and pair, the
scale at which the content distance equals gram's is read off the line through the two tries in
(log scale, content distance); the loss's scale is their geometric mean over the pairs. Runs are
made --jobs at a time, one process each at --threads; the results file is written after each and
a rerun keeps the runs it has (same settings; --fresh makes them all again).
Writes benchmarks/results/loss_scale.{json,md}.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout

from convergence import CONTENTS, DATA, STYLES  # noqa: E402
from losses_gallery import PAIRS  # noqa: E402

from onnxstyle import defaults  # noqa: E402

RESULTS = HERE / "results" / "loss_scale.json"
LOSSES = ("scaled", "w2", "histogram", "sliced")  # covariance's start-point scale holds (losses.md)


@functools.cache
def seen(pair: str):
    """(photo, painting, look.Seen of them), once per pair in a worker: Seen's float64 VGG passes are slow."""
    from look import Seen

    from onnxstyle.runtime import images

    c, s = pair.split(":")
    content, style = images.load_rgb(DATA / CONTENTS[c]), images.load_rgb(DATA / STYLES[s])
    return content, style, Seen(content, style)


def make(key: str, pair: str, loss: str, scale: float, a: argparse.Namespace, commit: str) -> tuple[str, dict]:
    """One run in a worker process, seen at 256 px: (key, its record)."""
    import onnxstyle

    content, style, see = seen(pair)
    load, t = os.getloadavg()[0], time.perf_counter()
    r = onnxstyle.stylize(content, style, device="cpu", threads=a.threads, size=a.size, scales=a.scales,
                          iterations=a.iterations, until="iterations", style_loss=loss,
                          style_weight=defaults.STYLE_WEIGHT * scale / defaults.STYLE_LOSS_SCALE[loss])
    secs = time.perf_counter() - t
    return key, {"pair": pair, "loss": loss, "scale": scale, **see(r.image),
                 "seconds": round(secs, 1), "load": round(load, 2), "commit": commit}


def derive(res: dict) -> dict[str, dict]:
    """Per loss: the scale giving gram's content distance on each pair, and their geometric mean."""
    gram = {r["pair"]: r["content"] for r in res["runs"].values() if r["loss"] == "gram"}
    out = {}
    for loss in dict.fromkeys(r["loss"] for r in res["runs"].values() if r["loss"] != "gram"):
        per = {}
        for pair, target in gram.items():
            pts = sorted((math.log(r["scale"]), r["content"]) for r in res["runs"].values()
                         if r["loss"] == loss and r["pair"] == pair)
            if len(pts) < 2 or pts[0][1] == pts[-1][1]:
                continue
            (x0, y0), (x1, y1) = pts[0], pts[-1]
            per[pair] = math.exp(x0 + (target - y0) * (x1 - x0) / (y1 - y0))
        if per:
            out[loss] = {"pairs": per, "scale": math.exp(sum(map(math.log, per.values())) / len(per)),
                         "today": defaults.STYLE_LOSS_SCALE[loss]}
    return out


def write(res: dict) -> None:
    res["derived"] = derive(res)
    RESULTS.write_text(json.dumps(res, indent=1) + "\n")
    gram = {r["pair"]: r for r in res["runs"].values() if r["loss"] == "gram"}
    lines = ["# The style losses' scale from the balance at the result (`benchmarks/loss_scale.py`)", "",
             f"At commit {', '.join(sorted({r['commit'] for r in res['runs'].values()}))}: {res['size']} px, scales "
             f"{res['scales']}, iterations {res['iterations']} per scale, each result seen at 256 px by the "
             "float64 VGG19 (content distance from the photo, Gram distance from the painting).", "",
             "| pair | loss | scale | content | over gram's | style | s | load |", "|---|---|---|---|---|---|---|---|"]
    for r in sorted(res["runs"].values(), key=lambda r: (r["pair"], r["loss"] != "gram", r["loss"], -r["scale"])):
        over = f"{r['content'] / gram[r['pair']]['content']:.2f}x" if r["pair"] in gram else "-"  # gram not run yet
        lines.append(f"| {r['pair'].replace(':', ' x ')} | {r['loss']} | {r['scale']:.3g} | {r['content']:.3f} | "
                     f"{over} | {r['style']:.4f} | {r['seconds']:.0f} | {r['load']:.1f} |")
    lines += ["", "| loss | scale giving gram's content distance, per pair | geometric mean | scale when measured |",
              "|---|---|---|---|"]
    for loss, d in res["derived"].items():
        lines.append(f"| {loss} | {', '.join(f'{v:.3g}' for v in d['pairs'].values())} | **{d['scale']:.3g}** | "
                     f"{d['today']:.3g} |")
    RESULTS.with_suffix(".md").write_text("\n".join(lines) + "\n")


def tries(text: str | None) -> dict[str, tuple[float, ...]]:
    if not text:
        return {loss: (defaults.STYLE_LOSS_SCALE[loss] * 1.41, defaults.STYLE_LOSS_SCALE[loss] * 0.71)
                for loss in LOSSES}
    return {k: tuple(float(v) for v in vs.split("/")) for k, vs in (t.split("=") for t in text.split(","))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--scales", default="128,256", help="the ladder")
    ap.add_argument("--iterations", default="200,100", help="L-BFGS iterations per scale")
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--tries", help="LOSS=SCALE/SCALE,... (absolute scales; default: today's times 1.41, 0.71)")
    ap.add_argument("--jobs", type=int, default=1, help="runs at a time, one process each")
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads per run")
    ap.add_argument("--fresh", action="store_true", help="make every run again")
    a = ap.parse_args()
    a.scales = tuple(int(s) for s in a.scales.split(","))
    a.iterations = tuple(int(n) for n in a.iterations.split(","))
    settings = {"size": a.size, "scales": list(a.scales), "iterations": list(a.iterations)}
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not a.fresh else {}
    same = all(old.get(k) == v for k, v in settings.items())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip() or "unknown"
    res = {**settings, "runs": old.get("runs", {}) if same else {}}
    plan = {}
    for pair in a.pairs.split(","):
        for loss, scales in {"gram": (1.0,), **tries(a.tries)}.items():
            for scale in scales:
                key = f"{pair}:{loss}:{scale:.4g}"
                if key not in res["runs"]:
                    plan[key] = (pair, loss, scale)
    print(f"loss_scale: {len(plan)} to run, {len(res['runs'])} kept", flush=True)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(make, k, *v, a, commit) for k, v in plan.items()]):
            key, rec = fut.result()
            res["runs"][key] = rec
            write(res)
            print(key, rec, flush=True)
    write(res)


if __name__ == "__main__":
    main()
