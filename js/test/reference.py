"""Reference numbers from Python onnxruntime for the JS conformance suite (js/test/): for each
size, the inputs (the pair resized by Python, the starting canvas), the loss graph's targets,
terms and gradient, and the loss after an lbfgs-device run; raw little-endian files + index.json.

    python js/test/reference.py OUT [--sizes 53x67,71x96] [--iterations 10] [--bench 256]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from onnxstyle import layout, stylize
from onnxstyle.runtime import images
from onnxstyle.runtime.objective import Objective
from onnxstyle.runtime.stylize import initial_canvas

DATA = Path(__file__).resolve().parents[2] / "onnxstyle" / "data"
CONTENT, STYLE = "astronaut.png", "starry_night.jpg"  # the bundled pair (public domain)


def pair(hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The content resized to exactly hw and the style to the same longer side, as uint8."""
    content = images.resize(images.load_rgb(DATA / CONTENT).astype(np.float32), hw)
    s = images.load_rgb(DATA / STYLE).astype(np.float32)
    style = images.resize(s, images.fit_size(s.shape, max(hw)))
    return content.astype(np.uint8), style.astype(np.uint8)


def case(out: Path, hw: tuple[int, int], iterations: int) -> dict:
    content, style = pair(hw)
    tag = f"{hw[0]}x{hw[1]}"
    obj = Objective(content.astype(np.float32), style.astype(np.float32), device="cpu")
    x = initial_canvas(content.astype(np.float32), "noise", 0)
    terms, grad = obj.evaluate(x)
    files = {"content": content, "style": style, "x": x, "grad": grad}
    for name in obj.content_layers:  # the targets the graph was fed (float32)
        files[layout.content_target(name)] = obj._feed[layout.content_target(name)]
    for name in obj.style_layers:
        files[layout.gram_target(name)] = obj._feed[layout.gram_target(name)]
    index = {"hw": list(hw), "style_hw": list(style.shape[:2]), "terms": terms, "arrays": {}}
    for name, value in files.items():
        path = out / f"{tag}_{name}.bin"
        np.ascontiguousarray(value).tofile(path)
        index["arrays"][name] = {"file": path.name, "dtype": str(value.dtype), "shape": list(value.shape)}
    run = stylize(content, style, size=None, scales="none", iterations=iterations, optimizer="lbfgs-device",
                  until="iterations", device="cpu")
    index["lbfgs_device"] = {"iterations": run.iterations, "evaluations": run.evaluations, "final": run.final}
    return index


def bench(out: Path, size: int, repeats: int = 5) -> dict:
    """Seconds per loss+gradient evaluation at size x size (median of `repeats` after a warm-up);
    the inputs are written for the other runtimes to time the same."""
    content, style = pair((size, size))
    inputs = {}
    for name, value in (("content", content), ("style", style)):
        value.tofile(out / f"bench_{name}.bin")
        inputs[name] = {"file": f"bench_{name}.bin", "dtype": "uint8", "shape": list(value.shape)}
    obj = Objective(content.astype(np.float32), style.astype(np.float32), device="cpu")
    x = initial_canvas(content.astype(np.float32), "noise", 0)
    obj.evaluate(x)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        obj.evaluate(x)
        times.append(time.perf_counter() - t)
    return {"size": size, "seconds": statistics.median(times), "repeats": repeats,
            "runtime": f"onnxruntime {ort.__version__} (Python)", "backend": "cpu", "inputs": inputs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--sizes", default="53x67,71x96")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--bench", type=int, default=0)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    index = {"onnxruntime": ort.__version__, "layout": layout.LAYOUT_VERSION, "cases": []}
    for spec in filter(None, a.sizes.split(",")):
        h, w = (int(v) for v in spec.split("x"))
        index["cases"].append(case(a.out, (h, w), a.iterations))
    if a.bench:
        index["bench"] = bench(a.out, a.bench)
        index["bench_inputs"] = index["bench"].pop("inputs")
    (a.out / "index.json").write_text(json.dumps(index, indent=1))


if __name__ == "__main__":
    main()
