"""Regenerate docs/gallery.md's pictures of the controls from ../shared/data at 512 px.

    python docs/make_gallery.py            # everything (about an hour on 2 CPU cores)
    python docs/make_gallery.py --only sheet             # the contact sheet and loss curve

(The README's pictures and the gallery's sizes section are the default command's, made by
benchmarks/look.py and benchmarks/time_to_picture.py --pictures.)

Each picture runs a 256 -> 512 coarse-to-fine ladder with the library's defaults unless the
control under test says otherwise.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

import onnxstyle
from onnxstyle.runtime import images, sheet

HERE = Path(__file__).resolve().parent
DATA = HERE.parent.parent / "shared" / "data"
OUT = HERE / "gallery"
C = {n: DATA / "content" / f"{n}.png" for n in ("astronaut", "chelsea")}
S = {n: DATA / "style" / f"{n}.jpg" for n in ("starry_night", "the_scream")}
SIZES = "## The default at 256 and 512 px"  # gallery.md's section from benchmarks/look.py, kept as it is


def half_mask(path: Path, side: str) -> np.ndarray:
    h, w = images.load_rgb(path).shape[:2]
    m = np.zeros((h, w), np.float32)
    if side == "left":
        m[:, : w // 2] = 1
    else:
        m[:, w // 2 :] = 1
    return m


def pictures() -> dict[str, list[tuple[str, str, dict]]]:
    """group -> [(file stem, caption, stylize kwargs)]."""
    a, ch = C["astronaut"], C["chelsea"]
    sn, sc = S["starry_night"], S["the_scream"]
    return {
        "gallery": [
            ("blend", "1. two styles, --style-blend 0.5,0.5 (Starry Night + The Scream)",
             dict(content=ch, style=[sn, sc], style_blend=[0.5, 0.5])),
            ("scale_05", "2. --style-scale 0.5", dict(content=a, style=sn, style_scale=0.5)),
            ("scale_2", "2. --style-scale 2", dict(content=a, style=sn, style_scale=2.0)),
            ("layers_low", "3. --style-layers conv1_1,conv2_1 (fine texture only)",
             dict(content=a, style=sn, style_layers={"conv1_1": 0.5, "conv2_1": 0.5})),
            ("layers_high", "3. --style-layers conv3_1,conv4_1,conv5_1 (large structures)",
             dict(content=a, style=sn, style_layers={"conv3_1": 1 / 3, "conv4_1": 1 / 3,
                                                     "conv5_1": 1 / 3})),
            ("colors_luminance", "4. --preserve-colors luminance",
             dict(content=a, style=sn, preserve_colors="luminance")),
            ("colors_match", "4. --preserve-colors match (pca)",
             dict(content=a, style=sn, preserve_colors="match")),
            ("tv_high", "5. --tv-weight 2e-6 (smoother; TV is in squared pixel units)",
             dict(content=a, style=sn, tv_weight=2e-6)),
            ("init_random", "6. --init random", dict(content=a, style=sn, init="random")),
            ("pool_max", "7. --pool max", dict(content=a, style=sn, pool="max")),
            ("single_scale", "8. single scale at 512 (same iteration budget as the ladder)",
             dict(content=a, style=sn, scales=None)),
            ("masks", "9. --style-mask: Starry Night left, The Scream right",
             dict(content=ch, style=[sn, sc], style_masks=[half_mask(ch, "left"),
                                                           half_mask(ch, "right")])),
        ],
    }


def label(img: np.ndarray, text: str) -> Image.Image:
    im = Image.fromarray(img)
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, im.height - 14, im.width, im.height], fill="white")
    draw.text((3, im.height - 13), text, fill="black")
    return im


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="+", choices=["gallery", "sheet"], default=None)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    args = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    size = 96 if args.quick else 512
    scales = [48, 96] if args.quick else [256, 512]
    iters = [5, 3] if args.quick else [100, 30]
    lines = ["# Gallery", "", "Made by `python docs/make_gallery.py` from `../shared/data` at 512 px "
             f"(256 -> 512 ladder, {iters[0]} + {iters[1]} L-BFGS iterations, defaults otherwise; "
             "image credits in `../shared/data/README.md` and the README).", ""]
    for group, items in pictures().items():
        if args.only and group not in args.only:
            continue
        for stem, caption, kw in items:
            kw = dict(kw)
            ladder = kw.pop("scales", scales)
            t = time.perf_counter()
            if ladder is None:
                r = onnxstyle.stylize(size=size, iterations=sum(iters), **kw)
            else:
                r = onnxstyle.stylize(size=None if not args.quick else None, scales=ladder,
                                      iterations=iters, **kw)
            secs = time.perf_counter() - t
            path = OUT / f"{stem}.jpg"
            images.save(r.image, path)
            print(f"{stem}: {secs:.0f} s, loss {r.initial['total']:.4g} -> {r.final['total']:.4g}")
            lines += [f"## {caption}", "", f"![{stem}](gallery/{stem}.jpg)", "",
                      f"{r.image.shape[1]}x{r.image.shape[0]}, {r.iterations} iterations, "
                      f"{secs:.0f} s on {r.provider}; loss {r.initial['total']:.4g} -> "
                      f"{r.final['total']:.4g}", ""]
    if not args.only or "sheet" in args.only:
        shots: list[tuple[np.ndarray, str]] = []
        every = 1 if args.quick else 20

        def keep(p):
            if p.iteration % every == 0:
                shots.append((p.image, f"it {p.iteration} loss {p.terms['total']:.3g}"))

        r = onnxstyle.stylize(C["chelsea"], S["starry_night"], size=size // 2,
                              iterations=sum(iters) // 2 if not args.quick else 4, callback=keep)
        images.save_pil(sheet.contact_sheet([s for s, _ in shots], [t for _, t in shots]),
                        OUT / "sheet.png")
        images.save_pil(sheet.loss_plot(r.history), OUT / "losses.png")
        lines += ["## 10. Checkpoints: contact sheet and loss curve", "",
                  "![sheet](gallery/sheet.png)", "", "![losses](gallery/losses.png)", ""]
    if not args.only or "gallery" in args.only:
        old = (HERE / "gallery.md").read_text() if (HERE / "gallery.md").is_file() else ""
        kept = old[old.index(SIZES):] if SIZES in old else ""
        (HERE / "gallery.md").write_text("\n".join(lines) + ("\n" + kept if kept else ""))


if __name__ == "__main__":
    main()
