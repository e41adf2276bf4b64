"""Are later video frames as sharp as the first? Stylizes a clip with known motion (a real photo
panned, or panned and zoomed: onnxstyle/video/synthetic.py) and measures each frame's sharpness
against the first's (mean Sobel gradient magnitude, variance of the Laplacian, on grey levels),
the edge bands where streaks showed (right and bottom 12 px) and the temporal error against the
true flow (video.synthetic.temporal_error, as docs/video.md; and at half resolution, where
resampling a sharp frame costs little, so that a blurred video does not score better for it).

    python benchmarks/video_sharpness.py run --clip pan --tag new --frames /tmp/v/pan_new
    python benchmarks/video_sharpness.py report /tmp/v/pan_old /tmp/v/pan_new ...

`run` stylizes with the onnxstyle on PYTHONPATH (so an older checkout gives the "before");
`report` writes benchmarks/results/video_sharpness.{json,md} and docs/video/sharpness.jpg.
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

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
DATA = Path(os.environ.get("ONNXSTYLE_DATA", HERE.parent.parent / "shared" / "data"))
CLIPS = {  # the issue's 12-frame 192 px pan; a real photo panned and zoomed in 2 % a frame
    "pan": ("astronaut.png", dict(width=192, height=144, scale=0.6, pan=(3.0, 1.5), zoom=0.0)),
    "zoom": ("chelsea.png", dict(width=192, height=144, scale=0.6, pan=(2.0, 1.0), zoom=0.02)),
}
BAND = 12  # px of the right and bottom edge bands


def clip(name: str, n: int):
    from onnxstyle.runtime import images
    from onnxstyle.video.synthetic import PanZoom

    photo_name, kw = CLIPS[name]
    photo = images.load_rgb(DATA / "content" / photo_name)
    pz = PanZoom(**kw)
    return pz, photo, pz.frames(photo, n)


def run(args) -> None:
    from onnxstyle.options import StyleOptions
    from onnxstyle.runtime import images
    from onnxstyle.video.run import TemporalOptions, stylize_clip

    _, _, frames = clip(args.clip, args.n)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "in"
        src.mkdir()
        for i, f in enumerate(frames):
            images.save(f, src / f"f{i:03d}.png")
        t = time.perf_counter()
        stylize_clip(src, args.frames, [DATA / "style" / "starry_night.jpg"],
                     StyleOptions(size=args.size, iterations=args.iterations, threads=args.threads),
                     TemporalOptions() if args.weight is None else TemporalOptions(weight=args.weight),
                     overwrite=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(sys.modules["onnxstyle"].__file__).parent).stdout.strip()
    meta = {"clip": args.clip, "tag": args.tag, "weight": args.weight,
            "frames": args.n, "size": args.size, "iterations": args.iterations,
            "commit": commit, "dirty": bool(subprocess.run(["git", "status", "--porcelain", "onnxstyle"],
                                                           capture_output=True, text=True,
                                                           cwd=Path(sys.modules["onnxstyle"].__file__).parent).stdout),
            "seconds": time.perf_counter() - t}
    (Path(args.frames) / "sharpness_run.json").write_text(json.dumps(meta))


def sharpness(img: np.ndarray) -> dict:
    g = cv2.cvtColor(np.asarray(img, np.uint8), cv2.COLOR_RGB2GRAY).astype(np.float32)
    mag = np.sqrt(cv2.Sobel(g, cv2.CV_32F, 1, 0) ** 2 + cv2.Sobel(g, cv2.CV_32F, 0, 1) ** 2)
    return {"gradient": float(mag.mean()), "laplacian_var": float(cv2.Laplacian(g, cv2.CV_32F).var()),
            "right_band": float(mag[:, -BAND:].mean()), "bottom_band": float(mag[-BAND:].mean())}


def measure(folder: Path) -> dict:
    from onnxstyle.runtime import images
    from onnxstyle.video.run import frame_name
    from onnxstyle.video.synthetic import temporal_error

    meta = json.loads((folder / "sharpness_run.json").read_text())
    pz, photo, frames = clip(meta["clip"], meta["frames"])
    outs = [images.load_rgb(folder / frame_name(i)) for i in range(meta["frames"])]
    h, w = outs[0].shape[:2]
    k = w / pz.width

    def flows_at(scale: float):
        hw = (round(h * scale), round(w * scale))
        out = []
        for t in range(1, meta["frames"]):
            f = cv2.resize(pz.flow(t, t - 1, photo.shape[:2]), (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
            out.append(f * k * scale)
        gx, gy = np.meshgrid(np.arange(hw[1]), np.arange(hw[0]))
        vis = [((gx + f[..., 0] >= 0) & (gx + f[..., 0] <= hw[1] - 1) & (gy + f[..., 1] >= 0)
                & (gy + f[..., 1] <= hw[0] - 1)).astype(np.float32) for f in out]
        return hw, out, vis

    def te(seq, scale, interpolation=cv2.INTER_LINEAR):
        hw, fl, vis = flows_at(scale)
        seq = [cv2.resize(np.asarray(s, np.float32), (hw[1], hw[0]), interpolation=cv2.INTER_AREA) for s in seq]
        return temporal_error(seq, fl, vis, interpolation)

    content = [cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames]
    s = [sharpness(o) for o in outs]
    ratio = {key: [x[key] / s[0][key] for x in s] for key in s[0]}
    sc = [sharpness(c) for c in content]
    return {**meta, "per_frame": s, "ratio_to_first": ratio,
            "content_ratio_to_first": {key: [x[key] / sc[0][key] for x in sc] for key in sc[0]},
            "temporal_error": te(outs, 1.0), "temporal_error_half": te(outs, 0.5),
            "content_temporal_error": te(content, 1.0), "content_temporal_error_half": te(content, 0.5),
            "temporal_error_lanczos": te(outs, 1.0, cv2.INTER_LANCZOS4),
            "content_temporal_error_lanczos": te(content, 1.0, cv2.INTER_LANCZOS4)}


def report(args) -> None:
    rows = [measure(Path(f)) for f in args.folders]
    res = HERE / "results"
    (res / "video_sharpness.json").write_text(json.dumps(rows, indent=1))
    lines = ["# Video: later frames against the first (benchmarks/video_sharpness.py)", "",
             "Starry Night, `--size 128 --iterations 60` (later frames 30), scipy, 12 frames; each "
             "later frame's sharpness as a multiple of the first frame's (min over frames 2-12, and "
             "frame 8); temporal error against the true flow at full and half resolution (the "
             "content frames' own in brackets); the previous frame warped bilinearly as docs/video.md, and "
             "with Lanczos, which blurs a sharp frame far less.", "",
             "| clip | run (commit) | gradient min / f8 | Laplacian var min / f8 | right band f8 | bottom band f8 "
             "| temporal error | at half res | Lanczos-warped |", "|---|---|---|---|---|---|---|---|---|"]
    def cells(q: dict) -> str:
        return (f"{min(q['gradient'][1:]):.2f} / {q['gradient'][7]:.2f} | {min(q['laplacian_var'][1:]):.2f} / "
                f"{q['laplacian_var'][7]:.2f} | {q['right_band'][7]:.2f} | {q['bottom_band'][7]:.2f}")

    for r in rows:
        if r["tag"] == rows[[x["clip"] for x in rows].index(r["clip"])]["tag"]:  # the clip's first row
            lines.append(f"| {r['clip']} | the content frames | {cells(r['content_ratio_to_first'])} | "
                         f"{r['content_temporal_error']:.1f} | {r['content_temporal_error_half']:.1f} | "
                         f"{r['content_temporal_error_lanczos']:.1f} |")
        commit = r["commit"] + ("+" if r["dirty"] else "")
        lines.append(f"| {r['clip']} | {r['tag']} ({commit}) | {cells(r['ratio_to_first'])} | "
                     f"{r['temporal_error']:.1f} ({r['content_temporal_error']:.1f}) | "
                     f"{r['temporal_error_half']:.1f} ({r['content_temporal_error_half']:.1f}) | "
                     f"{r['temporal_error_lanczos']:.1f} ({r['content_temporal_error_lanczos']:.1f}) |")
    (res / "video_sharpness.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if args.picture:  # frame 1 and frame 8 side by side, one row per folder
        from onnxstyle.runtime import images
        from onnxstyle.video.run import frame_name

        strips = [np.concatenate([images.load_rgb(Path(f) / frame_name(0)), np.full((96, 4, 3), 255, np.uint8)[
            :images.load_rgb(Path(f) / frame_name(0)).shape[0]], images.load_rgb(Path(f) / frame_name(7))], 1)
            for f in args.folders]
        gap = np.full((4, strips[0].shape[1], 3), 255, np.uint8)
        sheet = np.concatenate([x for s in strips for x in (s, gap)][:-1], 0)
        cv2.imwrite(str(args.picture), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--clip", choices=CLIPS, default="pan")
    r.add_argument("--tag", default="now")
    r.add_argument("--frames", type=Path, required=True)
    r.add_argument("--n", type=int, default=12)
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--iterations", type=int, default=60)
    r.add_argument("--threads", type=int, default=1)
    r.add_argument("--weight", type=float, help="the temporal weight (default: TemporalOptions')")
    p = sub.add_parser("report")
    p.add_argument("folders", nargs="+")
    p.add_argument("--picture", type=Path)
    args = ap.parse_args()
    run(args) if args.cmd == "run" else report(args)


if __name__ == "__main__":
    main()
