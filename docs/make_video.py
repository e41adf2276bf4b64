"""The figures of docs/video.md: flow accuracy on a clip with known motion, and the temporal
error of stylized video (temporal term at several weights, later-frame iterations) against
independent per-frame stylization with the same options. Writes benchmarks/results/video_make.json, a strip
of per-frame stills and the stylized clip (small files).

    PYTHONPATH=. python docs/make_video.py [--frames 6] [--width 128] [--first 60]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from onnxstyle.options import StyleOptions
from onnxstyle.runtime import images
from onnxstyle.video import flow as flows
from onnxstyle.video import io
from onnxstyle.video.run import TemporalOptions, frame_name, stylize_clip
from onnxstyle.video.synthetic import PanZoom, temporal_error

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "video"


def flow_table(pz: PanZoom, n: int) -> list[dict]:
    rows = []
    for name in ("astronaut", "chelsea"):
        photo = images.load_rgb(DATA / "content" / f"{name}.png")
        frames = pz.frames(photo, n)
        for method in flows.METHODS:
            epe, ms, kept = [], [], []
            for t in range(1, n):
                t0 = time.perf_counter()
                bwd = flows.flow(frames[t], frames[t - 1], method)
                ms.append((time.perf_counter() - t0) * 1000)
                fwd = flows.flow(frames[t - 1], frames[t], method)
                truth = pz.flow(t, t - 1, photo.shape[:2])
                epe.append(flows.endpoint_error(bwd, truth, pz.visible(truth)))
                kept.append(float(flows.reliability(fwd, bwd).mean()))
            rows.append({"photo": name, "method": method, "epe_px": float(np.mean(epe)),
                         "ms_per_flow": float(np.median(ms)), "reliable_share": float(np.mean(kept))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--first", type=int, default=60, help="iterations of the first frame")
    ap.add_argument("--weights", default="0,1e2,1e3,1e4")
    ap.add_argument("--later", default="15,30,60", help="later-frame iterations tried at --weight")
    ap.add_argument("--weight", type=float, default=1e3)
    args = ap.parse_args()
    pz = PanZoom(width=args.width, height=args.width * 3 // 4, scale=0.45, pan=(3.0, 1.5), zoom=0.02)
    n = args.frames
    results: dict = {"clip": {"photo": "astronaut.png", "style": "starry_night.jpg", "frames": n,
                              "size": [pz.height, pz.width], "pan_px": pz.pan, "zoom": pz.zoom},
                     "flow": flow_table(pz, n)}
    photo = images.load_rgb(DATA / "content" / "astronaut.png")
    frames = pz.frames(photo, n)
    truth = [pz.flow(t, t - 1, photo.shape[:2]) for t in range(1, n)]
    vis = [pz.visible(f) for f in truth]
    results["content_temporal_error"] = temporal_error(frames, truth, vis)
    options = StyleOptions(size=args.width, iterations=args.first, optimizer="lbfgs")
    style = DATA / "style" / "starry_night.jpg"
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, f in enumerate(frames):
            images.save(f, src / f"f{i:03d}.png")
        later = [int(k) for k in args.later.split(",")]
        weights = [float(w) for w in args.weights.split(",")]
        configs = [("independent", TemporalOptions(independent=True, later_iterations=args.first))]
        configs += [(f"W={w:g} later={later[1]}", TemporalOptions(weight=w, later_iterations=later[1]))
                    for w in weights]
        configs += [(f"W={args.weight:g} later={k}", TemporalOptions(weight=args.weight, later_iterations=k))
                    for k in later if k != later[1]]
        shown = f"W={args.weight:g} later={later[1]}"
        for label, temporal in configs:
            out = Path(tmp) / label.replace(" ", "_").replace("=", "")
            r = stylize_clip(src, out, [style], options, temporal)
            styled = [images.load_rgb(out / frame_name(i)) for i in range(n)]
            err = temporal_error(styled, truth, vis)
            runs.append({"run": label, "temporal_error": err, "seconds_first": r.seconds_per_frame[0],
                         "seconds_later": float(np.mean(r.seconds_per_frame[1:]))})
            print(runs[-1], flush=True)
            if label in (shown, "independent"):
                tag = "temporal" if label != "independent" else "independent"
                strip = np.concatenate(styled, axis=1)
                images.save(strip, OUT / f"stills_{tag}.jpg")
                if tag == "temporal":
                    io.write_video(OUT / "astronaut_starry_night.mp4", [out / frame_name(i) for i in range(n)],
                                   io.FOLDER_FPS)
        images.save(np.concatenate(frames, axis=1), OUT / "stills_content.jpg")
    base = runs[0]["temporal_error"]
    for r in runs:
        r["ratio_to_independent"] = r["temporal_error"] / base
    results["runs"] = runs
    (OUT.parent.parent / "benchmarks" / "results" / "video_make.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
