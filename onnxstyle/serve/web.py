"""The in-browser page (js/web/, run by onnxruntime-web) under /web/ of `onnxstyle serve`, and the
same files as a static folder: `python -m onnxstyle.serve.web OUT` (then serve OUT with the
headers below; OUT/_headers says them to hosts that read one).

One map from URL path to file serves both: the page and the JS runtime (js/web, js/src, from a
checkout where `npm ci --ignore-scripts` ran in js/), onnxruntime-web's files, the exported
graph pair and defaults (models folder), the L-BFGS step graphs and the sample pictures
(onnxstyle/data)."""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from onnxstyle import layout
from onnxstyle.files import DEFAULT_NAME, features_path, models_dir, weights_path

JS = Path(__file__).resolve().parents[2] / "js"  # the checkout's js/ folder
DATA = Path(__file__).resolve().parents[1] / "data"
ORT_WEB = ("ort.wasm.min.mjs", "ort.webgpu.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm",
           "ort-wasm-simd-threaded.asyncify.mjs", "ort-wasm-simd-threaded.asyncify.wasm")
SAMPLES = ("astronaut.png", "chelsea.jpg", "starry_night.jpg", "the_scream.jpg", "woman_with_hat.jpg")
# Cross-origin isolation: what lets WebAssembly use threads (SharedArrayBuffer).
HEADERS = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp",
           "Cross-Origin-Resource-Policy": "same-origin"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".mjs": "text/javascript",
         ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
         ".weights": "application/octet-stream", ".png": "image/png", ".jpg": "image/jpeg"}


class WebMissing(Exception):
    """A file the page needs is not there (one line: what to do)."""


def files(models: Path | None = None) -> dict[str, Path]:
    """URL path under /web/ -> the file it serves."""
    models = models or models_dir()
    loss = models / DEFAULT_NAME
    out = {"": JS / "web" / "index.html", "index.html": JS / "web" / "index.html", "app.js": JS / "web" / "app.js"}
    out |= {f"src/{p.name}": p for p in sorted((JS / "src").glob("*.js"))}
    out |= {f"ort/{n}": JS / "node_modules" / "onnxruntime-web" / "dist" / n for n in ORT_WEB}
    for p in (loss, features_path(loss), weights_path(loss), models / "onnxstyle.defaults.json"):
        out[f"models/{p.name}"] = p
    out |= {f"steps/{layout.lbfgs_file(g)}": DATA / layout.lbfgs_file(g) for g in layout.LBFGS_IO}
    out |= {f"samples/{n}": DATA / n for n in SAMPLES}
    return out


def find(path: str, models: Path | None = None) -> Path | None:
    """The file for /web/<path>, None for a path not in the map; WebMissing where it is and the file is not."""
    target = files(models).get(path)
    if target is None:
        return None
    if not target.is_file():
        if "node_modules" in target.parts:
            raise WebMissing(f"{target.name} is missing: run `npm ci --ignore-scripts` in {JS}")
        if target.parent == models_dir() or target.suffix in (".weights", ".json") or "models" in path:
            raise WebMissing(f"{target.name} is missing: run `onnxstyle export`")
        raise WebMissing(f"{path}: the page needs a source checkout's js/ folder")
    return target


def etag(path: Path) -> str:
    st = path.stat()
    return '"' + hashlib.sha256(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:20] + '"'


def build(out: Path, models: Path | None = None) -> Path:
    """Copy every file of the page into `out` (a static site); returns `out`."""
    out = Path(out)
    for path in files(models):
        if not path:
            continue
        source = find(path, models)
        assert source is not None
        (out / path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, out / path)
    lines = ["/*"] + [f"  {k}: {v}" for k, v in HEADERS.items()]
    (out / "_headers").write_text("\n".join(lines) + "\n")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m onnxstyle.serve.web OUT_FOLDER")
    try:
        print(f"wrote the page into {build(Path(sys.argv[1]))} (serve it with the headers in _headers)")
    except WebMissing as e:
        sys.exit(f"onnxstyle: error: {e}")
